"""The request journal: which API requests arrived, for the tests that sent them.

The edge middleware (`http/edge.py`) hands each finished API request to `Journal.record`,
which only appends a tuple to an in-memory buffer: no parsing, no header scan, no I/O on
the event loop. While someone reads the journal (any process, the CLI included: a read
marks it for `READERS_WANT_SECONDS`), a background thread turns the buffer into rows every
`POLL_SECONDS` and stores them in one transaction, so every process on the database shares
one journal, trimmed to `journal_size` rows; nobody reading, nothing is written, and the
buffer keeps the newest requests until someone asks. The same thread reloads the runtime
controls (see `controls.py`). Reading the journal first stores this process's buffer, so a
test sees its own requests at once.

The buffer holds at most `journal_size` requests (the oldest fall out), so under a flood
a flush stores no more rows than the journal keeps anyway: the journal's cost per
request stays an append, whatever the request rate (bench figure 10). While nobody reads,
it holds only the newest `journal_unread` (64 by default): a thousand requests' objects
held on the event loop's heap cost a busy server about 5 % of its GETs, for a journal that
nobody looks at. The test kit, `--ephemeral` and `--open` hold the full `journal_size`,
so a test's first read sees all its requests.

Only what the columns name is kept: never a key, an `Authorization` value or a body. The
phone number is taken from the query (`phone_number`, when it is E.164) or set by the
endpoint that parsed it from a body; the error code is read from the error envelope.
"""

from __future__ import annotations

import collections
import logging
import re
import threading
import time
from collections.abc import Sequence
from typing import Protocol
from urllib.parse import parse_qsl

from contactcard.controls import POLL_SECONDS, LiveControls
from contactcard.journal_entry import API_PREFIXES as API_PREFIXES
from contactcard.journal_entry import Entry as Entry  # re-exported: others name them journal.Entry
from contactcard.journal_entry import Query as Query
from contactcard.journal_entry import Row as Row
from contactcard.settings import JOURNAL_UNREAD

log = logging.getLogger("contactcard")

# A read of the journal asks every process to store its requests for this long (real
# seconds), renewed by later reads once half of it has passed. Nobody reading: no writes,
# which keeps the journal's cost on a busy server to an append per request; and on
# PostgreSQL, where the journal shares the cards' database, no commits to empty the memo.
READERS_WANT_SECONDS = 60.0

# Requests that are the operator's, the reader's or the load balancer's, not the API's (the
# dashboard's pages, its icon from /docs and its live view would otherwise fill the journal
# they show).
# Not API traffic: the operator's own pages and what they load (photos from /cdn, the
# reference's /openapi.json, a browser's /favicon.ico), and the probes and scrapes.
UNJOURNALED = (
    "/admin/",
    "/dashboard",
    "/docs",
    "/cdn/",
    "/openapi.json",
    "/favicon.ico",
    "/healthz",
    "/readyz",
    "/metrics",
)
_E164 = re.compile(r"\+[1-9][0-9]{1,14}")
# The query as the SDKs send it (`phone_number=%2B1555...`), read without parse_qsl.
_ONE_NUMBER = re.compile(rb"phone_number=(?:%2B|\+)([1-9][0-9]{1,14})")


class JournalStore(Protocol):
    def demand(self) -> tuple[float, float]: ...
    def want(self, until: float) -> None: ...

    def add(self, rows: Sequence[Row], keep: int) -> None: ...
    def find(self, query: Query) -> list[Entry]: ...
    def clear(self) -> None: ...
    def close(self) -> None: ...


# What the edge keeps of a request until the flush, parsed off the loop: trace id, method,
# path, query, phone number (when an endpoint parsed one from a body), status, the error
# envelope's code, the duration in seconds, time.time() at the end, and the raw values of
# the `x-stainless-retry-count` and `user-agent` headers (None: not sent).
Raw = tuple[str, str, str, bytes, str | None, int, int | None, float, float, bytes | None, bytes | None]


