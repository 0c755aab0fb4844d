"""Small statistics helpers: every figure is reported as min / median / max."""

from __future__ import annotations

import statistics
from collections.abc import Iterable


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
