"""uvicorn's HTTP protocol, with the writes of one event-loop turn sent as one.

uvicorn writes an answer's head when the app sends `http.response.start` and its body
when it sends `http.response.body`: two `send` system calls per answer, and each runs the
kernel's whole TCP transmit path (on loopback, the receiver's side too). Profiled under
load, those two calls were most of the time the event loop spent on a GET. Here each
connection's transport holds what is written during one turn of the loop and sends it at
the end of the turn: the head and the body of an answer, sent one after the other by the
app with nothing awaited between them, leave in one call.

Nothing waits longer than the current turn, and a close sends what is held first. The
protocol class is uvicorn's own (`--http` takes a class); only its transport is wrapped.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


class _TurnTransport:
    """A transport that sends the writes of one loop turn together; the rest is the real one."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._held is None:
            self._held = [data]
            self._loop.call_soon(self._send)  # after every callback already queued this turn
        else:
            self._held.append(data)

    def _send(self) -> None:
        held, self._held = self._held, None
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self._send()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class TurnWritesProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol on a `_TurnTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_TurnTransport(transport, self.loop))  # type: ignore[arg-type]
