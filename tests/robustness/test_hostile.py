"""Hostile input through the real API.

Four families, each ending with a check that the server still answers a GET promptly:

1. Image URLs aimed at our own network: loopback, private, link-local and cloud metadata
   in every notation, directly and through redirects from an allowed host. A canary
   listener on 127.0.0.1 (and ::1), not allow-listed, proves no connection reached it.
2. Image hosts that misbehave: trickling, endless bodies, lying lengths, compressed
   bodies, HTML. Refused with a reason within the fetch deadline.
3. Image files that attack the decoder: decompression bombs, huge declared sizes,
   truncated data, formats we do not decode. Refused with a reason, nothing stored, and
   the process's peak memory stays bounded (the server runs in this process).
4. Hostile JSON: deep nesting, near-limit bodies, duplicate keys, NaN, and names with
   NUL, control, bidirectional and lone-surrogate characters.

Families 1 to 3 run on SQLite only: the address policy, the fetcher and the decoder all
act before anything reaches the database, so a second backend would run the same code again
for nothing but time. Family 4 runs on both, since hostile text is what reaches the store.

Bounds on time are liveness bounds (did it finish at all), not performance figures.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import io
import json
import resource
import struct
import threading
import time
import zlib
from collections.abc import Iterator

import httpx
import linq
import pytest
from PIL import Image

from tests.conftest import Partner, RunningServer, make_partner, new_number
from tests.support import hostile_host as hh
from tests.support import images
from tests.support.hostile_host import Canary, HostileHost

pytestmark = pytest.mark.slow

LIVENESS_SECONDS = 5.0  # a GET of all cards, on a shared 2-core CI machine
FETCH_TIMEOUT = 2.0
FETCH_BOUND = FETCH_TIMEOUT + 6.0  # the deadline plus generous slack
MAX_BYTES = 1_000_000
RSS_GROWTH_BOUND_MB = 400
MAX_BODY = 64 * 1024


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileHost]:
    host = HostileHost()
    yield host
    host.close()


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    listener = Canary(images.jpeg())
    yield listener
    listener.close()


@pytest.fixture
def guarded(farm, hostile) -> RunningServer:
    """A server whose only allowed private host is the hostile host (not the canary)."""
    return farm.get("sqlite", image_allowed_hosts=hostile.host_port)


@pytest.fixture
def tight(farm, hostile) -> RunningServer:
    """Like `guarded`, with a 2 s fetch deadline and a 1 MB download limit."""
    return farm.get(
        "sqlite",
        image_allowed_hosts=hostile.host_port,
        image_fetch_timeout=FETCH_TIMEOUT,
        image_max_bytes=MAX_BYTES,
    )


@pytest.fixture
def decoding(farm) -> Partner:
    """A partner with one fresh line on the default SQLite server, for the decoder's family."""
    return with_lines(farm.get("sqlite"))


@pytest.fixture
def partner(server) -> Partner:
    """Overrides conftest's: a partner on the default server (the image host allow-listed)
    with one fresh line, cheaper than a new partner for each of the many cases here."""
    return with_lines(server)


# --- helpers -----------------------------------------------------------------------------

_partners: dict[str, Partner] = {}


def with_lines(server: RunningServer, count: int = 1) -> Partner:
    """One partner per server for this module, with `count` fresh lines for this test:
    a line costs one admin call where a new partner costs several."""
    if server.base_url not in _partners:
        _partners[server.base_url] = make_partner(server, lines=0)
    shared = _partners[server.base_url]
    numbers = [new_number() for _ in range(count)]
    for number in numbers:
        added = server.admin("POST", "/lines", json={"partner_id": shared.id, "phone_number": number})
        assert added.status_code == 200, added.text
    return dataclasses.replace(shared, lines=numbers)


def post_card(partner: Partner, body: dict | bytes, line: int = 0) -> tuple[httpx.Response, float]:
    """POST a card (a dict is sent as JSON, bytes as they are); returns the answer and its time."""
    if isinstance(body, dict):
        content = json.dumps({"phone_number": partner.lines[line], "first_name": "Hostile", **body}).encode()
    else:
        content = body
    started = time.monotonic()
    with partner.http() as http:
        response = http.post("/v3/contact_card", content=content, headers={"content-type": "application/json"})
    return response, time.monotonic() - started


