"""The measurements. Each phase returns its raw figures and the report's rows.

A row is a dict: figure, db, title, unit, subject/baseline spreads (min/median/max over
rounds), the per-round ratios' spread, the target key (bench.config.TARGETS) and notes. The
verdict is decided in bench/report.py, on the median.
"""

from __future__ import annotations

import http.client
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench import HarnessError
from bench.config import Config
from bench.images import FORMATS, ImageHost, run_worker
from bench.load import run_wrk
from bench.seed import Seeded, libpq_url
from bench.servers import HOST, Server, contactcard_server
from bench.stats import median, ratios, spread

KIB_PER_MIB = 1024


@dataclass
class Target:
    """One server under the GET load, with the requests it is driven with."""

    name: str
    label: str
    server: Server
    pairs_file: Path
    results: list[dict] = field(default_factory=list)
    warmup: dict | None = None
    # Counters read before and after each measured run; the deltas go into the result
    # (PostgreSQL: sessions opened, to show connection churn in the server's pool).
    probe: Callable[[], dict[str, int]] | None = None


@dataclass
class Backend:
    """One database kind: its two servers (10^3 and the large seed) and their seeds."""

    name: str  # "SQLite" | "PostgreSQL"
    small: Server
    large: Server
    small_seed: Seeded
    large_seed: Seeded
    large_url: str  # SQLAlchemy URL of the large database (for the in-process baseline)
    small_pairs: Path
    large_pairs: Path
    # The same databases served with the memo off (information rows).
    small_off: Server | None = None
    large_off: Server | None = None


def row(figure: int, db: str, title: str, unit: str, target: str | None, **fields) -> dict:
    return {"figure": figure, "db": db, "title": title, "unit": unit, "target": target, "notes": [], **fields}


def _client_get(server: Server, path: str, key: str, conn: http.client.HTTPConnection | None = None):
    own = conn is None
    conn = conn or http.client.HTTPConnection(HOST, server.port, timeout=120)
    try:
        conn.request("GET", path, headers={"Authorization": f"Bearer {key}"})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        if own:
            conn.close()


def check_get_by_number(server: Server, key: str, phone: str) -> bytes:
    """One GET by number must answer 200 with that card, or the load figures mean nothing."""
    from urllib.parse import quote

    status, body = _client_get(server, f"/v3/contact_card?phone_number={quote(phone, safe='')}", key)
    if status != 200:
        raise HarnessError(f"{server.name}: GET by number answered {status}: {body[:300]!r}")
    cards = orjson.loads(body).get("contact_cards", [])
    if len(cards) != 1 or cards[0].get("phone_number") != phone:
        raise HarnessError(f"{server.name}: GET by number did not return the seeded card: {body[:300]!r}")
    return body


# --- figures 1, 5, 6: GET by number under wrk --------------------------------------------


def get_load(config: Config, wrk: str, targets: list[Target], log: Callable[[str], None]) -> None:
    for target in targets:
        log(f"  warm-up {target.label}: wrk {config.warmup} s")
        target.warmup = run_wrk(
            wrk,
            target.server.url,
            target.pairs_file,
            duration=config.warmup,
            threads=config.threads,
            connections=config.connections,
        )
    for r in range(config.rounds):
        shift = r % len(targets)
        order = targets[shift:] + targets[:shift]
        if r % 2:
            order = order[::-1]
        for target in order:
            before = target.probe() if target.probe else {}
            result = run_wrk(
                wrk,
                target.server.url,
                target.pairs_file,
                duration=config.duration,
                threads=config.threads,
                connections=config.connections,
            )
            if target.probe:
                after = target.probe()
                result["probe_delta"] = {k: after[k] - before.get(k, 0) for k in after}
            result["round"] = r
            target.results.append(result)
            log(
                f"  round {r + 1}/{config.rounds} {target.label}: {result['rps']:.0f} req/s, "
                f"p99 {result['p99_ms']:.1f} ms" + (f", {result['errors']} errors" if result["errors"] else "")
            )


