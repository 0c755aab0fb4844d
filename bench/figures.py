"""Figures 1 to 6, 9 and 10: GET by number, GET all, image work and POST, cold start, peak
RSS, database size, the cost of the metrics and of the request journal. Each takes the run
(bench/run.py) and returns its rows (bench/rows.py)."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable

import orjson

from bench import HarnessError
from bench.images import FORMATS, run_worker
from bench.load import Side, by_number, interleave, run_wrk, summary, wrk_side
from bench.rows import compare, median, powers, ratios, row, spread
from bench.seed import libpq_url
from bench.servers import Server, contactcard_server, free_port, stop_all

KIB_PER_MIB = 1024


def check_get_by_number(server: Server, key: str, phone: str) -> bytes:
    """One GET by number must answer 200 with that card, or the load figures mean nothing."""
    status, body = server.call("GET", by_number(phone), key)
    if status != 200:
        raise HarnessError(f"{server.name}: GET by number answered {status}: {body[:300]!r}")
    cards = orjson.loads(body).get("contact_cards", [])
    if len(cards) != 1 or cards[0].get("phone_number") != phone:
        raise HarnessError(f"{server.name}: GET by number did not return the seeded card: {body[:300]!r}")
    return body


def pg_session_probe(admin_url: str, database: str) -> Callable[[], dict[str, int]]:
    import psycopg

    def probe() -> dict[str, int]:
        with psycopg.connect(libpq_url(admin_url), autocommit=True) as conn:
            found = conn.execute(
                "SELECT sessions, numbackends FROM pg_stat_database WHERE datname = %s", (database,)
            ).fetchone()
        return {"sessions": int(found[0] or 0), "backends": int(found[1] or 0)} if found else {}

    return probe


# --- figures 1, 5, 6: GET by number under wrk --------------------------------------------


def get_by_number(run) -> list[dict]:
    config = run.config
    wanted = [(db, size, memo) for db in run.databases for memo in (True, False) for size in ("small", "large")]
    # Memo off on PostgreSQL: the small database only (figure 1's information rows).
    wanted = [(db, size, memo) for db, size, memo in wanted if memo or db == "SQLite" or size == "small"]
    servers = dict(zip(wanted, run.servers(*wanted), strict=True))
    for (db, size, _memo), server in servers.items():
        check_get_by_number(server, *run.seeded(db, size).pairs[0])
    bare = run.bare(check_get_by_number(servers["SQLite", "small", True], *run.seeded("SQLite", "small").pairs[0]))
    options = dict(threads=config.threads, connections=config.connections)
    bare_side = wrk_side(run.wrk, bare.name, "bare ASGI", bare.url, run.pairs("SQLite", "small"), **options)
    sides: dict[tuple, Side] = {}
    for (db, size, memo), server in servers.items():
        label = f"{db} {run.seeded(db, size).total_cards:,} cards" + ("" if memo else ", memo off")
        sides[db, size, memo] = side = wrk_side(run.wrk, server.name, label, server.url, run.pairs(db, size), **options)
        if db == "PostgreSQL":
            side.probe = pg_session_probe(config.postgres_url, run.pg_name(size))
    order = [bare_side, *sides.values()]
    run.log(f"  wrk -t{config.threads} -c{config.connections} -d{config.duration}s, {config.rounds} rounds")
    run.interleave(order)
    run.raw["get_load"] = {side.name: side.raw() for side in order}
    run.raw["peak_rss"] = {}
    rows = []
    for db in run.databases:
        small_cards, large_cards = run.seeded(db, "small").total_cards, run.seeded(db, "large").total_cards
        size_title = f"GET by number, req/s: {powers(large_cards)} vs {powers(small_cards)} cards"
        for memo, info in ((True, False), (False, True)):
            small, large = sides[db, "small", memo], sides.get((db, "large", memo))
            off = "" if memo else ", memo off"
            p99_title = "GET by number, p99 at 64 connections" if memo else "GET by number, p99, memo off"
            rows.append(compare(1, db, f"GET by number, req/s{off}", "req/s", "get_rps", small, bare_side, info=info))
            rows.append(compare(1, db, p99_title, "ms", "get_p99", small, bare_side, key="p99_ms", info=info))
            if large is not None:
                p99 = spread(ratios(large.values("p99_ms"), small.values("p99_ms")))
                more = [f"p99 ratio median {p99['median']:.2f}"] if p99 and memo else []
                rows.append(compare(6, db, size_title + off, "req/s", "db_size", large, small, info=info, notes=more))
        server = servers[db, "small", True]
        subject, baseline = server.status(), bare.status()
        large = servers[db, "large", True].status()
        run.raw["peak_rss"][db] = dict(server=server.name, status_kib=subject, bare_status_kib=baseline,
                                       large_server_status_kib=large)  # fmt: skip
        hwm = {
            "subject": spread([subject["VmHWM"] / KIB_PER_MIB]),
            "baseline": spread([baseline["VmHWM"] / KIB_PER_MIB]),
        }
        rss = subject["VmRSS"] / KIB_PER_MIB
        notes = [f"baseline column: the bare ASGI app's VmHWM (information); RSS now {rss:.0f} MiB"]
        title = "server peak RSS (VmHWM) after the GET load"
        rows.append(row(5, db, title, "MiB", "peak_rss_mib", notes=notes, **hwm))
    return rows


# --- figure 9: the cost of the metrics on the GET path ----------------------------------


def fresh_pairs(run, db: str, off_variant: str, labels: tuple[str, str]) -> tuple[Side, Side]:
    """The server as it ships against it with one thing off (`off_variant`), GET by number
    under wrk: each round on a pair of servers started for it, both fresh, warmed up alike
    and stopped after. Two instances of the same server differ by a few per cent (memory
    layout, where the kernel runs them), and a server that already served other figures'
    loads is not the fresh one it is compared with: a few per cent is what these figures
    measure, so each round draws a new pair and the median ratio is taken."""
    config = run.config
    options = dict(threads=config.threads, connections=config.connections)
    pairs = run.pairs(db, "small")
    urls: dict[str, str] = {}

    def load(which: str) -> Callable[[float], dict]:
        return lambda seconds: run_wrk(run.wrk, urls[which], pairs, duration=seconds, **options)

    off_side = Side(f"{db.lower()}-small-{off_variant}-fresh", labels[0], load("off"))
    on_side = Side(f"{db.lower()}-small-fresh", labels[1], load("on"))
    run.log(f"  {db}: wrk -t{config.threads} -c{config.connections} -d{config.duration}s, "
            f"{config.rounds} rounds, a fresh pair of servers each")  # fmt: skip
    pair = run.seeded(db, "small").pairs[0]
    for r in range(config.rounds):
        on, off = run.variants((db, "small", ""), (db, "small", off_variant), tag=f"{off_variant}-round{r}")
        try:
            for server in (on, off):
                check_get_by_number(server, *pair)
            urls["on"], urls["off"] = on.url, off.url
            order = (off_side, on_side) if r % 2 == 0 else (on_side, off_side)
            for side in order:
                warm = side.measure(config.warmup)
                side.warmup = side.warmup or warm
            for side in order:
                result = side.measure(config.duration)
                result["round"] = r
                side.results.append(result)
                run.log(f"  round {r + 1}/{config.rounds} {side.label}: {summary(result)}")
        finally:
            on.stop()
            off.stop()
    return off_side, on_side


def metrics_cost(run) -> list[dict]:
    """GET by number on the server as it ships (metrics on) against the same server with
    `CONTACTCARD_METRICS=off`, same database, same load, a fresh pair each round."""
    rows = []
    for db in run.databases:
        sides = fresh_pairs(run, db, "metrics-off", ("metrics off", "metrics on"))
        run.raw.setdefault("metrics_load", {}).update({side.name: side.raw() for side in sides})
        off_side, on_side = sides
        title = "GET by number, req/s, metrics on vs off"
        notes = [f"in-process: the metrics' bookkeeping costs {_metrics_microseconds():.2f} µs a request"]
        rows.append(compare(9, db, title, "req/s", "metrics_cost", on_side, off_side, notes=notes))
    return rows


def _metrics_microseconds(count: int = 100_000) -> float:
    """What the edge adds to a request with metrics on (route label, counter, histogram), timed
    in this process: a figure that the shared machine's noise cannot blur as it blurs req/s."""
    from contactcard.metrics import Metrics, route_of

    metrics = Metrics()
    started = time.perf_counter()
    for _ in range(count):
        metrics.request(route_of("/api/partner/v3/contact_card"), "GET", 200, 0, 0.0004)
    return (time.perf_counter() - started) / count * 1e6


