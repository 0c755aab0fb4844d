import os

from linq import LinqAPIV3

client = LinqAPIV3(
    api_key=os.environ.get("LINQ_API_V3_API_KEY"),  # This is the default and can be omitted
)
contact_card = client.contact_card.retrieve()
print(contact_card.contact_cards)
