"""One benchmark run: what its figures share (databases and servers, made on first use),
every figure wanted, and the report."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench import HarnessError, dashboard
from bench.config import ALL_FIGURES, Config
from bench.deps import ensure_image_libs, ensure_matplotlib, ensure_wrk, wrk_version
from bench.images import FORMATS, ImageHost, test_images
from bench.images import describe as describe_images
from bench.load import Side, interleave, write_pairs
from bench.machine import describe
from bench.report import finish_rows, print_table, write_all
from bench.seed import (
    Seeded,
    create_database,
    drop_database,
    number,
    postgres_reachable,
    seed_postgres,
    seed_sqlite,
    with_database,
)
from bench.servers import Server, contactcard_server, free_port, read_options, stop_all

_DB_ORDER = {"SQLite": 0, "PostgreSQL": 1, "-": 2}
PREFIX = {"SQLite": "sqlite", "PostgreSQL": "postgres"}


# Servers that differ from the shipped one by a setting, named in `Run.servers`.
class Log:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.started:5.0f} s] {message}", flush=True)


# The settings of each server variant the figures compare against the server as it ships.
VARIANTS: dict[str, dict[str, str]] = {
    "": {},
    "memo-off": {"CONTACTCARD_READ_CACHE_SIZE": "0"},
    "metrics-off": {"CONTACTCARD_METRICS": "off"},
    "journal-off": {"CONTACTCARD_JOURNAL_SIZE": "0"},
    "dashboard": {},  # with the admin token (below), which switches the dashboard on
    "workers-2": {},  # `serve --workers 2` (VARIANT_ARGS)
}
# Variants that change the command line rather than a setting.
VARIANT_ARGS: dict[str, list[str]] = {"workers-2": ["--workers", "2"]}


class Run:
    """What the figures of one run share. Databases come in three sizes: `small` (10^3
    cards, and figure 3's lines without a card), `large` (10^6; 10^4 in quick mode) and
    `writes` (one partner with `write_lines` lines, each with a card); each is seeded, and
    each server started, the first time a figure asks for it."""

    def __init__(self, config: Config, wrk: str, log: Log, tmp: Path) -> None:
        self.config, self.wrk, self.log, self.tmp = config, wrk, log, tmp
        self.raw: dict = {"seed": {}}
        self.notes: list[str] = []
        self.meta: dict = {}
        self.settings = {"CONTACTCARD_WRITE_BUDGET": "0", "CONTACTCARD_LOG_LEVEL": config.log_level}
        self.admin_token = f"cc_bench_admin_{secrets.token_urlsafe(16)}"
        self.host: ImageHost | None = None  # figure 3's image host, and its test files
        self.images: dict[str, Path] = {}
        self.databases = ["SQLite"]
        self.pg_base = f"contactcard_bench_{secrets.token_hex(4)}"
        self.pg_databases: list[str] = []
        self._seeds: dict[tuple[str, str], Seeded] = {}
        self._urls: dict[tuple[str, str], str] = {}
        self._servers: dict[str, Server] = {}
        self._bare: Server | None = None

    def add_postgres(self) -> None:
        url = self.config.postgres_url
        if not url:
            self.notes.append("PostgreSQL figures skipped (--skip-postgres)")
            return
        self.meta["postgres_version"] = postgres_reachable(url)
        if self.meta["postgres_version"] is None:
            self.notes.append("PostgreSQL was not reachable at the bench URL: its figures were skipped")
            self.log("PostgreSQL not reachable: skipping its figures")
            return
        self.databases.append("PostgreSQL")

    def seeded(self, db: str, size: str) -> Seeded:
        found = self._seeds.get((db, size))
        if found is not None:
            return found
        config = self.config
        cards = {"small": config.small_cards, "large": config.large_cards, "writes": config.write_lines}[size]
        post_lines = len(FORMATS) * (1 + config.posts_per_format) + 8 if size == "small" else 0
        args = dict(total_cards=cards, per_partner=config.cards_per_partner, sample=config.get_numbers)
        self.log(f"seeding {db}: {cards:,} cards ({size})")
        if db == "SQLite":
            seeded = seed_sqlite(self.tmp / f"sqlite-{size}", post_lines=post_lines, **args)
        else:
            name = self.pg_name(size)
            create_database(config.postgres_url, name)
            self.pg_databases.append(name)
            self._urls[db, size] = with_database(config.postgres_url, name)
            seeded = seed_postgres(self._urls[db, size], post_lines=post_lines, **args)
        if size == "writes":  # every line of the partner, in order
            seeded.pairs = [(seeded.keys[0], number(0, i)) for i in range(cards)]
        self.log(f"  seeded in {seeded.seconds:.1f} s")
        self.raw["seed"][f"{PREFIX[db]}_{size}"] = seeded.public()
        self._seeds[db, size] = seeded
        return seeded

    def url(self, db: str, size: str) -> str:
        """The SQLAlchemy URL of a seeded database."""
        self.seeded(db, size)
        if db == "SQLite":
            return f"sqlite:///{(self.tmp / f'sqlite-{size}' / 'contactcard.db').resolve()}"
        return self._urls[db, size]

    def pg_name(self, size: str) -> str:
        return f"{self.pg_base}_{size}"

    def pairs(self, db: str, size: str) -> Path:
        """The file of (key, number) pairs the load rotates through (bench/load.lua)."""
        path = self.tmp / f"pairs-{PREFIX[db]}-{size}.txt"
        if not path.exists():
            write_pairs(path, self.seeded(db, size).pairs)
        return path

    def servers(self, *wanted: tuple[str, str, bool]) -> list[Server]:
        """`contactcard serve` on (db, size, memo) each, started together the first time."""
        return self.variants(*((db, size, "" if memo else "memo-off") for db, size, memo in wanted))

    def variants(self, *wanted: tuple[str, str, str], tag: str = "") -> list[Server]:
        """`contactcard serve` on (db, size, variant) each, started together the first time;
        a variant is the server as it ships ("") or with one thing switched off (VARIANTS).
        `tag`: instances of their own (figures that start a fresh pair each round)."""
        names, fresh = [], []
        for db, size, variant in wanted:
            folder = f"{PREFIX[db]}-{size}"  # SQLite's database, and the CDN's files
            names.append(name := folder + (f"-{variant}" if variant else "") + (f"-{tag}" if tag else ""))
            if name not in self._servers:
                settings = {**self.settings, **VARIANTS[variant]}
                if size == "writes" or variant == "dashboard":
                    settings["CONTACTCARD_ADMIN_TOKEN"] = self.admin_token
                url = None if db == "SQLite" else self.url(db, size)
                self.seeded(db, size)
                server = contactcard_server(name, port=free_port(), data_dir=self.tmp / folder, log_dir=self.tmp,
                                            database_url=url, settings=settings,
                                            args=VARIANT_ARGS.get(variant, []))  # fmt: skip
                self._servers[name] = server.start()
                fresh.append(server)
        for server in fresh:
            server.wait_ready()
        return [self._servers[name] for name in names]

    def bare(self, body: bytes) -> Server:
        """Figure 1's baseline, answering `body`. It runs `contactcard serve` too (for its
        exact uvicorn options): on a copy of a migrated database, so that it starts without
        migrating or seeding a demo."""
        if self._bare is None:
            folder = self.tmp / "bare"
            folder.mkdir()
            shutil.copyfile(self.tmp / "sqlite-small" / "contactcard.db", folder / "contactcard.db")
            (self.tmp / "bare-body.json").write_bytes(body)
            options = self.tmp / "uvicorn-options.json"
            settings = {
                "CONTACTCARD_LOG_LEVEL": self.config.log_level,
                "BENCH_BARE_BODY_FILE": str(self.tmp / "bare-body.json"),
                "BENCH_BARE_OPTIONS_FILE": str(options),
            }
            self._bare = contactcard_server(
                "bare-asgi", port=free_port(), data_dir=folder, log_dir=self.tmp, settings=settings, bare=True
            ).start()
            self._bare.wait_ready()
            self.meta["uvicorn_options"] = {k: v for k, v in read_options(options).items() if k != "port"}
            if not self.meta["uvicorn_options"]:
                raise HarnessError("the bare baseline did not record uvicorn's options (contactcard serve changed?)")
        return self._bare

    def interleave(self, sides: list[Side], duration: float | None = None) -> None:
        """The run's rounds of `sides` (bench/load.py), each measured run `duration` seconds."""
        config = self.config
        duration = config.duration if duration is None else duration
        interleave(sides, rounds=config.rounds, duration=duration, warmup=config.warmup, log=self.log)

    def close(self) -> None:
        stop_all()
        for name in self.pg_databases:
            try:
                drop_database(self.config.postgres_url, name)
            except Exception as exc:  # report, do not hide the run's own error
                print(f"could not drop database {name}: {exc}", file=sys.stderr)


