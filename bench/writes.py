"""Figures 7 and 8: writes, on a database of one partner with `write_lines` lines, each
with a card (the `writes` size of bench/run.py).

7. `PATCH /v3/contact_card?phone_number=<a random line>` with a fresh first name, under wrk at
   1, 64 and 256 connections, against the floor: the same two committed updates per write in
   raw SQL on the same database, with the server's durability settings.
8. 95 % GET by number and 5 % PATCH, at random lines, 64 connections, against pure GETs on
   the same database served with the memo off.

A run can leave writes in flight. After each one the server must answer a PATCH within half
a second, tried for `write_timeout` seconds; a server that does not is restarted, and the
requests left in flight count as failed (`stalled`), as do wrk's timeouts (`write_timeout`).
"""

from __future__ import annotations

import http.client
import random
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime

import orjson

from bench import HarnessError
from bench.figures import check_get_by_number
from bench.load import SOCKET_ERRORS, Side, by_number, wrk_side
from bench.rows import compare, median, row, spread
from bench.seed import libpq_url, sqlite_now
from bench.servers import Server

# Each write of the floor: two committed transactions, as the server's store-then-activate.
FLOOR_SQL = (
    "UPDATE cards SET first_name = {p}, is_active = {no}, updated_at = {p} WHERE phone_number = {p}",
    "UPDATE cards SET is_active = {yes}, updated_at = {p} WHERE phone_number = {p}",
)


def _writes(execute, sql: list[str], phones: list[str], deadline: float, now: Callable, error: type, seed: int):
    """Floor writes at random lines until `deadline`: each write's seconds, and the errors."""
    rng, seconds, errors = random.Random(seed), [], 0
    while (started := time.perf_counter()) < deadline:
        phone = rng.choice(phones)
        try:
            execute(sql[0], (f"Floor {len(seconds)}", now(), phone))
            execute(sql[1], (now(), phone))
        except error:
            errors += 1
            continue
        seconds.append(time.perf_counter() - started)
    return seconds, errors


