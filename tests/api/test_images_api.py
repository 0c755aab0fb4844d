"""Images through the API: fetched from a host on 127.0.0.1, rehosted, served by our CDN."""

from __future__ import annotations

import hashlib

import httpx
import linq
import pytest

from tests.conftest import make_partner
from tests.support import images


def test_image_is_rehosted_on_our_cdn(partner, image_host):
    source = image_host.serve(images.jpeg(300, 200, exif_orientation=6))
    card = partner.client().contact_card.create(phone_number=partner.lines[0], first_name="Pic", image_url=source)
    assert card.image_url.startswith(f"{partner.server.settings.resolved_cdn_base_url}/contact-card/")
    assert card.image_url != source
    served = httpx.get(card.image_url)
    assert served.status_code == 200
    assert served.headers["content-type"] == "image/jpeg"
    assert served.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert served.headers["x-content-type-options"] == "nosniff"
    assert served.headers["x-trace-id"]
    digest = hashlib.sha256(served.content).hexdigest()
    assert card.image_url.endswith(f"{digest}.jpg") and served.headers["etag"] == f'"{digest}"'
    picture = images.decode(served.content)
    # 300x200 rotated by EXIF orientation 6 is 200 wide before the square crop: 200x200.
    assert picture.size == (200, 200)
    assert not picture.getexif()
    again = httpx.get(card.image_url, headers={"if-none-match": served.headers["etag"]})
    assert again.status_code == 304
    assert partner.device(partner.lines[0])["image_url"] == card.image_url


def test_big_images_are_bounded_to_1024_square(partner, image_host):
    source = image_host.serve(images.png(2400, 1600), content_type="image/png")
    card = partner.client().contact_card.create(phone_number=partner.lines[0], first_name="Big", image_url=source)
    assert images.decode(httpx.get(card.image_url).content).size == (1024, 1024)


def test_patch_fetches_only_a_new_url(farm, backend, image_host):
    partner = make_partner(farm.get(backend, write_budget=0), lines=1)
    phone = partner.lines[0]
    client = partner.client()
    source = image_host.serve(images.jpeg())
    card = client.contact_card.create(phone_number=phone, first_name="A", image_url=source)
    assert image_host.hits_for(source) == 1
    # Echoing back the source URL or the CDN URL GET returned costs nothing.
    client.contact_card.update(phone_number=phone, image_url=source)
    same = client.contact_card.update(phone_number=phone, image_url=card.image_url)
    assert image_host.hits_for(source) == 1 and same.image_url == card.image_url
    newer = image_host.serve(images.jpeg(colour=(0, 0, 250)))
    changed = client.contact_card.update(phone_number=phone, image_url=newer)
    assert image_host.hits_for(newer) == 1 and changed.image_url != card.image_url


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "needle"),
    [
        (b"<html>not an image</html>", "image/jpeg", 200, 5007, "not a supported image"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml", 200, 5007, "not a supported image"),
        (b"", "image/jpeg", 404, 5006, "404"),
    ],
)
def test_unusable_images_are_400_and_store_nothing(partner, image_host, body, content_type, status, code, needle):
    source = image_host.serve(body, content_type=content_type, status=status)
    with pytest.raises(linq.BadRequestError) as caught:
        partner.client().contact_card.create(phone_number=partner.lines[0], first_name="A", image_url=source)
    assert caught.value.code == code and needle in caught.value.body["message"]
    assert partner.client().contact_card.retrieve().contact_cards == []
    assert partner.device(partner.lines[0])["applies"] == 0


def test_private_hosts_not_allowed_are_refused_before_any_request(partner, image_host):
    # The server allows only the image host's own port; another port on 127.0.0.1 is private.
    with pytest.raises(linq.BadRequestError) as caught:
        partner.client().contact_card.create(
            phone_number=partner.lines[0], first_name="A", image_url=f"http://127.0.0.1:{image_host.port + 1}/x.jpg"
        )
    assert caught.value.code in (1005, 5006)


def test_own_cdn_url_is_reused_without_fetching(partner, image_host):
    client = partner.client()
    source = image_host.serve(images.jpeg())
    first = client.contact_card.create(phone_number=partner.lines[0], first_name="A", image_url=source)
    second = client.contact_card.create(phone_number=partner.lines[1], first_name="B", image_url=first.image_url)
    assert second.image_url == first.image_url and image_host.hits_for(source) == 1


def test_unknown_cdn_blob_is_404(server):
    response = httpx.get(f"{server.base_url}/cdn/contact-card/{'0' * 64}.jpg")
    assert response.status_code == 404 and response.json()["error"]["code"] == 2001
    traversal = httpx.get(f"{server.base_url}/cdn/contact-card/..%2F..%2Fcontactcard.db")
    assert traversal.status_code == 404


def test_image_urls_follow_the_current_cdn_base(farm, image_host):
    """Stored cards name blobs, not URLs: a new public address does not strand them."""
    from tests.conftest import start_server

    first = farm.get("sqlite", write_budget=0)
    partner = make_partner(first, lines=1)
    card = partner.client().contact_card.create(
        phone_number=partner.lines[0], first_name="Moved", image_url=image_host.serve(images.jpeg())
    )
    moved = start_server(
        {"image_allowed_hosts": image_host.host_port, "cdn_base_url": "https://cdn.example.test/media"},
        first.settings.data_dir,
    )
    try:
        response = httpx.get(f"{moved.base_url}/v3/contact_card", headers={"authorization": f"Bearer {partner.key}"})
        (shown,) = response.json()["contact_cards"]
        blob = card.image_url.rsplit("/", 1)[1]
        assert shown["image_url"] == f"https://cdn.example.test/media/contact-card/{blob}"
    finally:
        moved.stop()


def test_without_private_hosts_only_https_public_urls_are_taken(farm, backend, image_host):
    server = farm.get(backend, image_allowed_hosts="")
    partner = make_partner(server, lines=1)
    client = partner.client()
    with pytest.raises(linq.BadRequestError) as plain_http:
        client.contact_card.create(
            phone_number=partner.lines[0], first_name="A", image_url=image_host.serve(images.jpeg())
        )
    assert plain_http.value.code == 1005 and "https" in plain_http.value.body["message"]
    before = sum(image_host.hits.values())
    for url in (
        "https://127.0.0.1/a.jpg",
        "https://[::1]/a.jpg",
        "https://169.254.169.254/latest",
        "https://2130706433/",
    ):
        with pytest.raises(linq.BadRequestError) as refused:
            client.contact_card.create(phone_number=partner.lines[0], first_name="A", image_url=url)
        assert refused.value.code in (1005, 5006), url
    assert sum(image_host.hits.values()) == before
    assert client.contact_card.retrieve().contact_cards == []
