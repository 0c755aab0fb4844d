"""The transport that sends one loop turn's writes together (contactcard.http.transport).

Two halves. The first drives `_TurnTransport` on a real event loop over a fake transport
that records what reaches it, so the batching and the order of writes and close can be
seen exactly. The second runs a real uvicorn server with `http=TurnWritesProtocol`, as
production does, and reads its answers from a raw socket: a stream arrives piece by piece
(nothing is held past a turn), large bodies arrive intact on a kept-alive connection, and
what is written just before a close is still sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import IO, Any

import pytest
import uvicorn

from contactcard.http.transport import TurnWritesProtocol, _TurnTransport

# Every wait in this file is bounded; a test that hangs is a failure, not a stuck run.
TIMEOUT = 5.0


# --- The transport alone, over a fake one -----------------------------------------------


class RecordingTransport:
    """Records writes and the close, in order, including any write made once it is closing.

    It records rather than raises: the transport's sends run as loop callbacks, where an
    exception would only be logged by the loop.
    """

    def __init__(self) -> None:
        self.events: list[tuple[str, bytes]] = []
        self.closing = False

    @property
    def writes(self) -> list[bytes]:
        return [data for kind, data in self.events if kind == "write"]

    def write(self, data: bytes) -> None:
        self.events.append(("write", bytes(data)))

    def is_closing(self) -> bool:
        return self.closing

    def close(self) -> None:
        self.closing = True
        self.events.append(("close", b""))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 4321) if name == "peername" else default


def _on_loop(body: Callable[[_TurnTransport, RecordingTransport], Awaitable[None]]) -> RecordingTransport:
    """Runs `body` on a fresh event loop with a `_TurnTransport` over a recording one."""
    fake = RecordingTransport()

    async def main() -> None:
        turn = _TurnTransport(fake, asyncio.get_running_loop())  # type: ignore[arg-type]
        await asyncio.wait_for(body(turn, fake), TIMEOUT)

    asyncio.run(main())
    return fake


async def _next_turn() -> None:
    # The transport's send was queued with call_soon before this task's own wake-up, so
    # one yield lets it run.
    await asyncio.sleep(0)


def test_writes_of_one_turn_leave_in_one_write() -> None:
    """A head and a body written in the same turn reach the socket as one write, after the turn."""

    async def body(turn: _TurnTransport, fake: RecordingTransport) -> None:
        turn.write(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n")
        turn.write(b"hello")
        assert fake.writes == [], "held until the turn ends"
        await _next_turn()
        assert fake.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"]

    _on_loop(body)


def test_nothing_is_held_past_a_turn() -> None:
    """Writes of different turns leave separately, each at the end of its own turn."""

    async def body(turn: _TurnTransport, fake: RecordingTransport) -> None:
        turn.write(b"first")
        await _next_turn()
        assert fake.writes == [b"first"]
        turn.write(b"second")
        turn.write(b"third")
        await _next_turn()
        assert fake.writes == [b"first", b"secondthird"]
        await _next_turn()
        assert fake.writes == [b"first", b"secondthird"], "no empty or repeated write"

    _on_loop(body)


def test_close_sends_what_is_held_first() -> None:
    """close() writes what the turn held and then closes; the send queued for the turn writes nothing."""

    async def body(turn: _TurnTransport, fake: RecordingTransport) -> None:
        turn.write(b"last ")
        turn.write(b"words")
        turn.close()
        assert fake.events == [("write", b"last words"), ("close", b"")]
        await _next_turn()  # the send queued by the first write runs now, with nothing held
        assert fake.events == [("write", b"last words"), ("close", b"")]

    _on_loop(body)


def test_writes_once_closing_are_dropped() -> None:
    """After the transport is closing (closed by us or by the peer), writes vanish without an error."""

    async def body(turn: _TurnTransport, fake: RecordingTransport) -> None:
        turn.close()
        turn.write(b"after our close")
        await _next_turn()
        assert fake.writes == []

    _on_loop(body)

    async def peer_gone(turn: _TurnTransport, fake: RecordingTransport) -> None:
        turn.write(b"held when the peer left")
        fake.closing = True  # as asyncio's transport is once the connection is lost
        await _next_turn()
        turn.write(b"after")
        await _next_turn()
        assert fake.writes == []

    _on_loop(peer_gone)


def test_the_rest_is_the_real_transport() -> None:
    """What the wrapper does not define (get_extra_info, is_closing) is the wrapped transport's."""

    async def body(turn: _TurnTransport, fake: RecordingTransport) -> None:
        assert turn.get_extra_info("peername") == ("127.0.0.1", 4321)
        assert turn.is_closing() is False
        fake.closing = True
        assert turn.is_closing() is True

    _on_loop(body)


# --- A real uvicorn server with TurnWritesProtocol --------------------------------------

MIB = 1024 * 1024
BIG_ONE = os.urandom(5 * MIB)
BIG_TWO = os.urandom(5 * MIB)
STREAM_PIECES = [b"one ", b"two ", b"three"]