def _error_notes(*targets: Target) -> list[str]:
    notes = []
    for t in targets:
        status = sum(r["status_errors"] for r in t.results)
        other = sum(r["errors"] for r in t.results) - status
        if status:
            notes.append(f"{t.label}: {status} non-2xx answers")
        if other:
            notes.append(f"{t.label}: {other} socket errors/timeouts")
    return notes


def _probe_notes(*targets: Target) -> list[str]:
    notes = []
    for t in targets:
        opened = [r["probe_delta"]["sessions"] for r in t.results if "sessions" in r.get("probe_delta", {})]
        if opened and median(opened) > 0:
            notes.append(
                f"{t.label}: {median(opened):.0f} new PostgreSQL sessions per {t.results[0]['duration_us'] / 1e6:.0f} s run "
                "(median; pg_stat_database.sessions)"
            )
    return notes


def pg_session_probe(admin_url: str, database: str) -> Callable[[], dict[str, int]]:
    import psycopg

    def probe() -> dict[str, int]:
        with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
            row = conn.execute(
                "SELECT sessions, numbackends FROM pg_stat_database WHERE datname = %s", (database,)
            ).fetchone()
        return {"sessions": int(row[0] or 0), "backends": int(row[1] or 0)} if row else {}

    return probe


def _broken(*targets: Target) -> bool:
    for t in targets:
        requests = sum(r["requests"] for r in t.results)
        if any(r["status_errors"] for r in t.results) or sum(r["errors"] for r in t.results) > 0.001 * max(1, requests):
            return True
    return False


def powers(n: int) -> str:
    text = f"{n:.0e}"  # 1e+06
    mantissa, exponent = text.split("e")
    return f"10^{int(exponent)}" if mantissa == "1" else f"{n:,}"


def get_rows(bare: Target, small: Target, large: Target, db: str, small_cards: int, large_cards: int) -> list[dict]:
    rps = lambda t: [r["rps"] for r in t.results]  # noqa: E731
    p99 = lambda t: [r["p99_ms"] for r in t.results]  # noqa: E731
    rows = []
    notes = _error_notes(bare, small) + _probe_notes(small)
    rows.append(
        row(
            1,
            db,
            "GET by number, req/s",
            "req/s",
            "get_rps",
            subject=spread(rps(small)),
            baseline=spread(rps(bare)),
            ratio=spread(ratios(rps(small), rps(bare))),
            broken=_broken(bare, small),
            notes=list(notes),
        )
    )
    rows.append(
        row(
            1,
            db,
            "GET by number, p99 at 64 connections",
            "ms",
            "get_p99",
            subject=spread(p99(small)),
            baseline=spread(p99(bare)),
            ratio=spread(ratios(p99(small), p99(bare))),
            broken=_broken(bare, small),
            notes=list(notes),
        )
    )
    p99_ratio = spread(ratios(p99(large), p99(small)))
    rows.append(
        row(
            6,
            db,
            f"GET by number, req/s: {powers(large_cards)} vs {powers(small_cards)} cards",
            "req/s",
            "db_size",
            subject=spread(rps(large)),
            baseline=spread(rps(small)),
            ratio=spread(ratios(rps(large), rps(small))),
            broken=_broken(small, large),
            notes=_error_notes(large)
            + ([f"p99 ratio median {p99_ratio['median']:.2f}"] if p99_ratio else [])
            + _probe_notes(large),
        )
    )
    return rows


def memo_off_rows(
    bare: Target, small: Target, large: Target | None, db: str, small_cards: int, large_cards: int
) -> list[dict]:
    """The same GET figures with the memo switched off (CONTACTCARD_READ_CACHE_SIZE=0), for
    information: every request then runs the lookup, as a write-heavy workload would."""
    rps = lambda t: [r["rps"] for r in t.results]  # noqa: E731
    p99 = lambda t: [r["p99_ms"] for r in t.results]  # noqa: E731
    notes = _error_notes(bare, small) + _probe_notes(small)
    rows = [
        row(
            1,
            db,
            "GET by number, req/s, memo off (info)",
            "req/s",
            None,
            info_target="get_rps",
            subject=spread(rps(small)),
            baseline=spread(rps(bare)),
            ratio=spread(ratios(rps(small), rps(bare))),
            broken=_broken(bare, small),
            notes=list(notes),
        ),
        row(
            1,
            db,
            "GET by number, p99, memo off (info)",
            "ms",
            None,
            info_target="get_p99",
            subject=spread(p99(small)),
            baseline=spread(p99(bare)),
            ratio=spread(ratios(p99(small), p99(bare))),
            broken=_broken(bare, small),
            notes=list(notes),
        ),
    ]
    if large is not None:
        rows.append(
            row(
                6,
                db,
                f"GET by number, req/s: {powers(large_cards)} vs {powers(small_cards)} cards, memo off (info)",
                "req/s",
                None,
                info_target="db_size",
                subject=spread(rps(large)),
                baseline=spread(rps(small)),
                ratio=spread(ratios(rps(large), rps(small))),
                broken=_broken(small, large),
                notes=_error_notes(large),
            )
        )
    return rows