# --- figure 10: the request journal's cost on GET ------------------------------------------


def journal_cost(run) -> list[dict]:
    """Figure 1's load on the server as it ships (journal on) against the same server with
    `CONTACTCARD_JOURNAL_SIZE=0`, on the same database, a fresh pair each round."""
    rows = []
    for db in run.databases:
        sides = fresh_pairs(run, db, "journal-off", (f"{db}, journal off", f"{db}, journal on"))
        run.raw.setdefault("journal", {})[db] = {side.name: side.raw() for side in sides}
        p99 = [f"p99: {median(side.values('p99_ms')):.2f} ms {side.label}" for side in sides]
        title = "GET by number, req/s: journal on vs off"
        rows.append(compare(10, db, title, "req/s", "journal_rps", sides[1], sides[0], notes=p99))
    return rows


# --- figure 2: GET all of a partner with 10,000 cards ------------------------------------

_ALL_SQL = (
    "SELECT c.phone_number, c.first_name, c.last_name, c.image_blob, c.is_active"
    " FROM api_keys k JOIN lines l ON l.partner_id = k.partner_id"
    " JOIN cards c ON c.phone_number = l.phone_number"
    " WHERE k.key_hash = {p} AND k.revoked_at IS NULL ORDER BY c.phone_number"
)