def error_of(response: httpx.Response, status: int = 400) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["success"] is False and body["error"]["status"] == status, body
    return body["error"]


def assert_nothing_stored(partner: Partner, line: int = 0) -> None:
    phone = partner.lines[line]
    with partner.http() as http:
        shown = http.get("/v3/contact_card", params={"phone_number": phone})
    assert shown.status_code == 200 and shown.json() == {"contact_cards": []}, shown.text
    assert partner.device(phone)["applies"] == 0


def assert_still_serving(partner: Partner) -> None:
    """The server answers a GET of all cards promptly: nothing above wedged it."""
    started = time.monotonic()
    response = httpx.get(
        f"{partner.server.base_url}/v3/contact_card",
        headers={"authorization": f"Bearer {partner.key}"},
        timeout=LIVENESS_SECONDS * 4,
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    assert isinstance(response.json()["contact_cards"], list)
    assert elapsed < LIVENESS_SECONDS, f"GET took {elapsed:.1f} s"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# --- 1. image URLs aimed at our own network -----------------------------------------------

# {p}: the canary's port; {allowed}: the hostile host's host:port (the one allow-listed).
TO_CANARY = [
    ("canonical", "http://127.0.0.1:{p}/a.jpg"),
    ("localhost_name", "http://localhost:{p}/a.jpg"),
    ("decimal", "http://2130706433:{p}/a.jpg"),
    ("octal", "http://0177.0.0.1:{p}/a.jpg"),
    ("octal_integer", "http://017700000001:{p}/a.jpg"),
    ("hex", "http://0x7f.0.0.1:{p}/a.jpg"),
    ("hex_integer", "http://0x7f000001:{p}/a.jpg"),
    ("hex_upper_short", "http://0X7F.1:{p}/a.jpg"),
    ("short", "http://127.1:{p}/a.jpg"),
    ("zero_padded", "http://127.000.000.001:{p}/a.jpg"),
    ("trailing_dot", "http://127.0.0.1.:{p}/a.jpg"),
    ("localhost_trailing_dot", "http://localhost.:{p}/a.jpg"),
    ("fullwidth_digits", "http://\uff11\uff12\uff17.\uff10.\uff10.\uff11:{p}/a.jpg"),
    ("ipv6_loopback", "http://[::1]:{p}/a.jpg"),
    ("ipv6_loopback_long", "http://[0:0:0:0:0:0:0:1]:{p}/a.jpg"),
    ("ipv4_mapped_dotted", "http://[::ffff:127.0.0.1]:{p}/a.jpg"),
    ("ipv4_mapped_hex", "http://[::ffff:7f00:1]:{p}/a.jpg"),
    ("ipv4_compatible", "http://[::127.0.0.1]:{p}/a.jpg"),
    ("nat64", "http://[64:ff9b::7f00:1]:{p}/a.jpg"),
    ("6to4", "http://[2002:7f00:1::]:{p}/a.jpg"),
    ("zone_id", "http://[fe80::1%25lo]:{p}/a.jpg"),
    ("unspecified_v4", "http://0.0.0.0:{p}/a.jpg"),
    ("zero", "http://0:{p}/a.jpg"),
    ("unspecified_v6", "http://[::]:{p}/a.jpg"),
    ("credentials_trick", "http://{allowed}@127.0.0.1:{p}/a.jpg"),
    ("fragment_trick", "http://127.0.0.1:{p}/a.jpg#@{allowed}/"),
    ("backslash_trick", "http://{allowed}\\@127.0.0.1:{p}/a.jpg"),
]
PRIVATE = [
    ("metadata", "http://169.254.169.254/latest/meta-data/"),
    ("metadata_https", "https://169.254.169.254/latest/meta-data/"),
    ("metadata_decimal", "http://2852039166/latest/meta-data/"),
    ("metadata_ipv4_mapped", "http://[::ffff:169.254.169.254]/latest/meta-data/"),
    ("metadata_ipv6_ula", "http://[fd00:ec2::254]/latest/meta-data/"),
    ("link_local_v6", "http://[fe80::1]/a.jpg"),
    ("private_10", "http://10.0.0.1/a.jpg"),
    ("private_172", "http://172.16.0.1/a.jpg"),
    ("private_192", "http://192.168.0.1/a.jpg"),
    ("cgnat", "http://100.64.0.1/a.jpg"),
    ("multicast", "http://224.0.0.1/a.jpg"),
    ("broadcast", "http://255.255.255.255/a.jpg"),
]


def assert_refused_as_ours(error: dict) -> None:
    """Refused as an address we will not fetch (5006) or as a URL we will not take
    (1005) -- not as a fetch that was tried and failed."""
    assert error["code"] in (1005, 5006), error
    if error["code"] == 1005:
        assert "image_url" in error["message"], error
    else:
        assert "non-public address" in error["message"] or "refused URL" in error["message"], error


def test_canary_sees_what_these_notations_reach(canary):
    """The canary is a fair witness: plain clients reach it through the notations below."""
    before = canary.count
    reached = ["http://127.0.0.1:{p}/", "http://0.0.0.0:{p}/"]
    if canary.has_ipv6:
        reached += ["http://[::1]:{p}/", "http://[::]:{p}/"]
    for template in reached:
        response = httpx.get(template.format(p=canary.port), timeout=5, trust_env=False)
        assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg", template
    assert canary.count == before + len(reached)


@pytest.mark.parametrize(("template"), [t for _, t in TO_CANARY + PRIVATE], ids=[i for i, _ in TO_CANARY + PRIVATE])
def test_ssrf_urls_are_refused_without_a_connection(guarded, canary, hostile, template):
    partner = with_lines(guarded)
    before = canary.count
    url = template.format(p=canary.port, allowed=hostile.host_port)
    response, _ = post_card(partner, {"image_url": url})
    assert_refused_as_ours(error_of(response))
    assert canary.count == before, f"{url} reached the canary"
    assert_nothing_stored(partner)
    assert_still_serving(partner)


REDIRECT_TARGETS = [
    ("loopback_other_port", "http://127.0.0.1:{p}/a.jpg", 302),
    ("metadata", "http://169.254.169.254/latest/meta-data/", 302),
    ("metadata_307", "http://169.254.169.254/latest/meta-data/iam/", 307),
    ("ipv6_loopback", "http://[::1]:{p}/a.jpg", 301),
    ("ipv4_mapped", "http://[::ffff:7f00:1]:{p}/a.jpg", 308),
    ("localhost", "http://localhost:{p}/a.jpg", 303),
    ("decimal", "http://2130706433:{p}/a.jpg", 302),
    ("unspecified", "http://0.0.0.0:{p}/a.jpg", 302),
    ("scheme_relative", "//127.0.0.1:{p}/a.jpg", 302),
    ("private_10", "http://10.0.0.1/a.jpg", 302),
    ("file_scheme", "file:///etc/passwd", 302),
    ("gopher_scheme", "gopher://127.0.0.1:{p}/_GET%20/", 302),
]


@pytest.mark.parametrize(
    ("template", "status"), [(t, s) for _, t, s in REDIRECT_TARGETS], ids=[i for i, _, _ in REDIRECT_TARGETS]
)
def test_redirects_to_our_network_are_refused(guarded, canary, hostile, template, status):
    partner = with_lines(guarded)
    before = canary.count
    target = template.format(p=canary.port)
    start = hostile.publish(hh.redirect(target, status))
    response, _ = post_card(partner, {"image_url": start})
    error = error_of(response)
    assert error["code"] == 5006, error
    assert_refused_as_ours(error)
    assert len(hostile.requests_for(start)) == 1  # the first hop was taken, the second refused
    assert canary.count == before, f"redirect to {target} reached the canary"
    assert_nothing_stored(partner)
    assert_still_serving(partner)


def test_redirect_chains_reach_our_network_not_at_all(guarded, canary, hostile):
    """Three allowed hops, then loopback: the check holds at the last hop too."""
    partner = with_lines(guarded)
    before = canary.count
    url = f"http://127.0.0.1:{canary.port}/a.jpg"
    for _ in range(3):
        url = hostile.publish(hh.redirect(url))
    response, _ = post_card(partner, {"image_url": url})
    assert_refused_as_ours(error_of(response))
    assert canary.count == before
    # More than three redirects, even between allowed hosts, are refused.
    image = hostile.publish(hh.respond(images.jpeg()))
    url = image
    for _ in range(4):
        url = hostile.publish(hh.redirect(url))
    response, _ = post_card(partner, {"image_url": url})
    error = error_of(response)
    assert error["code"] == 5006 and "redirect" in error["message"], error
    assert hostile.requests_for(image) == []
    assert_nothing_stored(partner)
    assert_still_serving(partner)


def test_redirect_between_allowed_hosts_is_followed(guarded, hostile):
    """The control: redirects work, so the refusals above are about where they lead."""
    partner = with_lines(guarded)
    image = hostile.publish(hh.respond(images.jpeg(80, 60)))
    start = hostile.publish(hh.redirect(hostile.publish(hh.redirect(image, 301)), 307))
    card = partner.client().contact_card.create(phone_number=partner.lines[0], first_name="Hop", image_url=start)
    assert card.is_active and card.image_url.startswith(guarded.settings.resolved_cdn_base_url)
    assert len(hostile.requests_for(image)) == 1
    # Nothing of the caller's reaches the image host.
    for request in hostile.requests_for(image) + hostile.requests_for(start):
        assert "authorization" not in request.headers and "cookie" not in request.headers
    assert_still_serving(partner)


# --- 2. image hosts that misbehave --------------------------------------------------------


@functools.cache
def noisy_jpeg() -> bytes:
    """A JPEG of some 30 KB whose every part matters (noise does not compress)."""
    out = io.BytesIO()
    Image.effect_noise((256, 256), 80).convert("RGB").save(out, "JPEG", quality=90)
    return out.getvalue()


@functools.cache
def gzip_bomb() -> bytes:
    return gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)


