"""What one run measures and how long: the full run and the short `--quick` mode."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "bench"
CACHE_DIR = BENCH_DIR / ".cache"
DEFAULT_OUT = BENCH_DIR / "results"
DOCS_DIR = REPO / "docs" / "bench"
DEFAULT_POSTGRES_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"

# Targets live here, in the benchmark's report, never as assertions in tests:
# key: (comparison, limit, unit). Unit "×" is a ratio to the same-run baseline; any other
# unit is an absolute value of the subject.
TARGETS = {
    "get_rps": (">=", 0.30, "×"),  # figure 1: server req/s >= 0.30 x bare ASGI app's
    "get_p99": ("<=", 2.0, "×"),  # figure 1: server p99 <= 2 x bare ASGI app's
    "get_all": ("<=", 1.5, "×"),  # figure 2: server time <= 1.5 x raw query + orjson.dumps
    "image_jpeg": ("<=", 1.2, "×"),  # figure 3: normalise() <= 1.2 x pyvips for JPEG
    "image_other": ("<=", 1.5, "×"),  # figure 3: ... <= 1.5 x for PNG, WebP, HEIC
    "image_memory": ("<=", 1.0, "×"),  # figure 3: memory growth per image <= pyvips's
    "cold_start_s": ("<=", 1.0, "s"),  # figure 4: seconds, absolute
    "peak_rss_mib": ("<=", 80.0, "MiB"),  # figure 5: MiB, absolute
    "db_size": (">=", 0.90, "×"),  # figure 6: req/s with 10^6 cards >= 0.90 x with 10^3
    "write_rps": (">=", 0.50, "×"),  # figure 7: PATCH writes/s >= 0.5 x the raw-SQL floor (64, 256 conns)
    "write_p99_ms": ("<=", 100.0, "ms"),  # figure 7: PATCH p99 at 64 connections, absolute
    "write_failed": ("<=", 0.0, "requests"),  # figure 7: non-2xx answers + socket errors, absolute
    "mixed_rps": (">=", 0.50, "×"),  # figure 8: 5 % PATCH / 95 % GET req/s >= 0.5 x pure GET, memo off
    "metrics_cost": (">=", 0.95, "×"),  # figure 9: GET req/s with metrics on >= 0.95 x metrics off
    "journal_rps": (">=", 0.95, "×"),  # figure 10: GET by number req/s, journal on >= 0.95 x journal off
    "dashboard_ms": ("<=", 200.0, "ms"),  # figure 11: each dashboard page, median, absolute
    "webhook_write_cost": ("<=", 1.1, "×"),  # figure 12: a write's answer time, three subscriptions <= 1.1 x none
    "webhook_write_rps": (">=", 0.90, "×"),  # figure 12: writes/s at 64 connections, three subscriptions >= 0.9 x none
    "webhook_write_p99": ("<=", 1.2, "×"),  # figure 12: p99 of those writes, three subscriptions <= 1.2 x none
    "webhook_drain_s": ("<=", 2.0, "s"),  # figure 12: the last event's arrival after the load ended, absolute
    "webhook_latency_ms": ("<=", 50.0, "ms"),  # figure 12: delivery after the write's answer, p50, absolute
    "webhook_drain": (">=", 3000.0, "/s"),  # figure 12: deliveries per second from a backlog, absolute
    "webhook_cpu_ms": ("<=", 0.3, "ms"),  # figure 12: the server's CPU per delivery from a backlog, absolute
    "webhook_fair_p99_ms": ("<=", 100.0, "ms"),  # figure 12: a healthy subscription's delay p99 beside a slow one
}


ALL_FIGURES = frozenset(range(1, 13))


@dataclass
class Config:
    quick: bool
    rounds: int
    duration: int  # seconds of each measured wrk run of the GET figures
    warmup: int  # seconds of the one warm-up run per measured side
    threads: int = 2
    connections: int = 64
    small_cards: int = 1_000
    large_cards: int = 1_000_000
    cards_per_partner: int = 10_000  # so the figure-2 partner has 10,000 cards
    get_numbers: int = 1_000  # (key, number) pairs the GET load rotates through
    get_all_requests: int = 15  # sequential GET-all requests per round (and baseline calls)
    images_per_worker: int = 4  # images each in-process image worker times (after one warm-up)
    posts_per_format: int = 4  # full POSTs over HTTP per image format and database
    cold_starts: int = 3
    write_duration: int = 5  # seconds of each measured run of figures 7 and 8 (floor included)
    write_connections: tuple[int, ...] = (1, 64, 256)  # figure 7's wrk connections
    write_lines: int = 200  # lines (each with a card) of the one partner figures 7 and 8 write to
    write_timeout: float = 5.0  # a write unanswered this long has failed (wrk --timeout; the settling after)
    mixed_patch_share: float = 0.05  # figure 8: the share of PATCHes among the requests
    floor_threads: int = 16  # figure 7's PostgreSQL floor: threads, one connection each
    out: Path = DEFAULT_OUT
    docs: Path | None = DOCS_DIR
    postgres_url: str | None = DEFAULT_POSTGRES_URL
    log_level: str = "info"  # the server's default, so uvicorn's access log is on, as deployed
    keep: bool = False
    figures: frozenset[int] = ALL_FIGURES
    extra: dict = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        *,
        quick: bool,
        rounds: int | None,
        duration: int | None,
        out: Path | None,
        docs: bool | None,
        skip_postgres: bool,
        postgres_url: str | None,
        keep: bool,
        figures: frozenset[int] | None = None,
    ) -> Config:
        if quick:
            config = cls(
                quick=True,
                rounds=1,
                duration=2,
                warmup=1,
                large_cards=10_000,
                get_numbers=500,
                get_all_requests=3,
                images_per_worker=1,
                posts_per_format=1,
                cold_starts=1,
                write_duration=2,
            )
        else:
            config = cls(quick=False, rounds=3, duration=10, warmup=2)
        if rounds is not None:
            config.rounds = max(1, rounds)
            config.cold_starts = max(1, rounds)
        if duration is not None:
            config.duration = config.write_duration = max(1, duration)
        config.out = (out or DEFAULT_OUT).resolve()
        # Only a full run is recorded in the docs, so CI's quick runs never overwrite it.
        write_docs = (not quick) if docs is None else docs
        config.docs = DOCS_DIR if write_docs else None
        if skip_postgres:
            config.postgres_url = None
        else:
            config.postgres_url = postgres_url or os.environ.get("CONTACTCARD_BENCH_POSTGRES_URL", DEFAULT_POSTGRES_URL)
        config.keep = keep
        if figures is not None:
            config.figures = figures
            if figures != ALL_FIGURES and docs is None:
                config.docs = None  # a partial run never replaces the recorded one
        return config

    def public(self) -> dict:
        data = asdict(self)
        data["out"] = str(self.out)
        data["docs"] = str(self.docs) if self.docs else None
        data["figures"] = sorted(self.figures)
        if self.postgres_url:
            from sqlalchemy.engine import make_url

            data["postgres_url"] = make_url(self.postgres_url).render_as_string(hide_password=True)
        return data