class Journal:
    def __init__(self, store: JournalStore, controls: LiveControls, *, unread: int = JOURNAL_UNREAD) -> None:
        self._store = store
        self._controls = controls
        self._unread = unread
        self._wanted = False  # someone read the journal within READERS_WANT_SECONDS
        self._buffer: collections.deque[Raw] = collections.deque(maxlen=self._holding())
        self._flushing = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._asked_until = 0.0  # what this process last wrote as `wanted_until`
        self._cleared_at = 0.0  # the journal's last reset, as the last poll saw it

    @property
    def on(self) -> bool:
        return self._controls.current.journal_size > 0

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
        try:
            self.flush()
        except Exception as exc:  # stopping while the database is away: those requests are lost
            log.warning("request journal: %d requests not stored at shutdown (%s)", len(self._buffer), exc)
        self._store.close()

    def forget(self) -> None:
        """Every request so far, buffered or stored (a reset)."""
        with self._flushing:
            self._buffer.clear()
            self._store.clear()

    def _run(self) -> None:
        failing = False
        while not self._stop.wait(POLL_SECONDS):
            try:
                self._controls.reload()
                wanted_until, self._cleared_at = self._store.demand()
                self._wanted = time.time() < wanted_until
                if self._wanted:
                    self.flush()
                elif self._buffer.maxlen != self._holding():
                    with self._flushing:
                        self._resize()
            except Exception as exc:  # the database is away: try again next time, the API goes on
                if not failing:  # once per outage, not twice a second
                    log.warning("request journal and runtime controls: database unreachable (%s)", exc)
                failing = True
            else:
                if failing:
                    log.info("request journal and runtime controls: database reachable again")
                failing = False

    def flush(self) -> None:
        with self._flushing:
            taken: list[Raw] = []
            while self._buffer:
                taken.append(self._buffer.popleft())
            # Taken before the store is reached: if it fails, these requests are lost (a
            # journal for debugging, not a record), and a retry can never store them twice.
            keep = self._controls.current.journal_size
            if self._buffer.maxlen != self._holding():
                self._resize()
            # Held from before a reset (made by any process): forgotten with it.
            taken = [raw for raw in taken if raw[8] >= self._cleared_at]
            if taken and keep > 0:
                offset = self._controls.current.clock_offset
                self._store.add([_row(raw, offset) for raw in taken[-keep:]], keep)

    def _holding(self) -> int:
        """How many requests the buffer holds now (see the module's docstring)."""
        keep = max(1, self._controls.current.journal_size)
        return keep if self._wanted else min(keep, self._unread)

    def _resize(self) -> None:
        # An append racing with the swap may be lost: one request, once, at a change.
        self._buffer = collections.deque(self._buffer, maxlen=self._holding())

    def find(self, query: Query) -> list[Entry]:
        now = time.time()
        self._wanted = True
        if self._asked_until - now < READERS_WANT_SECONDS / 2:
            # Other processes store theirs from their next tick on (within half a second).
            self._asked_until = now + READERS_WANT_SECONDS
            self._store.want(self._asked_until)
        self.flush()
        return self._store.find(query)


def _row(raw: Raw, offset: float) -> Row:
    trace_id, method, path, query, phone, status, code, duration, wall, retries, agent = raw
    if phone is None and query:
        phone = phone_from_query(query)
    if phone is not None and not _E164.fullmatch(phone):
        phone = None  # whatever a caller put there is not ours to keep
    return (
        trace_id,
        wall - duration + offset,  # when it arrived, on the server's clock
        method[:8],
        path[:200],
        phone,
        status,
        code if status >= 400 else None,
        round(duration * 1000, 3),
        int(retries) if retries is not None and retries.isdigit() and len(retries) < 6 else None,
        _agent(agent) if agent else None,
    )


def _agent(raw: bytes) -> str:
    # Browsers and SDKs send UTF-8 (a product name in any script); bytes that are not UTF-8
    # are read as Latin-1, HTTP's historical charset, rather than lost.
    try:
        text = raw.decode()
    except UnicodeDecodeError:
        text = raw.decode("latin-1")
    return text[:200]


def phone_from_query(query: bytes) -> str | None:
    """The one `phone_number` of a raw query string, unchecked (None: none, or several)."""
    quick = _ONE_NUMBER.fullmatch(query)
    if quick is not None:
        return "+" + quick.group(1).decode()
    given = [v for k, v in parse_qsl(query.decode("latin-1"), keep_blank_values=True) if k == "phone_number"]
    return given[0] if len(given) == 1 else None