class App:
    """A tiny ASGI app: a gated stream, two large bodies, and a plain answer."""

    def __init__(self) -> None:
        # The stream sends piece i+1 only once the test set gates[i], after it read piece i.
        self.gates = [threading.Event() for _ in STREAM_PIECES]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        path = scope["path"]
        if path == "/stream":
            await self.stream(send)
        elif path == "/big/one":
            # One body message of 5 MiB: one write far larger than the socket's buffer.
            await send({"type": "http.response.start", "status": 200, "headers": _length(BIG_ONE)})
            await send({"type": "http.response.body", "body": BIG_ONE})
        elif path == "/big/two":
            # Eighty 64 KiB messages with nothing awaited between them: many writes joined in a turn.
            await send({"type": "http.response.start", "status": 200, "headers": _length(BIG_TWO)})
            step = 64 * 1024
            for start in range(0, len(BIG_TWO), step):
                more = start + step < len(BIG_TWO)
                await send({"type": "http.response.body", "body": BIG_TWO[start : start + step], "more_body": more})
        else:
            body = b"plain answer " * 1000
            await send({"type": "http.response.start", "status": 200, "headers": _length(body)})
            await send({"type": "http.response.body", "body": body})

    async def stream(self, send: Any) -> None:
        # No content-length: uvicorn sends it chunked.
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        loop = asyncio.get_running_loop()
        for piece, gate in zip(STREAM_PIECES, self.gates, strict=True):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            # Bounded, and longer than the client's read timeout, so a piece held back shows
            # as the client's timeout rather than as the app moving on.
            await loop.run_in_executor(None, gate.wait, 2 * TIMEOUT)
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _length(body: bytes) -> list[tuple[bytes, bytes]]:
    return [(b"content-length", str(len(body)).encode())]


class Running:
    def __init__(self, app: App, port: int) -> None:
        self.app = app
        self.port = port

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=TIMEOUT)


@pytest.fixture(scope="module")
def server() -> Iterator[Running]:
    app = App()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        app,
        http=TurnWritesProtocol,
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + TIMEOUT
    while not runner.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the test server did not start"
        time.sleep(0.01)
    try:
        yield Running(app, sock.getsockname()[1])
    finally:
        for gate in app.gates:  # release a stream a failed test left waiting
            gate.set()
        runner.should_exit = True
        thread.join(TIMEOUT)
        sock.close()
        assert not thread.is_alive(), "the test server did not stop"


def _head(reader: IO[bytes]) -> tuple[bytes, dict[bytes, bytes]]:
    """The status line and the headers (names lowercased) of an answer."""
    status = reader.readline()
    headers: dict[bytes, bytes] = {}
    while (line := reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return status, headers


def _chunk(reader: IO[bytes]) -> bytes:
    """One chunk of a chunked body; b"" for the last one."""
    size = int(reader.readline().split(b";")[0], 16)
    data = reader.read(size)
    assert reader.readline() == b"\r\n"
    return data


def _body(reader: IO[bytes], headers: dict[bytes, bytes]) -> bytes:
    length = int(headers[b"content-length"])
    data = reader.read(length)
    assert len(data) == length, "the connection ended inside the body"
    return data


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_stream_arrives_piece_by_piece(server: Running) -> None:
    """Each piece of a streamed answer reaches the client while the app waits for the client to have read it.

    The app sends the next piece only after the test read the previous one, so if a piece
    were held back for a later write, the read would time out.
    """
    with server.connect() as conn, conn.makefile("rb") as reader:
        conn.sendall(b"GET /stream HTTP/1.1\r\nHost: test\r\n\r\n")
        status, headers = _head(reader)
        assert status.startswith(b"HTTP/1.1 200")
        assert headers[b"transfer-encoding"] == b"chunked"
        for piece, gate in zip(STREAM_PIECES, server.app.gates, strict=True):
            assert _chunk(reader) == piece
            gate.set()
        assert _chunk(reader) == b""


def test_large_bodies_arrive_intact_on_one_connection(server: Running) -> None:
    """Two 5 MiB answers, one sent in one message and one in eighty, both arrive whole on one kept-alive connection."""
    with server.connect() as conn, conn.makefile("rb") as reader:
        for path, expected in ((b"/big/one", BIG_ONE), (b"/big/two", BIG_TWO)):
            conn.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: test\r\n\r\n")
            status, headers = _head(reader)
            assert status.startswith(b"HTTP/1.1 200")
            assert b"connection" not in headers, "kept alive"
            assert _sha(_body(reader, headers)) == _sha(expected)


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET /plain HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n", id="connection-close"),
        pytest.param(b"GET /plain HTTP/1.0\r\nHost: test\r\n\r\n", id="http-1.0"),
        pytest.param(b"GET /big/one HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n", id="large-then-close"),
    ],
)
def test_what_is_written_before_a_close_arrives(server: Running, request_bytes: bytes) -> None:
    """When the server closes the connection right after an answer, the answer still arrives, and then the end.

    uvicorn writes the answer and closes the transport in the same turn, so the answer is
    still held when close() is called: this is the flush-on-close path.
    """
    with server.connect() as conn, conn.makefile("rb") as reader:
        conn.sendall(request_bytes)
        status, headers = _head(reader)
        assert status.split(b" ")[1] == b"200"
        assert headers[b"connection"] == b"close"
        body = _body(reader, headers)
        expected = BIG_ONE if b"/big/one" in request_bytes else b"plain answer " * 1000
        assert _sha(body) == _sha(expected)
        assert reader.read() == b"", "the server closed the connection"
