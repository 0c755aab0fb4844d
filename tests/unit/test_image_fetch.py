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
        self._origin.stop.wait(8)  # would keep the fetcher waiting if it read on

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


@pytest.mark.parametrize("answer", ["169.254.169.254", "10.0.0.5", "::1", "::ffff:127.0.0.1", "fe80::1", "100.64.0.1"])
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
    reason = await refused(fetcher(origin), url(f"http://img.test:{origin.port}/redirect-forbidden-name"))
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
    reason = await refused(fetcher(origin, max_redirects=0), url(f"http://img.test:{origin.port}/redirect-relative"))
    assert "too many redirects" in reason and origin.paths() == ["/redirect-relative"]


def test_https_only_policy_refuses_a_redirect_down_to_http():
    # With no private hosts allowed, http is not allowed either, at any hop.
    fetch = NetworkFetcher(HostPolicy(), resolver=LOCAL_NAMES)
    with pytest.raises(FetchError, match="absolute https URL"):
        fetch._next_hop(url("https://img.test/a", allow_http=False), "http://img.test/b", 302)


# ---------------------------------------------------------------- time and size


@pytest.mark.timed  # a bound of a few seconds around the deadline
async def test_trickling_server_is_cut_off_by_the_total_deadline(origin):
    fetch = fetcher(origin, deadline=1.5)
    started = time.monotonic()
    with anyio.fail_after(5):  # so a missing deadline fails instead of hanging
        reason = await refused(fetch, url(f"http://img.test:{origin.port}/trickle"))
    elapsed = time.monotonic() - started
    assert reason == "image fetch timed out after 1.5 s"
    # Generous upper bound: a shared CI machine is slow; without the deadline it never ends.
    assert elapsed >= 1.4 and elapsed < 4.5


async def test_endless_body_stops_at_the_size_limit(origin):
    fetch = fetcher(origin, max_bytes=200_000)
    with anyio.fail_after(5):
        reason = await refused(fetch, url(f"http://img.test:{origin.port}/endless"))
    assert reason == "image is larger than 200000 bytes"


async def test_declared_length_over_the_limit_is_refused_before_reading(origin):
    started = time.monotonic()
    reason = await refused(fetcher(origin), url(f"http://img.test:{origin.port}/huge-declared"))
    assert reason == "image is larger than 10 MB"
    assert time.monotonic() - started < 5.0  # did not wait for the body (the host holds it 8 s)


async def test_body_shorter_than_its_declared_length_is_refused(origin):
    reason = await refused(fetcher(origin), url(f"http://img.test:{origin.port}/lying-length"))
    assert "closed the connection" in reason


async def test_content_encoding_is_refused(origin):
    reason = await refused(fetcher(origin), url(f"http://img.test:{origin.port}/gzip"))
    assert reason == "image host sent Content-Encoding gzip"


@pytest.mark.parametrize(("route", "status"), [("missing", 404), ("broken", 500)])
async def test_non_200_status_is_refused_by_name(origin, route, status):
    reason = await refused(fetcher(origin), url(f"http://img.test:{origin.port}/{route}"))
    assert reason == f"image host answered HTTP {status}"


# ---------------------------------------------------------------- every failure is a FetchError


async def test_unknown_host_name(origin):
    reason = await refused(fetcher(origin), url("https://nowhere.test/a.png"))
    assert reason == "image host could not be resolved"


@pytest.mark.parametrize(
    ("answers", "expected"),
    [([], "could not be resolved"), (["not-an-address"], "invalid address")],
)
async def test_odd_resolver_answers(origin, answers, expected):
    resolve = resolver_for({"img.test": answers})
    assert expected in await refused(fetcher(origin, resolver=resolve), url("https://img.test/"))


async def test_resolver_raising_anything_is_a_fetch_error(origin):
    def explode(host, port):
        raise KeyError(host)

    reason = await refused(fetcher(origin, resolver=explode), url("https://img.test/"))
    assert reason == "image host could not be resolved"


async def test_closed_port(origin):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    policy = HostPolicy(allowed_hosts=frozenset({f"127.0.0.1:{closed_port}"}))
    reason = await refused(fetcher(origin, policy=policy), url(f"http://127.0.0.1:{closed_port}/a.png"))
    assert reason == "could not connect to image host"