def peak_rss_row(server: Server, bare: Server, db: str) -> tuple[dict, dict]:
    subject, baseline = server.status(), bare.status()
    mib = subject["VmHWM"] / KIB_PER_MIB
    raw = {"server": server.name, "status_kib": subject, "bare_status_kib": baseline}
    r = row(
        5,
        db,
        "server peak RSS (VmHWM) after the GET load",
        "MiB",
        "peak_rss_mib",
        subject=spread([mib]),
        baseline=spread([baseline["VmHWM"] / KIB_PER_MIB]),
        ratio=None,
        notes=[f"baseline column: the bare ASGI app's VmHWM (information); RSS now {subject['VmRSS'] / 1024:.0f} MiB"],
    )
    return r, raw


# --- figure 2: GET all of a partner with 10,000 cards ------------------------------------

_ALL_SQL = (
    "SELECT c.phone_number, c.first_name, c.last_name, c.image_blob, c.is_active"
    " FROM api_keys k JOIN lines l ON l.partner_id = k.partner_id"
    " JOIN cards c ON c.phone_number = l.phone_number"
    " WHERE k.key_hash = {p} AND k.revoked_at IS NULL ORDER BY c.phone_number"
)


def _in_process_baseline(backend: Backend, server: Server) -> tuple[Callable[[], bytes], Callable[[], None]]:
    """The raw query for the partner's rows and `orjson.dumps` of the same body."""
    prefix = f"{server.url}/cdn/contact-card/"
    key_hash = backend.large_seed.key_hashes[0]

    def body(rows) -> bytes:
        return orjson.dumps(
            {
                "contact_cards": [
                    {
                        "phone_number": phone,
                        "first_name": first,
                        "last_name": last,
                        "image_url": f"{prefix}{blob}" if blob else None,
                        "is_active": bool(active),
                    }
                    for phone, first, last, blob, active in rows
                ]
            }
        )

    if backend.name == "SQLite":
        import sqlite3

        from sqlalchemy.engine import make_url

        conn = sqlite3.connect(make_url(backend.large_url).database, check_same_thread=False)
        sql = _ALL_SQL.format(p="?")
    else:
        import psycopg

        conn = psycopg.connect(libpq_url(backend.large_url), autocommit=True)
        sql = _ALL_SQL.format(p="%s")

    def run() -> bytes:
        return body(conn.execute(sql, (key_hash,)).fetchall())

    return run, conn.close


