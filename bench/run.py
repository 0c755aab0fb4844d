"""One benchmark run: set up data and servers, measure every figure, report."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import HarnessError, MissingDependency
from bench.config import ALL_FIGURES, REPO, Config
from bench.figures import (
    Backend,
    Target,
    check_get_by_number,
    cold_start,
    get_all,
    get_load,
    get_rows,
    image_work,
    memo_off_rows,
    peak_rss_row,
    pg_session_probe,
    post_images,
)
from bench.images import FORMATS, ImageHost, test_images
from bench.images import describe as describe_images
from bench.load import ensure_wrk, write_pairs, wrk_version
from bench.machine import describe
from bench.report import finish_rows, print_table, write_all
from bench.seed import (
    create_database,
    drop_database,
    postgres_reachable,
    seed_postgres,
    seed_sqlite,
    with_database,
)
from bench.servers import bare_server, clean_env, contactcard_server, free_port, read_options, stop_all

_DB_ORDER = {"SQLite": 0, "PostgreSQL": 1, "-": 2}


class Log:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:5.0f} s] {message}", flush=True)


def ensure_image_libs(log: Log) -> str:
    """The baseline's libvips: Debian's libvips42 (installed when root), whose libheif can
    read HEIC; the server's own libvips comes from PyPI. Returns its version."""
    probe = [
        sys.executable,
        "-c",
        "from bench.imagework import system_pyvips; v = system_pyvips().version; print('%d.%d.%d' % (v(0), v(1), v(2)))",
    ]

    def attempt() -> subprocess.CompletedProcess:
        return subprocess.run(probe, capture_output=True, text=True, env=clean_env({}), cwd=REPO)

    done = attempt()
    if done.returncode == 0:
        return done.stdout.strip()
    if os.geteuid() != 0:
        raise MissingDependency(
            f"pyvips cannot load the system's libvips ({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else '?'}): "
            "install Debian's package with `sudo apt-get install -y libvips42`."
        )
    log("libvips is missing: apt-get install -y libvips42")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    installed = subprocess.run(["apt-get", "install", "-y", "libvips42"], env=env, capture_output=True, text=True)
    if installed.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True)
        installed = subprocess.run(["apt-get", "install", "-y", "libvips42"], env=env, capture_output=True, text=True)
    done = attempt()
    if done.returncode != 0:
        raise MissingDependency(
            f"libvips42 could not be installed or loaded:\n{installed.stderr[-1500:]}\n{done.stderr[-1500:]}"
        )
    return done.stdout.strip()


def ensure_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingDependency(
            "matplotlib is not installed: install the bench extra, e.g. `.venv/bin/pip install -e '.[bench]'`."
        ) from None


