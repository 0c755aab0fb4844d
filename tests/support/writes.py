"""Many writes at once, recorded with their timing, and the checks on the cards they leave.

A `Write` is one POST or PATCH with a first/last name pair used by no other request, so a
stored card names the one request it came from. `fire` sends a batch of writes at the same
time from one asyncio loop and records for each when it was sent, when it was answered and
how: acknowledged (2xx), refused (any other status), never sent (connection refused), or in
flight (sent, no answer: it may or may not have happened).

`card_problems` decides whether a line's card is one that some serial order of the line's
writes could have left (the rule of a linearisable register):

- at most one row; exactly one once a write was acknowledged;
- the row is whole: its name pair is the pair of ONE request of this line, a request
  that may have been carried out (acknowledged, in flight, or a 5xx that does not say
  "nothing stored");
- no acknowledged write was sent after that request was answered (it would have been
  serialised after it, so the card would hold its values or later ones);
- holding an acknowledged write's values, the card is active (nothing sent here re-applies
  the same values, so an acknowledged card only goes inactive under new values);
- active means the line's device shows exactly these values.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, insert, select

from contactcard.store.schema import device_displays
from contactcard.store.schema import lines as line_table
from tests.conftest import new_number
from tests.support.processes import ProcPartner, ServerProcess, issue_key, log_trouble

_names = itertools.count(1)

# 503s whose message says nothing was stored: a card holding such a request's values is a lie.
NOTHING_STORED_CODES = {4005, 4006}


@dataclass
class Write:
    line: str
    method: str  # "POST" or "PATCH"
    first_name: str = ""
    last_name: str = ""
    image_url: str | None = None
    sent: bool = True  # False: the connection was refused, no server saw it
    sent_at: float = math.nan  # monotonic, just before the request left
    answered_at: float | None = None  # monotonic, once the whole answer arrived
    status: int | None = None  # None: no answer
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # the transport failure, if any

    def __post_init__(self) -> None:
        if not self.first_name:
            n = next(_names)
            self.first_name, self.last_name = f"v{n}", f"w{n}"

    @property
    def acknowledged(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def in_flight(self) -> bool:
        """Sent, never answered: it may or may not have been carried out."""
        return self.sent and self.status is None

    @property
    def code(self) -> int | None:
        try:
            return self.body["error"]["code"]
        except (KeyError, TypeError):
            return None

    @property
    def in_doubt(self) -> bool:
        """A `503 4006` saying the change was sent before the database stopped answering:
        it may have been applied (whole)."""
        return self.code == 4006 and "may have been applied" in str(self.body.get("error", {}).get("message"))

    @property
    def may_be_stored(self) -> bool:
        """Whether the card may hold this request's values."""
        if self.acknowledged or self.in_flight or self.in_doubt:
            return True
        return self.status is not None and self.status >= 500 and self.code not in NOTHING_STORED_CODES

    @property
    def finished_at(self) -> float:
        """When the server was certainly done with it (never, for one in flight)."""
        return self.answered_at if self.answered_at is not None else math.inf

    @property
    def names(self) -> tuple[str, str]:
        return (self.first_name, self.last_name)

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"first_name": self.first_name, "last_name": self.last_name}
        if self.image_url is not None:
            body["image_url"] = self.image_url
        if self.method == "POST":
            body["phone_number"] = self.line
        return body

    def __repr__(self) -> str:
        if self.status is not None:
            outcome: object = f"{self.status} {self.code or ''}".strip()
        else:
            outcome = f"in flight ({self.error})" if self.sent else "not sent"
        return f"{self.method} {self.line} {self.first_name}/{self.last_name}: {outcome}"


def client(base_url: str, key: str, timeout: float) -> httpx.AsyncClient:
    """An async client with room for any number of connections at once (one per write)."""
    return httpx.AsyncClient(
        base_url=base_url,
        headers={"authorization": f"Bearer {key}"},
        timeout=timeout,
        limits=httpx.Limits(max_connections=None, max_keepalive_connections=0),
    )


async def send(http: httpx.AsyncClient, write: Write) -> Write:
    write.sent_at = time.monotonic()
    try:
        if write.method == "POST":
            response = await http.post("/v3/contact_card", json=write.payload())
        else:
            response = await http.patch("/v3/contact_card", params={"phone_number": write.line}, json=write.payload())
    except (httpx.ConnectError, httpx.ConnectTimeout):
        write.sent = False
        return write
    except httpx.TransportError as exc:
        write.error = repr(exc)
        return write
    write.answered_at = time.monotonic()
    write.status = response.status_code
    write.headers = dict(response.headers)
    try:
        write.body = response.json()
    except ValueError:
        write.body = response.text
    return write


async def send_all(
    base_urls: Sequence[str],
    key: str,
    writes: Sequence[Write],
    *,
    request_timeout: float,
    deadline: float,
    concurrency: int | None = None,
) -> list[Write]:
    """Send every write at once (or `concurrency` at a time), spread over `base_urls`.

    Writes still unanswered after `deadline` seconds are cancelled and stay in flight,
    with the error saying so.
    """
    clients = [client(url, key, request_timeout) for url in base_urls]
    gate = asyncio.Semaphore(concurrency) if concurrency else None

    async def one(i: int, write: Write) -> Write:
        if gate is None:
            return await send(clients[i % len(clients)], write)
        async with gate:
            return await send(clients[i % len(clients)], write)

    try:
        tasks = [asyncio.ensure_future(one(i, write)) for i, write in enumerate(writes)]
        _, pending = await asyncio.wait(tasks, timeout=deadline)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for write in writes:
            if write.in_flight and write.error is None:
                write.error = f"no answer within the test's deadline of {deadline}s"
    finally:
        for http in clients:
            await http.aclose()
    return list(writes)