def _figures() -> list[tuple[frozenset[int], Callable[[Run], list[dict]], str]]:
    from bench import figures, webhooks, writes

    return [  # in the order they run; cold start last (it stops every other server first)
        (frozenset({1, 5, 6}), figures.get_by_number, "figures 1, 5, 6: GET by number"),
        (frozenset({2}), figures.get_all, "figure 2: GET all for a partner with 10,000 cards, sequential"),
        (frozenset({3}), figures.images, "figure 3: image work in-process, and POST with a 12 MP image over HTTP"),
        (frozenset({7}), writes.patch_writes, "figure 7: PATCH under wrk against the raw-SQL floor"),
        (frozenset({8}), writes.mixed_load, "figure 8: 5 % PATCH, 95 % GET against pure GET with the memo off"),
        (frozenset({9}), figures.metrics_cost, "figure 9: GET by number with metrics on against metrics off"),
        (frozenset({10}), figures.journal_cost, "figure 10: GET by number, request journal on against off"),
        (frozenset({11}), dashboard.dashboard_pages, "figure 11: the dashboard's pages against GET all, same server"),
        (frozenset({12}), webhooks.webhook_figure, "figure 12: webhooks, write cost, delivery latency and drain rate"),
        (frozenset({4}), figures.cold_start, "figure 4: cold start on an empty SQLite directory"),
    ]


