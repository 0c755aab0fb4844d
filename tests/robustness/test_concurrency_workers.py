"""Three server processes on one PostgreSQL database: `serve --workers 2` and a plain one.

- A burst of 100 concurrent writes (POST and PATCH mixed, several httpx clients, spread
  over both ports and so over all three processes) at ONE number has the result of some
  serial order: only 200/404/409/429/503, never a 500; exactly one POST sets the card up;
  one card row, whose name pair is the pair of one request answered 200 and not one that
  a later answered write must have followed; the device shows it; the budget (when on)
  holds across the processes.
- Two partners writing to their own lines at the same time, reading all their cards in
  between, never see (or change) each other's cards.

Run with the write budget off and with its default (3 per number).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine

from tests.support.processes import (
    NEEDS_POSTGRES,
    ServerProcess,
    attempts,
    card_rows,
    cards_by_phone,
    connections_by_pid,
    create_partner,
    device,
    log_trouble,
    script,
)

pytestmark = pytest.mark.slow

BURST = 100
POSTS = 35  # of BURST; the rest are PATCHes
IN_FLIGHT = 25  # requests sent at the same time
FIRST_APPLY_DELAY = 1.0  # the first apply is slow: a write not really queued behind it shows
SEED = 4242


@dataclass
class Cluster:
    a: ServerProcess  # --workers 2
    b: ServerProcess
    budget: int  # 0: off
    engine: Engine

    @property
    def servers(self) -> list[ServerProcess]:
        return [self.a, self.b]


@pytest.fixture(scope="module", params=[0, 3], ids=["budget-off", "budget-default"])
def started_cluster(request, postgres_url, tmp_path_factory) -> Iterator[Cluster]:
    """Started once per budget setting for the module."""
    if postgres_url is None:
        pytest.skip(NEEDS_POSTGRES)
    budget = request.param
    # The default budget is the server's own default: the variable is not set at all.
    env = {"CONTACTCARD_WRITE_BUDGET": "0"} if budget == 0 else {}
    tmp = tmp_path_factory.mktemp(f"cluster-budget{budget}")
    a = ServerProcess(tmp / "a", postgres_url, name="A", workers=2, extra_env=env)
    b = ServerProcess(tmp / "b", postgres_url, name="B", extra_env=env)
    engine = create_engine(postgres_url)
    try:
        a.start()  # one after the other: `serve` seeds a demo partner into an empty database
        b.start()
        assert len(a.worker_pids()) == 2, f"A runs workers {a.worker_pids()}:\n{a.log()}"
        yield Cluster(a, b, budget, engine)
    finally:
        a.stop()
        b.stop()
        engine.dispose()


@pytest.fixture
def cluster(started_cluster) -> Iterator[Cluster]:
    """The cluster, checked after each test: every process and worker alive, and nothing
    in their logs from this test that is a traceback or an unhandled error (a 500)."""
    cluster = started_cluster
    marks = {server.name: len(server.log(None)) for server in cluster.servers}
    yield cluster
    for server in cluster.servers:
        assert server.running, f"{server.name} died:\n{server.log()}"
        assert len(server.worker_pids()) == server.workers, f"{server.name} lost a worker:\n{server.log()}"
        trouble = log_trouble(server.log(None)[marks[server.name] :])
        assert trouble is None, f"{server.name} logged:\n{trouble}"


@dataclass
class Sent:
    i: int
    method: str
    server: str
    first_name: str
    last_name: str
    status: int = 0
    body: Any = None
    headers: Any = None
    sent_at: float = 0.0
    answered_at: float = 0.0

    def __repr__(self) -> str:
        return (
            f"#{self.i} {self.method} via {self.server} {self.first_name}/{self.last_name}: {self.status} {self.body}"
        )


class ConnectionWatch:
    """Samples which server processes hold connections from the test (proof of the spread)."""

    def __init__(self, cluster: Cluster) -> None:
        self.targets = [(server.port, pid) for server in cluster.servers for pid in server.worker_pids()]
        self.seen: dict[int, int] = {pid: 0 for _, pid in self.targets}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ConnectionWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self._stop.is_set():
            for port in {port for port, _ in self.targets}:
                pids = [pid for p, pid in self.targets if p == port]
                for pid, held in connections_by_pid(port, pids).items():
                    self.seen[pid] = max(self.seen[pid], held)
            time.sleep(0.01)


def test_a_burst_at_one_number_is_serialised_across_three_processes(cluster):
    started = time.monotonic()
    a, b = cluster.a, cluster.b
    partner = create_partner(a, lines=1)
    phone = partner.lines[0]
    script(b, phone, apply_delay=FIRST_APPLY_DELAY)

    rng = random.Random(SEED)
    methods = ["POST"] * POSTS + ["PATCH"] * (BURST - POSTS)
    rng.shuffle(methods)
    # Several clients: two per port (A's port is served by its two workers).
    clients = {
        name: [server.http(partner.key, keepalive=False) for _ in range(2)] for name, server in (("A", a), ("B", b))
    }
    requests = [Sent(i, method, "A" if i % 3 else "B", f"F{i:03d}", f"L{i:03d}") for i, method in enumerate(methods)]
    go = threading.Event()

    def fire(sent: Sent) -> Sent:
        http = clients[sent.server][sent.i % 2]
        names = {"first_name": sent.first_name, "last_name": sent.last_name}
        go.wait(10)
        sent.sent_at = time.monotonic()
        if sent.method == "POST":
            response = http.post("/v3/contact_card", json={"phone_number": phone, **names})
        else:
            response = http.patch("/v3/contact_card", params={"phone_number": phone}, json=names)
        sent.answered_at = time.monotonic()
        sent.status, sent.headers = response.status_code, response.headers
        sent.body = response.json()
        return sent

    try:
        with ConnectionWatch(cluster) as watch, ThreadPoolExecutor(IN_FLIGHT) as pool:
            futures = [pool.submit(fire, sent) for sent in requests]
            go.set()
            results = [future.result(60) for future in futures]
    finally:
        for pair in clients.values():
            for http in pair:
                http.close()
    burst_time = time.monotonic() - started

    everything = "\n".join(map(repr, results))
    allowed = {200, 404, 409, 503} | ({429} if cluster.budget else set())
    assert {r.status for r in results} <= allowed, everything

    ok = [r for r in results if r.status == 200]
    posted = [r for r in ok if r.method == "POST"]
    assert len(posted) == 1, f"{len(posted)} POSTs set the card up:\n{everything}"
    (setup,) = posted
    for r in results:
        if r.status == 200:
            assert (r.body["phone_number"], r.body["first_name"], r.body["last_name"], r.body["is_active"]) == (
                phone,
                r.first_name,
                r.last_name,
                True,
            ), r
            assert r is setup or r.answered_at > setup.sent_at, f"{r} answered before the card was set up"
        elif r.status == 404:
            # Only a PATCH served before the first POST: sent before that POST was answered.
            assert r.method == "PATCH" and r.body["error"]["code"] == 2001, r
            assert r.sent_at < setup.answered_at, f"{r} sent after {setup}"
        elif r.status == 409:
            assert r.method == "POST" and r.body["error"]["code"] == 2014, r
            assert r.headers["x-should-retry"] == "false", r
        elif r.status == 429:
            assert r.body["error"]["code"] == 1007, r
            assert r.headers["x-should-retry"] == "false", r
        elif r.status == 503:
            assert r.body["error"]["code"] == 4004, r
    after_setup = [r for r in results if r.method == "PATCH" and r.sent_at > setup.answered_at]
    assert after_setup, f"no PATCH was sent after the setup was answered:\n{everything}"
    if cluster.budget:
        assert len(ok) <= cluster.budget, f"the budget of {cluster.budget} did not hold:\n{everything}"
        assert {r.status for r in after_setup} <= {200, 429}, after_setup
    else:
        assert {r.status for r in after_setup} == {200}, after_setup
    # With the budget off no attempt is recorded: nothing would read it.
    assert attempts(cluster.engine, phone) == (len(ok) if cluster.budget else 0), everything

    rows = card_rows(cluster.engine, phone)
    assert len(rows) == 1, rows
    (row,) = rows
    by_name = {r.first_name: r for r in results}
    final = by_name.get(row.first_name)
    assert final is not None and final.last_name == row.last_name, (
        f"the card {row.first_name}/{row.last_name} is not the pair of one request"
    )
    assert final.status == 200, f"the card holds {final}, which was not answered 200"
    later = [r for r in ok if r.sent_at > final.answered_at]
    assert not later, f"the card holds {final}, but these were sent after it was answered: {later}"
    assert row.is_active and row.ever_active
    shows = device(a, phone)
    assert (shows["first_name"], shows["last_name"], shows["applies"]) == (row.first_name, row.last_name, len(ok))

    # The burst really reached all three processes (A's two workers share its port).
    assert all(held > 0 for held in watch.seen.values()), f"connections per process: {watch.seen}"
    print(
        f"[budget {cluster.budget}] burst of {BURST} in {burst_time:.1f}s: "
        f"{sorted((s, sum(r.status == s for r in results)) for s in {r.status for r in results})}, "
        f"most connections held per process {watch.seen}"
    )


def test_two_partners_hammering_their_lines_never_see_each_other(cluster):
    a, b = cluster.a, cluster.b
    partners = {"P": create_partner(a, lines=3), "Q": create_partner(b, lines=3)}
    owner = {line: tag for tag, partner in partners.items() for line in partner.lines}
    writes_per_line = 17  # ~50 writes per partner
    problems: list[str] = []
    counted = threading.Lock()
    listings: Counter[str] = Counter()  # GETs of all cards, per partner
    statuses: Counter[int] = Counter()  # of the writes

    def hammer(tag: str, line: str, index: int) -> None:
        partner = partners[tag]
        other = partners["Q" if tag == "P" else "P"]
        ports = [a, b] if index % 2 else [b, a]
        with ports[0].http(partner.key) as one, ports[1].http(partner.key) as two:
            for n in range(writes_per_line):
                http = one if n % 2 else two
                names = {"first_name": f"{tag}{line[-4:]}n{n}", "last_name": tag}
                if n == 0:
                    response = http.post("/v3/contact_card", json={"phone_number": line, **names})
                else:
                    response = http.patch("/v3/contact_card", params={"phone_number": line}, json=names)
                with counted:
                    statuses[response.status_code] += 1
                if response.status_code not in ({200, 429} if cluster.budget else {200}):
                    problems.append(f"{tag} write {n} to {line}: {response.status_code} {response.text}")

                listed = (two if n % 2 else one).get("/v3/contact_card")
                with counted:
                    listings[tag] += 1
                if listed.status_code != 200:
                    problems.append(f"{tag} GET all: {listed.status_code} {listed.text}")
                    continue
                seen = [card["phone_number"] for card in listed.json()["contact_cards"]]
                if not set(seen) <= set(partner.lines) or seen != sorted(seen) or line not in seen:
                    problems.append(f"{tag} GET all after writing {line} shows {seen}, owns {partner.lines}")
                foreign = [c for c in listed.json()["contact_cards"] if c["last_name"] != tag]
                if foreign:
                    problems.append(f"{tag} GET all shows another partner's values {foreign}")

                if n % 4 == 3:  # the other partner's line: invisible, and untouchable
                    target = other.lines[n % len(other.lines)]
                    peek = http.get("/v3/contact_card", params={"phone_number": target})
                    poke = http.patch(
                        "/v3/contact_card",
                        params={"phone_number": target},
                        json={"first_name": f"intruder{tag}", "last_name": tag},
                    )
                    for what, response in (("GET", peek), ("PATCH", poke)):
                        if response.status_code != 403 or response.json()["error"]["code"] != 2005:
                            problems.append(f"{tag} {what} of {target}: {response.status_code} {response.text}")

    jobs = [(tag, line, i) for tag, partner in partners.items() for i, line in enumerate(partner.lines)]
    with ThreadPoolExecutor(len(jobs)) as pool:
        for future in [pool.submit(hammer, *job) for job in jobs]:
            future.result(60)
    assert not problems, "\n".join(problems)
    assert all(listings[tag] == writes_per_line * len(partner.lines) for tag, partner in partners.items()), listings

    for line, rows in cards_by_phone(cluster.engine, owner).items():
        assert len(rows) == 1, (line, rows)
        assert rows[0].last_name == owner[line] and rows[0].first_name.startswith(owner[line]), (line, rows)
    print(
        f"[budget {cluster.budget}] two partners: write statuses {dict(statuses)}, "
        f"GETs of all cards per partner {dict(listings)}"
    )