def fire(
    base_urls: Sequence[str] | str,
    key: str,
    writes: Sequence[Write],
    *,
    timeout: float = 20.0,
    deadline: float = 30.0,
    concurrency: int | None = None,
) -> list[Write]:
    """`send_all` from synchronous code."""
    urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
    return asyncio.run(send_all(urls, key, writes, request_timeout=timeout, deadline=deadline, concurrency=concurrency))


def create_partner_fast(server: ServerProcess, engine: Engine, lines: int) -> ProcPartner:
    """A partner (and key) made through the admin API, with `lines` new lines inserted in one
    transaction: adding hundreds through the API one by one would take longer than the test."""
    created = server.admin("POST", "/partners", json={"name": f"load partner {new_number()}"})
    assert created.status_code == 200, created.text
    partner_id = created.json()["id"]
    key, key_id = issue_key(server, partner_id)
    numbers = [new_number() for _ in range(lines)]
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            insert(line_table), [{"phone_number": n, "partner_id": partner_id, "created_at": now} for n in numbers]
        )
    return ProcPartner(partner_id, key, key_id, numbers)


def set_up_cards(server: ServerProcess, key: str, lines: Iterable[str], concurrency: int = 8) -> list[Write]:
    """POST a card to each line, a few at a time (a precondition, not the thing tested)."""
    setups = fire(server.base_url, key, [Write(line, "POST") for line in lines], concurrency=concurrency)
    failed = [w for w in setups if w.status != 200 or w.body.get("is_active") is not True]
    assert not failed, f"setting up the cards failed: {failed[:5]}\n{server.log()}"
    return setups


def device_shows(engine: Engine, lines: Iterable[str]) -> dict[str, tuple[str, str | None]]:
    """What each line's (simulated) device shows now, read from its table."""
    lines = list(lines)
    with engine.connect() as conn:
        rows = conn.execute(select(device_displays).where(device_displays.c.phone_number.in_(lines)))
        return {row.phone_number: (row.first_name, row.last_name) for row in rows}


def card_problems(
    line: str, writes: Sequence[Write], rows: Sequence[Any], shown: tuple[str, str | None] | None
) -> Iterator[str]:
    """Everything wrong with `line`'s card rows, given every write ever sent to the line."""
    acked = [w for w in writes if w.acknowledged]
    if len(rows) > 1:
        yield f"{line}: {len(rows)} card rows: {rows}"
        return
    if not rows:
        if acked:
            yield f"{line}: no card, although {acked[-1]!r}"
        return
    (row,) = rows
    origin = [w for w in writes if w.first_name == row.first_name]
    if len(origin) != 1 or origin[0].last_name != row.last_name:
        yield f"{line}: the card {row.first_name}/{row.last_name} is not the pair of one request of this line"
        return
    (source,) = origin
    if not source.may_be_stored:
        yield f"{line}: holds the values of {source!r}, which says nothing was stored"
    overtaken = [w for w in acked if w.sent_at > source.finished_at]
    if overtaken:
        yield f"{line}: holds {source!r}, but {overtaken[-1]!r} was sent after it was answered"
    if source.acknowledged and not (row.is_active and row.ever_active):
        yield f"{line}: holds the acknowledged {source!r} but is inactive (or not marked set up once)"
    if row.is_active and shown != (row.first_name, row.last_name):
        yield f"{line}: active with {row.first_name}/{row.last_name}, but the device shows {shown}"


def answer_problems(writes: Iterable[Write]) -> Iterator[str]:
    """Every acknowledged write was answered 200 with its own values, active (no device fails here)."""
    for write in writes:
        if not write.acknowledged:
            continue
        body = write.body if isinstance(write.body, dict) else {}
        got = (write.status, body.get("phone_number"), body.get("first_name"), body.get("last_name"))
        if got != (200, write.line, write.first_name, write.last_name) or body.get("is_active") is not True:
            yield f"{write!r} acknowledged with {write.body}"


def outcomes(writes: Iterable[Write]) -> str:
    """How a batch of writes went, e.g. `{'200': 250, 'in flight': 6}`."""
    counted = Counter(
        f"{w.status} {w.code or ''}".strip() if w.status is not None else ("in flight" if w.sent else "not sent")
        for w in writes
    )
    return str(dict(sorted(counted.items())))


def first(problems: Sequence[str], limit: int = 15) -> str:
    shown = list(problems[:limit])
    if len(problems) > limit:
        shown.append(f"... and {len(problems) - limit} more")
    return "\n".join(shown)


def log_excerpt(server: ServerProcess) -> str:
    """The server log's first traceback (with its surroundings), or else its last lines."""
    log = "\n".join(
        (server.data_dir / f"{server.name}.{start}.log").read_text(errors="replace")
        for start in range(1, server.starts + 1)
        if (server.data_dir / f"{server.name}.{start}.log").exists()
    )
    return log_trouble(log) or "server log (end): " + log[-800:]


def sigterm(server: ServerProcess, wait: float) -> float | None:
    """SIGTERM the server (its supervisor, with workers); seconds until it exited, or None
    if it was still running after `wait` seconds (then it is left running)."""
    assert server.proc is not None and server.running
    started = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    try:
        server.proc.wait(wait)
    except subprocess.TimeoutExpired:
        return None
    return time.monotonic() - started


def sockets_to(port: int, pids: Iterable[int]) -> int:
    """How many established TCP connections `pids` hold to a local `port` now (Linux):
    e.g. a server's connections to PostgreSQL."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[3] == "01":  # remote port; ESTABLISHED
                inodes.add(fields[9])
    held = 0
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except (FileNotFoundError, PermissionError):
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            held += target.startswith("socket:[") and target[8:-1] in inodes
    return held
