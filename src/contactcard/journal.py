"""The request journal: which API requests arrived, for the tests that sent them.

The edge middleware hands each finished request to `Journal.record`, which only appends
a tuple to an in-memory buffer (no parsing, no I/O on the event loop). A background thread
turns the buffer into rows every `POLL_SECONDS` and stores them in one transaction, so
every process on the database shares one journal, trimmed to `journal_size` rows; the
same thread reloads the runtime controls (see `controls.py`). Reading the journal first
stores this process's buffer, so a test sees its own requests at once.

Only what the columns name is kept: never a key, an `Authorization` value or a body. The
phone number is taken from the query (`phone_number`, when it is E.164) or set by the
endpoint that parsed it from a body; the error code is read from the error envelope.
"""

from __future__ import annotations

import collections
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import parse_qsl

import orjson

from contactcard.controls import POLL_SECONDS, LiveControls

log = logging.getLogger("contactcard")

# Requests that are the operator's or the load balancer's, not the API's.
UNJOURNALED = ("/admin/", "/healthz")
# A burst between two flushes larger than this loses its oldest requests (the journal
# keeps the most recent anyway).
BUFFER = 20_000
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")


@dataclass(frozen=True)
class Entry:
    trace_id: str
    at: float  # unix seconds on the server's clock
    method: str
    path: str
    phone_number: str | None
    status: int
    error_code: int | None
    duration_ms: float
    retry_count: int | None
    user_agent: str | None
    id: int = 0  # the row's id once stored; grows with time


@dataclass(frozen=True)
class Query:
    trace_id: str | None = None
    phone_number: str | None = None
    status: int | None = None
    since: float | None = None  # unix seconds, on the server's clock
    until: float | None = None
    after_id: int | None = None  # for following: only newer entries, oldest first
    limit: int = 100


class JournalStore(Protocol):
    def add(self, entries: Sequence[Entry], keep: int) -> None: ...
    def find(self, query: Query) -> list[Entry]: ...


# What the edge keeps of a request until the flush: the raw pieces, parsed off the loop.
Raw = tuple[str, float, str, str, bytes, str | None, int, bytes | None, float, bytes | None, bytes | None]


class Journal:
    def __init__(self, store: JournalStore, controls: LiveControls) -> None:
        self._store = store
        self._controls = controls
        self._buffer: collections.deque[Raw] = collections.deque(maxlen=BUFFER)
        self._flushing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def on(self) -> bool:
        return self._controls.current.journal_size > 0

    def time(self) -> float:
        return self._controls.time()

    def record(self, raw: Raw) -> None:
        """Called on the event loop: an append, nothing more (deque appends are thread-safe)."""
        self._buffer.append(raw)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="contactcard-journal", daemon=True)
            self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
        self.flush()

    def forget_pending(self) -> None:
        self._buffer.clear()

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                self._controls.reload()
                self.flush()
            except Exception:  # the database is down: try again next time, the API goes on
                log.warning("request journal: could not reach the database", exc_info=True)

    def flush(self) -> None:
        with self._flushing:
            taken: list[Raw] = []
            while self._buffer:
                taken.append(self._buffer.popleft())
            keep = self._controls.current.journal_size
            if taken and keep > 0:
                self._store.add([_entry(raw) for raw in taken], keep)

    def find(self, query: Query) -> list[Entry]:
        self.flush()
        return self._store.find(query)


def _entry(raw: Raw) -> Entry:
    trace_id, at, method, path, query, phone, status, body, duration, retries, agent = raw
    if phone is None and query:
        given = [v for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True) if k == "phone_number"]
        phone = given[0] if len(given) == 1 else None
    if phone is not None and not _E164.fullmatch(phone):
        phone = None  # whatever a caller put there is not ours to keep
    return Entry(
        trace_id=trace_id,
        at=at,
        method=method[:8],
        path=path[:200],
        phone_number=phone,
        status=status,
        error_code=_error_code(body) if status >= 400 else None,
        duration_ms=round(duration * 1000, 3),
        retry_count=int(retries) if retries is not None and retries.isdigit() and len(retries) < 6 else None,
        user_agent=agent.decode("latin-1")[:200] if agent else None,
    )


def _error_code(body: bytes | None) -> int | None:
    try:
        code = orjson.loads(body or b"")["error"]["code"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return None
    return code if isinstance(code, int) else None