def _misbehaviours() -> list[tuple[str, object, int, str]]:
    jpeg = noisy_jpeg()
    return [
        ("trickled_head", lambda: hh.trickle_head(0.3), 5006, "timed out"),
        ("trickled_body", lambda: hh.trickle_body(jpeg, 0.3, declared=len(jpeg)), 5006, "timed out"),
        ("endless_body", lambda: hh.endless_body(jpeg, chunked=False), 5006, "larger than"),
        ("endless_chunked_body", lambda: hh.endless_body(jpeg, chunked=True), 5006, "larger than"),
        ("declares_50_mb_then_waits", lambda: hh.lying_length(50_000_000, b"", then="hold"), 5006, "larger than"),
        ("length_longer_then_close", lambda: hh.lying_length(len(jpeg) + 5000, jpeg), 5006, "closed"),
        ("length_longer_then_wait", lambda: hh.lying_length(len(jpeg) + 5000, jpeg, then="hold"), 5006, "timed out"),
        ("length_shorter", lambda: hh.lying_length(len(jpeg) // 2, jpeg), 5007, "truncated"),
        (
            "gzip_encoded",
            lambda: hh.respond(gzip.compress(jpeg), extra=[("Content-Encoding", "gzip")]),
            5006,
            "Content-Encoding",
        ),
        ("gzip_bomb", lambda: hh.respond(gzip_bomb(), extra=[("Content-Encoding", "gzip")]), 5006, "Content-Encoding"),
        (
            "html_page",
            lambda: hh.respond(b"<!doctype html><html><body>hi</body></html>", "text/html"),
            5007,
            "not a supported image",
        ),
        ("server_error", lambda: hh.respond(jpeg, status=500), 5006, "500"),
        ("endless_informational", lambda: hh.repeat(b"", b"HTTP/1.1 102 Processing\r\n\r\n", 0.05), 5006, "timed out"),
        (
            "header_flood",
            lambda: hh.repeat(b"HTTP/1.1 200 OK\r\n", b"X-Flood: " + b"a" * 1000 + b"\r\n"),
            5006,
            "malformed",
        ),
        ("not_http", lambda: hh.raw(b"SSH-2.0-OpenSSH_9.6\r\n\r\n"), 5006, "malformed"),
    ]


MISBEHAVIOURS = _misbehaviours()


@pytest.mark.parametrize(("make", "code", "needle"), [m[1:] for m in MISBEHAVIOURS], ids=[m[0] for m in MISBEHAVIOURS])
def test_misbehaving_hosts_are_refused_in_time(tight, hostile, make, code, needle):
    partner = with_lines(tight)
    url = hostile.publish(make())
    response, elapsed = post_card(partner, {"image_url": url})
    error = error_of(response)
    assert error["code"] == code and needle in error["message"], error
    assert elapsed < FETCH_BOUND, f"refused after {elapsed:.1f} s"
    (request,) = hostile.requests_for(url)
    # The server hung up: no connection is left dangling (the behaviours run until it does).
    hung_up_by = time.monotonic() + FETCH_BOUND
    while request.finished is None and time.monotonic() < hung_up_by:
        time.sleep(0.02)
    assert request.finished is not None, "the server left the connection open"
    assert request.headers.get("accept-encoding") == "identity"
    assert "authorization" not in request.headers and "cookie" not in request.headers
    assert_nothing_stored(partner)
    assert_still_serving(partner)


def test_well_behaved_host_is_fetched_by_the_tight_server(tight, hostile):
    """The control: the same server, limits and host take an honest image."""
    partner = with_lines(tight)
    url = hostile.publish(hh.respond(noisy_jpeg()))
    card = partner.client().contact_card.create(phone_number=partner.lines[0], first_name="Ok", image_url=url)
    assert card.is_active and card.image_url
    assert_still_serving(partner)


def test_get_answers_while_a_fetch_trickles(tight, hostile):
    """A trickling fetch holds no event loop: a GET answers while the POST is in flight."""
    partner = with_lines(tight)
    url = hostile.publish(hh.trickle_body(noisy_jpeg(), 0.2, declared=len(noisy_jpeg())))
    result: dict = {}
    poster = threading.Thread(target=lambda: result.update(answer=post_card(partner, {"image_url": url})))
    poster.start()
    try:
        deadline = time.monotonic() + FETCH_BOUND
        while not hostile.requests_for(url) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert hostile.requests_for(url), "the fetch never started"
        assert_still_serving(partner)
        assert poster.is_alive(), "the GET had to wait for the trickling POST"
    finally:
        poster.join(FETCH_BOUND * 2)
    assert "answer" in result, "the trickling POST never finished"
    response, elapsed = result["answer"]
    assert error_of(response)["code"] == 5006 and elapsed < FETCH_BOUND


# --- 3. image files that attack the decoder -----------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


@functools.cache
def png_of(width: int, height: int, rows: int | None = None) -> bytes:
    """An RGB PNG of one colour, built row by row so no image is ever held in memory;
    `rows` less than `height` leaves the data short (a declared size without pixels)."""
    compressor = zlib.compressobj(9)
    row = b"\0" + b"\xff\x00\x00" * width
    parts = [compressor.compress(row) for _ in range(height if rows is None else rows)]
    parts.append(compressor.flush())
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )


def jpeg_declaring(width: int, height: int) -> bytes:
    """A small real JPEG whose frame header claims another size."""
    data = bytearray(images.jpeg(16, 16))
    sof = data.index(b"\xff\xc0")
    assert data[sof + 4] == 8 and data[sof + 5 : sof + 9] == struct.pack(">HH", 16, 16)
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def gif_declaring(width: int, height: int) -> bytes:
    """A one-pixel GIF whose logical screen claims another size."""
    out = io.BytesIO()
    Image.new("P", (1, 1), 0).save(out, "GIF")
    data = bytearray(out.getvalue())
    assert data[6:10] == struct.pack("<HH", 1, 1)
    data[6:10] = struct.pack("<HH", width, height)
    return bytes(data)


def _svg_reaching(port: int) -> bytes:
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="64" '
        f'height="64"><image xlink:href="http://127.0.0.1:{port}/from-svg" width="64" height="64"/></svg>'
    ).encode()


