"""Several server hosts: two processes with data folders of their own (no shared disk), on
one PostgreSQL database and one S3-compatible bucket (moto's server on 127.0.0.1).

What one host writes, the other reads at once, image included (served from the bucket,
since its own disk never saw it); the write budget, a key revocation and the GET memo hold
across them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import linq
import pytest

from tests.support import images
from tests.support.processes import (
    NEEDS_POSTGRES,
    ServerProcess,
    assert_clean_log,
    create_partner,
    issue_key,
    stop_all,
)
from tests.support.s3 import S3Server


@pytest.fixture
def hosts(postgres_url, tmp_path, image_host) -> Iterator[tuple[ServerProcess, ServerProcess, S3Server, str]]:
    if postgres_url is None:
        pytest.skip(NEEDS_POSTGRES)
    s3 = S3Server().start()
    started: list[ServerProcess] = []
    try:
        bucket = s3.new_bucket()
        env = {"CONTACTCARD_IMAGE_ALLOWED_HOSTS": image_host.host_port, **s3.env(bucket)}
        a = ServerProcess(tmp_path / "host-a", postgres_url, name="A", extra_env=env)
        b = ServerProcess(tmp_path / "host-b", postgres_url, name="B", extra_env=env)
        started += [a, b]
        a.start()
        b.start()
        yield a, b, s3, bucket
    finally:
        stop_all(started)
        s3.stop()


def _no_local_images(server: ServerProcess) -> None:
    folder = server.data_dir / "cdn"
    assert not folder.exists() or not any(folder.iterdir()), f"{server.name} kept images on its own disk"


def test_two_hosts_share_cards_images_budget_revocation_and_memo(hosts, image_host):
    a, b, s3, bucket = hosts
    partner = create_partner(a, lines=2)
    phone, second = partner.lines
    on_a, on_b = a.client(partner.key), b.client(partner.key)

    # Written through A, read through B, image included.
    source = image_host.serve(images.jpeg(400, 300, colour=(20, 160, 90)))
    created = on_a.contact_card.create(phone_number=phone, first_name="Host", last_name="A", image_url=source)
    name = created.image_url.removeprefix(f"{a.base_url}/cdn/contact-card/")
    (seen,) = on_b.contact_card.retrieve(phone_number=phone).contact_cards
    assert (seen.first_name, seen.last_name, seen.is_active) == ("Host", "A", True)
    assert seen.image_url == f"{b.base_url}/cdn/contact-card/{name}"
    served = httpx.get(seen.image_url, timeout=10)
    assert served.status_code == 200 and served.headers["content-type"] == "image/jpeg"
    assert hashlib.sha256(served.content).hexdigest() == name.split(".")[0]
    stored = s3.client().get_object(Bucket=bucket, Key=f"contact-card/{name}")["Body"].read()
    assert stored == served.content
    assert images.decode(served.content).size == (300, 300)

    # B remembers its GET answer; a write through A is seen by B's very next GET.
    for _ in range(2):
        assert [c.first_name for c in on_b.contact_card.retrieve(phone_number=phone).contact_cards] == ["Host"]
    assert on_a.contact_card.update(phone_number=phone, first_name="Changed").first_name == "Changed"
    assert [c.first_name for c in on_b.contact_card.retrieve(phone_number=phone).contact_cards] == ["Changed"]

    # The budget (3 writes per number) is one across both hosts: POST and PATCH on A, PATCH on B.
    assert on_b.contact_card.update(phone_number=phone, first_name="Third").first_name == "Third"
    for client in (on_a, on_b):
        with pytest.raises(linq.RateLimitError) as caught:
            client.contact_card.update(phone_number=phone, first_name="Fourth")
        assert caught.value.code == 1007
    assert [c.first_name for c in on_a.contact_card.retrieve(phone_number=phone).contact_cards] == ["Third"]

    # An image written through B is served by A (and by B) from the bucket.
    other_source = image_host.serve(images.png(128, 96), content_type="image/png")
    via_b = on_b.contact_card.create(phone_number=second, first_name="Host", last_name="B", image_url=other_source)
    other_name = via_b.image_url.removeprefix(f"{b.base_url}/cdn/contact-card/")
    (on_host_a,) = on_a.contact_card.retrieve(phone_number=second).contact_cards
    assert on_host_a.image_url == f"{a.base_url}/cdn/contact-card/{other_name}"
    assert httpx.get(on_host_a.image_url, timeout=10).content == httpx.get(via_b.image_url, timeout=10).content

    # A key revoked through A is refused by B at once, although B just answered it from its memo.
    key, key_id = issue_key(a, partner.id)
    revoked_client = b.client(key)
    for _ in range(2):
        assert len(revoked_client.contact_card.retrieve(phone_number=phone).contact_cards) == 1
    assert a.admin("DELETE", f"/keys/{key_id}").status_code == 204
    with pytest.raises(linq.AuthenticationError) as refused:
        revoked_client.contact_card.retrieve(phone_number=phone)
    assert refused.value.code == 2004

    # The bucket gone: both hosts leave the rotation and refuse image writes; both come back.
    assert all(httpx.get(f"{s.base_url}/readyz", timeout=10).status_code == 200 for s in (a, b))
    s3.stop()
    try:
        for server in (a, b):
            assert httpx.get(f"{server.base_url}/readyz", timeout=10).status_code == 503
        with pytest.raises(linq.APIStatusError) as down:
            b.client(partner.key).contact_card.update(
                phone_number=second, image_url=image_host.serve(images.jpeg(colour=(1, 2, 3)))
            )
        assert (down.value.status_code, down.value.response.json()["error"]["code"]) == (503, 4008)
    finally:
        s3.start()
    assert all(httpx.get(f"{s.base_url}/readyz", timeout=10).status_code == 200 for s in (a, b))
    assert [c.last_name for c in on_a.contact_card.retrieve(phone_number=second).contact_cards] == ["B"]

    for server in (a, b):
        _no_local_images(server)
        assert server.running, f"{server.name} died:\n{server.log()}"
        assert_clean_log(server)
