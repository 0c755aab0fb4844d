"""PostgreSQL frozen or stopped under a running server, on a cluster of the test's own.

A frozen server (SIGSTOP to every process of the cluster: a partition, a wedged disk)
keeps its connections open and answers nothing; a stopped one refuses them. Either way:

- GET by number, GET all, PATCH, POST and an admin call each answer `503 4006`, with
  `Retry-After` and `x-should-retry: true`, within `CONTACTCARD_DATABASE_TIMEOUT` + 1 s
  (a dashboard page: `503` with `Retry-After`);
- writes sent all along from many clients at once are each answered; none answered
  "nothing changed" is applied later, and a card holds the values of one write that may
  have been carried out (acknowledged, or answered "in doubt": sent before the freeze);
  the webhook event of a change is stored exactly when the change is;
- after SIGCONT (or the restart) every kind of request succeeds again within 2 s, and
  once things settle every session on the database is one the server still holds open:
  no abandoned connection left in a pool, none left running on the server.

And processes that start at the same moment on an empty database all come up, with
exactly one demo partner, one key and its three lines.

The shared PostgreSQL of the other tests is never touched: each test's cluster is made
with `initdb` and run with `pg_ctl` in a temporary folder (`tests/support/own_cluster.py`).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from sqlalchemy import create_engine, select
from sqlalchemy.pool import NullPool

from contactcard.store.schema import api_keys, cards, lines, partners, webhook_deliveries
from tests.conftest import ADMIN_TOKEN
from tests.dashboard.conftest import signed_in_http
from tests.support.own_cluster import OwnCluster, own_cluster, wait_for
from tests.support.processes import ServerProcess, _children, create_partner, script
from tests.support.writes import Write, card_problems, device_shows, fire, first, outcomes, send_all

pytestmark = pytest.mark.slow

DATABASE_TIMEOUT = 2.0
BOUND = DATABASE_TIMEOUT + 1.0  # "within the database timeout plus a second"
RECOVERY = 2.0  # seconds after the database is back within which every request succeeds
SETTLE = 10.0  # seconds for sessions the server abandoned to end once the database runs
CARD_EVENTS = ["contact_card.created", "contact_card.updated", "contact_card.deleted"]


@pytest.fixture(scope="module")
def cluster() -> Iterator[OwnCluster]:
    with own_cluster() as made:
        yield made


def _database(cluster: OwnCluster) -> str:
    """A fresh database on the cluster: each test starts empty."""
    name = f"cc_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(cluster.conninfo, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return cluster.url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def servers() -> Iterator[list[ServerProcess]]:
    started: list[ServerProcess] = []
    try:
        yield started
    finally:
        for server in started:
            server.stop()


def _server(tmp_path: Path, url: str, name: str = "server", demo: bool = False) -> ServerProcess:
    return ServerProcess(
        tmp_path / name,
        url,
        name=name,
        demo=demo,
        extra_env={
            "CONTACTCARD_WRITE_BUDGET": "0",
            "CONTACTCARD_DATABASE_TIMEOUT": str(DATABASE_TIMEOUT),
            "CONTACTCARD_IMAGE_ALLOW_PRIVATE": "true",  # the webhook target below is local
        },
    )


class Probes:
    """One request of each kind, each a fresh write where it writes; all recorded."""

    def __init__(self, server: ServerProcess, key: str, patched: list[str], fresh: list[str]) -> None:
        self.server = server
        self.http = server.http(key, timeout=BOUND + 5)
        self.patched = patched
        self.fresh = list(fresh)
        self.writes: list[Write] = []
        self.dashboard, _ = signed_in_http(server.base_url)
        self.dashboard.timeout = httpx.Timeout(BOUND + 5)

    def each(self) -> list[tuple[str, Callable[[], httpx.Response]]]:
        return [
            ("GET one", lambda: self.http.get("/v3/contact_card", params={"phone_number": self.patched[0]})),
            ("GET all", lambda: self.http.get("/v3/contact_card")),
            ("PATCH", lambda: self._write(Write(self.patched[0], "PATCH"))),
            ("POST", lambda: self._write(Write(self.fresh[0], "POST"))),
            ("admin", lambda: self.server.admin("GET", "/partners")),
            ("dashboard", lambda: self.dashboard.get("/dashboard/partners")),
        ]

    def _write(self, write: Write) -> httpx.Response:
        self.writes.append(write)
        write.sent_at = time.monotonic()
        if write.method == "POST":
            response = self.http.post("/v3/contact_card", json=write.payload())
        else:
            response = self.http.patch("/v3/contact_card", params={"phone_number": write.line}, json=write.payload())
        write.answered_at = time.monotonic()
        write.status, write.headers = response.status_code, dict(response.headers)
        write.body = response.json()
        if write.method == "POST":
            self.fresh.pop(0)  # set up, or maybe (in doubt): the next POST takes another line
        return response


def _refusal_problems(what: str, took: float, response: httpx.Response | None) -> list[str]:
    if response is None:
        return [f"{what}: no answer after {took:.1f}s"]
    try:
        body = response.json()
    except ValueError:
        body = response.text
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    if what.startswith("dashboard"):  # a page, not the API's envelope
        code = 4006 if response.status_code == 503 else None
    problems = []
    if (response.status_code, code) != (503, 4006):
        problems.append(f"{what}: {response.status_code} {body} after {took:.1f}s, not 503 4006")
    elif took > BOUND:
        problems.append(f"{what}: 503 4006 after {took:.2f}s, over {BOUND}s")
    headers = response.headers
    if response.status_code == 503 and not (
        headers.get("retry-after", "").isdigit()
        and (headers.get("x-should-retry") == "true" or what.startswith("dashboard"))
    ):
        problems.append(f"{what}: no Retry-After / x-should-retry: true: {dict(headers)}")
    return problems


def _timed(call: Callable[[], httpx.Response]) -> tuple[float, httpx.Response | None]:
    began = time.monotonic()
    try:
        response: httpx.Response | None = call()
    except httpx.TimeoutException:
        response = None
    return time.monotonic() - began, response


class Burst:
    """Writes to many lines at once, round after round, from a thread, until stopped."""

    def __init__(self, server: ServerProcess, key: str, lines: list[str]) -> None:
        self._server, self._key, self._lines = server, key, lines
        self.writes: list[Write] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Burst:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        import asyncio

        while not self._stop.is_set():
            batch = [Write(line, "PATCH") for line in self._lines]
            self.writes += batch
            asyncio.run(
                send_all([self._server.base_url], self._key, batch, request_timeout=BOUND + 10, deadline=BOUND + 20)
            )


def _server_ports(server: ServerProcess, port: int) -> dict[int, str]:
    """The server's sockets to the cluster's port, its webhook delivery process's included:
    their local port and TCP state (01: established)."""
    assert server.proc is not None
    found: dict[int, str] = {}
    for pid in (server.proc.pid, *_children(server.proc.pid)):
        found.update(_server_ports_of(pid, port))
    return found


def _server_ports_of(pid: int, port: int) -> dict[int, str]:
    """`_server_ports` of one process."""
    inodes: dict[str, tuple[int, str]] = {}
    for row in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = row.split()
        if int(fields[2].rsplit(":", 1)[1], 16) == port:
            inodes[fields[9]] = (int(fields[1].rsplit(":", 1)[1], 16), fields[3])
    found: dict[int, str] = {}
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return found  # a child that has just left
    for fd in fds:
        try:
            target = fd.readlink().name
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in inodes:
            local, state = inodes[target[8:-1]]
            found[local] = state
    return found


def _server_sockets(server: ServerProcess, port: int) -> Counter[str]:
    return Counter(_server_ports(server, port).values())


def _leftovers(server: ServerProcess, cluster: OwnCluster) -> str:
    """What the server holds and what the cluster runs, side by side (for a failure)."""
    with psycopg.connect(cluster.conninfo, autocommit=True) as connection:
        sessions = connection.execute(
            "SELECT client_port, state, backend_start, left(query, 60) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchall()
    assert server.proc is not None
    owners = {pid: _server_ports_of(pid, cluster.port) for pid in (server.proc.pid, *_children(server.proc.pid))}
    return f"server sockets by process {owners}, sessions {sessions}"


def _no_leftovers(server: ServerProcess, cluster: OwnCluster) -> bool:
    """Every session on the cluster is one the server holds open, and it holds no other."""
    held = _server_sockets(server, cluster.port)
    return set(held) <= {"01"} and held["01"] == cluster.sessions()


def _recovered(probes: Probes, since: float) -> list[str]:
    """Every kind of request answered 200 within RECOVERY of `since`; what did not."""
    problems = []
    for what, call in probes.each():
        last: object = None
        while True:
            try:
                response = call()
                last = (response.status_code, response.text[:200])
                if response.status_code == 200:
                    break
            except httpx.TransportError as exc:
                last = repr(exc)
            if time.monotonic() - since > RECOVERY:
                problems.append(f"{what}: still {last} {time.monotonic() - since:.1f}s after the database was back")
                break
            time.sleep(0.05)
    return problems


def _check_outcomes(url: str, partner_lines: list[str], history: list[Write]) -> list[str]:
    """Cards and webhook events against every write sent (see the module's doc)."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            rows = connection.execute(select(cards).where(cards.c.phone_number.in_(partner_lines))).all()
            events = [json.loads(body) for (body,) in connection.execute(select(webhook_deliveries.c.body))]
        shown = device_shows(engine, partner_lines)
    finally:
        engine.dispose()
    by_line: dict[str, list[Write]] = {line: [] for line in partner_lines}
    for write in history:
        by_line[write.line].append(write)
    problems = []
    for line, writes in by_line.items():
        problems += card_problems(line, writes, [r for r in rows if r.phone_number == line], shown.get(line))
    by_name = {write.first_name: write for write in history}
    evented = set()
    for event in events:
        name = event["data"]["contact_card"]["first_name"]
        evented.add(name)
        write = by_name.get(name)
        if write is not None and not write.may_be_stored:
            problems.append(f"an event for {write!r}, which says nothing changed")
    for row in rows:
        if row.first_name in by_name and row.first_name not in evented:
            problems.append(f"{row.phone_number} holds {by_name[row.first_name]!r} without its event")
    for write in history:
        if write.acknowledged and write.first_name not in evented:
            problems.append(f"no event for the acknowledged {write!r}")
    return problems


def _outage(cluster: OwnCluster, tmp_path: Path, servers: list[ServerProcess], how: str) -> None:
    url = _database(cluster)
    server = _server(tmp_path, url)
    servers.append(server)
    server.start()
    partner = create_partner(server, lines=40)
    burst_lines, patched, fresh = partner.lines[:12], partner.lines[12:14], partner.lines[14:]
    client = server.client(partner.key)
    client.webhook_subscriptions.create(target_url="http://127.0.0.1:9/hook", subscribed_events=CARD_EVENTS)
    setups = fire(
        server.base_url, partner.key, [Write(line, "POST") for line in [*burst_lines, *patched]], concurrency=8
    )
    assert all(w.status == 200 for w in setups), first([repr(w) for w in setups])
    probes = Probes(server, partner.key, patched, fresh)
    assert not _recovered(probes, time.monotonic())  # warm: every path has its connection
    assert wait_for(lambda: _no_leftovers(server, cluster), SETTLE)

    problems: list[str] = []
    with Burst(server, partner.key, burst_lines) as burst:
        time.sleep(0.3)  # writes under way at every stage when the database goes
        outage = cluster.frozen() if how == "frozen" else cluster.stopped()
        with outage:
            for attempt in (1, 2):  # the second meets whatever the first left behind
                for what, call in probes.each():
                    took, response = _timed(call)
                    problems += _refusal_problems(f"{what} #{attempt}", took, response)
        back = time.monotonic()
        problems += _recovered(probes, back)
        time.sleep(0.3)  # and writes while it recovers
    unanswered = [w for w in burst.writes if w.status is None]
    assert not problems, first(problems) + "\n" + server.log()
    assert not unanswered, first([repr(w) for w in unanswered])
    # Each write refused past a deadline is counted by how (expired: never sent; in doubt).
    counted = {outcome: _counted(server, outcome) for outcome in ("expired", "in_doubt")}
    told = Counter("in_doubt" if w.in_doubt else "other" for w in [*burst.writes, *probes.writes])
    assert counted["in_doubt"] == told["in_doubt"], (counted, told)
    print(f"{how}: burst {outcomes(burst.writes)}, counted {counted}")
    settled = wait_for(lambda: _no_leftovers(server, cluster), SETTLE)
    assert settled, _leftovers(server, cluster)
    outcome_problems = _check_outcomes(url, partner.lines, [*setups, *burst.writes, *probes.writes])
    assert not outcome_problems, first(outcome_problems)


@pytest.mark.timed  # a bound in seconds: run alone, after the parallel run
def test_a_frozen_database_costs_each_request_its_timeout_and_changes_nothing_unannounced(cluster, tmp_path, servers):
    _outage(cluster, tmp_path, servers, "frozen")


@pytest.mark.timed  # a bound in seconds: run alone, after the parallel run
def test_a_stopped_database_costs_each_request_its_timeout_and_changes_nothing_unannounced(cluster, tmp_path, servers):
    _outage(cluster, tmp_path, servers, "stopped")


def _start_together(started: list[ServerProcess]) -> None:
    """Start every server at the same moment, as an orchestrator does after a deploy, and
    fail with the first one that did not come up."""
    failures: list[str] = []

    def start(server: ServerProcess) -> None:
        try:
            server.start()
        except AssertionError as exc:
            failures.append(str(exc))

    threads = [threading.Thread(target=start, args=(server,)) for server in started]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert not failures, first(failures)


def _made(url: str) -> tuple[list[str], int, int]:
    """The partners' names, and how many keys and lines the database holds."""
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return (
                sorted(name for (name,) in connection.execute(select(partners.c.name))),
                len(connection.execute(select(api_keys.c.id)).all()),
                len(connection.execute(select(lines.c.phone_number)).all()),
            )
    finally:
        engine.dispose()


# A race shows by repetition: each run of the suite starts four processes together three
# times (and the seeded start twice); CONTACTCARD_RACE_ROUNDS sets more for a longer hunt.
RACE_ROUNDS = int(os.environ.get("CONTACTCARD_RACE_ROUNDS", "3"))


@pytest.mark.parametrize("round_", range(RACE_ROUNDS))
def test_processes_starting_together_on_an_empty_database_make_one_demo_partner(cluster, tmp_path, servers, round_):
    url = _database(cluster)
    started = [_server(tmp_path, url, name=f"server{i}", demo=True) for i in range(4)]
    servers.extend(started)
    _start_together(started)
    names, keys, numbers = _made(url)
    assert (len(names), keys, numbers) == (1, 1, 3), f"partners, keys, lines: {names}, {keys}, {numbers}"


# --- the writer itself, on a frozen cluster: which writes may land, which never --------------


def test_writes_queued_at_their_deadline_never_land_and_one_sent_lands_whole_or_not_at_all(cluster):
    import asyncio

    from contactcard.store.core import Stmt, WriteExpired, WriteInDoubt, Writer
    from contactcard.store.core.postgres import postgres_writer

    url = _database(cluster)
    conninfo = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute("CREATE TABLE landed (name text PRIMARY KEY)")

    def insert(*names: str) -> list[Stmt]:
        return [Stmt("INSERT INTO landed (name) VALUES (:name)", {"name": name}) for name in names]

    async def scenario() -> dict[str, BaseException | None]:
        outcomes: dict[str, BaseException | None] = {}

        async def run(writer: Writer, name: str, *names: str) -> None:
            try:
                await writer.run(insert(*names))
                outcomes[name] = None
            except Exception as exc:
                outcomes[name] = exc

        # `warm` holds a connection when the freeze comes: its next batch is sent, unanswered.
        warm = postgres_writer(conninfo, timeout=DATABASE_TIMEOUT, reads=False)
        # `cold` has none: its writer thread waits to connect while its writes sit queued.
        cold = postgres_writer(conninfo, timeout=1.0, reads=False)
        try:
            await warm.run(insert("before"))
            with cluster.frozen():
                sent = asyncio.ensure_future(run(warm, "sent", "sent-1", "sent-2"))
                await asyncio.sleep(0.5)  # taken and sent: what follows queues behind it
                behind = asyncio.ensure_future(run(warm, "behind", "behind-1"))
                queued = asyncio.ensure_future(run(cold, "queued", "queued-1"))
                began = time.monotonic()
                await asyncio.gather(sent, behind, queued)
                outcomes["took"] = None
                took = time.monotonic() - began
            assert took < BOUND, f"answered after {took:.1f}s"
            # After the thaw each writer works again, on a new connection.
            await asyncio.wait_for(warm.run(insert("after-warm")), RECOVERY + DATABASE_TIMEOUT)
            await asyncio.wait_for(cold.run(insert("after-cold")), RECOVERY + DATABASE_TIMEOUT)
        finally:
            warm.close()
            cold.close()
        return outcomes

    outcomes = asyncio.run(scenario())
    assert isinstance(outcomes["sent"], WriteInDoubt), outcomes
    assert isinstance(outcomes["queued"], WriteExpired), outcomes
    assert outcomes["behind"] is not None and not isinstance(outcomes["behind"], WriteInDoubt), outcomes

    def landed() -> set[str]:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            return {name for (name,) in connection.execute("SELECT name FROM landed").fetchall()}

    # The abandoned session settles once the server runs again; then nothing changes more.
    assert wait_for(lambda: cluster.sessions() == 0, SETTLE), cluster.sessions()
    names = landed()
    assert {"before", "after-warm", "after-cold"} <= names
    assert not names & {"behind-1", "queued-1"}, f"written after their caller was told not: {names}"
    assert names & {"sent-1", "sent-2"} in (set(), {"sent-1", "sent-2"}), f"half a transaction: {names}"


def _counted(server: ServerProcess, outcome: str) -> float:
    metrics = httpx.get(f"{server.base_url}/metrics", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}).text
    wanted = f'contactcard_writes_total{{outcome="{outcome}"}} '
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines() if line.startswith(wanted))


