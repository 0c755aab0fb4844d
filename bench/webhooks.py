"""Figure 12, the webhook figures, measured on one SQLite server: in the recorded run
(`python -m bench --figures 12`) or alone (`python -m bench.webhooks`, which prints them):

- write cost: the answer time of one PATCH at a time by a partner with three matching
  subscriptions against a partner with none, on the same server, interleaved over rounds
  (target ≤ 1.1×); writes/s at 16 connections beside it, the deliveries made during the
  load (information: ≥ 0.91× is what it would have);
- delivery latency: from a PATCH's answer to the delivery's arrival at a receiver on
  127.0.0.1, one write at a time (target p50 ≤ 50 ms; p99 reported);
- deliveries per second from one process: a backlog of pending deliveries written
  straight into the outbox, drained by the server's worker (target ≥ 500/s).

The receiver is a threaded `http.server` in this process; its own cost is part of the
latency and bounds the drain rate (it answers on the same 2 cores).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from bench import HarnessError
from bench.config import DEFAULT_OUT
from bench.rows import ratios, row, spread
from bench.seed import sqlite_now
from bench.servers import Server, contactcard_server, free_port, stop_all

ADMIN = "bench-admin-token"
_NUMBERS = itertools.count(1)
EVENTS = ["contact_card.created", "contact_card.updated", "contact_card.deleted"]


class Receiver:
    """Counts deliveries; remembers when each `webhook-id` first arrived (perf_counter)."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self.by_name: dict[str, float] = {}  # first_name of the card -> first arrival
        self.count = 0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive: the worker reuses its connection

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                now = time.perf_counter()
                name = json.loads(body).get("data", {}).get("contact_card", {}).get("first_name", "")
                with receiver._lock:
                    receiver.count += 1
                    receiver.arrived.setdefault(self.headers.get("webhook-id", ""), now)
                    receiver.by_name.setdefault(name, now)
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"


def _partner(server: Server, lines: int) -> tuple[str, str, list[str]]:
    def admin(method: str, path: str, body: dict | None = None) -> dict:
        conn = server.connection()
        conn.request(
            method,
            f"/admin/v1{path}",
            body=json.dumps(body) if body else None,
            headers={"Authorization": f"Bearer {ADMIN}", "Content-Type": "application/json"},
        )
        answer = conn.getresponse()
        data = json.loads(answer.read() or b"null")
        conn.close()
        assert answer.status == 200, data
        return data

    partner = admin("POST", "/partners", {"name": f"bench {uuid.uuid4().hex[:6]}"})["id"]
    key = admin("POST", f"/partners/{partner}/keys")["key"]
    phones = [f"+1777{next(_NUMBERS):07d}" for _ in range(lines)]  # unique: a repeat would be a 409
    conn = server.connection()
    for phone in phones:
        admin("POST", "/lines", {"partner_id": partner, "phone_number": phone})
        status, _ = server.call(
            "POST", "/v3/contact_card", key, {"phone_number": phone, "first_name": "Seed"}, conn=conn
        )
        assert status == 200, (status, _)
    conn.close()
    return partner, key, phones


def _patch_rate(server: Server, key: str, phones: list[str], seconds: float, connections: int) -> float:
    """2xx PATCHes per second at `connections` keep-alive connections, each its own lines."""
    deadline = time.perf_counter() + seconds

    def run(worker: int) -> int:
        own = phones[worker::connections]
        conn, done, i = server.connection(), 0, 0
        while time.perf_counter() < deadline:
            phone = own[i % len(own)]
            status, _ = server.call(
                "PATCH",
                f"/v3/contact_card?phone_number=%2B{phone[1:]}",
                key,
                {"first_name": f"W{worker}x{i}"},
                conn=conn,
            )
            done += 200 <= status < 300
            i += 1
        conn.close()
        return done

    started = time.perf_counter()
    with ThreadPoolExecutor(connections) as pool:
        total = sum(pool.map(run, range(connections)))
    return total / (time.perf_counter() - started)


