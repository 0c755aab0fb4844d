"""A small HTTP/1.1 client for webhook attempts: one POST, its status, nothing more.

httpx spent most of a delivery's CPU in its connection pool (every request scans every
connection of the pool, asking each socket whether it is readable): about 1.5 ms of the
server's CPU per delivery to a receiver on loopback. A webhook attempt needs far less of
HTTP: POST a body of known length, read the status line and headers, read at most a few
KiB of the answer, keep the connection for the next attempt when the receiver allows it.
This does exactly that on asyncio's transports with `httptools` (the parser uvicorn
uses), and holds every rule of docs/security.md's webhook section:

- it connects to the address it is given (the one the sender checked), never resolving
  a name itself, never through a proxy; TLS is verified against the URL's host;
- it never follows a redirect: a 3xx is a status like any other;
- the answer is bounded: at most `max_head` bytes of status line and headers, at most
  `max_answer` bytes of body are read (then the connection is closed, not reused);
- the deadline is the caller's: a cancelled request aborts its connection, so a receiver
  that trickles its answer holds nothing once the attempt's one deadline has passed.

Connections are kept per `Endpoint` (scheme, host, checked address, port): a connection
is never shared across hosts, nor across addresses a name resolved to.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import cast

import httptools

# A connection idle this long is closed rather than reused: receivers commonly close idle
# keep-alive connections after 5 to 75 s, and a request on a connection the receiver is
# closing at that moment fails.
IDLE_S = 4.0


class AnswerError(Exception):
    """The receiver's answer broke HTTP or a bound; the message says which (no secrets)."""


@dataclass(frozen=True)
class Endpoint:
    scheme: str  # http | https
    host: str  # the URL's host: TLS's server name and certificate check
    address: str  # the checked IP address connected to
    port: int


