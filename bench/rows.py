"""The report's rows and the statistics in them: every figure is min / median / max over
the rounds, and a ratio is taken per round (subject and baseline measured back to back).

A row is a dict: figure, db, title, unit, subject/baseline spreads, the per-round ratios'
spread, the target key (bench.config.TARGETS, or `info_target` for an information row shown
beside the target it would have), `broken` and notes. Verdicts are decided in
bench/report.py, on the median.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from bench.load import Side


def spread(values: Iterable[float]) -> dict[str, float] | None:
    data = [float(v) for v in values]
    if not data:
        return None
    return {"min": min(data), "median": statistics.median(data), "max": max(data), "n": len(data)}


def ratios(subject: list[float], baseline: list[float]) -> list[float]:
    """Per-round ratios subject/baseline (rounds pair up by position)."""
    return [s / b for s, b in zip(subject, baseline, strict=True) if b]


def median(values: Iterable[float]) -> float:
    return statistics.median(list(values))


def row(figure: int, db: str, title: str, unit: str, target: str | None, **fields) -> dict:
    blank = {"subject": None, "baseline": None, "ratio": None, "notes": []}
    return {"figure": figure, "db": db, "title": title, "unit": unit, "target": target, **blank, **fields}


def compare(
    figure: int,
    db: str,
    title: str,
    unit: str,
    target: str,
    subject: Side,
    baseline: Side | None,
    key: str = "rps",
    *,
    info: bool = False,
    notes: Iterable[str] = (),
    checked: bool = True,
) -> dict:
    """A row of `subject` against `baseline` (per-round ratio of `key`), or of `subject`
    alone (absolute) without one. `info`: shown beside `target`, without a verdict.
    `checked`: failed requests make the row broken (figures whose failures are counted by a
    row of their own say False)."""
    sides = [s for s in (baseline, subject) if s is not None]
    values = subject.values(key)
    fields = {
        "subject": spread(values),
        "baseline": spread(baseline.values(key)) if baseline else None,
        "ratio": spread(ratios(values, baseline.values(key))) if baseline else None,
        "broken": checked and broken(*sides),
        "notes": (error_notes(*sides) if checked else []) + probe_notes(subject) + list(notes),
    }
    if info:
        return row(figure, db, f"{title} (info)", unit, None, info_target=target, **fields)
    return row(figure, db, title, unit, target, **fields)


def error_notes(*sides: Side) -> list[str]:
    notes = []
    for side in sides:
        status = sum(r["status_errors"] for r in side.results)
        other = sum(r["errors"] for r in side.results) - status
        if status:
            notes.append(f"{side.label}: {status} non-2xx answers")
        if other:
            notes.append(f"{side.label}: {other} socket errors/timeouts")
    return notes


def probe_notes(side: Side) -> list[str]:
    opened = [r["probe_delta"]["sessions"] for r in side.results if "sessions" in r.get("probe_delta", {})]
    if not opened or median(opened) <= 0:
        return []
    seconds = side.results[0]["duration_us"] / 1e6
    sessions = f"{median(opened):.0f} new PostgreSQL sessions per {seconds:.0f} s run"
    return [f"{side.label}: {sessions} (median; pg_stat_database.sessions)"]


def broken(*sides: Side) -> bool:
    """A load figure means nothing when its requests failed (a non-2xx answer, or socket
    errors above 0.1 % of the requests)."""
    for side in sides:
        requests = sum(r["requests"] for r in side.results)
        if any(r["status_errors"] for r in side.results) or sum(r["errors"] for r in side.results) > 0.001 * max(
            1, requests
        ):
            return True
    return False


def powers(n: int) -> str:
    mantissa, exponent = f"{n:.0e}".split("e")  # 1e+06
    return f"10^{int(exponent)}" if mantissa == "1" else f"{n:,}"
