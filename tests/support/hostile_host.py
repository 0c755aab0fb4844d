"""Misbehaving hosts on the loopback interface, for the hostile-input tests.

`HostileHost` is a web host built on raw sockets so it can break HTTP on purpose: each
published path runs a behaviour that writes whatever bytes it likes -- a redirect, a body
trickled a byte at a time, an endless body, a Content-Length that lies, a gzip body.
It records every request it gets (path and headers).

`Canary` is a plain TCP listener the server under test must never reach. It answers any
connection with a real JPEG, so a missing defence also shows up as a stored card, and it
records every connection. It listens on 127.0.0.1 and, where the machine has IPv6, on ::1
at the same port (so `[::1]:port` and `[::]:port` would reach it too).

Neither is in the server's allowlist unless a test puts it there.
"""

from __future__ import annotations

import errno
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

# No behaviour runs longer than this, whatever the client does.
MAX_BEHAVIOUR_SECONDS = 30.0
_REQUEST_LIMIT = 64 * 1024


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    finished: float | None = None  # monotonic time the behaviour ended (the peer hung up)


class Exchange:
    """One connection to the hostile host, handed to a behaviour."""

    def __init__(self, sock: socket.socket, request: Request, stopping: threading.Event) -> None:
        self.sock = sock
        self.request = request
        self._stopping = stopping
        self._deadline = time.monotonic() + MAX_BEHAVIOUR_SECONDS
        # A peer that stops reading must not block a send for ever.
        sock.settimeout(10.0)

    @property
    def over(self) -> bool:
        return self._stopping.is_set() or time.monotonic() > self._deadline

    def send(self, data: bytes) -> bool:
        """Send `data`; False once the peer has gone (or the host is closing)."""
        if self.over:
            return False
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def peer_closed(self, wait: float) -> bool:
        """Wait up to `wait` seconds; True if the peer closed (or reset) the connection."""
        try:
            readable, _, _ = select.select([self.sock], [], [], wait)
            if not readable:
                return False
            return self.sock.recv(4096) == b""
        except OSError:
            return True

    def hold(self) -> None:
        """Keep the connection open, sending nothing, until the peer leaves."""
        while not self.over and not self.peer_closed(0.1):
            pass

    def sleep(self, seconds: float) -> bool:
        """Sleep, but wake early (returning False) when the peer closes."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if self.over or self.peer_closed(min(0.05, max(0.0, end - time.monotonic()))):
                return False
        return True


Behaviour = Callable[[Exchange], None]


def head(status: int, headers: Iterable[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} Whatever"] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# --- behaviours --------------------------------------------------------------------------


def respond(
    body: bytes,
    content_type: str = "image/jpeg",
    status: int = 200,
    extra: Iterable[tuple[str, str]] = (),
) -> Behaviour:
    """An honest answer (apart from whatever `extra` headers claim)."""

    def behave(ex: Exchange) -> None:
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Connection", "close"), *extra]
        ex.send(head(status, headers) + body)

    return behave


def redirect(location: str, status: int = 302) -> Behaviour:
    def behave(ex: Exchange) -> None:
        headers = [("Location", location), ("Content-Length", "0"), ("Connection", "close")]
        ex.send(head(status, headers))

    return behave


def trickle_head(interval: float) -> Behaviour:
    """A status line and then a header that never ends, one byte every `interval` s."""

    def behave(ex: Exchange) -> None:
        stream = b"HTTP/1.1 200 OK\r\nContent-Type: image/jpeg\r\nX-Slow: "
        index = 0
        while ex.send(stream[index : index + 1] if index < len(stream) else b"a"):
            index += 1
            if not ex.sleep(interval):
                return

    return behave


def trickle_body(prefix: bytes, interval: float, declared: int = 1_000) -> Behaviour:
    """Honest headers, then the body one byte every `interval` seconds, for ever."""

    def behave(ex: Exchange) -> None:
        headers = [("Content-Type", "image/jpeg"), ("Content-Length", str(declared)), ("Connection", "close")]
        if not ex.send(head(200, headers)):
            return
        index = 0
        while ex.send(prefix[index : index + 1] if index < len(prefix) else b"\0"):
            index += 1
            if not ex.sleep(interval):
                return

    return behave


def endless_body(prefix: bytes, chunked: bool) -> Behaviour:
    """A body without end: close-delimited (no Content-Length) or chunked."""

    def behave(ex: Exchange) -> None:
        headers = [("Content-Type", "image/jpeg"), ("Connection", "close")]
        if chunked:
            headers.append(("Transfer-Encoding", "chunked"))
        block = b"\0" * 65536

        def framed(data: bytes) -> bytes:
            return b"%x\r\n%s\r\n" % (len(data), data) if chunked else data

        if not ex.send(head(200, headers) + framed(prefix)):
            return
        while ex.send(framed(block)):
            pass

    return behave


def repeat(first: bytes, again: bytes, interval: float = 0.0) -> Behaviour:
    """`first`, then `again` over and over (every `interval` seconds) until the peer leaves."""

    def behave(ex: Exchange) -> None:
        if not ex.send(first):
            return
        while ex.send(again):
            if interval and not ex.sleep(interval):
                return

    return behave


def raw(data: bytes) -> Behaviour:
    """Whatever bytes, then close: a malformed answer."""

    def behave(ex: Exchange) -> None:
        ex.send(data)

    return behave


def lying_length(declared: int, body: bytes, then: str = "close") -> Behaviour:
    """`Content-Length: declared` but `body` of another length; then close or hold."""

    def behave(ex: Exchange) -> None:
        headers = [("Content-Type", "image/jpeg"), ("Content-Length", str(declared))]
        if not ex.send(head(200, headers) + body):
            return
        if then == "hold":
            ex.hold()

    return behave


# --- the hosts ---------------------------------------------------------------------------


class _Acceptor:
    """Accept loops on listening sockets, one daemon thread per connection."""

    def __init__(self, sockets: list[socket.socket], handle: Callable[[socket.socket, tuple], None]) -> None:
        self._sockets = sockets
        self._handle = handle
        self.stopping = threading.Event()
        self._threads = []
        for sock in sockets:
            sock.listen(64)
            sock.settimeout(0.2)
            thread = threading.Thread(target=self._accept, args=(sock,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _accept(self, listener: socket.socket) -> None:
        while not self.stopping.is_set():
            try:
                conn, peer = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn, peer), daemon=True).start()

    def _serve(self, conn: socket.socket, peer: tuple) -> None:
        try:
            self._handle(conn, peer)
        except OSError:
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass

    def close(self) -> None:
        self.stopping.set()
        for thread in self._threads:
            thread.join(2)
        for sock in self._sockets:
            sock.close()


def _read_request(conn: socket.socket, timeout: float = 5.0) -> Request | None:
    conn.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data and len(data) < _REQUEST_LIMIT:
            chunk = conn.recv(4096)
            if not chunk:
                break
            data += chunk
    except OSError:
        pass
    if b"\r\n\r\n" not in data:
        return None
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    method, _, rest = lines[0].partition(" ")
    path = rest.rsplit(" ", 1)[0]
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Request(method, path, headers)


def _listener(family: int, host: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


class HostileHost:
    def __init__(self) -> None:
        self._behaviours: dict[str, Behaviour] = {}
        self.requests: list[Request] = []
        sock = _listener(socket.AF_INET, "127.0.0.1", 0)
        self.port = sock.getsockname()[1]
        self._acceptor = _Acceptor([sock], self._handle)

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    def publish(self, behaviour: Behaviour, suffix: str = "") -> str:
        """Run `behaviour` for requests to a new path; returns its URL."""
        path = f"/{uuid.uuid4().hex}{suffix}"
        self._behaviours[path] = behaviour
        return f"http://{self.host_port}{path}"

    def requests_for(self, url: str) -> list[Request]:
        path = url.split(self.host_port, 1)[1]
        return [r for r in self.requests if r.path == path]

    def _handle(self, conn: socket.socket, peer: tuple) -> None:
        request = _read_request(conn)
        if request is None:
            return
        self.requests.append(request)
        behaviour = self._behaviours.get(request.path, respond(b"not found", "text/plain", 404))
        try:
            behaviour(Exchange(conn, request, self._acceptor.stopping))
        finally:
            request.finished = time.monotonic()

    def close(self) -> None:
        self._acceptor.close()


class Canary:
    def __init__(self, answer: bytes) -> None:
        self._answer = answer
        self.connections: list[tuple] = []
        self.has_ipv6 = False
        sockets = self._bind()
        self.port = sockets[0].getsockname()[1]
        self._acceptor = _Acceptor(sockets, self._handle)

    def _bind(self) -> list[socket.socket]:
        for _ in range(50):
            v4 = _listener(socket.AF_INET, "127.0.0.1", 0)
            port = v4.getsockname()[1]
            try:
                v6 = _listener(socket.AF_INET6, "::1", port)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    v4.close()
                    continue
                return [v4]  # no IPv6 loopback on this machine
            self.has_ipv6 = True
            return [v4, v6]
        raise RuntimeError("no port free on both 127.0.0.1 and ::1")

    @property
    def count(self) -> int:
        return len(self.connections)

    def _handle(self, conn: socket.socket, peer: tuple) -> None:
        self.connections.append(peer)
        _read_request(conn, timeout=2.0)
        headers = [("Content-Type", "image/jpeg"), ("Content-Length", str(len(self._answer))), ("Connection", "close")]
        conn.sendall(head(200, headers) + self._answer)

    def close(self) -> None:
        self._acceptor.close()
