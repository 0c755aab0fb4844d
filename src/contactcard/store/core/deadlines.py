"""Client-side deadlines for PostgreSQL calls, which hold whatever the server does.

A stopped server refuses connections at once; a frozen one (a network partition, a
wedged disk, a stopped process) accepts bytes and never answers. `statement_timeout`
cannot help then (the server is not running), and asking the server to cancel a query
means a new connection to the same frozen server: psycopg's cancellation waits for it
before giving up. So a call past its deadline is *abandoned*: its socket is shut down,
which makes every thread or coroutine waiting on it fail at once with a connection error,
and the connection is discarded like any broken one. The server sees the connection
closed whenever it runs again and ends its session (rolling back a transaction whose
commit it had not received, committing one whose commit it had: never half).

`connection_options` gives libpq the same bound where it can apply it itself: the time to
connect, and TCP keepalives and `tcp_user_timeout` against a peer that vanished from the
network (they cannot see a frozen process on a live host: its kernel still acknowledges).

`Watchdog` arms deadlines for blocking callers (the operator side's SQLAlchemy engine);
the event loop's callers arm a plain timer (`loop.call_at`) with `abandon`.
"""

from __future__ import annotations

import gc
import heapq
import itertools
import logging
import os
import socket
import threading
import time
from typing import Any

log = logging.getLogger("contactcard")


def connection_options(timeout: float) -> dict[str, Any]:
    """libpq options bounding a connection attempt and a dead peer by about `timeout`."""
    seconds = max(1, round(timeout))
    return {
        # libpq counts whole seconds (and treats 1 as 2).
        "connect_timeout": seconds,
        "keepalives": 1,
        "keepalives_idle": seconds,
        "keepalives_interval": 1,
        "keepalives_count": 2,
        # Sent data unacknowledged this long: the peer is gone (milliseconds).
        "tcp_user_timeout": int(timeout * 1000),
    }


def abandon(connection: Any) -> None:
    """Shut down a psycopg connection's socket: whoever waits on it fails at once, and
    the connection is broken for good (the caller or its pool discards it). Safe from any
    thread; a connection already closed is left alone."""
    try:
        fd = connection.pgconn.socket
    except Exception:  # closed already, or never connected
        return
    try:
        # A duplicate of the descriptor: shutting it down acts on the shared socket, and
        # closing it never closes the descriptor libpq still owns.
        with socket.socket(fileno=os.dup(fd)) as shared:
            shared.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class Watchdog:
    """One thread per process abandoning the connections whose deadline passed.

    `arm` costs a heap push; nothing runs unless a deadline is missed."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Any]] = []
        self._armed: dict[int, Any] = {}
        self._ids = itertools.count()
        self._wake = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None

    def arm(self, connection: Any, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        with self._wake:
            token = next(self._ids)
            self._armed[token] = connection
            heapq.heappush(self._heap, (deadline, token, connection))
            if self._thread is None:
                self._thread = threading.Thread(target=self._watch, name="contactcard-deadlines", daemon=True)
                self._thread.start()
            if self._heap[0][1] == token:
                self._wake.notify()
        return token

    def disarm(self, token: int) -> bool:
        """Whether the deadline was still ahead (False: the connection was abandoned)."""
        with self._wake:
            return self._armed.pop(token, None) is not None

    def _watch(self) -> None:
        with self._wake:
            while True:
                while self._heap and self._heap[0][1] not in self._armed:
                    heapq.heappop(self._heap)  # disarmed in time
                if not self._heap:
                    self._wake.wait()
                    continue
                deadline, token, connection = self._heap[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._wake.wait(wait)
                    continue
                heapq.heappop(self._heap)
                del self._armed[token]
                log.warning("database call past its deadline: connection abandoned", extra={"event": "db_deadline"})
                abandon(connection)


WATCHDOG = Watchdog()

_swept_at = 0.0


def sweep() -> None:
    """Close what connection attempts that timed out left open; called once the database
    answers again after failing.

    psycopg keeps a timed-out attempt's half-made connection referenced from the failure's
    traceback (the frame that made the attempt), in reference cycles only the cyclic
    garbage collector frees, at a moment of its choosing: until then the socket stays open
    and the server keeps a session waiting in its start-up. One collection frees them all,
    whichever thread or pool made them (at most once a second)."""
    global _swept_at
    now = time.monotonic()
    if now - _swept_at < 1.0:
        return
    _swept_at = now
    gc.collect()