def run(config: Config) -> int:
    log = Log()
    wrk = ensure_wrk()
    wanted = config.figures
    libvips = ensure_image_libs() if 3 in wanted else None
    ensure_matplotlib()
    machine = describe()
    mode = "quick" if config.quick else "full"
    log(f"contactcard benchmark ({mode}): {machine['cpu_model']}, {machine['cores']} cores")
    log("client (wrk and this process) and the servers share these cores: figures are ratios to same-run baselines")
    if wanted != ALL_FIGURES:
        log(f"figures {', '.join(map(str, sorted(wanted)))} only (--figures)")
    tmp = Path(tempfile.mkdtemp(prefix="contactcard-bench-"))
    shared = Run(config, wrk, log, tmp)
    shared.meta.update(config=config.public(), machine=machine, wrk_version=wrk_version(wrk), libvips=libvips)
    rows: list[dict] = []
    previous_term = signal.signal(signal.SIGTERM, _interrupted)
    try:
        shared.add_postgres()
        if 3 in wanted:
            images = test_images(log)
            shared.meta["images"] = describe_images(images)
            shared.images, shared.host = images, ImageHost(images).__enter__()
            # 12 MP PNGs are ~18 MB; the default 10 MB cap would refuse them.
            shared.settings["CONTACTCARD_IMAGE_MAX_BYTES"] = str(64 * 2**20)
            shared.settings["CONTACTCARD_IMAGE_ALLOWED_HOSTS"] = shared.host.host_port
        shared.meta["server_settings"] = {
            k: v for k, v in shared.settings.items() if k != "CONTACTCARD_IMAGE_ALLOWED_HOSTS"
        }
        for numbers, figure, title in _figures():
            if numbers & wanted:
                log(title)
                rows += figure(shared)
    except KeyboardInterrupt:
        print("interrupted: stopping the servers", file=sys.stderr)
        return 130
    finally:
        shared.close()
        if shared.host is not None:
            shared.host.__exit__(None, None, None)
        if config.keep:
            print(f"kept the run's folder (logs, databases): {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        signal.signal(signal.SIGTERM, previous_term)

    rows = [r for r in rows if r["figure"] in wanted]
    rows.sort(key=lambda r: (r["figure"], r.get("target") is None, _DB_ORDER.get(r["db"], 9)))
    finish_rows(rows)
    meta = shared.meta
    meta["load_average_at_end"] = list(os.getloadavg())
    meta["wall_seconds"] = log.elapsed()
    meta["notes"] = shared.notes
    print_table(rows, meta)
    written = write_all(rows, meta, shared.raw, config.out, config.docs)
    for kind, path in written.items():
        log(f"wrote {kind}: {path}")
    return 0


def _interrupted(signum, frame) -> None:
    raise KeyboardInterrupt