def run(config: Config) -> int:
    log = Log()
    wrk = ensure_wrk()
    libvips = ensure_image_libs(log)
    ensure_matplotlib()
    machine = describe()
    log(
        f"contactcard benchmark ({'quick' if config.quick else 'full'}): {machine['cpu_model']}, {machine['cores']} cores"
    )
    log("client (wrk and this process) and the servers share these cores: figures are ratios to same-run baselines")

    wanted = config.figures
    if wanted != ALL_FIGURES:
        log(f"figures {', '.join(map(str, sorted(wanted)))} only (--figures)")
    tmp = Path(tempfile.mkdtemp(prefix="contactcard-bench-"))
    rows: list[dict] = []
    raw: dict = {}
    notes: list[str] = []
    pg_databases: list[str] = []
    meta: dict = {"config": config.public(), "machine": machine, "wrk_version": wrk_version(wrk), "libvips": libvips}
    previous_term = signal.signal(signal.SIGTERM, _interrupted)
    try:
        images = test_images(log)
        meta["images"] = describe_images(images)
        post_lines = len(FORMATS) * (1 + config.posts_per_format) + 8
        seed_args = dict(per_partner=config.cards_per_partner, sample=config.get_numbers)

        log(f"seeding SQLite: {config.small_cards:,} and {config.large_cards:,} cards")
        sq_small = seed_sqlite(tmp / "sqlite-small", total_cards=config.small_cards, post_lines=post_lines, **seed_args)
        sq_large = seed_sqlite(tmp / "sqlite-large", total_cards=config.large_cards, post_lines=0, **seed_args)
        raw["seed"] = {"sqlite_small": sq_small.public(), "sqlite_large": sq_large.public()}
        # The bare baseline runs `contactcard serve` too (for its exact uvicorn options): on a
        # copy of a migrated database, so that it starts without migrating or seeding a demo.
        (tmp / "bare").mkdir()
        shutil.copyfile(tmp / "sqlite-small" / "contactcard.db", tmp / "bare" / "contactcard.db")
        log(f"  seeded in {sq_small.seconds + sq_large.seconds:.1f} s")

        pg_small = pg_large = None
        pg_urls: dict[str, str] = {}
        if config.postgres_url:
            version = postgres_reachable(config.postgres_url)
            meta["postgres_version"] = version
            if version is None:
                notes.append("PostgreSQL was not reachable at the bench URL: its figures were skipped")
                log("PostgreSQL not reachable: skipping its figures")
            else:
                base = f"contactcard_bench_{secrets.token_hex(4)}"
                for size in ("small", "large"):
                    name = f"{base}_{size}"
                    create_database(config.postgres_url, name)
                    pg_databases.append(name)
                    pg_urls[size] = with_database(config.postgres_url, name)
                log(f"seeding PostgreSQL {version} ({base}_small, {base}_large)")
                pg_small = seed_postgres(
                    pg_urls["small"], total_cards=config.small_cards, post_lines=post_lines, **seed_args
                )
                pg_large = seed_postgres(pg_urls["large"], total_cards=config.large_cards, post_lines=0, **seed_args)
                raw["seed"].update(postgres_small=pg_small.public(), postgres_large=pg_large.public())
                log(f"  seeded in {pg_small.seconds + pg_large.seconds:.1f} s")
        else:
            notes.append("PostgreSQL figures skipped (--skip-postgres)")

        with ImageHost(images) as host:
            settings = {
                "CONTACTCARD_WRITE_BUDGET": "0",
                "CONTACTCARD_IMAGE_ALLOWED_HOSTS": host.host_port,
                # 12 MP PNGs are ~18 MB; the default 10 MB cap would refuse them.
                "CONTACTCARD_IMAGE_MAX_BYTES": str(64 * 2**20),
                "CONTACTCARD_LOG_LEVEL": config.log_level,
            }
            meta["server_settings"] = {k: v for k, v in settings.items() if k != "CONTACTCARD_IMAGE_ALLOWED_HOSTS"}

            def server(name: str, data_dir: str, url: str | None = None, memo: bool = True):
                own = settings if memo else {**settings, "CONTACTCARD_READ_CACHE_SIZE": "0"}
                return contactcard_server(
                    name, port=free_port(), data_dir=tmp / data_dir, log_dir=tmp, database_url=url, settings=own
                )

            sqlite = Backend(
                "SQLite",
                server("sqlite-small", "sqlite-small"),
                server("sqlite-large", "sqlite-large"),
                sq_small,
                sq_large,
                f"sqlite:///{(tmp / 'sqlite-large' / 'contactcard.db').resolve()}",
                write_pairs(tmp / "pairs-sqlite-small.txt", sq_small.pairs),
                write_pairs(tmp / "pairs-sqlite-large.txt", sq_large.pairs),
            )
            sqlite.small_off = server("sqlite-small-memo-off", "sqlite-small", memo=False)
            sqlite.large_off = server("sqlite-large-memo-off", "sqlite-large", memo=False)
            backends = [sqlite]
            if pg_small and pg_large:
                backends.append(
                    Backend(
                        "PostgreSQL",
                        server("postgres-small", "pg-small", pg_urls["small"]),
                        server("postgres-large", "pg-large", pg_urls["large"]),
                        pg_small,
                        pg_large,
                        pg_urls["large"],
                        write_pairs(tmp / "pairs-pg-small.txt", pg_small.pairs),
                        write_pairs(tmp / "pairs-pg-large.txt", pg_large.pairs),
                        small_off=server("postgres-small-memo-off", "pg-small", pg_urls["small"], memo=False),
                    )
                )
            log("starting the servers")
            for b in backends:
                for s in (b.small, b.large, b.small_off, b.large_off):
                    if s is not None:
                        s.start()
            for b in backends:
                for s, seed in (
                    (b.small, b.small_seed),
                    (b.large, b.large_seed),
                    (b.small_off, b.small_seed),
                    (b.large_off, b.large_seed),
                ):
                    if s is not None:
                        s.wait_ready()
                        check_get_by_number(s, *seed.pairs[0])
                body = check_get_by_number(b.small, *b.small_seed.pairs[0])
                if b.name == "SQLite":
                    (tmp / "bare-body.json").write_bytes(body)
            bare = bare_server(
                port=free_port(),
                body_file=tmp / "bare-body.json",
                options_file=tmp / "uvicorn-options.json",
                data_dir=tmp / "bare",
                log_dir=tmp,
                settings={"CONTACTCARD_LOG_LEVEL": config.log_level},
            ).start()
            bare.wait_ready()
            meta["uvicorn_options"] = {
                k: v for k, v in read_options(tmp / "uvicorn-options.json").items() if k not in ("port",)
            }
            if not meta["uvicorn_options"]:
                raise HarnessError("the bare baseline did not record uvicorn's options (contactcard serve changed?)")

            bare_target = Target("bare", "bare ASGI", bare, sqlite.small_pairs)
            targets = [bare_target]
            pairs_of: dict[str, tuple[Target, Target]] = {}
            memo_off: dict[str, tuple[Target, Target | None]] = {}
            for b in backends:
                small = Target(b.small.name, f"{b.name} {b.small_seed.total_cards:,} cards", b.small, b.small_pairs)
                large = Target(b.large.name, f"{b.name} {b.large_seed.total_cards:,} cards", b.large, b.large_pairs)
                if b.name == "PostgreSQL":
                    small.probe = pg_session_probe(config.postgres_url, pg_databases[0])
                    large.probe = pg_session_probe(config.postgres_url, pg_databases[1])
                targets += [small, large]
                pairs_of[b.name] = (small, large)
                if b.small_off is not None:
                    off = Target(b.small_off.name, f"{small.label}, memo off", b.small_off, b.small_pairs)
                    off_large = (
                        Target(b.large_off.name, f"{large.label}, memo off", b.large_off, b.large_pairs)
                        if b.large_off is not None
                        else None
                    )
                    targets += [t for t in (off, off_large) if t is not None]
                    memo_off[b.name] = (off, off_large)

            raw["peak_rss"] = {}
            if wanted & {1, 5, 6}:
                log(
                    f"figures 1, 5, 6: GET by number, wrk -t{config.threads} -c{config.connections} -d{config.duration}s, {config.rounds} rounds"
                )
                get_load(config, wrk, targets, log)
                raw["get_load"] = {t.name: {"label": t.label, "warmup": t.warmup, "rounds": t.results} for t in targets}
                for b in backends:
                    small, large = pairs_of[b.name]
                    rows += get_rows(
                        bare_target, small, large, b.name, b.small_seed.total_cards, b.large_seed.total_cards
                    )
                    if b.name in memo_off:
                        off, off_large = memo_off[b.name]
                        rows += memo_off_rows(
                            bare_target, off, off_large, b.name, b.small_seed.total_cards, b.large_seed.total_cards
                        )
                    r, peak = peak_rss_row(b.small, bare, b.name)
                    rows.append(r)
                    raw["peak_rss"][b.name] = {**peak, "large_server_status_kib": b.large.status()}

            if 2 in wanted:
                log(f"figure 2: GET all for a partner with {sq_large.partner0_cards:,} cards, sequential")
                raw["get_all"] = {}
                for b in backends:
                    r, detail = get_all(config, b, log)
                    rows.append(r)
                    raw["get_all"][b.name] = detail

            if 3 in wanted:
                log("figure 3: image work in-process, normalise() vs pyvips, fresh process per side")
                image_rows, raw["image_work"] = image_work(config, images, log)
                rows += image_rows

                log("figure 3 (information): POST with a 12 MP image over HTTP")
                raw["post"] = {}
                for b in backends:
                    post_rows, raw["post"][b.name] = post_images(config, b.name, b.small, b.small_seed, host, log)
                    rows += post_rows
                    raw["peak_rss"].setdefault(b.name, {})["after_posts_status_kib"] = b.small.status()
            stop_all()

        if 4 in wanted:
            log("figure 4: cold start on an empty SQLite directory")
            r, raw["cold_start_s"] = cold_start(config, tmp, settings, log)
            rows.append(r)
    except KeyboardInterrupt:
        print("interrupted: stopping the servers", file=sys.stderr)
        return 130
    finally:
        stop_all()
        for name in pg_databases:
            try:
                drop_database(config.postgres_url, name)
            except Exception as exc:  # report, do not hide the run's own error
                print(f"could not drop database {name}: {exc}", file=sys.stderr)
        if config.keep:
            print(f"kept the run's folder (logs, databases): {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous_term)

    rows = [r for r in rows if r["figure"] in wanted]
    rows.sort(key=lambda r: (r["figure"], r.get("target") is None, _DB_ORDER.get(r["db"], 9)))
    finish_rows(rows)
    meta["load_average_at_end"] = list(os.getloadavg())
    meta["wall_seconds"] = log.elapsed()
    meta["notes"] = notes + [
        "POST latency: sequential POSTs on one keep-alive connection, each to a fresh line; it covers the "
        "fetch from the loopback image host, normalise(), the CDN write, the database writes and the simulated "
        "device; the servers run with CONTACTCARD_IMAGE_MAX_BYTES=64 MiB (a 12 MP PNG exceeds the 10 MB default) "
        "and CONTACTCARD_WRITE_BUDGET=0",
        f"pyvips baseline uses libvips's default thread pool ({_vips_threads(raw)} threads); "
        "normalise() runs on one thread",
    ]
    print_table(rows, meta)
    written = write_all(rows, meta, raw, config.out, config.docs)
    for kind, path in written.items():
        log(f"wrote {kind}: {path}")
    return 0


def _vips_threads(raw: dict) -> str:
    for entries in raw.get("image_work", {}).values():
        for entry in entries:
            return str(entry["vips"].get("vips_concurrency", "?"))
    return "?"


def _interrupted(signum, frame) -> None:
    raise KeyboardInterrupt
