"""Images on an S3-compatible bucket (moto's server on 127.0.0.1), through a real server.

The server under test runs in a thread of the test process on SQLite, with
`CONTACTCARD_S3_*` pointing at the bucket and the AWS credential chain fed from the
environment. The S3 server is stopped and started inside a test to show that a write
whose image cannot be stored answers `503 4008` quickly and stores nothing, that
`/readyz` follows the store, and that the server recovers by itself.
"""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import Partner, RunningServer, make_partner, start_server
from tests.support import images
from tests.support.s3 import S3Server, credentials

IMMUTABLE = "public, max-age=31536000, immutable"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    server = S3Server().start()
    yield server
    server.stop()


def _server(s3: S3Server, tmp_path, image_host, monkeypatch, **overrides) -> tuple[RunningServer, str]:
    # The client resolves its credentials when it is built: the variables matter only then.
    for name, value in credentials().items():
        monkeypatch.setenv(name, value)
    bucket = s3.new_bucket()
    settings = {"image_allowed_hosts": image_host.host_port, **s3.settings(bucket), **overrides}
    return start_server(settings, tmp_path / "data"), bucket


@pytest.fixture
def on_s3(s3, tmp_path, image_host, monkeypatch) -> Iterator[tuple[Partner, str]]:
    server, bucket = _server(s3, tmp_path, image_host, monkeypatch)
    try:
        yield make_partner(server, lines=2), bucket
    finally:
        server.stop()


def test_s3_image_is_stored_content_addressed_and_proxied(on_s3, s3, image_host, tmp_path):
    partner, bucket = on_s3
    source = image_host.serve(images.jpeg(320, 240))
    card = partner.client().contact_card.create(phone_number=partner.lines[0], first_name="Bucket", image_url=source)
    prefix = f"{partner.server.base_url}/cdn/contact-card/"
    assert card.image_url.startswith(prefix)
    name = card.image_url.removeprefix(prefix)

    stored = s3.client().get_object(Bucket=bucket, Key=f"contact-card/{name}")
    data = stored["Body"].read()
    assert name == f"{hashlib.sha256(data).hexdigest()}.jpg"
    assert stored["ContentType"] == "image/jpeg"
    assert stored["CacheControl"] == IMMUTABLE
    assert images.decode(data).size == (240, 240)
    # Nothing lands on the local disk: another host has no access to it.
    assert not (tmp_path / "data" / "cdn").exists() or not any((tmp_path / "data" / "cdn").iterdir())

    served = httpx.get(card.image_url, timeout=10)
    assert served.status_code == 200 and served.content == data
    assert served.headers["content-type"] == "image/jpeg"
    assert served.headers["cache-control"] == IMMUTABLE
    assert served.headers["etag"] == f'"{name.split(".")[0]}"'
    again = httpx.get(card.image_url, headers={"if-none-match": served.headers["etag"]}, timeout=10)
    assert again.status_code == 304
    assert httpx.get(f"{prefix}{'0' * 64}.jpg", timeout=10).status_code == 404

    # Echoing the CDN URL back is recognised as ours, checked in the bucket, not fetched.
    hits = image_host.hits_for(source)
    same = partner.client().contact_card.update(phone_number=partner.lines[0], image_url=card.image_url)
    assert same.image_url == card.image_url and image_host.hits_for(source) == hits


def test_s3_with_a_cdn_base_url_answers_urls_whose_path_is_the_object_key(s3, tmp_path, image_host, monkeypatch):
    cdn = "https://images.example.test"
    server, bucket = _server(s3, tmp_path, image_host, monkeypatch, cdn_base_url=cdn)
    try:
        partner = make_partner(server, lines=1)
        source = image_host.serve(images.png(64, 64), content_type="image/png")
        card = partner.client().contact_card.create(phone_number=partner.lines[0], first_name="Cdn", image_url=source)
        assert card.image_url.startswith(f"{cdn}/contact-card/")
        key = card.image_url.removeprefix(f"{cdn}/")
        stored = s3.client().head_object(Bucket=bucket, Key=key)
        assert stored["ContentType"] in ("image/jpeg", "image/png")
        assert key.endswith(".jpg" if stored["ContentType"] == "image/jpeg" else ".png")
        assert stored["CacheControl"] == IMMUTABLE
    finally:
        server.stop()


