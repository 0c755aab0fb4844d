"""Load and the interleaved rounds every figure shares.

`wrk` runs `load.lua`: GETs by number rotating through (key, number) pairs, or lines picked
at random with a share of PATCHes; it prints its summary as one JSON line. A `Side` is one
thing measured for some seconds (a wrk load on a server, or an in-process baseline);
`interleave` measures a figure's sides back to back, round after round, the order rotating.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from bench import HarnessError

LUA = Path(__file__).resolve().parent / "load.lua"
MARKER = "BENCH_JSON "
SOCKET_ERRORS = ("connect_errors", "read_errors", "write_errors", "timeouts")


def by_number(phone: str) -> str:
    return f"/v3/contact_card?phone_number={quote(phone, safe='')}"


def write_pairs(path: Path, pairs: list[tuple[str, str]]) -> Path:
    with open(path, "w") as out:
        for key, phone in pairs:
            out.write(f"{key}\t{by_number(phone)}\n")
    return path


def run_wrk(
    wrk: str,
    url: str,
    pairs_file: Path,
    *,
    duration: float,
    threads: int,
    connections: int,
    timeout: float = 10.0,
    patch_share: float = 0.0,
    random: bool = False,
    statuses: bool = False,
) -> dict:
    """One wrk run; `statuses` counts the answers by status code (a Lua hook per response)."""
    argv = [wrk, f"-t{min(threads, connections)}", f"-c{connections}", f"-d{duration:g}s", "--timeout"]
    argv += [f"{timeout:g}s", "-s", str(LUA), url, "--", str(pairs_file), f"{patch_share:g}"]
    argv += ["random"] if random else []
    env = {**os.environ, "BENCH_STATUSES": "1" if statuses else "0"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, env=env)
    line = next((text for text in done.stdout.splitlines() if text.startswith(MARKER)), None)
    if done.returncode != 0 or line is None:
        raise HarnessError(f"wrk failed ({done.returncode}): {' '.join(argv)}\n{done.stdout}\n{done.stderr}")
    result = json.loads(line[len(MARKER) :])
    seconds = result["duration_us"] / 1e6
    result["rps"] = result["requests"] / seconds if seconds else 0.0
    # No answer at all: every latency was at least the run's length.
    result["p99_ms"] = result["p99_us"] / 1000 if result["requests"] else result["duration_us"] / 1000
    result["p50_ms"] = result["p50_us"] / 1000
    result["errors"] = result["status_errors"] + sum(result[k] for k in SOCKET_ERRORS)
    if statuses:
        ok = sum(n for status, n in result["statuses"].items() if status.startswith("2"))
        result["ok_rps"] = ok / seconds if seconds else 0.0
        # Answers other than 2xx (wrk's own status count leaves out 3xx), and requests sent
        # but unanswered when wrk stopped.
        result["non_2xx"] = result["answered"] - ok
        lost = result["connect_errors"] + result["read_errors"] + result["write_errors"]
        result["in_flight"] = min(connections, max(0, result["sent"] - result["answered"] - lost))
    return result


def summary(result: dict, unit: str = "req/s") -> str:
    """A measured run in the log: its rate (2xx answers only, when counted), p99, errors."""
    errors = f", {result['errors']} errors" if result["errors"] else ""
    return f"{result.get('ok_rps', result['rps']):.0f} {unit}, p99 {result['p99_ms']:.1f} ms{errors}"


@dataclass
class Side:
    """One side of a figure: `measure(seconds)` returns a result (a wrk load's: `rps`,
    `p99_ms`, `requests`, `errors`, `status_errors`, ...); `after(result)` runs after each
    measurement (to let a server settle, to annotate the result); `show(result)` is the
    log's line for it (by default: the rate in `unit`, p99 and errors)."""

    name: str
    label: str
    measure: Callable[[float], dict]
    after: Callable[[dict], None] | None = None
    unit: str = "req/s"
    show: Callable[[dict], str] | None = None
    # Counters read before and after each measured run; the deltas go into the result
    # (PostgreSQL: sessions opened, to show connection churn in the server's pool).
    probe: Callable[[], dict[str, int]] | None = None
    results: list[dict] = field(default_factory=list)
    warmup: dict | None = None

    def values(self, key: str) -> list[float]:
        return [r[key] for r in self.results]

    def raw(self) -> dict:
        return {"label": self.label, "warmup": self.warmup, "rounds": self.results}


def wrk_side(wrk: str, name: str, label: str, url: str, pairs_file: Path, **options) -> Side:
    """A side measured by wrk on `url` (options: those of `run_wrk`)."""
    return Side(name, label, lambda seconds: run_wrk(wrk, url, pairs_file, duration=seconds, **options))


def _measure(side: Side, seconds: float) -> dict:
    before = side.probe() if side.probe else {}
    result = side.measure(seconds)
    if side.probe:
        after = side.probe()
        result["probe_delta"] = {k: after[k] - before.get(k, 0) for k in after}
    if side.after:
        side.after(result)
    return result


def interleave(sides: list[Side], *, rounds: int, duration: float, warmup: float, log: Callable[[str], None]) -> None:
    """One warm-up per side, then `rounds` rounds of every side back to back: each round
    starts one side further along, and (with more than two sides) every other round runs
    in reverse order."""
    for side in sides:
        log(f"  warm-up {side.label}" + (f": {warmup:g} s" if warmup else ""))
        side.warmup = _measure(side, warmup)
    for r in range(rounds):
        shift = r % len(sides)
        order = sides[shift:] + sides[:shift]
        if r % 2 and len(sides) > 2:
            order = order[::-1]
        for side in order:
            result = _measure(side, duration)
            result["round"] = r
            side.results.append(result)
            shown = side.show(result) if side.show else summary(result, side.unit)
            log(f"  round {r + 1}/{rounds} {side.label}: {shown}")
