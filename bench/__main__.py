"""`python -m bench`: measure the real server over real HTTP on loopback (see bench/README.md).

Exit status: 0 when the run completed (whatever the figures; targets are reported, never
asserted), 1 when the harness itself broke, 2 when a tool or package it needs is missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench import HarnessError, MissingDependency
from bench.config import ALL_FIGURES, DEFAULT_OUT, Config


def parse(argv: list[str] | None = None) -> Config:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark the contactcard server against same-run baselines; print one table, "
        "write JSON, a PNG chart and Markdown.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="seconds, not minutes: 2 s wrk runs, 1 round, 10^4 cards (CI)"
    )
    parser.add_argument("--rounds", type=int, help="interleaved rounds of baseline and subject (default 3; quick 1)")
    parser.add_argument("--duration", type=int, help="seconds of each measured run (default 10, writes 5; quick 2)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for latest.json, bench.png, results.md")
    parser.add_argument("--skip-postgres", action="store_true", help="run the SQLite figures only")
    parser.add_argument(
        "--figures",
        type=_figures,
        help="comma-separated figure numbers to run, e.g. 1,6 or 7,8 (default: all; 1, 5 and 6 share one GET load)",
    )
    parser.add_argument(
        "--postgres-url",
        help="SQLAlchemy URL of a PostgreSQL server to create (and drop) databases contactcard_bench_* on "
        "(default: $CONTACTCARD_BENCH_POSTGRES_URL or postgresql+psycopg://root@127.0.0.1:5432/test)",
    )
    docs = parser.add_mutually_exclusive_group()
    docs.add_argument("--docs", action="store_true", default=None, help="record the run in docs/bench (full run: yes)")
    docs.add_argument(
        "--no-docs", dest="docs", action="store_false", help="do not touch docs/bench (default with --quick)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (server logs, databases)")
    return Config.build(**vars(parser.parse_args(argv)))


def _figures(text: str) -> frozenset[int]:
    try:
        chosen = frozenset(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of figure numbers: {text!r}") from None
    if not chosen or not chosen <= ALL_FIGURES:
        raise argparse.ArgumentTypeError(f"figures are numbered 1 to {max(ALL_FIGURES)}, got {text!r}")
    return chosen


def main(argv: list[str] | None = None) -> int:
    config = parse(argv)
    from bench.run import run

    try:
        return run(config)
    except MissingDependency as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except HarnessError as exc:
        print(f"bench: the harness failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