class _Connection(asyncio.Protocol):
    """One connection and the one request under way on it (HTTP/1.1, no pipelining)."""

    def __init__(self, max_head: int, max_answer: int) -> None:
        self._max_head = max_head
        self._max_answer = max_answer
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.reusable = False
        self.idle_since = time.monotonic()
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[int] | None = None
        self._status: int | None = None
        self._head = 0
        self._body = 0
        self.answered = False  # any byte of an answer to the request under way arrived

    # --- asyncio ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not subclasses of asyncio's, only alike.)
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            # Bytes nobody asked for (an idle connection, or past the bound): unusable.
            self.abort()
            return
        self.answered = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(AnswerError("answer asked for a protocol upgrade"))
        except httptools.HttpParserError:
            if not waiter.done():
                self._fail(AnswerError("malformed answer"))
        if self._status is None and not waiter.done():
            # Still no end to the status line and headers (a read is at most 256 KiB).
            self._head += len(data)
            if self._head > self._max_head:
                self._fail(AnswerError("answer headers too large"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            if self._status is not None:  # a body read until the connection closed
                waiter.set_result(self._status)
            else:
                waiter.set_exception(ConnectionResetError("connection closed before an answer"))

    # --- httptools ---------------------------------------------------------------------

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if status >= 200:  # 1xx: an interim answer; the real one follows
            self._status = status

    def on_body(self, body: bytes) -> None:
        self._body += len(body)
        if self._body >= self._max_answer:  # enough: the status is what counts
            self._finish(reusable=False)

    def on_message_complete(self) -> None:
        if self._status is None:  # the end of a 1xx
            self._head = 0
            return
        self._finish(reusable=self._parser.should_keep_alive())

    # --- the request ---------------------------------------------------------------------

    async def request(self, data: bytes) -> int:
        assert self.transport is not None
        self._waiter = asyncio.get_running_loop().create_future()
        self._status, self._head, self._body, self.answered, self.reusable = None, 0, 0, False, False
        self.transport.write(data)
        try:
            return await self._waiter
        finally:
            self._waiter = None
            if not self.reusable:
                self.abort()  # cancelled, cut short, broken or told to close: never reused
            else:
                self.idle_since = time.monotonic()

    def _finish(self, *, reusable: bool) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            self.reusable = reusable
            assert self._status is not None
            waiter.set_result(self._status)

    def _fail(self, exc: Exception) -> None:
        waiter = self._waiter
        self.reusable = False
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.abort()

    def abort(self) -> None:
        self.reusable = False
        if not self.closed and self.transport is not None:
            self.closed = True
            self.transport.abort()


class HookClient:
    """Kept-alive connections per endpoint, up to `max_endpoints` endpoints (the least
    recently used are closed first) and `max_idle` idle connections each."""

    def __init__(
        self,
        *,
        tls: ssl.SSLContext | None = None,
        max_answer: int = 4096,
        max_head: int = 16384,
        max_endpoints: int = 64,
        max_idle: int = 64,
    ) -> None:
        self._tls = tls
        self._max_answer = max_answer
        self._max_head = max_head
        self._max_endpoints = max_endpoints
        self._max_idle = max_idle
        self._idle: OrderedDict[Endpoint, list[_Connection]] = OrderedDict()

    async def post(
        self, endpoint: Endpoint, target: str, host_header: str, headers: dict[str, str], body: bytes
    ) -> int:
        """The status of one POST of `body` to `target` (path and query) at `endpoint`.
        Raises OSError (connecting, TLS), AnswerError, or the caller's cancellation."""
        data = _request(target, host_header, headers, body)
        connection = self._idle_connection(endpoint)
        if connection is not None:
            try:
                return await self._use(endpoint, connection, data)
            except (ConnectionError, AnswerError):
                # The receiver closed a kept connection just as it was reused: once more on
                # a new one (at least once, as every delivery; the webhook-id repeats).
                if connection.answered:
                    raise
        return await self._use(endpoint, await self._connect(endpoint), data)

    async def _use(self, endpoint: Endpoint, connection: _Connection, data: bytes) -> int:
        status = await connection.request(data)
        if connection.reusable:
            idle = self._idle.setdefault(endpoint, [])
            self._idle.move_to_end(endpoint)
            if len(idle) < self._max_idle:
                idle.append(connection)
            else:
                connection.abort()
            self._trim()
        return status

    def _idle_connection(self, endpoint: Endpoint) -> _Connection | None:
        idle = self._idle.get(endpoint)
        now = time.monotonic()
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to be closing
            if not connection.closed and now - connection.idle_since < IDLE_S:
                return connection
            connection.abort()
        return None

    async def _connect(self, endpoint: Endpoint) -> _Connection:
        loop = asyncio.get_running_loop()
        tls = None
        if endpoint.scheme == "https":
            if self._tls is None:
                self._tls = ssl.create_default_context()  # the system's roots, hostnames checked
            tls = self._tls
        _, connection = await loop.create_connection(
            lambda: _Connection(self._max_head, self._max_answer),
            host=endpoint.address,
            port=endpoint.port,
            ssl=tls,
            server_hostname=endpoint.host if tls is not None else None,
        )
        return connection

    def _trim(self) -> None:
        while len(self._idle) > self._max_endpoints:
            _, idle = self._idle.popitem(last=False)
            for connection in idle:
                connection.abort()

    def close(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.abort()
        self._idle.clear()


def _request(target: str, host_header: str, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"POST {target} HTTP/1.1", f"host: {host_header}", f"content-length: {len(body)}"]
    lines.extend(f"{name}: {value}" for name, value in headers.items())
    # Every piece is the server's own or came through the URL parser (printable ASCII,
    # no spaces); a line break would let a value write headers of its own.
    if " " in target or any("\r" in line or "\n" in line for line in lines):
        raise AnswerError("refused to send a malformed request")
    return "\r\n".join(lines).encode("latin-1") + b"\r\n\r\n" + body
