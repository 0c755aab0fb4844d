"""This process's own commits, and the lines whose GET answers each could change.

PostgreSQL (`CommitLog`): the GET memo's version is the cluster's snapshot (`xmin:xmax:xip`), which
moves on any commit anywhere. Emptying the whole memo on each move makes a mix of writes
and reads pay for every write with every line's next read. Each of this process's write
transactions tells the log its transaction id and the lines it may change (the writer
asks PostgreSQL for the id inside the transaction). When the snapshot moves, the memo asks
which transactions completed in between: if every one of them is known here, only their
lines' answers are dropped; one unknown transaction (another process, the admin CLI, a
statement typed in psql, a rolled-back batch, one known only a moment later) empties the
memo as before. So the memo is never staler than with the whole-memo rule; it only keeps
more when it can prove that nothing else changed.

SQLite (`CountLog`): the version is the `change_count` row, which triggers move in every
transaction that changes a key, a line or a card, whoever runs it (`store/schema.py`).
The one writer thread reads the count when its batch begins and again before it commits,
and tells the log the range and the batch's lines once the commit is done. A move of the
count is accounted for only when this process's ranges chain from the old count to the
new one with no gap: a change by anyone else leaves a gap (their triggers counted too),
and the memo empties. The log is told after the commit, not before: a count can be
reached again after a rolled-back transaction, so a range told before a commit that then
failed could cover someone else's change; told late, a range is at worst unused (the
memo asked in between, saw a gap, emptied).
"""

from __future__ import annotations

import threading

# Past this many completed transactions between two questions (a busy neighbour on the
# cluster) the memo is emptied rather than each one looked up.
MAX_SPAN = 4096
MAX_KNOWN = 100_000  # ids kept while no GET asks; beyond it the log forgets (and the memo empties)


def parse_snapshot(text: str) -> tuple[int, int, frozenset[int]]:
    """`xmin:xmax:xip,...` as PostgreSQL's `pg_snapshot` prints it."""
    xmin, xmax, xip = text.split(":")
    return int(xmin), int(xmax), frozenset(int(x) for x in xip.split(",") if x)


class CommitLog:
    """Thread-safe: writer threads record, the event loop asks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[int, frozenset[str]] = {}

    def record(self, xid: int, lines: frozenset[str]) -> None:
        """Transaction `xid` committed, changing at most the GET answers of `lines`."""
        with self._lock:
            if len(self._known) >= MAX_KNOWN:
                self._known.clear()
            self._known[xid] = lines

    def lines_changed(self, old: object, new: object) -> frozenset[str] | None:
        """The lines whose answers may differ between snapshots `old` and `new`; None
        when that cannot be told (then every answer may)."""
        if not isinstance(old, str) or not isinstance(new, str):
            return None
        try:
            _, old_xmax, old_xip = parse_snapshot(old)
            new_xmin, new_xmax, new_xip = parse_snapshot(new)
        except ValueError:
            return None
        if new_xmax - old_xmax > MAX_SPAN:
            self._forget_below(new_xmin)
            return None
        # Not yet done in `old` (running, or not begun) and done in `new`.
        completed = (old_xip | set(range(old_xmax, new_xmax))) - new_xip
        changed: set[str] = set()
        unknown = False
        with self._lock:
            known = self._known
            for xid in completed:
                lines = known.pop(xid, None)
                if lines is None:
                    unknown = True
                else:
                    changed |= lines
            # Done before `new_xmin` and not asked about: recorded after a question that
            # already counted them as unknown.
            if known and min(known) < new_xmin:
                for xid in [x for x in known if x < new_xmin]:
                    del known[xid]
        return None if unknown else frozenset(changed)

    def _forget_below(self, xmin: int) -> None:
        with self._lock:
            for xid in [x for x in self._known if x < xmin]:
                del self._known[xid]


MAX_RANGES = 4096  # ranges kept while no GET asks; beyond it the oldest are dropped


class CountLog:
    """Thread-safe: the writer thread records, the event loop asks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ranges: dict[int, tuple[int, frozenset[str]]] = {}  # count before: (count after, lines)

    def record(self, before: int, after: int, lines: frozenset[str]) -> None:
        """A committed transaction moved the count from `before` to `after`, changing at most
        the GET answers of `lines`."""
        with self._lock:
            if len(self._ranges) >= MAX_RANGES:
                for old in list(self._ranges)[: MAX_RANGES // 2]:  # told first, so the lowest
                    del self._ranges[old]
            self._ranges[before] = (after, lines)

    def lines_changed(self, old: object, new: object) -> frozenset[str] | None:
        """The lines whose answers may differ between counts `old` and `new`; None when
        that cannot be told (then every answer may)."""
        if not isinstance(old, int) or not isinstance(new, int) or new < old:
            return None
        changed: set[str] = set()
        at = old
        with self._lock:
            ranges = self._ranges
            while at < new:
                step = ranges.pop(at, None)
                if step is None:
                    break
                at, lines = step
                changed |= lines
            if ranges and min(ranges) < new:  # told too late to be used: never will be
                for start in [s for s in ranges if s < new]:
                    del ranges[start]
        return frozenset(changed) if at == new else None
