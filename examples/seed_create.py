import os

from linq import LinqAPIV3

client = LinqAPIV3(
    api_key=os.environ.get("LINQ_API_V3_API_KEY"),  # This is the default and can be omitted
)
set_contact_card = client.contact_card.create(
    first_name="John",
    phone_number="+15551234567",
    image_url="https://cdn.linqapp.com/contact-card/example.jpg",
    last_name="Doe",
)
print(set_contact_card.first_name)