async def test_server_speaking_garbage(origin):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]

    def answer_garbage():
        conn, _ = listener.accept()
        with conn:
            conn.recv(4096)
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")

    thread = threading.Thread(target=answer_garbage, daemon=True)
    thread.start()
    policy = HostPolicy(allowed_hosts=frozenset({f"127.0.0.1:{port}"}))
    try:
        reason = await refused(fetcher(origin, policy=policy), url(f"http://127.0.0.1:{port}/"))
    finally:
        thread.join(2)
        listener.close()
    assert "malformed response" in reason


class Streamed(httpx.AsyncByteStream):
    """A body the transport streams, as the network's is (a `content=` body would come
    already read, and the fetcher reads the raw stream)."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def __aiter__(self):
        yield self._data


def failing_transport(error: BaseException) -> httpx.MockTransport:
    """A transport that raises `error` for every request (httpx's seam for tests)."""

    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return httpx.MockTransport(handler)


async def test_unexpected_exceptions_become_fetch_errors(origin):
    transport = failing_transport(RuntimeError("library bug"))
    reason = await refused(fetcher(origin, transport=transport), url(f"http://img.test:{origin.port}/good.png"))
    assert reason == "image fetch failed (RuntimeError)"


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (httpx.InvalidURL("bad"), "image URL could not be fetched"),
        (httpx.UnsupportedProtocol("nope"), "image URL could not be fetched"),
        (socket.gaierror(-2, "x"), "image fetch failed (gaierror)"),
    ],
)
async def test_http_library_errors_become_fetch_errors(origin, error, reason):
    transport = failing_transport(error)
    assert await refused(fetcher(origin, transport=transport), url(f"http://img.test:{origin.port}/good.png")) == reason


async def test_the_transport_is_asked_after_the_address_policy_with_the_checked_address(origin):
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, stream=Streamed(b"picture"))

    transport = httpx.MockTransport(handler)
    good = await fetcher(origin, transport=transport).fetch(url(f"http://img.test:{origin.port}/good.png"))
    assert good == b"picture"
    [request] = seen
    # Sent to the address the policy checked, with the URL's host as the Host header.
    assert (request.url.host, request.url.port, request.headers["host"]) == (
        "127.0.0.1",
        origin.port,
        f"img.test:{origin.port}",
    )
    # A host the policy refuses never reaches the transport.
    await refused(fetcher(origin, transport=transport), url("http://10.0.0.1/x.png"))
    assert len(seen) == 1


async def test_what_the_transport_answers_is_held_to_the_size_limit(origin):
    transport = httpx.MockTransport(lambda request: httpx.Response(200, stream=Streamed(b"x" * 2_000)))
    reason = await refused(
        fetcher(origin, transport=transport, max_bytes=1_000), url(f"http://img.test:{origin.port}/good.png")
    )
    assert reason == "image is larger than 1000 bytes"


# ---------------------------------------------------------------- the event loop stays free


async def _longest_gap_while(work) -> float:
    """Run `work` and a 20 ms ticker together; return the longest tick gap."""
    gaps: list[float] = []
    done = anyio.Event()

    async def tick():
        last = time.monotonic()
        while not done.is_set():
            await anyio.sleep(0.02)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    async def run():
        try:
            await work()
        finally:
            done.set()

    with anyio.fail_after(5):  # a fetcher without a deadline fails rather than hangs
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(tick)
            tasks.start_soon(run)
    return max(gaps)


@pytest.mark.timed  # a bound of 2.5 s around a 1 s resolver
async def test_slow_dns_runs_off_the_event_loop_and_within_the_deadline(origin):
    main_thread = threading.get_ident()
    resolver_threads = []

    def slow_resolver(host, port):
        resolver_threads.append(threading.get_ident())
        time.sleep(3)
        return ["127.0.0.1"]

    fetch = fetcher(origin, resolver=slow_resolver, deadline=0.5)

    async def attempt():
        assert "timed out" in await refused(fetch, url("https://img.test/a.png"))

    started = time.monotonic()
    # A resolver on the loop would block it for the whole 3 s sleep.
    assert await _longest_gap_while(attempt) < 1.0
    assert time.monotonic() - started < 2.5
    assert resolver_threads and resolver_threads[0] != main_thread


@pytest.mark.timed  # the event loop's longest gap, which another test's load would move
async def test_trickling_fetch_leaves_the_loop_free(origin):
    fetch = fetcher(origin, deadline=2.0)

    async def attempt():
        await refused(fetch, url(f"http://img.test:{origin.port}/trickle"))

    # A blocking read would hold the loop for most of the 2 s deadline.
    assert await _longest_gap_while(attempt) < 1.0


