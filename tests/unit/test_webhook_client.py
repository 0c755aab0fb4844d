"""The webhook sender and its HTTP client against receivers that misbehave on purpose
(`tests/support/hostile_host.py`, raw sockets on 127.0.0.1): every rule of the webhook
section of docs/security.md at each attempt, and connections kept alive when allowed."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from contactcard.images.addresses import HostPolicy, IPAddress
from contactcard.images.urls import ImageUrl
from contactcard.webhooks.delivery import WebhookSender
from tests.support.hostile_host import HostileHost, endless_body, raw, redirect, repeat, respond, trickle_body

pytestmark = pytest.mark.anyio


@pytest.fixture
def host() -> Iterator[HostileHost]:
    found = HostileHost()
    yield found
    found.close()


class LoopbackIsPublic(HostPolicy):
    """The address rules as if 127.0.0.1 were the public internet: the one address the
    tests can reach stands for a public one, every other private address stays refused."""

    @property
    def allow_http(self) -> bool:
        return True

    def permits(self, url: ImageUrl, ip: IPAddress) -> bool:
        return str(ip) == "127.0.0.1"


class Names:
    """A resolver whose answers a test changes between attempts; counts the lookups."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.lookups = 0

    def __call__(self, host: str, port: int) -> list[str]:
        self.lookups += 1
        return list(self.answers)


def at_name(url: str, name: str = "hooks.example") -> str:
    return url.replace("127.0.0.1", name)


async def test_the_checked_address_is_the_one_connected_to_and_a_redirect_is_not_followed(host):
    elsewhere = host.publish(respond(b"ok", "text/plain"))
    target = host.publish(redirect(elsewhere))
    names = Names("127.0.0.1")
    sender = WebhookSender(LoopbackIsPublic(), resolver=names, timeout=5)
    try:
        answer = await sender.post(at_name(target), b"{}", {"webhook-id": "evt"})
    finally:
        await sender.aclose()
    assert (answer.status, answer.error) == (302, None)  # a 3xx is an answer like any other
    (request,) = host.requests_for(target)
    assert request.headers["host"] == f"hooks.example:{host.port}"  # the name, at the address checked
    assert request.headers["webhook-id"] == "evt"
    assert host.requests_for(elsewhere) == []


async def test_a_name_that_resolves_to_a_private_address_between_attempts_is_refused(host):
    target = host.publish(respond(b"ok", "text/plain", extra=[("Connection", "keep-alive")]))
    names = Names("127.0.0.1")
    sender = WebhookSender(LoopbackIsPublic(), resolver=names, timeout=5)
    try:
        first = await sender.post(at_name(target), b"{}", {})
        names.answers = ["10.0.0.7"]  # rebound: the name now points inside
        second = await sender.post(at_name(target), b"{}", {})
        names.answers = ["127.0.0.1", "169.254.169.254"]  # one bad answer among good ones
        third = await sender.post(at_name(target), b"{}", {})
    finally:
        await sender.aclose()
    assert first.status == 200
    assert (second.status, second.error) == (None, "target URL points to a non-public address")
    assert (third.status, third.error) == (None, "target URL points to a non-public address")
    assert names.lookups == 3  # resolved at every attempt, never remembered
    assert len(host.requests_for(target)) == 1


async def test_a_receiver_that_trickles_its_answer_costs_one_deadline(host):
    body = host.publish(trickle_body(b"x" * 10, interval=0.05, declared=10_000))
    headers = host.publish(repeat(b"HTTP/1.1 200 OK\r\n", b"X-Slow: a\r\n", interval=0.05))
    sender = WebhookSender(HostPolicy(allow_private=True), timeout=0.6)
    try:
        for target in (body, headers):
            answer = await sender.post(target, b"{}", {})
            assert (answer.status, answer.error) == (None, "timed out after 0.6 s")
    finally:
        await sender.aclose()


@pytest.mark.parametrize("chunked", [True, False])
async def test_an_endless_answer_is_read_a_few_kib_deep(host, chunked):
    target = host.publish(endless_body(b"x", chunked=chunked))
    sender = WebhookSender(HostPolicy(allow_private=True), timeout=10, max_answer_bytes=4096)
    try:
        answer = await sender.post(target, b"{}", {})
    finally:
        await sender.aclose()
    assert (answer.status, answer.error) == (200, None)  # the status, without reading on