def get_all(config: Config, backend: Backend, log: Callable[[str], None]) -> tuple[dict, dict]:
    server, key = backend.large, backend.large_seed.keys[0]
    expected = backend.large_seed.partner0_cards
    conn = http.client.HTTPConnection(HOST, server.port, timeout=120)
    baseline, close = _in_process_baseline(backend, server)
    try:
        status, body = _client_get(server, "/v3/contact_card", key, conn)
        if status != 200:
            raise HarnessError(f"{server.name}: GET all answered {status}: {body[:300]!r}")
        count = len(orjson.loads(body)["contact_cards"])
        if count != expected:
            raise HarnessError(f"{server.name}: GET all returned {count} cards, expected {expected}")
        same_body = baseline() == body

        def over_http() -> float:
            started = time.perf_counter()
            status, _ = _client_get(server, "/v3/contact_card", key, conn)
            elapsed = time.perf_counter() - started
            if status != 200:
                raise HarnessError(f"{server.name}: GET all answered {status} during the figure")
            return elapsed

        def in_process() -> float:
            started = time.perf_counter()
            baseline()
            return time.perf_counter() - started

        for _ in range(2):  # warm both
            over_http(), in_process()
        subject, base, per_round = [], [], []
        for r in range(config.rounds):
            blocks = [("server", over_http), ("baseline", in_process)]
            if r % 2:
                blocks.reverse()
            times = {}
            for name, fn in blocks:
                times[name] = [fn() for _ in range(config.get_all_requests)]
            per_round.append(times)
            subject.append(median(times["server"]) * 1000)
            base.append(median(times["baseline"]) * 1000)
            log(
                f"  round {r + 1}/{config.rounds} GET all {backend.name}: server {subject[-1]:.1f} ms, baseline {base[-1]:.1f} ms"
            )
    finally:
        conn.close()
        close()
    notes = [f"{expected} cards, {len(body) / 1e6:.2f} MB body"]
    if not same_body:
        notes.append("WARNING: the baseline's body differs from the server's")
    r = row(
        2,
        backend.name,
        f"GET all, {expected:,} cards, time per request",
        "ms",
        "get_all",
        subject=spread(subject),
        baseline=spread(base),
        ratio=spread(ratios(subject, base)),
        notes=notes,
    )
    raw = {"db": backend.name, "cards": expected, "body_bytes": len(body), "same_body": same_body, "rounds": per_round}
    return r, raw


# --- figure 3: the image pipeline in-process vs pyvips, and POST over HTTP ---------------


def image_work(config: Config, paths: dict[str, Path], log: Callable[[str], None]) -> tuple[list[dict], dict]:
    raw: dict[str, list[dict]] = {name: [] for name in paths}
    for r in range(config.rounds):
        for index, name in enumerate(paths):
            order = ["server", "vips"] if (r + index) % 2 == 0 else ["vips", "server"]
            entry = {"round": r}
            for impl in order:
                entry[impl] = run_worker(impl, paths[name], config.images_per_worker)
            raw[name].append(entry)
            s = median(i["wall_s"] for i in entry["server"]["images"]) * 1000
            v = median(i["wall_s"] for i in entry["vips"]["images"]) * 1000
            log(f"  round {r + 1}/{config.rounds} {name}: normalise {s:.0f} ms, pyvips {v:.0f} ms")
    rows = []
    for name, entries in raw.items():

        def per_round(impl: str, key: str, scale: float) -> list[float]:
            return [median(i[key] for i in e[impl]["images"]) * scale for e in entries]

        s_wall, v_wall = per_round("server", "wall_s", 1000), per_round("vips", "wall_s", 1000)
        s_cpu, v_cpu = per_round("server", "cpu_s", 1000), per_round("vips", "cpu_s", 1000)
        s_mem = per_round("server", "peak_above_loaded_kib", 1 / KIB_PER_MIB)
        v_mem = per_round("vips", "peak_above_loaded_kib", 1 / KIB_PER_MIB)
        s_ws = median(per_round("server", "peak_growth_kib", 1 / KIB_PER_MIB))
        v_ws = median(per_round("vips", "peak_growth_kib", 1 / KIB_PER_MIB))
        retained_s = median(e["server"]["retained_per_image_kib"] for e in entries) / KIB_PER_MIB
        retained_v = median(e["vips"]["retained_per_image_kib"] for e in entries) / KIB_PER_MIB
        cpu_ratio = spread(ratios(s_cpu, v_cpu))
        rows.append(
            row(
                3,
                "-",
                f"image work, 12 MP {name}",
                "ms",
                "image_jpeg" if name == "JPEG" else "image_other",
                subject=spread(s_wall),
                baseline=spread(v_wall),
                ratio=spread(ratios(s_wall, v_wall)),
                notes=[f"CPU-time ratio median {cpu_ratio['median']:.2f}" if cpu_ratio else ""],
            )
        )
        rows.append(
            row(
                3,
                "-",
                f"image memory growth per image, 12 MP {name}",
                "MiB",
                "image_memory",
                subject=spread(s_mem),
                baseline=spread(v_mem),
                ratio=spread(ratios(s_mem, v_mem)) if all(v_mem) else None,
                notes=[
                    f"working set (peak above the RSS just before the image): normalise {s_ws:.1f} MiB, "
                    f"pyvips {v_ws:.1f} MiB; RSS retained per image: normalise {retained_s:+.1f} MiB, "
                    f"pyvips {retained_v:+.1f} MiB"
                ],
            )
        )
    return rows, raw