def _html_reaching(port: int) -> bytes:
    return f'<html><body><img src="http://127.0.0.1:{port}/from-html"></body></html>'.encode()


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 64 64\nnewpath 0 0 moveto 64 64 lineto stroke\nshowpage\n%%EOF\n"

# name: (body for a canary port, Content-Type, what the refusal must say). Built lazily:
# the big PNGs take a second to compress.
DECODER_ATTACKS = {
    "png_declares_50000_square": (lambda _: png_of(50_000, 50_000, rows=1), "image/png", "too large"),
    "png_12000_square_one_colour": (lambda _: png_of(12_000, 12_000), "image/png", "too large"),
    "png_60_megapixels_one_colour": (lambda _: png_of(7_800, 7_800), "image/png", "too large"),
    "png_side_over_16k": (lambda _: png_of(20_000, 4), "image/png", "too large"),
    "jpeg_declares_60000_square": (lambda _: jpeg_declaring(60_000, 60_000), "image/jpeg", "too large"),
    "gif_declares_65535_square": (lambda _: gif_declaring(65_535, 65_535), "image/gif", "too large"),
    "jpeg_truncated": (lambda _: noisy_jpeg()[: len(noisy_jpeg()) // 2], "image/jpeg", "truncated"),
    "svg_with_external_image": (_svg_reaching, "image/svg+xml", "not a supported image"),
    "html_as_jpeg": (_html_reaching, "image/jpeg", "not a supported image"),
    "eps_as_jpeg": (lambda _: EPS, "image/jpeg", "not a supported image"),
}


@pytest.mark.parametrize("attack", DECODER_ATTACKS)
def test_decoder_attacks_are_refused_in_bounded_memory(decoding, image_host, canary, attack):
    partner = decoding
    build, content_type, needle = DECODER_ATTACKS[attack]
    body = build(canary.port)
    source = image_host.serve(body, content_type=content_type)
    media = partner.server.settings.media_dir
    blobs_before = set(media.rglob("*")) if media.exists() else set()
    canary_before = canary.count
    rss_before = peak_rss_mb()
    response, _ = post_card(partner, {"image_url": source})
    growth = peak_rss_mb() - rss_before
    assert growth < RSS_GROWTH_BOUND_MB, f"peak RSS grew by {growth:.0f} MB; answer: {response.text}"
    error = error_of(response)
    assert error["code"] == 5007 and needle in error["message"], error
    assert image_host.hits_for(source) == 1
    assert canary.count == canary_before
    assert (set(media.rglob("*")) if media.exists() else set()) == blobs_before
    assert_nothing_stored(partner)
    assert_still_serving(partner)


@functools.cache
def animated_gif(frames: int = 3000, side: int = 16) -> bytes:
    """`frames` frames, each a different colour from the one before; the first is red."""
    palette = [255, 0, 0, 0, 0, 255, 0, 255, 0] + [0] * (256 * 3 - 9)
    pictures = []
    for index in range(frames):
        picture = Image.new("P", (side, side), index % 3)
        picture.putpalette(palette)
        pictures.append(picture)
    out = io.BytesIO()
    pictures[0].save(out, "GIF", save_all=True, append_images=pictures[1:], duration=20, loop=0)
    return out.getvalue()


def test_gif_with_thousands_of_frames_gives_its_first_frame(decoding, image_host):
    partner = decoding
    source = image_host.serve(animated_gif(), content_type="image/gif")
    assert Image.open(io.BytesIO(animated_gif())).n_frames == 3000
    rss_before = peak_rss_mb()
    response, elapsed = post_card(partner, {"image_url": source})
    assert peak_rss_mb() - rss_before < RSS_GROWTH_BOUND_MB
    assert elapsed < LIVENESS_SECONDS * 2, f"took {elapsed:.1f} s"
    if response.status_code == 200:
        card = response.json()
        assert card["is_active"] is True
        picture = images.decode(httpx.get(card["image_url"], timeout=10).content).convert("RGB")
        red, green, blue = picture.getpixel((picture.width // 2, picture.height // 2))
        assert red > 200 and green < 60 and blue < 60, "not the first frame"
        assert getattr(picture, "n_frames", 1) == 1
    else:
        error = error_of(response)
        assert error["code"] == 5007, error
        assert any(word in error["message"].lower() for word in ("frame", "anim")), error
        assert_nothing_stored(partner)
    assert_still_serving(partner)


# --- 4. hostile JSON ----------------------------------------------------------------------


def _pad_to(prefix: str, suffix: str, total: int) -> str:
    return prefix + "x" * (total - len(prefix.encode()) - len(suffix.encode())) + suffix


def _json_attacks(phone: str) -> dict[str, bytes]:
    """Bodies that are not one plain JSON object: 400 1003 each."""
    good = f'"phone_number": "{phone}", "first_name": "A"'
    arrays = 30_000  # 60 KB of brackets, under the 64 KiB limit
    objects = 9_000
    attacks = {
        "nested_arrays_in_ignored_field": "{" + good + ', "x": ' + "[" * arrays + "]" * arrays + "}",
        "nested_objects_in_ignored_field": "{" + good + ', "x": ' + '{"a":' * objects + "1" + "}" * objects + "}",
        "nested_arrays_as_first_name": f'{{"phone_number": "{phone}", "first_name": '
        + "[" * arrays
        + "]" * arrays
        + "}",
        "duplicate_first_name": "{" + good + ', "first_name": "B"}',
        "duplicate_phone_number": "{" + good + ', "phone_number": "+15550000000"}',
        "duplicate_via_escape": "{" + good + ', "first\\u005fname": "B"}',
        "duplicate_in_ignored_field": "{" + good + ', "x": {"k": 1, "k": 2}}',
        "nan_in_ignored_field": "{" + good + ', "x": NaN}',
        "infinity_in_ignored_field": "{" + good + ', "x": Infinity}',
        "minus_infinity_as_name": f'{{"phone_number": "{phone}", "first_name": -Infinity}}',
        "huge_integer": "{" + good + ', "x": ' + "9" * 5000 + "}",
        "array_body": "[" + "{" + good + "}" + "]",
        "string_body": json.dumps("{" + good + "}"),
    }
    encoded = {name: text.encode() for name, text in attacks.items()}
    encoded["invalid_utf8"] = ("{" + good + ', "last_name": "').encode() + b"\xff\xfe" + b'"}'
    encoded["utf8_encoded_surrogate"] = ("{" + good + ', "last_name": "').encode() + b"\xed\xa0\x80" + b'"}'
    for name, body in encoded.items():
        assert len(body) < MAX_BODY, (name, len(body))  # a 1003, not a 413
    return encoded


JSON_ATTACKS = list(_json_attacks("+15550000000"))


@pytest.mark.parametrize("attack", JSON_ATTACKS)
def test_hostile_json_is_1003_and_stores_nothing(partner, attack):
    body = _json_attacks(partner.lines[0])[attack]
    response, _ = post_card(partner, body)
    error = error_of(response)
    assert error["code"] == 1003, error
    assert_nothing_stored(partner)
    assert_still_serving(partner)


def test_overflowing_float_is_1003(partner):
    body = f'{{"phone_number": "{partner.lines[0]}", "first_name": "A", "x": 1e999}}'.encode()
    response, _ = post_card(partner, body)
    assert error_of(response)["code"] == 1003
    assert_nothing_stored(partner)


BAD_NAMES = {
    "left_to_right_mark": "Ann\u200eMarie",
    "arabic_letter_mark": "Ann\u061cMarie",
    "line_separator": "Ann\u2028Marie",
    "paragraph_separator": "Ann\u2029Marie",
    "nul": "Ann\u0000Marie",
    "nul_only": "\u0000",
    "bell": "Ann\u0007",
    "ansi_escape": "\u001b[31mRed\u001b[0m",
    "newline_inside": "Ann\nMarie",
    "tab_inside": "Ann\tMarie",
    "delete": "Ann\u007f",
    "c1_next_line": "Ann\u0085Marie",
    "c1_csi": "Ann\u009b31m",
    "rtl_override": "Ann\u202egpj.exe",
    "ltr_override": "\u202dAnn",
    "rtl_embedding": "\u202bAnn",
    "pop_directional": "Ann\u202c",
    "lri_isolate": "\u2066Ann\u2069",
    "rli_isolate": "\u2067Ann",
    "fsi_isolate": "\u2068Ann",
    "pdi": "Ann\u2069",
    "lone_high_surrogate": "Ann\ud800",
    "lone_low_surrogate": "\udfffAnn",
    "reversed_pair": "\ude00\ud83d",
    "too_long": "x" * 101,
    "near_64k": None,  # filled in to just under the body limit
    "blank": " \t ",
    "not_a_string": 42,
}


def _name_body(phone: str, field: str, value: object) -> bytes:
    body = {"phone_number": phone, "first_name": "A", field: value}
    if value is None:
        # Just under the 64 KiB body limit, almost all of it one long name.
        prefix = json.dumps({**body, field: ""})
        cut = prefix.index(f'"{field}": ""') + len(f'"{field}": "')
        return _pad_to(prefix[:cut], prefix[cut:], MAX_BODY - 16).encode()
    # json.dumps escapes every non-ASCII character as \uXXXX: lone surrogates go on
    # the wire escaped, as JSON allows, not as (invalid) UTF-8.
    return json.dumps(body).encode()


# A blank last name is no last name (stored as null), not an error.
NAME_CASES = [
    (kind, field)
    for kind in BAD_NAMES
    for field in ("first_name", "last_name")
    if (kind, field) != ("blank", "last_name")
]


@pytest.mark.parametrize(("kind", "field"), NAME_CASES, ids=[f"{k}-{f}" for k, f in NAME_CASES])
def test_hostile_names_are_1005_and_store_nothing(partner, kind, field):
    body = _name_body(partner.lines[0], field, BAD_NAMES[kind])
    assert len(body) < MAX_BODY
    response, _ = post_card(partner, body)
    error = error_of(response)
    assert error["code"] == 1005 and field in error["message"], error
    assert_nothing_stored(partner)
    assert_still_serving(partner)


def test_hostile_names_in_patch_change_nothing(partner):
    client = partner.client()
    phone = partner.lines[0]
    client.contact_card.create(phone_number=phone, first_name="Ann", last_name="Lee")
    for kind in ("nul", "ansi_escape", "rtl_override", "lri_isolate", "lone_high_surrogate", "near_64k"):
        for field in ("first_name", "last_name"):
            body = _name_body(phone, field, BAD_NAMES[kind])
            with partner.http() as http:
                response = http.patch(
                    "/v3/contact_card",
                    params={"phone_number": phone},
                    content=body,
                    headers={"content-type": "application/json"},
                )
            error = error_of(response)
            assert error["code"] == 1005 and field in error["message"], (kind, error)
    (card,) = client.contact_card.retrieve(phone_number=phone).contact_cards
    assert (card.first_name, card.last_name, card.is_active) == ("Ann", "Lee", True)
    assert partner.device(phone)["applies"] == 1
    assert_still_serving(partner)


def test_names_that_are_merely_unusual_are_kept_exactly(server):
    partner = with_lines(server, 2)
    """The control: emoji, ZWJ sequences, combining marks and right-to-left script are names."""
    first, last = (
        "\U0001f469\u200d\U0001f469\u200d\U0001f467 Zo\u0065\u0301",
        "\u05db\u05d4\u05df \u0645\u062d\u0645\u062f",
    )
    card = partner.client().contact_card.create(phone_number=partner.lines[0], first_name=first, last_name=last)
    assert (card.first_name, card.last_name) == (first, last)
    with pytest.raises(linq.BadRequestError):  # and the SDK sees the same refusals
        partner.client().contact_card.create(phone_number=partner.lines[1], first_name="Ann\u202e")
    assert_still_serving(partner)