def _in_process_baseline(db: str, url: str, key_hash: str, server: Server) -> tuple[Callable[[], bytes], Callable]:
    """The raw query for the partner's rows and `orjson.dumps` of the same body."""
    prefix = f"{server.url}/cdn/contact-card/"

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

    if db == "SQLite":
        import sqlite3

        from sqlalchemy.engine import make_url

        conn = sqlite3.connect(make_url(url).database, check_same_thread=False)
        sql = _ALL_SQL.format(p="?")
    else:
        import psycopg

        conn = psycopg.connect(libpq_url(url), autocommit=True)
        sql = _ALL_SQL.format(p="%s")
    return (lambda: body(conn.execute(sql, (key_hash,)).fetchall())), conn.close


def _timed_block(fn: Callable[[], object], count: int) -> dict:
    """`count` sequential calls of `fn`: their seconds and the median in ms."""
    times = []
    for _ in range(count):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return {"times": times, "ms": median(times) * 1000, "requests": count, "errors": 0, "status_errors": 0}


def get_all(run) -> list[dict]:
    rows, run.raw["get_all"], n = [], {}, run.config.get_all_requests
    for db in run.databases:
        (server,) = run.servers((db, "large", True))
        seeded = run.seeded(db, "large")
        key, expected = seeded.keys[0], seeded.partner0_cards
        baseline, close = _in_process_baseline(db, run.url(db, "large"), seeded.key_hashes[0], server)
        conn = server.connection()
        try:
            status, body = server.call("GET", "/v3/contact_card", key, conn=conn)
            if status != 200:
                raise HarnessError(f"{server.name}: GET all answered {status}: {body[:300]!r}")
            count = len(orjson.loads(body)["contact_cards"])
            if count != expected:
                raise HarnessError(f"{server.name}: GET all returned {count} cards, expected {expected}")
            same_body = baseline() == body

            def over_http(server=server, key=key, conn=conn) -> None:
                status, _ = server.call("GET", "/v3/contact_card", key, conn=conn)
                if status != 200:
                    raise HarnessError(f"{server.name}: GET all answered {status} during the figure")

            sides = [
                Side("server", f"GET all {db}: server", lambda _s, f=over_http: _timed_block(f, n)),
                Side("baseline", f"GET all {db}: baseline", lambda _s, f=baseline: _timed_block(f, n)),
            ]
            for side in sides:
                side.show = lambda result: f"{result['ms']:.1f} ms"
            interleave(sides, rounds=run.config.rounds, duration=0, warmup=0, log=run.log)
        finally:
            conn.close()
            close()
        notes = [f"{expected} cards, {len(body) / 1e6:.2f} MB body"]
        if not same_body:
            notes.append("WARNING: the baseline's body differs from the server's")
        title = f"GET all, {expected:,} cards, time per request"
        rows.append(compare(2, db, title, "ms", "get_all", sides[0], sides[1], key="ms", notes=notes))
        raw = {"cards": expected, "body_bytes": len(body), "same_body": same_body}
        run.raw["get_all"][db] = {**raw, **{side.name: side.raw() for side in sides}}
    return rows


