"""The fetcher against real HTTP servers on 127.0.0.1.

Made-up host names (`img.test`, `evil.test`) are mapped to addresses through
the fetcher's resolver seam, so the policy can be exercised without DNS.
"""

import gzip
import io
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import anyio
import httpx
import pytest
from PIL import Image

from contactcard.images import (
    FetchError,
    HostPolicy,
    ImageUrlError,
    NetworkFetcher,
    SimulatedFetcher,
    normalise,
    parse_image_url,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def anyio_backend():
    return "asyncio"


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 120, 200)).save(out, format="PNG")
    return out.getvalue()


PNG = _png()


# ---------------------------------------------------------------- servers


@dataclass
class Origin:
    """A local image host that records what it was asked."""

    port: int
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    sentinel_port: int = 0

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


class OriginHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "OriginServer"

    def log_message(self, *args):  # keep test output quiet
        pass

    def do_GET(self):
        origin = self.server.origin
        origin.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
        path = self.path.split("?")[0]
        if path.startswith("/chain/"):
            return self._redirect(f"/chain/{int(path.rsplit('/', 1)[1]) + 1}")
        if path.startswith("/three-hops/"):
            hop = int(path.rsplit("/", 1)[1])
            return self._redirect(f"/three-hops/{hop + 1}" if hop < 2 else "/good.png")
        route = getattr(self, "route_" + path.strip("/").replace("-", "_").replace(".", "_"), None)
        if route is None:
            return self._send(404, b"not here", "text/plain")
        try:
            route()
        except OSError:  # the fetcher hung up on purpose
            pass

    # helpers
    def _send(self, status, body, content_type="image/png", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, location, status=302, extra=()):
        self._send(status, b"", "text/plain", [("Location", location), *extra])

    @property
    def _origin(self):
        return self.server.origin

    # routes
    def route_good_png(self):
        self._send(200, PNG)

    def route_octet(self):
        self._send(200, PNG, "application/octet-stream")

    def route_redirect_allowed(self):
        self._redirect(f"http://img.test:{self._origin.port}/good.png")

    def route_redirect_relative(self):
        self._redirect("good.png", status=301)

    def route_redirect_forbidden(self):
        self._redirect(f"http://127.0.0.1:{self._origin.sentinel_port}/secret")

    def route_redirect_forbidden_name(self):
        self._redirect(f"http://img.test:{self._origin.sentinel_port}/secret")

    def route_redirect_file(self):
        self._redirect("file:///etc/passwd")

    def route_redirect_gopher(self):
        self._redirect(f"gopher://127.0.0.1:{self._origin.sentinel_port}/_x")

    def route_redirect_short_ip(self):
        self._redirect(f"http://127.1:{self._origin.sentinel_port}/good.png")

    def route_redirect_no_location(self):
        self._send(302, b"", "text/plain")

    def route_set_cookie(self):
        self._redirect("/good.png", extra=[("Set-Cookie", "session=secret; Path=/")])

    def route_missing(self):
        self._send(404, b"nope", "text/plain")

    def route_broken(self):
        self._send(500, b"oops", "text/plain")

    def route_not_modified(self):
        self.send_response(304)
        self.end_headers()

    def route_gzip(self):
        self._send(200, gzip.compress(PNG), extra=[("Content-Encoding", "gzip")])

    def route_lying_length(self):
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", "5000")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(PNG[:100])
        self.close_connection = True

    def route_huge_declared(self):
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(10**9))
        self.end_headers()
        self.wfile.flush()
        self._origin.stop.wait(3)  # would keep the fetcher waiting if it read on

    def route_trickle(self):
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", "100000")
        self.end_headers()
        while not self._origin.stop.wait(0.25):
            self.wfile.write(b"x")
            self.wfile.flush()

    def route_endless(self):
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Connection", "close")
        self.end_headers()
        chunk = b"\0" * 65536
        while not self._origin.stop.is_set():
            self.wfile.write(chunk)
        self.close_connection = True


class OriginServer(ThreadingHTTPServer):
    daemon_threads = True
    origin: Origin


def _serve(server: OriginServer) -> threading.Thread:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    return thread


