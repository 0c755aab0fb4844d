"""A delivery child's transactions, run by its server's writer (SQLite only).

Why: a SQLite file has one write lock. A server's writer under load takes it again
microseconds after each commit, and a second process (the webhook delivery child) waiting
for it in SQLite's busy handler sleeps in growing steps and keeps losing: measured, the
child sat at a few percent of a core while events waited seconds to be claimed. Sent to
the server's writer instead, the child's claims and outcomes join the card writes' own
batches: one lock holder, no waiting, and one commit for both.

The two ends talk over a socket pair the server makes when it starts the child (the
child's end is passed as an inherited file descriptor), one JSON object per line:

- child to server: `{"id": n, "tx": [[sql, params, wants_rows], ...]}`, the parameters
  already in SQLite's text forms (`sqlite_value`);
- server to child: `{"id": n, "rows": [...]}` (each statement's rows), or
  `{"id": n, "error": kind, "message": text}` where `kind` names one of the store's errors.

Reads stay in the child, on its own read-only connection (`LoopReads`): in WAL mode they
never wait for the lock. Each transaction's wait is bounded on both sides: the server's
writer answers within its deadline, and the child gives up a little after that. A claim
answered after the child gave up holds a lease that runs out: the attempt is made again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
from typing import Any

from contactcard.store.core.errors import StoreUnavailable, WriteExpired, WriteInDoubt
from contactcard.store.core.statements import NO_LINES, Lines, Row, Stmt, Tx, sqlite_value
from contactcard.store.core.writer import Reads, Writer

log = logging.getLogger("contactcard")

LINE_LIMIT = 64 * 1024 * 1024  # the longest line either end reads: a claim's rows carry event bodies
MARGIN_S = 1.0  # how much longer than the server's deadline the child waits for an answer

_ERRORS: dict[str, type[Exception]] = {
    "expired": WriteExpired,
    "in_doubt": WriteInDoubt,
    "unavailable": StoreUnavailable,
}


def _kind(exc: BaseException) -> str:
    # WriteExpired and WriteInDoubt are StoreUnavailable too: the narrowest first.
    for kind, error in _ERRORS.items():
        if isinstance(exc, error):
            return kind
    return "failed"


class RelayedWriter:
    """The child's writer: `run` sends the transaction to the server; `read` is local."""

    def __init__(self, sock: socket.socket, *, timeout: float, reads: Reads) -> None:
        self._sock = sock
        self._wait = timeout + MARGIN_S
        self._reads = reads
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[list[list[Row]]]] = {}
        self._out: asyncio.StreamWriter | None = None
        self._answers: asyncio.Task[None] | None = None
        self._gone = False

    async def run(self, tx: Tx, *, lines: Lines = None) -> list[list[Row]]:
        out = await self._connected()
        job = next(self._ids)
        future: asyncio.Future[list[list[Row]]] = asyncio.get_running_loop().create_future()
        self._waiting[job] = future
        stmts = [[s.sql, {k: sqlite_value(v) for k, v in s.params.items()}, s.rows] for s in tx]
        try:
            out.write(json.dumps({"id": job, "tx": stmts}).encode() + b"\n")
            async with asyncio.timeout(self._wait):
                await out.drain()
                return await future
        except TimeoutError:
            raise StoreUnavailable("no answer from the server's writer in time") from None
        except OSError as exc:
            raise StoreUnavailable(f"the server's writer is gone: {exc}") from None
        finally:
            self._waiting.pop(job, None)

    async def read(self, stmt: Stmt) -> list[Row]:
        return await self._reads.read(stmt)

    def close(self) -> None:
        if self._answers is not None:
            self._answers.cancel()
        if self._out is not None:
            self._out.close()
        else:
            self._sock.close()
        self._reads.close()

    async def _connected(self) -> asyncio.StreamWriter:
        if self._gone:
            raise StoreUnavailable("the server's writer is gone")
        if self._out is None:
            reader, self._out = await asyncio.open_unix_connection(sock=self._sock, limit=LINE_LIMIT)
            self._answers = asyncio.ensure_future(self._read_answers(reader))
        return self._out

    async def _read_answers(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await reader.readline():
                answer = json.loads(line)
                future = self._waiting.get(answer["id"])
                if future is None or future.done():
                    continue  # given up on already
                if "rows" in answer:
                    future.set_result([[tuple(row) for row in rows] for rows in answer["rows"]])
                else:
                    error = _ERRORS.get(answer["error"], StoreUnavailable)
                    future.set_exception(error(answer["message"]))
        except (OSError, ValueError, KeyError) as exc:
            log.warning("webhook delivery process: the server's writer sent an unreadable answer: %s", exc)
        finally:
            # The server is gone (or unreadable): nobody answers what is waiting.
            self._gone = True
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(StoreUnavailable("the server's writer is gone"))


async def serve(sock: socket.socket, writer: Writer) -> None:
    """The server's end: run each transaction the child sends on `writer`, answer it,
    until the child closes its end. Its transactions change no GET answer (`NO_LINES`)."""
    reader, out = await asyncio.open_unix_connection(sock=sock, limit=LINE_LIMIT)
    running: set[asyncio.Task[None]] = set()
    try:
        while line := await reader.readline():
            task = asyncio.ensure_future(_answer(line, writer, out))
            running.add(task)
            task.add_done_callback(running.discard)
    except (OSError, ValueError) as exc:  # ValueError: a line over the limit
        log.warning("webhook delivery process: its store relay broke: %s", exc)
    finally:
        for task in list(running):
            with contextlib.suppress(BaseException):
                await task
        out.close()


async def _answer(line: bytes, writer: Writer, out: asyncio.StreamWriter) -> None:
    answer: dict[str, Any]
    try:
        request = json.loads(line)
        job = request["id"]
        tx = [Stmt(sql, params, bool(rows)) for sql, params, rows in request["tx"]]
    except (ValueError, KeyError, TypeError):
        log.warning("webhook delivery process sent an unreadable transaction (%d bytes)", len(line))
        return
    try:
        results = await writer.run(tx, lines=NO_LINES)
        answer = {"id": job, "rows": results}
    except Exception as exc:
        answer = {"id": job, "error": _kind(exc), "message": str(exc).splitlines()[0] if str(exc) else ""}
    try:
        data = json.dumps(answer)
    except (TypeError, ValueError) as exc:  # a value JSON cannot carry: say so rather than leave it waiting
        data = json.dumps({"id": job, "error": "failed", "message": f"an answer JSON cannot carry: {exc}"})
    try:
        out.write(data.encode() + b"\n")
        await out.drain()
    except OSError as exc:  # the child is gone
        log.debug("webhook delivery process: could not answer its transaction: %s", exc)