# ---------------------------------------------------------------- TLS: checked address, original name


@dataclass
class TlsOrigin:
    port: int
    client_context: ssl.SSLContext
    server_names: list[str]


def _make_certificate(directory, name: str):
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-nodes",
            "-days",
            "1",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName=DNS:{name}",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="module")
def tls_origin(tmp_path_factory, sentinel) -> Iterator[TlsOrigin]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = _make_certificate(tmp_path_factory.mktemp("tls"), "img.test")
    names: list[str] = []
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    server_context.sni_callback = lambda sock, name, ctx: names.append(name)
    server = OriginServer(("127.0.0.1", 0), OriginHandler)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    server.origin = Origin(port=server.server_address[1], sentinel_port=sentinel.port)
    _serve(server)
    client_context = ssl.create_default_context(cafile=str(cert))
    yield TlsOrigin(server.origin.port, client_context, names)
    server.shutdown()
    server.server_close()


def _tls_fetcher(tls: TlsOrigin, host: str) -> NetworkFetcher:
    policy = HostPolicy(allowed_hosts=frozenset({f"{host}:{tls.port}"}))
    names = resolver_for({"img.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    return NetworkFetcher(policy, resolver=names, verify=tls.client_context, deadline=5.0)


async def test_tls_uses_the_host_name_for_sni_and_certificate_check(tls_origin):
    tls_origin.server_names.clear()
    fetch = _tls_fetcher(tls_origin, "img.test")
    data = await fetch.fetch(url(f"https://img.test:{tls_origin.port}/good.png", allow_http=False))
    assert data == PNG
    assert tls_origin.server_names == ["img.test"]


async def test_tls_certificate_for_another_name_is_refused(tls_origin):
    fetch = _tls_fetcher(tls_origin, "other.test")
    reason = await refused(fetch, url(f"https://other.test:{tls_origin.port}/good.png"))
    assert reason == "image host's TLS certificate could not be verified"


async def test_tls_to_an_untrusted_certificate_is_refused(tls_origin):
    policy = HostPolicy(allowed_hosts=frozenset({f"img.test:{tls_origin.port}"}))
    fetch = NetworkFetcher(policy, resolver=LOCAL_NAMES, deadline=5.0)  # system trust store
    reason = await refused(fetch, url(f"https://img.test:{tls_origin.port}/good.png"))
    assert "certificate" in reason


# ---------------------------------------------------------------- simulated fetcher


def _offline_network(calls: list[str]) -> NetworkFetcher:
    def must_not_resolve(host, port):
        calls.append(host)
        raise AssertionError("the simulated fetcher touched DNS")

    return NetworkFetcher(HostPolicy(), resolver=must_not_resolve)


async def test_simulated_image_is_deterministic_and_never_touches_the_network():
    calls: list[str] = []
    policy = HostPolicy()
    simulated = SimulatedFetcher(policy, _offline_network(calls))
    first = await simulated.fetch(url("https://cdn.example.com/a.jpg", allow_http=False))
    again = await simulated.fetch(url("https://cdn.example.com/a.jpg", allow_http=False))
    other = await simulated.fetch(url("https://cdn.example.com/b.jpg", allow_http=False))
    assert first == again and first != other
    assert calls == []
    im = Image.open(io.BytesIO(first))
    assert (im.format, im.size) == ("PNG", (512, 512))
    assert normalise(first).width == 512


async def test_simulated_fetcher_delegates_allowlisted_hosts(origin):
    policy = local_policy(origin)
    simulated = SimulatedFetcher(policy, fetcher(origin, policy=policy))
    assert await simulated.fetch(url(f"http://img.test:{origin.port}/good.png")) == PNG
    assert origin.paths() == ["/good.png"]


@pytest.mark.parametrize("raw", ["http://127.0.0.1:{port}/", "http://169.254.169.254/latest/", "http://[::1]:{port}/"])
async def test_simulated_fetcher_still_refuses_private_ip_literals(origin, sentinel, raw):
    policy = local_policy(origin)
    simulated = SimulatedFetcher(policy, fetcher(origin, policy=policy))
    reason = await refused(simulated, url(raw.format(port=sentinel.port)))
    assert "non-public" in reason
    sentinel.assert_untouched()
