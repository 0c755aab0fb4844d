"""Figure 12, the webhook figures, on one fresh server (SQLite, or PostgreSQL with
`--workers 2`): in the recorded run (`python -m bench --figures 12`) or alone
(`python -m bench.webhooks`, which prints them). The receiver is `bench/hook_receiver.py`,
a bare ASGI app on uvicorn in a process of its own, answering 200 at once.

- writes under load: PATCH `first_name` over `lines` lines at `connections` connections
  (wrk when installed, else threads in this process), by a partner with no subscription,
  one with one and one with three subscriptions matching every card event, on the same
  server, interleaved over rounds: writes/s and p99 against the partner with none
  (targets ≥ 0.9× and ≤ 1.2× with three);
- during that load: every event's delay from its `created_at` to its arrival (p50, p99),
  the share that arrived, and the drain time from the load's end to the last arrival
  (target: every event, the last within 2 s);
- the answer time of one PATCH at a time with three subscriptions against none (each
  write's deliveries done before the next: what the outbox adds to a write, ≤ 1.1×), and
  the delay of a delivery after its write's answer, one write at a time (p50 ≤ 50 ms);
- deliveries per second draining a backlog written straight into the outbox of one
  subscription, and the server's CPU per delivery (targets ≥ 3,000/s, ≤ 0.3 ms);
- a slow receiver: a subscription whose receiver answers after 5 s, with a backlog of
  1,000, beside a healthy one taking writes: the healthy one's delay p99 (≤ 100 ms).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path

from bench import HarnessError
from bench.config import DEFAULT_OUT, REPO
from bench.load import by_number, run_wrk, write_pairs
from bench.rows import ratios, row, spread
from bench.seed import sqlite_now
from bench.servers import Server, clean_env, contactcard_server, free_port, stop_all

ADMIN = "bench-admin-token"
_NUMBERS = itertools.count(1)
EVENTS = ["contact_card.created", "contact_card.updated", "contact_card.deleted"]
SIDES = (0, 1, 3)  # subscriptions of each partner


class ReceiverProcess:
    """`bench.hook_receiver` on a port of its own, started and stopped by its pid."""

    def __init__(self) -> None:
        self.port = free_port()
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.hook_receiver", "--port", str(self.port)],
            cwd=REPO,
            env=clean_env({}),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                self.count()
                break
            except OSError:
                if time.monotonic() > deadline or self._process.poll() is not None:
                    self.stop()
                    raise HarnessError("the webhook receiver did not start") from None
                time.sleep(0.05)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self._process.pid

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=30) as answer:
            return answer.read()

    def count(self) -> int:
        return int(self._get("/_count"))

    def arrivals(self) -> list[tuple[str, str, str, float]]:
        """(path, webhook-id, created_at, arrival) of each delivery since the last call."""
        return [tuple(a) for a in json.loads(self._get("/_arrivals"))]

    def settled(self, quiet: float = 1.0, most: float = 120.0) -> None:
        """Until nothing arrived for `quiet` seconds."""
        deadline, seen = time.monotonic() + most, -1
        while (now := self.count()) != seen and time.monotonic() < deadline:
            seen = now
            time.sleep(quiet)

    def stop(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()


def _admin(server: Server, method: str, path: str, body: dict | None = None) -> dict:
    status, data = server.call(method, f"/admin/v1{path}", ADMIN, body)
    if status != 200:
        raise HarnessError(f"admin {method} {path} answered {status}: {data[:200]!r}")
    return json.loads(data or b"null")


def _partner(server: Server, lines: int) -> tuple[str, str, list[str]]:
    partner = _admin(server, "POST", "/partners", {"name": f"bench {uuid.uuid4().hex[:6]}"})["id"]
    key = _admin(server, "POST", f"/partners/{partner}/keys")["key"]
    phones = [f"+1777{next(_NUMBERS):07d}" for _ in range(lines)]  # unique: a repeat would be a 409
    conn = server.connection()
    for phone in phones:
        _admin(server, "POST", "/lines", {"partner_id": partner, "phone_number": phone})
        status, _ = server.call(
            "POST", "/v3/contact_card", key, {"phone_number": phone, "first_name": "Seed"}, conn=conn
        )
        if status != 200:
            raise HarnessError(f"seeding a card answered {status}")
    conn.close()
    return partner, key, phones


def _subscribe(server: Server, key: str, url: str) -> str:
    status, data = server.call(
        "POST", "/v3/webhook-subscriptions", key, {"target_url": url, "subscribed_events": EVENTS}
    )
    if status != 201:
        raise HarnessError(f"creating a webhook subscription answered {status}: {data[:200]!r}")
    return json.loads(data)["id"]


def _threaded_load(server: Server, key: str, phones: list[str], seconds: float, connections: int) -> dict:
    """PATCHes at `connections` keep-alive connections, each its own lines (no wrk)."""
    deadline = time.perf_counter() + seconds

    statuses: dict[int, int] = {}

    def run(worker: int) -> tuple[int, list[float]]:
        own = phones[worker::connections] or phones
        conn, done, i, took = server.connection(), 0, 0, []
        while (started := time.perf_counter()) < deadline:
            phone = own[i % len(own)]
            status, _ = server.call(
                "PATCH", by_number(phone), key, {"first_name": f"W{worker}x{i}x{uuid.uuid4().hex[:6]}"}, conn=conn
            )
            took.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
            done += 200 <= status < 300
            i += 1
        conn.close()
        return done, took

    started = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        results = list(pool.map(run, range(connections)))
    elapsed = time.perf_counter() - started
    took = sorted(t for _, ts in results for t in ts)
    ok = sum(done for done, _ in results)
    return {
        "ok_rps": ok / elapsed,
        "ok": ok,
        "p99_ms": _percentile(took, 0.99) * 1000 if took else None,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def _load(server: Server, key: str, phones: list[str], seconds: float, connections: int, work: Path) -> dict:
    wrk = shutil.which("wrk")
    if wrk is None:
        return _threaded_load(server, key, phones, seconds, connections)
    pairs = write_pairs(work / f"pairs-{uuid.uuid4().hex[:6]}.tsv", [(key, phone) for phone in phones])
    result = run_wrk(
        wrk, server.url, pairs, duration=seconds, threads=2, connections=connections, patch_share=1,
        random=True, statuses=True,
    )  # fmt: skip
    ok = sum(n for status, n in result["statuses"].items() if status.startswith("2"))
    # In flight when wrk stopped: answered by the server (their events are real) but not
    # counted by wrk, so the events that arrive may exceed the 2xx answers by that many.
    return {"ok_rps": result["ok_rps"], "ok": ok, "p99_ms": result["p99_ms"], "in_flight": result["in_flight"]}


def _isolated_ms(server: Server, key: str, phones: list[str], count: int) -> float:
    """Median answer time of `count` PATCHes made one at a time, 50 ms apart."""
    conn, seconds = server.connection(), []
    for i in range(count):
        phone = phones[i % len(phones)]
        started = time.perf_counter()
        status, _ = server.call("PATCH", by_number(phone), key, {"first_name": f"I{i}x{started}"}, conn=conn)
        seconds.append(time.perf_counter() - started)
        if not 200 <= status < 300:
            raise HarnessError(f"a PATCH answered {status}")
        time.sleep(0.05)
    conn.close()
    return statistics.median(seconds) * 1000


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and every process under it, so far."""
    total, pending = 0.0, [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            for task in Path(f"/proc/{current}/task").iterdir():
                pending += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return total


def _machine_busy_seconds() -> float:
    """CPU seconds every core of the machine spent not idle, so far (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _cpu_sample(server: Server, receiver: ReceiverProcess) -> dict[str, float]:
    """CPU seconds so far: the machine, the server with its children, the delivery
    children among them, the receiver (to tell what a load on 2 cores is bound by)."""
    delivery = 0.0
    for pid in _descendants(server.pid):
        try:
            if b"deliver" in Path(f"/proc/{pid}/cmdline").read_bytes():
                delivery += _cpu_seconds(pid)
        except OSError:
            continue
    return {
        "machine": _machine_busy_seconds(),
        "server": _cpu_seconds(server.pid),
        "delivery": delivery,
        "receiver": _cpu_seconds(receiver.pid),
    }


def _descendants(pid: int) -> list[int]:
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        try:
            for task in Path(f"/proc/{current}/task").iterdir():
                children = [int(c) for c in (task / "children").read_text().split()]
                found += children
                pending += children
        except OSError:
            continue
    return found


def _cores(before: dict[str, float], after: dict[str, float], seconds: float) -> dict[str, float]:
    """Cores each part kept busy on average (the server's own without its delivery children;
    `other` is the load generator, the bench and everything else on the machine)."""
    used = {k: (after[k] - before[k]) / seconds for k in before}
    return {
        "machine": used["machine"],
        "server": used["server"] - used["delivery"],
        "delivery": used["delivery"],
        "receiver": used["receiver"],
        "other": used["machine"] - used["server"] - used["receiver"],
    }


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def _created(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _delays_ms(
    arrivals: list[tuple[str, str, str, float]], prefix: str, since: float = 0.0
) -> tuple[list[float], set[str], float]:
    """Each first arrival's delay after its event (ms), the event ids, the last arrival;
    only events on paths under `prefix` that happened at `since` or later (a retry of an
    earlier event arriving meanwhile is not the load's)."""
    first: dict[str, tuple[float, float]] = {}
    for path, event_id, created, at in arrivals:
        if path.startswith(prefix) and created and (stamp := _created(created)) >= since:
            first.setdefault(f"{path} {event_id}", (stamp, at))
    delays = [(at - stamp) * 1000 for stamp, at in first.values()]
    return delays, set(first), max((at for _, at in first.values()), default=0.0)


class Outbox:
    """Rows written straight into the server's outbox (a backlog), on either database."""

    def __init__(self, data_dir: Path, database_url: str | None) -> None:
        self._sqlite = database_url is None
        self._target = str(data_dir / "contactcard.db") if self._sqlite else database_url

    def add(self, subscription: str, count: int) -> None:
        now, body = time.time(), '{"api_version":"v3","event_type":"contact_card.updated","data":{}}'
        # About no line (phone_number NULL): a backlog of independent events, not one line's
        # queue (a line's events go one after the other; see docs/webhooks.md).
        rows = [(uuid.uuid4().hex, subscription, body, now) for _ in range(count)]
        if self._sqlite:
            with sqlite3.connect(self._target, timeout=30) as db:
                stamp = sqlite_now()
                db.executemany(
                    "INSERT INTO webhook_deliveries (event_id, subscription_id, event_type, body, status, attempts,"
                    " next_at, created_at) VALUES (?, ?, 'contact_card.updated', ?, 'pending', 0, ?, ?)",
                    [(*r, stamp) for r in rows],
                )
            return
        import psycopg

        from bench.seed import libpq_url

        with psycopg.connect(libpq_url(self._target)) as db, db.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO webhook_deliveries (event_id, subscription_id, event_type, body, status, attempts,"
                " next_at, created_at) VALUES (%s, %s, 'contact_card.updated', %s, 'pending', 0, %s, now())",
                rows,
            )


def measure(
    *,
    rounds: int,
    duration: float,
    connections: int = 64,
    lines: int = 200,
    backlog: int = 3000,
    slow_backlog: int = 1000,
    isolated_writes: int = 50,
    latency_writes: int = 100,
    database_url: str | None = None,
    workers: int = 1,
    delivery: str = "process",
    settings: dict[str, str] | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Every webhook figure, on one fresh server: the raw results. `delivery`: the
    server's `CONTACTCARD_WEBHOOK_DELIVERY` (a child process, the default; or `inline`)."""
    receiver = ReceiverProcess()
    tmp = Path(tempfile.mkdtemp(prefix="contactcard-bench-hooks-"))
    server = contactcard_server(
        "hooks",
        port=free_port(),
        data_dir=tmp / "data",
        log_dir=tmp,
        database_url=database_url,
        settings={
            "CONTACTCARD_ADMIN_TOKEN": ADMIN,
            "CONTACTCARD_IMAGE_ALLOW_PRIVATE": "true",
            "CONTACTCARD_WRITE_BUDGET": "0",
            "CONTACTCARD_WEBHOOK_DELIVERY": delivery,
            **(settings or {}),
        },
        args=["--workers", str(workers)] if workers > 1 else None,
    )
    try:
        server.start().wait_ready()
        partners = {n: _partner(server, lines) for n in SIDES}
        for n in SIDES:
            for i in range(n):
                _subscribe(server, partners[n][1], f"{receiver.url}/s{n}/{i}")
        receiver.settled()  # the seeding's created events
        receiver.arrivals()

        # 1. Writes under load, and the deliveries they make meanwhile.
        writes: dict[int, list[dict]] = {n: [] for n in SIDES}
        for index in range(rounds):
            order = SIDES if index % 2 == 0 else SIDES[::-1]
            for n in order:
                _, key, phones = partners[n]
                began = time.time() - 0.001  # (created_at has milliseconds)
                cpu_before, cpu_began = _cpu_sample(server, receiver), time.perf_counter()
                result = _load(server, key, phones, duration, connections, tmp)
                result["cores"] = _cores(cpu_before, _cpu_sample(server, receiver), time.perf_counter() - cpu_began)
                ended = time.time()
                if n:
                    # Until every event arrived, or 30 s passed with some still missing.
                    expected = result["ok"] * n
                    deadline = time.monotonic() + 30
                    arrivals = []
                    while True:
                        arrivals += receiver.arrivals()
                        delays, ids, last = _delays_ms(arrivals, f"/s{n}/", began)
                        if len(ids) >= expected or time.monotonic() > deadline:
                            break
                        time.sleep(0.1)
                    result.update(
                        expected=expected,
                        arrived=len(ids),
                        delay_p50_ms=_percentile(delays, 0.5) if delays else None,
                        delay_p99_ms=_percentile(delays, 0.99) if delays else None,
                        drain_s=max(0.0, last - ended) if ids else None,
                    )
                writes[n].append(result)
                log(f"  round {index + 1}/{rounds}, {n} subscriptions: {result['ok_rps']:.0f} writes/s, "
                    f"p99 {result['p99_ms']:.1f} ms" + (f", {result['arrived']}/{result['expected']} events, "
                    f"delay p99 {result['delay_p99_ms']:.0f} ms, drained {result['drain_s']:.2f} s after"
                    if n and result["drain_s"] is not None else "")
                    + f"; {_cores_note([result], 'cores')}")  # fmt: skip
                receiver.settled(quiet=0.5)
                receiver.arrivals()

        # 2. One write at a time: what the outbox adds to a write, and the delivery's delay.
        isolated: dict[int, list[float]] = {0: [], 3: []}
        for index in range(rounds):
            for n in (0, 3) if index % 2 == 0 else (3, 0):
                isolated[n].append(_isolated_ms(server, partners[n][1], partners[n][2], isolated_writes))
        receiver.settled(quiet=0.5)
        receiver.arrivals()
        latencies = []
        conn = server.connection()
        _, key, phones = partners[1]
        for i in range(latency_writes):
            _status, _ = server.call(
                "PATCH", by_number(phones[i % len(phones)]), key, {"first_name": f"L{i}"}, conn=conn
            )
            answered, found = time.time(), []
            deadline = time.monotonic() + 5
            while not found and time.monotonic() < deadline:
                time.sleep(0.002)
                found = [a for a in receiver.arrivals() if a[0].startswith("/s1/")]
            if found:
                latencies.append((found[0][3] - answered) * 1000)
        conn.close()

        # 3. Draining a backlog of one subscription, and the server's CPU per delivery.
        outbox = Outbox(tmp / "data", database_url)
        (subscription,) = [s["id"] for s in _subscriptions(server, partners[1][1])]
        receiver.settled(quiet=0.5)
        before = receiver.count()
        outbox.add(subscription, backlog)
        cpu_before, started = _cpu_seconds(server.pid), time.perf_counter()
        deadline = started + 120
        while receiver.count() - before < backlog and time.perf_counter() < deadline:
            time.sleep(0.01)
        drained = receiver.count() - before
        drain_rate = drained / (time.perf_counter() - started)
        cpu_ms = (_cpu_seconds(server.pid) - cpu_before) * 1000 / max(1, drained)
        log(f"  backlog: {drained} of {backlog} at {drain_rate:.0f}/s, {cpu_ms:.3f} ms of CPU each")

        # 4. A slow receiver with a backlog beside a healthy subscription taking writes.
        receiver.settled(quiet=0.5)
        receiver.arrivals()
        slow = _subscribe(server, partners[1][1], f"{receiver.url}/slow/a?delay=5")
        outbox.add(slow, slow_backlog)
        time.sleep(1.0)  # the slow one's attempts are under way
        healthy_delays = []
        conn = server.connection()
        for i in range(100):
            server.call("PATCH", by_number(phones[i % len(phones)]), key, {"first_name": f"S{i}"}, conn=conn)
            time.sleep(0.02)
        conn.close()
        time.sleep(1.0)
        healthy_delays, _, _ = _delays_ms(receiver.arrivals(), "/s1/")
        server.call("DELETE", f"/v3/webhook-subscriptions/{slow}", partners[1][1])
        log(f"  slow receiver: healthy delay p99 {_percentile(healthy_delays, 0.99) if healthy_delays else -1:.0f} ms")
    finally:
        server.stop()
        receiver.stop()
        shutil.rmtree(tmp, ignore_errors=True)

    return {
        "database": "SQLite" if database_url is None else "PostgreSQL",
        "workers": workers,
        "load": {"connections": connections, "lines": lines, "seconds": duration, "wrk": bool(shutil.which("wrk"))},
        "writes": {str(n): writes[n] for n in SIDES},
        "isolated_ms": {"none": isolated[0], "three": isolated[3], "writes": isolated_writes},
        "delivery_latency_ms": {
            "p50": _percentile(latencies, 0.5) if latencies else None,
            "p99": _percentile(latencies, 0.99) if latencies else None,
            "measured": len(latencies),
            "writes": latency_writes,
        },
        "deliveries_per_s": {
            "value": drain_rate,
            "delivered": drained,
            "backlog": backlog,
            "server_cpu_ms_per_delivery": cpu_ms,
        },
        "slow_receiver": {
            "backlog": slow_backlog,
            "healthy_delay_p50_ms": _percentile(healthy_delays, 0.5) if healthy_delays else None,
            "healthy_delay_p99_ms": _percentile(healthy_delays, 0.99) if healthy_delays else None,
            "healthy_delivered": len(healthy_delays),
        },
    }


def _subscriptions(server: Server, key: str) -> list[dict]:
    status, data = server.call("GET", "/v3/webhook-subscriptions", key)
    if status != 200:
        raise HarnessError(f"listing subscriptions answered {status}")
    found = json.loads(data)
    return found.get("subscriptions", found.get("data", [])) if isinstance(found, dict) else found


def _values(results: list[dict], key: str) -> list[float]:
    return [r[key] for r in results if r.get(key) is not None]


def rows_of(result: dict) -> list[dict]:
    """Figure 12's rows from one `measure`."""
    db, writes = result["database"], result["writes"]
    workers = f", {result['workers']} workers" if result["workers"] > 1 else ""
    load = result["load"]
    at = f"{load['connections']} connections{workers}"
    none = writes["0"]
    rows = []
    for n, target in (("1", None), ("3", "webhook_write_rps")):
        side = writes[n]
        title = f"PATCH writes/s at {at}, {n} subscription{'s' if n != '1' else ''} against none"
        rows.append(row(12, db, title, "writes/s", target, info_target=None if target else "webhook_write_rps",
                        subject=spread(_values(side, "ok_rps")), baseline=spread(_values(none, "ok_rps")),
                        ratio=spread(ratios(_values(side, "ok_rps"), _values(none, "ok_rps"))),
                        notes=[_cores_note(none, "none"), _cores_note(side, n)]))  # fmt: skip
    three = writes["3"]
    rows.append(row(12, db, f"PATCH p99 at {at}, 3 subscriptions against none", "ms", "webhook_write_p99",
                    subject=spread(_values(three, "p99_ms")), baseline=spread(_values(none, "p99_ms")),
                    ratio=spread(ratios(_values(three, "p99_ms"), _values(none, "p99_ms")))))  # fmt: skip
    for n in ("1", "3"):
        side = writes[n]
        missing = sum(r["expected"] - r["arrived"] for r in side)
        notes = [
            f"{sum(r['arrived'] for r in side)} events arrived for {sum(r['expected'] for r in side)} 2xx "
            "answers (more: writes in flight when the load stopped)"
        ]
        rows.append(row(12, db, f"drain after the load, {n} subscription(s): last arrival after its end", "s",
                        "webhook_drain_s", subject=spread(_values(side, "drain_s")), broken=missing > 0,
                        notes=notes))  # fmt: skip
        rows.append(row(12, db, f"delivery delay during the load, {n} subscription(s), p99 (p50 in notes)", "ms",
                        None, subject=spread(_values(side, "delay_p99_ms")),
                        notes=[f"p50 {statistics.median(_values(side, 'delay_p50_ms')):.0f} ms"
                               if _values(side, "delay_p50_ms") else "no delay measured"]))  # fmt: skip
    isolated = result["isolated_ms"]
    rows.append(row(12, db, "one PATCH at a time, answer time, three subscriptions against none", "ms",
                    "webhook_write_cost", subject=spread(isolated["three"]), baseline=spread(isolated["none"]),
                    ratio=spread(ratios(isolated["three"], isolated["none"]))))  # fmt: skip
    latency = result["delivery_latency_ms"]
    measured = f"{latency['measured']} of {latency['writes']} measured; p99 {latency['p99']}"
    rows.append(row(12, db, "delivery latency after the answer, one write at a time, p50", "ms",
                    "webhook_latency_ms", subject=spread([latency["p50"]] if latency["p50"] is not None else []),
                    broken=latency["p50"] is None, notes=[measured]))  # fmt: skip
    drain = result["deliveries_per_s"]
    note = f"{drain['delivered']} of a backlog of {drain['backlog']} to one subscription"
    rows.append(row(12, db, "deliveries per second from a backlog", "/s", "webhook_drain",
                    subject=spread([drain["value"]]), broken=drain["delivered"] < drain["backlog"],
                    notes=[note]))  # fmt: skip
    rows.append(row(12, db, "server CPU per delivery from a backlog", "ms", "webhook_cpu_ms",
                    subject=spread([drain["server_cpu_ms_per_delivery"]])))  # fmt: skip
    slow = result["slow_receiver"]
    rows.append(row(12, db, f"healthy subscription's delay p99 beside a 5 s receiver with a backlog of "
                    f"{slow['backlog']}", "ms", "webhook_fair_p99_ms",
                    subject=spread([slow["healthy_delay_p99_ms"]] if slow["healthy_delay_p99_ms"] is not None else []),
                    broken=not slow["healthy_delivered"],
                    notes=[f"{slow['healthy_delivered']} deliveries measured"]))  # fmt: skip
    return rows


def _cores_note(results: list[dict], side: str) -> str:
    """The cores each part kept busy during the load, median over the rounds."""
    samples = [r["cores"] for r in results if "cores" in r]
    if not samples:
        return f"{side}: no CPU sample"
    median = {k: statistics.median(s[k] for s in samples) for k in samples[0]}
    return (
        f"{side}: cores busy {median['machine']:.2f} (server {median['server']:.2f}, delivery "
        f"{median['delivery']:.2f}, receiver {median['receiver']:.2f}, load generator and the rest "
        f"{median['other']:.2f})"
    )


def webhook_figure(run) -> list[dict]:
    """Figure 12's rows: SQLite with one process; PostgreSQL with two, when it is there."""
    config = run.config
    quick = config.quick
    options = {
        "rounds": config.rounds,
        "duration": min(config.write_duration, 8),
        "backlog": 1000 if quick else 3000,
        "slow_backlog": 1000,
        "isolated_writes": 20 if quick else 50,
        "latency_writes": 40 if quick else 100,
        "log": run.log,
    }
    run.raw["webhooks"] = {}
    rows = []
    targets = [("SQLite", None, 1)]
    if "PostgreSQL" in run.databases and config.postgres_url:
        targets.append(("PostgreSQL", config.postgres_url, 2))
    for db, url, workers in targets:
        if url is None:
            result = measure(**options)
        else:
            from bench.seed import create_database, drop_database, with_database

            name = f"contactcard_bench_hooks_{uuid.uuid4().hex[:8]}"
            create_database(url, name)
            try:
                result = measure(**options, database_url=with_database(url, name), workers=workers)
            finally:
                drop_database(url, name)
        run.raw["webhooks"][db] = result
        rows += rows_of(result)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--backlog", type=int, default=3000)
    parser.add_argument("--slow-backlog", type=int, default=1000)
    parser.add_argument("--database-url", help="PostgreSQL (SQLAlchemy URL of an existing, empty database)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--delivery", choices=["process", "inline"], default="process")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a server setting for this run, e.g. CONTACTCARD_WEBHOOK_CONCURRENCY=256 (repeatable)",
    )
    options = parser.parse_args()
    try:
        settings = dict(pair.split("=", 1) for pair in options.setting)
    except ValueError:
        parser.error("--setting takes NAME=VALUE")
    try:
        result = measure(
            rounds=options.rounds,
            duration=options.duration,
            connections=options.connections,
            lines=options.lines,
            backlog=options.backlog,
            slow_backlog=options.slow_backlog,
            database_url=options.database_url,
            workers=options.workers,
            delivery=options.delivery,
            settings=settings,
        )
    finally:
        stop_all()
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "webhooks.json").write_text(json.dumps(result, indent=2))
    for line in rows_of(result):
        subject, ratio = line["subject"], line.get("ratio")
        value = f"{subject['median']:.3g}" if subject else "-"
        extra = f" ({ratio['median']:.2f}x)" if ratio else ""
        print(f"{line['title']}: {value} {line['unit']}{extra}{'  BROKEN' if line.get('broken') else ''}"
              f"{'  ' + '; '.join(line['notes']) if line['notes'] else ''}")  # fmt: skip


if __name__ == "__main__":
    main()