def _floor_result(seconds: list[float], errors: int, elapsed: float) -> dict:
    ordered = sorted(seconds) or [elapsed]
    rate = len(seconds) / elapsed if elapsed else 0.0
    return {
        "requests": len(seconds),
        "duration_us": elapsed * 1e6,
        "rps": rate,
        "ok_rps": rate,
        "p50_ms": ordered[len(ordered) // 2] * 1000,
        "p99_ms": ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000,
        "errors": errors,
        "status_errors": 0,
        "failed": errors,
    }


def sqlite_floor(path: str, phones: list[str]) -> Callable[[float], dict]:
    """One connection, `journal_mode=WAL`, `synchronous=FULL` (the server's settings)."""
    sql = [q.format(p="?", no=0, yes=1) for q in FLOOR_SQL]

    def measure(duration: float) -> dict:
        conn = sqlite3.connect(path, isolation_level=None, timeout=5)  # autocommit: each UPDATE commits
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            started = time.perf_counter()
            seconds, errors = _writes(conn.execute, sql, phones, started + duration, sqlite_now, sqlite3.Error, 0)
            return _floor_result(seconds, errors, time.perf_counter() - started)
        finally:
            conn.close()

    return measure


def postgres_floor(url: str, phones: list[str], threads: int) -> Callable[[float], dict]:
    """`threads` threads with a connection each (psycopg, autocommit), default durability."""
    import psycopg

    sql = [q.format(p="%s", no="false", yes="true") for q in FLOOR_SQL]

    def measure(duration: float) -> dict:
        deadline: list[float] = []
        ready = threading.Barrier(threads, action=lambda: deadline.append(time.perf_counter() + duration))
        done: list[tuple[list[float], int]] = []

        def work(seed: int) -> None:
            with psycopg.connect(libpq_url(url), autocommit=True, options="-c lock_timeout=5000") as conn:
                ready.wait()
                done.append(
                    _writes(conn.execute, sql, phones, deadline[0], lambda: datetime.now(UTC), psycopg.Error, seed)
                )

        workers = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if len(done) != threads:
            raise HarnessError(f"the PostgreSQL floor lost {threads - len(done)} of its threads")
        elapsed = time.perf_counter() - (deadline[0] - duration)
        return _floor_result([s for seconds, _ in done for s in seconds], sum(e for _, e in done), elapsed)

    return measure


def check_patch(server: Server, key: str, phone: str) -> None:
    """One PATCH must answer 200 with the new name, active, or the write figures mean nothing."""
    status, body = server.call("PATCH", by_number(phone), key, {"first_name": "Bench check"}, timeout=60)
    card = orjson.loads(body) if status == 200 else {}
    if card.get("first_name") != "Bench check" or card.get("is_active") is not True:
        raise HarnessError(f"{server.name}: PATCH answered {status}: {body[:300]!r}")


def _caught_up(server: Server, key: str, phone: str, limit: float) -> bool:
    """Whether a PATCH is answered 2xx within half a second, tried for `limit` seconds."""
    deadline = time.perf_counter() + limit
    while (left := deadline - time.perf_counter()) > 0:
        started = time.perf_counter()
        try:
            status, _ = server.call("PATCH", by_number(phone), key, {"first_name": "Bench probe"}, timeout=left)
        except (OSError, http.client.HTTPException):  # the probe's own timeout too
            return False
        if 200 <= status < 300 and time.perf_counter() - started < 0.5:
            return True
        time.sleep(0.05)
    return False


def settle(run, server: Server, key: str, phone: str) -> Callable[[dict], None]:
    """The `after` of a side that writes: wait for the server to catch up (restart it if it
    does not) and count the run's failed requests."""
    limit = run.config.write_timeout

    def after(result: dict) -> None:
        caught_up = _caught_up(server, key, phone, limit)
        result["stalled"] = 0 if caught_up else result["in_flight"]
        if not caught_up:
            run.log(f"  {server.name} answered no write within {limit:g} s after the run: restarting it")
            server.restart()
            result["restarted"] = True
        result["failed"] = result["non_2xx"] + sum(result[k] for k in SOCKET_ERRORS) + result["stalled"]

    return after


def failures(side: Side) -> list[str]:
    """What failed in a side's measured runs: answers by status, socket errors, stalls."""
    statuses: Counter[str] = Counter()
    for r in side.results:
        statuses.update({code: n for code, n in r.get("statuses", {}).items() if not code.startswith("2")})
    parts = [f"{n} answered {code}" for code, n in sorted(statuses.items())]
    sockets = sum(r[k] for r in side.results for k in SOCKET_ERRORS)
    stalled, restarts = sum(r.get("stalled", 0) for r in side.results), sum(r.get("restarted", 0) for r in side.results)
    parts += [f"{sockets} socket errors/timeouts"] if sockets else []
    parts += [f"{stalled} left in flight, server restarted {restarts}×"] if restarts else []
    if any(r["requests"] == 0 for r in side.results):
        parts.append("a run got no answer at all (its p99 is the run's length)")
    return [f"{side.label}: {', '.join(parts)}"] if parts else []


def _connections(count: int) -> str:
    return f"{count} connection{'s' if count != 1 else ''}"


def _writing_side(run, server: Server, db: str, name: str, label: str, **options) -> Side:
    """wrk on the `writes` database's lines at random, answers counted by status; the
    server settles after each run."""
    config, pairs = run.config, run.pairs(db, "writes")
    side = wrk_side(run.wrk, f"{server.name}-{name}", f"{db} {label}", server.url, pairs, threads=config.threads,
                    timeout=config.write_timeout, random=True, statuses=True, **options)  # fmt: skip
    side.after = settle(run, server, *run.seeded(db, "writes").pairs[0])
    return side


def _floor(run, db: str, server: Server) -> Side:
    phones = [phone for _, phone in run.seeded(db, "writes").pairs]
    if db == "SQLite":
        from sqlalchemy.engine import make_url

        measure = sqlite_floor(make_url(run.url(db, "writes")).database, phones)
    else:
        measure = postgres_floor(run.url(db, "writes"), phones, run.config.floor_threads)
    return Side(f"{server.name}-floor", f"{db} raw SQL floor", measure, unit="writes/s")


# How each database's write figure runs the server: SQLite is one process's database;
# PostgreSQL is what an operator outgrowing one process moves to, and runs one worker per
# core (`serve --workers 2` on the benchmark's two cores). One worker's figure is kept
# beside it for information.
WRITE_VARIANT = {"SQLite": "", "PostgreSQL": "workers-2"}
WORKERS = {"": "", "workers-2": ", 2 workers"}


def patch_writes(run) -> list[dict]:
    config, rows, run.raw["writes"] = run.config, [], {}
    for db in run.databases:
        variant = WRITE_VARIANT[db]
        (server,) = run.variants((db, "writes", variant))
        check_patch(server, *run.seeded(db, "writes").pairs[0])
        floor = _floor(run, db, server)
        workers = WORKERS[variant]
        label = {c: f"PATCH, {_connections(c)}{workers}" for c in config.write_connections}
        patches = {
            c: _writing_side(run, server, db, f"c{c}", label[c], connections=c, patch_share=1)
            for c in config.write_connections
        }
        one_worker = None
        if variant:  # the same load on the server as it ships, one process
            (single,) = run.servers((db, "writes", True))
            check_patch(single, *run.seeded(db, "writes").pairs[0])
            one_worker = _writing_side(run, single, db, f"one-c{config.connections}",
                                       f"PATCH, {_connections(config.connections)}, 1 worker",
                                       connections=config.connections, patch_share=1)  # fmt: skip
        sides = [floor, *patches.values(), *([one_worker] if one_worker else [])]
        for side in sides:
            side.unit = "writes/s"
        run.interleave(sides, config.write_duration)
        run.raw["writes"][db] = {side.name: side.raw() for side in sides}
        for c, side in patches.items():
            info = c < config.connections  # the targets are at 64 connections and more
            title = f"PATCH, writes/s at {_connections(c)}{workers}"
            rows.append(compare(7, db, title, "writes/s", "write_rps", side, floor, "ok_rps", info=info, checked=False))
        if one_worker is not None:
            title = f"PATCH, writes/s at {_connections(config.connections)}, 1 worker"
            rows.append(compare(7, db, title, "writes/s", "write_rps", one_worker, floor, "ok_rps", info=True,
                                checked=False))  # fmt: skip
        at = patches.get(config.connections)
        if at is not None:
            p99 = {c: median(s.values("p99_ms")) for c, s in patches.items() if s is not at}
            notes = [f"p99 at {_connections(c)}: {ms:.0f} ms" for c, ms in p99.items()]
            if one_worker is not None:
                notes.append(f"p99 with 1 worker: {median(one_worker.values('p99_ms')):.0f} ms")
            title = f"PATCH, p99 at {_connections(config.connections)}{workers}"
            rows.append(compare(7, db, title, "ms", "write_p99_ms", at, None, "p99_ms", checked=False, notes=notes))
        counted = [*patches.values(), *([one_worker] if one_worker else [])]
        failed = [sum(side.results[r]["failed"] for side in counted) for r in range(config.rounds)]
        notes = [n for side in counted for n in failures(side)]
        title = "PATCH, failed requests (non-2xx, socket errors)"
        rows.append(row(7, db, title, "requests", "write_failed", subject=spread(failed), notes=notes))
    return rows


def mixed_load(run) -> list[dict]:
    config, rows, run.raw["mixed"] = run.config, [], {}
    share = f"{config.mixed_patch_share:.0%} PATCH, {1 - config.mixed_patch_share:.0%} GET"
    for db in run.databases:
        server, memo_off = run.servers((db, "writes", True), (db, "writes", False))
        check_patch(server, *run.seeded(db, "writes").pairs[0])
        check_get_by_number(memo_off, *run.seeded(db, "writes").pairs[0])
        gets = _writing_side(run, memo_off, db, "get", "GET, memo off", connections=config.connections)
        gets.after = None  # nothing to wait for
        options = dict(connections=config.connections, patch_share=config.mixed_patch_share)
        mixed = _writing_side(run, server, db, "mixed", share, **options)
        run.interleave([gets, mixed], config.write_duration)
        run.raw["mixed"][db] = {side.name: side.raw() for side in (gets, mixed)}
        with_writes, alone = (median(side.values("p99_ms")) for side in (mixed, gets))
        notes = [f"p99: {with_writes:.1f} ms mixed, {alone:.1f} ms GET alone", *failures(gets), *failures(mixed)]
        title = f"mixed {share} by number, req/s at {_connections(config.connections)}"
        rows.append(compare(8, db, title, "req/s", "mixed_rps", mixed, gets, "ok_rps", checked=False, notes=notes))
    return rows
