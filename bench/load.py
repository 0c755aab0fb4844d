"""`wrk` (Debian's package) with fixed threads and connections, and a Lua script that
rotates through (key, phone number) pairs and reports p50/p90/p99 as JSON."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import quote

from bench import HarnessError, MissingDependency

LUA = Path(__file__).resolve().parent / "get_by_number.lua"
MARKER = "BENCH_JSON "


def ensure_wrk() -> str:
    """The path of `wrk`, installing Debian's package when running as root."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise MissingDependency(
            "wrk is not installed and this is not root: install Debian's package with "
            "`sudo apt-get install -y wrk`, then run `python -m bench` again."
        )
    print("wrk is missing: apt-get install -y wrk", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    done = subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True)
        done = subprocess.run(["apt-get", "install", "-y", "wrk"], env=env, capture_output=True, text=True)
    found = shutil.which("wrk")
    if not found:
        raise MissingDependency(f"`apt-get install -y wrk` failed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return found


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True)
    text = (done.stdout or done.stderr or "?").splitlines()[0]
    return text.split(" Copyright")[0].strip()


def write_pairs(path: Path, pairs: list[tuple[str, str]]) -> Path:
    with open(path, "w") as out:
        for key, phone in pairs:
            out.write(f"{key}\t/v3/contact_card?phone_number={quote(phone, safe='')}\n")
    return path


def run_wrk(wrk: str, url: str, pairs_file: Path, *, duration: int, threads: int, connections: int) -> dict:
    argv = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        "--timeout",
        "10s",
        "-s",
        str(LUA),
        url,
        "--",
        str(pairs_file),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60)
    line = next((l for l in done.stdout.splitlines() if l.startswith(MARKER)), None)
    if done.returncode != 0 or line is None:
        raise HarnessError(f"wrk failed ({done.returncode}): {' '.join(argv)}\n{done.stdout}\n{done.stderr}")
    result = json.loads(line[len(MARKER) :])
    seconds = result["duration_us"] / 1e6
    result["rps"] = result["requests"] / seconds if seconds else 0.0
    result["p99_ms"] = result["p99_us"] / 1000
    result["p50_ms"] = result["p50_us"] / 1000
    result["errors"] = sum(
        result[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts")
    )
    return result