@pytest.mark.timed  # answers within 2 s of a 1 s store deadline
def test_s3_down_answers_503_4008_quickly_stores_nothing_and_recovers(on_s3, s3, image_host):
    partner, _bucket = on_s3
    phone, other = partner.lines
    base = partner.server.base_url
    client = partner.client()
    kept = client.contact_card.create(
        phone_number=other, first_name="Before", image_url=image_host.serve(images.jpeg())
    )
    assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
    source = image_host.serve(images.jpeg(colour=(200, 10, 10)))

    s3.stop()
    try:
        with partner.http() as http:
            started = time.monotonic()
            answer = http.post(
                "/api/partner/v3/contact_card", json={"phone_number": phone, "first_name": "Down", "image_url": source}
            )
            took = time.monotonic() - started
            assert answer.status_code == 503, answer.text
            assert answer.json()["error"]["code"] == 4008
            assert answer.headers["retry-after"] == "1"
            assert answer.json()["trace_id"] == answer.headers["x-trace-id"]
            assert took < 2.0, f"answered after {took:.2f} s"
            # Nothing stored: the line still has no card, and the budget was not spent.
            assert http.get("/api/partner/v3/contact_card", params={"phone_number": phone}).json() == {
                "contact_cards": []
            }
            # A write without an image does not need the store.
            plain = http.patch(
                "/api/partner/v3/contact_card", params={"phone_number": other}, json={"first_name": "Plain"}
            )
            assert plain.status_code == 200, plain.text
            proxied = httpx.get(kept.image_url, timeout=10)
            assert proxied.status_code == 503 and proxied.json()["error"]["code"] == 4008

            started = time.monotonic()
            ready = httpx.get(f"{base}/readyz", timeout=10)
            assert time.monotonic() - started < 3.0
            assert ready.status_code == 503
            assert ready.json()["checks"]["database"] == "ok"
            assert ready.json()["checks"]["image_store"] != "ok"
            assert httpx.get(f"{base}/healthz", timeout=10).status_code == 200  # alive, only not ready
    finally:
        s3.start()

    assert httpx.get(f"{base}/readyz", timeout=10).status_code == 200
    again = client.contact_card.create(phone_number=phone, first_name="Back", image_url=source)
    assert again.is_active and again.image_url.startswith(f"{base}/cdn/contact-card/")
    assert httpx.get(again.image_url, timeout=10).status_code == 200
    assert httpx.get(kept.image_url, timeout=10).status_code == 200


@pytest.mark.timed  # one deadline, measured in seconds
def test_s3_that_accepts_and_never_answers_costs_one_deadline(tmp_path, image_host, monkeypatch):
    # A listening socket nobody accepts from: connections complete (the kernel's backlog),
    # requests go out, no answer ever comes, as with a hung store or a black-holed route.
    silent = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    silent.bind(("127.0.0.1", 0))
    silent.listen(64)
    for name, value in credentials().items():
        monkeypatch.setenv(name, value)
    endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
    settings = {
        "image_allowed_hosts": image_host.host_port,
        "s3_bucket": "never-answers",
        "s3_endpoint_url": endpoint,
        "s3_region": "us-east-1",
        "s3_addressing_style": "path",
        "s3_timeout": 0.8,
    }
    server = start_server(settings, tmp_path / "data")
    try:
        partner = make_partner(server, lines=1)
        with partner.http() as http:
            started = time.monotonic()
            answer = http.post(
                "/api/partner/v3/contact_card",
                json={
                    "phone_number": partner.lines[0],
                    "first_name": "Hung",
                    "image_url": image_host.serve(images.jpeg()),
                },
            )
            took = time.monotonic() - started
            assert (answer.status_code, answer.json()["error"]["code"]) == (503, 4008), answer.text
            assert took < 1.8, f"answered after {took:.2f} s (botocore alone would wait for each attempt)"
            assert http.get("/api/partner/v3/contact_card").json() == {"contact_cards": []}
        started = time.monotonic()
        ready = httpx.get(f"{server.base_url}/readyz", timeout=10)
        assert time.monotonic() - started < 1.8
        assert (
            ready.status_code == 503 and ready.json()["checks"]["image_store"] == "unreachable (no answer within 0.8 s)"
        )
    finally:
        server.stop()
        silent.close()