def _isolated_ms(server: Server, key: str, phones: list[str], count: int) -> float:
    """Median answer time of `count` PATCHes made one at a time, 50 ms apart."""
    conn, seconds = server.connection(), []
    for i in range(count):
        phone = phones[i % len(phones)]
        started = time.perf_counter()
        status, _ = server.call(
            "PATCH", f"/v3/contact_card?phone_number=%2B{phone[1:]}", key, {"first_name": f"I{i}x{started}"}, conn=conn
        )
        seconds.append(time.perf_counter() - started)
        assert 200 <= status < 300
        time.sleep(0.05)
    conn.close()
    return statistics.median(seconds) * 1000


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    import os

    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _settled(receiver: Receiver, quiet: float = 1.0, most: float = 120.0) -> None:
    """Wait until the load's deliveries are done: nothing arrived for `quiet` seconds."""
    deadline = time.perf_counter() + most
    seen = -1
    while receiver.count != seen and time.perf_counter() < deadline:
        seen = receiver.count
        time.sleep(quiet)


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def measure(
    *,
    rounds: int,
    duration: float,
    connections: int = 16,
    backlog: int = 3000,
    isolated_writes: int = 100,
    latency_writes: int = 200,
    concurrency: int | None = None,
    per_target: int | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Every webhook figure, on one fresh SQLite server: the raw results."""
    receiver = Receiver()
    tmp = Path(tempfile.mkdtemp(prefix="contactcard-bench-hooks-"))
    server = contactcard_server(
        "hooks",
        port=free_port(),
        data_dir=tmp / "data",
        log_dir=tmp,
        settings={
            "CONTACTCARD_ADMIN_TOKEN": ADMIN,
            "CONTACTCARD_IMAGE_ALLOW_PRIVATE": "true",
            "CONTACTCARD_WRITE_BUDGET": "0",
            # The server's own defaults unless asked otherwise (the standalone's options).
            **({"CONTACTCARD_WEBHOOK_CONCURRENCY": str(concurrency)} if concurrency else {}),
            **({"CONTACTCARD_WEBHOOK_CONCURRENCY_PER_TARGET": str(per_target)} if per_target else {}),
        },
    )
    try:
        server.start().wait_ready()
        _, plain_key, plain_lines = _partner(server, 128)
        _, hooked_key, hooked_lines = _partner(server, 128)
        for name in ("a", "b", "c"):
            status, _ = server.call(
                "POST",
                "/v3/webhook-subscriptions",
                hooked_key,
                {"target_url": f"{receiver.url}/{name}", "subscribed_events": EVENTS},
            )
            if status != 201:
                raise HarnessError(f"creating a webhook subscription answered {status}")
        _settled(receiver)  # the seeding's created events drain

        # 1. Write cost. Under load: writes/s at N connections, deliveries included, on the
        # same cores (the receiver in this process shares them too). Isolated: the answer
        # time of one PATCH at a time, a pause after each so that its deliveries are done
        # before the next (the cost the outbox itself adds to a write).
        sides = [("none", plain_key, plain_lines), ("three", hooked_key, hooked_lines)]
        rates: dict[str, list[float]] = {"none": [], "three": []}
        isolated: dict[str, list[float]] = {"none": [], "three": []}
        for index in range(rounds):
            for side, key, lines in sides if index % 2 == 0 else sides[::-1]:
                rates[side].append(_patch_rate(server, key, lines, duration, connections))
                _settled(receiver)  # the deliveries of this side are done before the next
                log(f"  round {index + 1}/{rounds} writes/s, {side} subscriptions: {rates[side][-1]:.0f}")
        for index in range(rounds):
            for side, key, lines in sides if index % 2 == 0 else sides[::-1]:
                isolated[side].append(_isolated_ms(server, key, lines, isolated_writes))
            log(f"  round {index + 1}/{rounds} one write at a time: {isolated['three'][-1]:.2f} ms with three, "
                f"{isolated['none'][-1]:.2f} ms with none")  # fmt: skip

        # 2. Latency from the answer to the arrival, one write at a time.
        _settled(receiver)
        latencies = []
        conn = server.connection()
        for i in range(latency_writes):
            name = f"Latency {i}"
            status, _ = server.call(
                "PATCH",
                f"/v3/contact_card?phone_number=%2B{hooked_lines[i % 128][1:]}",
                hooked_key,
                {"first_name": name},
                conn=conn,
            )
            answered = time.perf_counter()
            deadline = answered + 5
            while name not in receiver.by_name and time.perf_counter() < deadline:
                time.sleep(0.0005)
            if name in receiver.by_name:
                latencies.append((receiver.by_name[name] - answered) * 1000)
        conn.close()
        log(f"  delivery latency: {len(latencies)} of {latency_writes} measured")

        # 3. Drain rate: a backlog written straight into the outbox of the first subscription.
        _settled(receiver)
        db = sqlite3.connect(tmp / "data" / "contactcard.db", timeout=30)
        (subscription,) = db.execute("SELECT id FROM webhook_subscriptions ORDER BY created_at LIMIT 1").fetchone()
        before = receiver.count
        now, stamp = time.time(), sqlite_now()
        body = '{"api_version":"v3","event_type":"contact_card.updated","data":{}}'
        db.executemany(
            "INSERT INTO webhook_deliveries (event_id, subscription_id, event_type, body, status, attempts, next_at,"
            " created_at) VALUES (?, ?, 'contact_card.updated', ?, 'pending', 0, ?, ?)",
            [(uuid.uuid4().hex, subscription, body, now, stamp) for _ in range(backlog)],
        )
        db.commit()
        cpu_before = _cpu_seconds(server.pid)
        started = time.perf_counter()
        deadline = started + 120
        while receiver.count - before < backlog and time.perf_counter() < deadline:
            time.sleep(0.01)
        drained = receiver.count - before
        drain_rate = drained / (time.perf_counter() - started)
        cpu_ms = (_cpu_seconds(server.pid) - cpu_before) * 1000 / max(1, drained)
        db.close()
        log(f"  drain: {drained} of {backlog} at {drain_rate:.0f}/s")
    finally:
        server.stop()
        receiver.server.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)

    return {
        "writes_per_s": {**rates, "connections": connections, "seconds": duration},
        "isolated_ms": {**isolated, "writes": isolated_writes},
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
    }


def webhook_figure(run) -> list[dict]:
    """Figure 12's rows (SQLite), from one `measure` with the run's rounds and durations."""
    config = run.config
    quick = config.quick
    result = measure(
        rounds=config.rounds,
        # Information only, and each second of load leaves seconds of deliveries to settle.
        duration=min(config.write_duration, 3),
        backlog=1000 if quick else 3000,
        isolated_writes=20 if quick else 50,
        latency_writes=40 if quick else 200,
        log=run.log,
    )
    run.raw["webhooks"] = result
    rates, isolated = result["writes_per_s"], result["isolated_ms"]
    latency, drain = result["delivery_latency_ms"], result["deliveries_per_s"]
    receiver = "the receiver is a threaded http.server in the bench process, on the same cores"
    rows = [
        row(12, "SQLite", "one PATCH at a time, answer time, three subscriptions against none", "ms",
            "webhook_write_cost", subject=spread(isolated["three"]), baseline=spread(isolated["none"]),
            ratio=spread(ratios(isolated["three"], isolated["none"])),
            notes=[f"{isolated['writes']} writes per side and round, 50 ms apart: each one's deliveries are done "
                   "before the next, so the ratio is what the outbox adds to a write"]),
        row(12, "SQLite", f"PATCH writes/s at {rates['connections']} connections, three against none (info)",
            "req/s", None, info_target="webhook_write_rps", subject=spread(rates["three"]),
            baseline=spread(rates["none"]), ratio=spread(ratios(rates["three"], rates["none"])),
            notes=["three deliveries per write made during the load: the worker and " + receiver]),
    ]  # fmt: skip
    if latency["p50"] is not None:
        measured = f"{latency['measured']} of {latency['writes']} writes, one at a time; {receiver}"
        rows.append(row(12, "SQLite", "delivery latency after the answer, p50", "ms", "webhook_latency_ms",
                        subject=spread([latency["p50"]]), notes=[measured]))  # fmt: skip
        rows.append(row(12, "SQLite", "delivery latency after the answer, p99 (info)", "ms", None,
                        subject=spread([latency["p99"]])))  # fmt: skip
    else:
        rows.append(row(12, "SQLite", "delivery latency after the answer, p50", "ms", "webhook_latency_ms",
                        broken=True, notes=["no delivery arrived within 5 s of its write"]))  # fmt: skip
    note = (f"{drain['delivered']} of a backlog of {drain['backlog']} to one subscription; "
            f"{drain['server_cpu_ms_per_delivery']:.2f} ms of the server's CPU each; {receiver}")  # fmt: skip
    rows.append(row(12, "SQLite", "deliveries per second from one process", "/s", "webhook_drain",
                    subject=spread([drain["value"]]), broken=drain["delivered"] < drain["backlog"],
                    notes=[note]))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--backlog", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, help="CONTACTCARD_WEBHOOK_CONCURRENCY (default: the server's)")
    parser.add_argument(
        "--per-target", type=int, help="CONTACTCARD_WEBHOOK_CONCURRENCY_PER_TARGET (default: the server's)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    options = parser.parse_args()
    try:
        result = measure(
            rounds=options.rounds,
            duration=options.duration,
            connections=options.connections,
            backlog=options.backlog,
            concurrency=options.concurrency,
            per_target=options.per_target,
        )
    finally:
        stop_all()
    options.out.mkdir(parents=True, exist_ok=True)
    (options.out / "webhooks.json").write_text(json.dumps(result, indent=2))
    rates, iso = result["writes_per_s"], result["isolated_ms"]
    print(
        f"writes/s at {options.connections} connections, deliveries included: "
        f"{statistics.median(rates['three']):.0f} with three subscriptions, {statistics.median(rates['none']):.0f} "
        f"with none: {statistics.median(ratios(rates['three'], rates['none'])):.2f}x (information)"
    )
    print(
        f"one write at a time: {statistics.median(iso['three']):.2f} ms with three subscriptions, "
        f"{statistics.median(iso['none']):.2f} ms with none: "
        f"{statistics.median(ratios(iso['three'], iso['none'])):.2f}x (target <= 1.1)"
    )
    lat = result["delivery_latency_ms"]
    if lat["p50"] is not None:
        print(f"delivery latency after the answer: p50 {lat['p50']:.1f} ms, p99 {lat['p99']:.1f} ms (target p50 <= 50)")
    drain = result["deliveries_per_s"]
    print(
        f"deliveries per second from one process: {drain['value']:.0f} ({drain['delivered']} of {drain['backlog']}; "
        f"{drain['server_cpu_ms_per_delivery']:.2f} ms of the server's CPU each; target >= 500)"
    )


if __name__ == "__main__":
    main()