@pytest.mark.timed  # a bound in seconds: run alone, after the parallel run
def test_a_write_whose_commit_was_sent_is_answered_in_doubt_at_the_deadline(cluster, tmp_path, servers):
    url = _database(cluster)
    server = _server(tmp_path, url)
    servers.append(server)
    server.start()
    partner = create_partner(server, lines=1)
    (line,) = partner.lines
    server.client(partner.key).webhook_subscriptions.create(
        target_url="http://127.0.0.1:9/hook", subscribed_events=CARD_EVENTS
    )
    setup = fire(server.base_url, partner.key, [Write(line, "POST")])
    assert setup[0].status == 200, setup
    # A slow device: the PATCH stores its values (inactive, with its event), waits a second
    # for the device, then sends the device's step: into the freeze.
    script(server, line, apply_delay=1.0)
    patch = Write(line, "PATCH")
    sender = threading.Thread(target=lambda: fire(server.base_url, partner.key, [patch], timeout=BOUND + 10))
    sender.start()
    time.sleep(0.5)
    with cluster.frozen():
        sender.join(DATABASE_TIMEOUT + 10)
    assert patch.status == 503 and patch.in_doubt, patch.body
    assert patch.headers.get("retry-after", "").isdigit() and patch.headers.get("x-should-retry") == "true"
    assert patch.answered_at is not None and patch.answered_at - patch.sent_at < 0.5 + 1.0 + BOUND
    assert _counted(server, "in_doubt") == 1
    assert wait_for(lambda: _no_leftovers(server, cluster), SETTLE)
    problems = _check_outcomes(url, partner.lines, [*setup, patch])
    assert not problems, first(problems)


class _Seeded(ServerProcess):
    seed: Path | None = None

    def command(self) -> list[str]:
        assert self.seed is not None
        return [*super().command(), "--seed", str(self.seed)]


@pytest.mark.parametrize("round_", range(max(2, RACE_ROUNDS - 1)))
def test_processes_starting_together_with_one_seed_load_it_once(cluster, tmp_path, servers, round_):
    url = _database(cluster)
    seed = tmp_path / "seed.json"
    seed.write_text(
        json.dumps(
            {
                "partners": [
                    {"name": "Acme", "keys": [f"seed-key-acme-{uuid.uuid4().hex}"], "lines": ["+15552220001"]},
                    {"name": "Globex", "keys": [f"seed-key-globex-{uuid.uuid4().hex}"], "lines": ["+15552220002"]},
                ]
            }
        )
    )
    started = []
    for i in range(3):
        server = _Seeded(tmp_path / f"server{i}", url, name=f"server{i}", demo=True)
        server.seed = seed
        started.append(server)
    servers.extend(started)
    _start_together(started)
    assert _made(url) == (["Acme", "Globex"], 2, 2)