def post_images(
    config: Config, backend_name: str, server: Server, seeded: Seeded, host: ImageHost, log: Callable[[str], None]
) -> tuple[list[dict], dict]:
    numbers = iter(seeded.post_numbers)
    key = seeded.keys[0]
    conn = http.client.HTTPConnection(HOST, server.port, timeout=120)
    raw: dict[str, list[float]] = {}
    rows = []
    try:
        for name in FORMATS:
            times = []
            for i in range(1 + config.posts_per_format):  # the first one warms up
                try:
                    phone = next(numbers)
                except StopIteration:
                    raise HarnessError("not enough seeded POST lines") from None
                body = orjson.dumps(
                    {"phone_number": phone, "first_name": "Bench", "last_name": name, "image_url": host.url(name)}
                )
                started = time.perf_counter()
                conn.request(
                    "POST",
                    "/v3/contact_card",
                    body=body,
                    headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
                )
                response = conn.getresponse()
                answer = response.read()
                elapsed = time.perf_counter() - started
                if response.status != 200:
                    raise HarnessError(f"{server.name}: POST {name} answered {response.status}: {answer[:400]!r}")
                card = orjson.loads(answer)
                if not card.get("image_url") or card.get("is_active") is not True:
                    raise HarnessError(
                        f"{server.name}: POST {name} did not set up an active card with an image: {card}"
                    )
                if i:
                    times.append(elapsed * 1000)
            raw[name] = times
            log(f"  POST {backend_name} {name}: median {median(times):.0f} ms")
            rows.append(
                row(
                    3,
                    backend_name,
                    f"POST, 12 MP {name}: full latency (info)",
                    "ms",
                    None,
                    subject=spread(times),
                    baseline=None,
                    ratio=None,
                )
            )
    finally:
        conn.close()
    return rows, raw


# --- figure 4: cold start --------------------------------------------------------------


def cold_start(config: Config, tmp: Path, settings: dict[str, str], log: Callable[[str], None]) -> tuple[dict, list]:
    from bench.servers import free_port

    seconds: list[float] = []
    failures: list[str] = []
    for i in range(config.cold_starts):
        key = f"cc_bench_cold_{secrets.token_urlsafe(16)}"
        port = free_port()
        server = contactcard_server(
            f"cold-start-{i}",
            port=port,
            data_dir=tmp / f"cold-{i}",
            log_dir=tmp,
            settings={**settings, "CONTACTCARD_DEMO_API_KEY": key},
        )
        server.ready_path = "/v3/contact_card"
        server.ready_headers = {"Authorization": f"Bearer {key}"}
        try:
            server.start()
            seconds.append(server.wait_ready(timeout=60, poll=0.005))
            log(f"  cold start {i + 1}/{config.cold_starts}: {seconds[-1]:.2f} s")
        except HarnessError as exc:  # the server failed to start: a server problem, reported
            failures.append(str(exc))
            log(f"  cold start {i + 1}/{config.cold_starts} FAILED: {str(exc).splitlines()[0]}")
        finally:
            server.stop()
    notes = ["GET /v3/contact_card with the demo key, polled every 5 ms"]
    notes += [f"start failed: {' | '.join(f.splitlines()[-3:])}" for f in failures[:1]]
    r = row(
        4,
        "SQLite",
        "cold start to first answered GET, empty DB",
        "s",
        "cold_start_s",
        subject=spread(seconds),
        baseline=None,
        ratio=None,
        broken=bool(failures),
        notes=notes,
    )
    return r, {"seconds": seconds, "failures": failures}


def dump(path: Path, data) -> None:
    path.write_text(json.dumps(data, indent=2, default=str))