# --- figure 3: the image pipeline in-process vs pyvips, and POST over HTTP ---------------


def images(run) -> list[dict]:
    rows = image_work(run)
    run.raw["post"] = {}
    for db in run.databases:
        rows += post_images(run, db)
        (server,) = run.servers((db, "small", True))
        run.raw.setdefault("peak_rss", {}).setdefault(db, {})["after_posts_status_kib"] = server.status()
    threads = next((e["vips"].get("vips_concurrency", "?") for es in run.raw["image_work"].values() for e in es), "?")
    run.notes += [
        "POST latency: sequential POSTs on one keep-alive connection, each to a fresh line; it covers the "
        "fetch from the loopback image host, normalise(), the CDN write, the database writes and the simulated "
        "device; the servers run with CONTACTCARD_IMAGE_MAX_BYTES=64 MiB (a 12 MP PNG exceeds the 10 MB default) "
        "and CONTACTCARD_WRITE_BUDGET=0",
        f"pyvips baseline uses libvips's default thread pool ({threads} threads); normalise() runs on one thread",
    ]
    return rows


def image_work(run) -> list[dict]:
    config, paths = run.config, run.images
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
            run.log(f"  round {r + 1}/{config.rounds} {name}: normalise {s:.0f} ms, pyvips {v:.0f} ms")
    run.raw["image_work"] = raw
    rows = []
    for name, entries in raw.items():

        def per_round(impl: str, key: str, scale: float, entries=entries) -> list[float]:
            return [median(i[key] for i in e[impl]["images"]) * scale for e in entries]

        def retained(impl: str, entries=entries) -> float:
            return median(e[impl]["retained_per_image_kib"] for e in entries) / KIB_PER_MIB

        s_wall, v_wall = per_round("server", "wall_s", 1000), per_round("vips", "wall_s", 1000)
        cpu = spread(ratios(per_round("server", "cpu_s", 1000), per_round("vips", "cpu_s", 1000)))
        s_mem, v_mem = (per_round(impl, "peak_above_loaded_kib", 1 / KIB_PER_MIB) for impl in ("server", "vips"))
        s_ws, v_ws = (median(per_round(impl, "peak_growth_kib", 1 / KIB_PER_MIB)) for impl in ("server", "vips"))
        wall = {"subject": spread(s_wall), "baseline": spread(v_wall), "ratio": spread(ratios(s_wall, v_wall))}
        target = "image_jpeg" if name == "JPEG" else "image_other"
        notes = [f"CPU-time ratio median {cpu['median']:.2f}" if cpu else ""]
        rows.append(row(3, "-", f"image work, 12 MP {name}", "ms", target, notes=notes, **wall))
        memory = {"subject": spread(s_mem), "baseline": spread(v_mem)}
        memory["ratio"] = spread(ratios(s_mem, v_mem)) if all(v_mem) else None
        notes = [
            f"working set (peak above the RSS just before the image): normalise {s_ws:.1f} MiB, "
            f"pyvips {v_ws:.1f} MiB; RSS retained per image: normalise {retained('server'):+.1f} MiB, "
            f"pyvips {retained('vips'):+.1f} MiB"
        ]
        title = f"image memory growth per image, 12 MP {name}"
        rows.append(row(3, "-", title, "MiB", "image_memory", notes=notes, **memory))
    return rows