class Sentinel:
    """A listener that must never be reached. Connections complete in the
    kernel's backlog even if nobody accepts, so a non-blocking accept after
    the fact tells whether anything connected at all."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def drain(self) -> int:
        count = 0
        while True:
            try:
                conn, _ = self.sock.accept()
            except BlockingIOError:
                return count
            conn.close()
            count += 1

    def assert_untouched(self) -> None:
        assert self.drain() == 0, "the forbidden listener received a connection"


@pytest.fixture(scope="module")
def sentinel() -> Iterator[Sentinel]:
    s = Sentinel()
    yield s
    s.sock.close()


@pytest.fixture(scope="module")
def origin_server(sentinel) -> Iterator[Origin]:
    server = OriginServer(("127.0.0.1", 0), OriginHandler)
    origin = Origin(port=server.server_address[1], sentinel_port=sentinel.port)
    server.origin = origin
    _serve(server)
    yield origin
    origin.stop.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def origin(origin_server, sentinel) -> Iterator[Origin]:
    origin_server.requests.clear()
    sentinel.drain()
    yield origin_server
    sentinel.assert_untouched()


def resolver_for(mapping: dict[str, list[str]]):
    def resolve(host: str, port: int) -> list[str]:
        if host not in mapping:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return mapping[host]

    return resolve


LOCAL_NAMES = resolver_for({"img.test": ["127.0.0.1"], "evil.test": ["127.0.0.1"]})


def local_policy(origin: Origin) -> HostPolicy:
    return HostPolicy(allowed_hosts=frozenset({f"127.0.0.1:{origin.port}", f"img.test:{origin.port}"}))


def fetcher(origin: Origin, **options) -> NetworkFetcher:
    options.setdefault("resolver", LOCAL_NAMES)
    options.setdefault("deadline", 5.0)
    return NetworkFetcher(options.pop("policy", local_policy(origin)), **options)


def url(raw: str, allow_http: bool = True):
    return parse_image_url(raw, allow_http=allow_http)


async def refused(fetch, target) -> str:
    with pytest.raises(FetchError) as caught:
        await fetch.fetch(target)
    assert str(caught.value) == caught.value.reason
    return caught.value.reason


# ---------------------------------------------------------------- success


async def test_fetches_an_allowlisted_ip_literal(origin):
    data = await fetcher(origin).fetch(url(f"http://127.0.0.1:{origin.port}/good.png"))
    assert data == PNG
    assert origin.requests[0][1]["host"] == f"127.0.0.1:{origin.port}"


async def test_connects_to_the_checked_address_but_keeps_the_host_header(origin):
    data = await fetcher(origin).fetch(url(f"http://img.test:{origin.port}/good.png?v=1"))
    assert data == PNG
    path, headers = origin.requests[0]
    assert path == "/good.png?v=1"
    assert headers["host"] == f"img.test:{origin.port}"
    assert headers["accept-encoding"] == "identity"
    assert "cookie" not in headers and "authorization" not in headers


async def test_content_type_is_not_the_fetchers_business(origin):
    assert await fetcher(origin).fetch(url(f"http://img.test:{origin.port}/octet")) == PNG


async def test_follows_redirect_to_an_allowed_host(origin):
    data = await fetcher(origin).fetch(url(f"http://127.0.0.1:{origin.port}/redirect-allowed"))
    assert data == PNG
    assert origin.paths() == ["/redirect-allowed", "/good.png"]
    assert origin.requests[1][1]["host"] == f"img.test:{origin.port}"


async def test_follows_relative_redirect(origin):
    data = await fetcher(origin).fetch(url(f"http://img.test:{origin.port}/redirect-relative"))
    assert data == PNG and origin.paths() == ["/redirect-relative", "/good.png"]


async def test_three_redirects_are_fine(origin):
    assert await fetcher(origin).fetch(url(f"http://img.test:{origin.port}/three-hops/0")) == PNG
    assert len(origin.requests) == 4


async def test_cookies_set_on_a_hop_are_not_sent_back(origin):
    assert await fetcher(origin).fetch(url(f"http://img.test:{origin.port}/set-cookie")) == PNG
    assert origin.paths() == ["/set-cookie", "/good.png"]
    assert "cookie" not in origin.requests[1][1]


async def test_body_of_exactly_the_limit_is_accepted(origin):
    target = url(f"http://img.test:{origin.port}/good.png")
    assert await fetcher(origin, max_bytes=len(PNG)).fetch(target) == PNG
    assert "larger than" in await refused(fetcher(origin, max_bytes=len(PNG) - 1), target)


# ---------------------------------------------------------------- address policy


async def test_hostname_resolving_to_loopback_is_refused_unless_allowlisted(origin):
    target = url(f"http://evil.test:{origin.port}/good.png")
    reason = await refused(fetcher(origin), target)
    assert reason == "image host resolved to a non-public address"
    assert origin.requests == []

    listed = HostPolicy(allowed_hosts=frozenset({f"evil.test:{origin.port}"}))
    assert await fetcher(origin, policy=listed).fetch(target) == PNG


async def test_allow_private_switch_permits_any_private_host(origin):
    target = url(f"http://evil.test:{origin.port}/good.png")
    assert await fetcher(origin, policy=HostPolicy(allow_private=True)).fetch(target) == PNG


async def test_one_private_answer_among_public_ones_is_enough_to_refuse(origin):
    mixed = resolver_for({"evil.test": ["93.184.216.34", "127.0.0.1"]})
    reason = await refused(fetcher(origin, resolver=mixed), url(f"http://evil.test:{origin.port}/"))
    assert "non-public" in reason and origin.requests == []


@pytest.mark.parametrize(
    "answer", ["169.254.169.254", "10.0.0.5", "::1", "::ffff:127.0.0.1", "fe80::1", "100.64.0.1"]
)
async def test_hostname_resolving_to_non_public_addresses_is_refused(origin, answer):
    resolve = resolver_for({"evil.test": [answer]})
    reason = await refused(fetcher(origin, resolver=resolve), url("https://evil.test/a.png"))
    assert reason == "image host resolved to a non-public address"


NOTATIONS = [
    "http://127.0.0.1:{port}/",
    "http://[::1]:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://[::ffff:7f00:1]:{port}/",
    "http://[::127.0.0.1]:{port}/",
    "http://[64:ff9b::7f00:1]:{port}/",
    "http://[2002:7f00:1::1]:{port}/",
    "http://169.254.169.254/latest/meta-data/",
    "http://0.0.0.0:{port}/",
    "http://2130706433:{port}/",
    "http://017700000001:{port}/",
    "http://0177.0.0.1:{port}/",
    "http://0x7f.0.0.1:{port}/",
    "http://0x7f000001:{port}/",
    "http://0x7f.1:{port}/",
    "http://127.1:{port}/",
    "http://127.000.000.001:{port}/",
    "http://[fe80::1%25eth0]:{port}/",
    "http://localhost.:{port}/",
    "http://127.0.0.1.:{port}/",
    "http://user:pass@127.0.0.1:{port}/",
    "http://img.test:{port}\\@127.0.0.1/",
    "http://127.0.0.1:{port}/a b",
    "file:///etc/passwd",
    "gopher://127.0.0.1:{port}/_GET",
    "ftp://127.0.0.1:{port}/",
    "http://127.0.0.1:{port}/" + "a" * 2048,
]


@pytest.mark.parametrize("notation", NOTATIONS)
async def test_no_notation_reaches_a_private_listener(sentinel, notation):
    sentinel.drain()
    raw = notation.format(port=sentinel.port)
    policy = HostPolicy()  # nothing private allowed
    fetch = NetworkFetcher(policy, resolver=LOCAL_NAMES, deadline=2.0)
    try:
        target = parse_image_url(raw, allow_http=True)
    except ImageUrlError:
        pass  # refused before any network access
    else:
        assert "non-public" in await refused(fetch, target)
    sentinel.assert_untouched()


# ---------------------------------------------------------------- redirects


async def test_redirect_to_a_private_port_is_refused_and_never_connected(origin, sentinel):
    reason = await refused(fetcher(origin), url(f"http://img.test:{origin.port}/redirect-forbidden"))
    assert "non-public" in reason
    sentinel.assert_untouched()


async def test_allowlist_is_per_port_at_every_hop(origin, sentinel):
    reason = await refused(
        fetcher(origin), url(f"http://img.test:{origin.port}/redirect-forbidden-name")
    )
    assert "non-public" in reason
    sentinel.assert_untouched()


@pytest.mark.parametrize(
    ("route", "expected"),
    [
        ("redirect-file", "redirected to a refused URL"),
        ("redirect-gopher", "redirected to a refused URL"),
        ("redirect-short-ip", "dotted-quad"),
        ("redirect-no-location", "HTTP 302 without a Location"),
        ("not-modified", "HTTP 304"),
    ],
)
async def test_bad_redirects_are_refused(origin, route, expected):
    reason = await refused(fetcher(origin), url(f"http://img.test:{origin.port}/{route}"))
    assert expected in reason


async def test_too_many_redirects(origin):
    reason = await refused(fetcher(origin), url(f"http://img.test:{origin.port}/chain/0"))
    assert reason == "too many redirects (more than 3)"
    assert origin.paths() == ["/chain/0", "/chain/1", "/chain/2", "/chain/3"]


async def test_redirect_limit_is_configurable(origin):
    reason = await refused(
        fetcher(origin, max_redirects=0), url(f"http://img.test:{origin.port}/redirect-relative")
    )
    assert "too many redirects" in reason and origin.paths() == ["/redirect-relative"]


async def test_https_only_policy_refuses_a_redirect_down_to_http(origin):
    # With no private hosts allowed, http is not allowed either, at any hop.
    fetch = NetworkFetcher(HostPolicy(allow_private=False), resolver=LOCAL_NAMES)
    next_hop = fetch._next_hop(url("https://img.test/a"), "http://img.test/b", 302)
    assert next_hop is None if False else False  # unreachable; _next_hop raises