async def test_endless_headers_and_broken_answers_fail_the_attempt(host):
    endless = host.publish(repeat(b"HTTP/1.1 200 OK\r\n", b"X-Pad: " + b"a" * 1000 + b"\r\n"))
    broken = host.publish(raw(b"NOT HTTP AT ALL\r\n\r\n"))
    silent = host.publish(raw(b""))
    sender = WebhookSender(HostPolicy(allow_private=True), timeout=10)
    try:
        too_long = await sender.post(endless, b"{}", {})
        malformed = await sender.post(broken, b"{}", {})
        closed = await sender.post(silent, b"{}", {})
    finally:
        await sender.aclose()
    assert (too_long.status, too_long.error) == (None, "answer headers too large")
    assert (malformed.status, malformed.error) == (None, "malformed answer")
    assert closed.status is None and closed.error is not None


class CountingReceiver:
    """An HTTP/1.1 receiver on 127.0.0.1 that keeps connections alive unless told to close
    them; counts the connections and the requests it got."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests = 0
        self.close_after: int | None = None  # close the connection after this many requests
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                receiver.connections += 1
                self.served = 0

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                receiver.requests += 1
                self.served += 1
                closing = receiver.close_after is not None and self.served >= receiver.close_after
                self.send_response(200)
                self.send_header("content-length", "2")
                if closing:
                    self.send_header("connection", "close")
                self.end_headers()
                self.wfile.write(b"ok")
                self.close_connection = closing

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/in"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_a_connection_is_kept_when_the_receiver_allows_it():
    receiver = CountingReceiver()
    sender = WebhookSender(HostPolicy(allow_private=True), timeout=5)
    try:
        kept = [await sender.post(receiver.url, b"{}", {}) for _ in range(3)]
        kept_connections = receiver.connections
        receiver.close_after = 1  # from now on the receiver closes after each answer
        closed = [await sender.post(receiver.url, b"{}", {}) for _ in range(2)]
    finally:
        await sender.aclose()
        receiver.close()
    assert [a.status for a in kept + closed] == [200] * 5
    assert kept_connections == 1
    assert receiver.connections == 2  # the 4th on the kept one, which the receiver then closed: the 5th on a new one


async def test_nothing_is_sent_to_a_refused_address(host):
    target = host.publish(respond(b"ok", "text/plain"))
    sender = WebhookSender(HostPolicy(), resolver=Names("127.0.0.1"), timeout=5)
    try:
        answer = await sender.post(at_name(target).replace("http:", "https:"), b"{}", {})
    finally:
        await sender.aclose()
    assert (answer.status, answer.error) == (None, "target URL points to a non-public address")
    assert host.requests == []


# --- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_receiver(tmp_path_factory) -> Iterator[tuple[int, ssl.SSLContext, list[str]]]:
    """A receiver on 127.0.0.1 with a certificate for `hooks.test` from a CA of its own:
    its port, a client context trusting that CA, and the server names clients asked for."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("hooks-tls")
    cert, key = folder / "hooks.pem", folder / "hooks.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-nodes", "-days", "1", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=hooks.test",
         "-addext", "subjectAltName=DNS:hooks.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    names: list[str] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: names.append(name)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], ssl.create_default_context(cafile=str(cert)), names
    server.shutdown()
    server.server_close()


async def test_tls_is_verified_against_the_urls_host(tls_receiver):
    port, trusted, names = tls_receiver
    policy = HostPolicy(allowed_hosts=frozenset({f"hooks.test:{port}", f"other.test:{port}"}))
    resolve = Names("127.0.0.1")
    good = WebhookSender(policy, resolver=resolve, verify=trusted, timeout=5)
    untrusted = WebhookSender(policy, resolver=resolve, timeout=5)  # the system's roots
    try:
        names.clear()
        delivered = await good.post(f"https://hooks.test:{port}/in", b"{}", {})
        wrong_name = await good.post(f"https://other.test:{port}/in", b"{}", {})
        unknown_ca = await untrusted.post(f"https://hooks.test:{port}/in", b"{}", {})
    finally:
        await good.aclose()
        await untrusted.aclose()
    assert (delivered.status, delivered.error) == (204, None)
    assert names[0] == "hooks.test"  # the URL's name, although 127.0.0.1 was connected to
    assert (wrong_name.status, wrong_name.error) == (None, "could not connect (TLS certificate refused)")
    assert (unknown_ca.status, unknown_ca.error) == (None, "could not connect (TLS certificate refused)")