def post_images(run, db: str) -> list[dict]:
    (server,) = run.servers((db, "small", True))
    seeded = run.seeded(db, "small")
    numbers, key, conn = iter(seeded.post_numbers), seeded.keys[0], server.connection()
    rows, run.raw["post"][db] = [], {}
    try:
        for name in FORMATS:
            times = []
            for i in range(1 + run.config.posts_per_format):  # the first one warms up
                phone = next(numbers, None)
                if phone is None:
                    raise HarnessError("not enough seeded POST lines")
                body = {
                    "phone_number": phone,
                    "first_name": "Bench",
                    "last_name": name,
                    "image_url": run.host.url(name),
                }
                started = time.perf_counter()
                status, answer = server.call("POST", "/v3/contact_card", key, body, conn=conn)
                elapsed = time.perf_counter() - started
                if status != 200:
                    raise HarnessError(f"{server.name}: POST {name} answered {status}: {answer[:400]!r}")
                card = orjson.loads(answer)
                if not card.get("image_url") or card.get("is_active") is not True:
                    raise HarnessError(
                        f"{server.name}: POST {name} did not set up an active card with an image: {card}"
                    )
                if i:
                    times.append(elapsed * 1000)
            run.raw["post"][db][name] = times
            run.log(f"  POST {db} {name}: median {median(times):.0f} ms")
            title = f"POST, 12 MP {name}: full latency (info)"
            rows.append(row(3, db, title, "ms", None, subject=spread(times)))
    finally:
        conn.close()
    return rows


# --- figure 4: cold start --------------------------------------------------------------


def cold_start(run) -> list[dict]:
    stop_all()  # alone on the machine
    config = run.config
    seconds: list[float] = []
    failures: list[str] = []
    for i in range(config.cold_starts):
        key = f"cc_bench_cold_{secrets.token_urlsafe(16)}"
        server = contactcard_server(
            f"cold-start-{i}",
            port=free_port(),
            data_dir=run.tmp / f"cold-{i}",
            log_dir=run.tmp,
            settings={**run.settings, "CONTACTCARD_DEMO_API_KEY": key},
        )
        server.ready_path, server.ready_key = "/v3/contact_card", key
        try:
            server.start()
            seconds.append(server.wait_ready(timeout=60, poll=0.005))
            run.log(f"  cold start {i + 1}/{config.cold_starts}: {seconds[-1]:.2f} s")
        except HarnessError as exc:  # the server failed to start: a server problem, reported
            failures.append(str(exc))
            run.log(f"  cold start {i + 1}/{config.cold_starts} FAILED: {str(exc).splitlines()[0]}")
        finally:
            server.stop()
    run.raw["cold_start_s"] = {"seconds": seconds, "failures": failures}
    notes = ["GET /v3/contact_card with the demo key, polled every 5 ms"]
    notes += [f"start failed: {' | '.join(f.splitlines()[-3:])}" for f in failures[:1]]
    title = "cold start to first answered GET, empty DB"
    return [row(4, "SQLite", title, "s", "cold_start_s", subject=spread(seconds), broken=bool(failures), notes=notes)]
