"""The tools a run needs: `wrk` and the baseline's libvips from Debian's packages (installed
when running as root), and matplotlib from the bench extra."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable

from bench import MissingDependency
from bench.config import REPO


def apt_install(package: str, present: Callable[[], bool], why: str) -> None:
    """`apt-get install -y package` (after `apt-get update` if the first try fails), when
    `present()` is false; only as root, otherwise the message says what to install."""
    if present():
        return
    if os.geteuid() != 0:
        raise MissingDependency(f"{why}: install Debian's package with `sudo apt-get install -y {package}`.")
    print(f"{why}: apt-get install -y {package}", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    argv = ["apt-get", "install", "-y", package]
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, capture_output=True)
        done = subprocess.run(argv, env=env, capture_output=True, text=True)
    if not present():
        raise MissingDependency(f"`apt-get install -y {package}` failed:\n{done.stdout[-1500:]}{done.stderr[-1500:]}")


def ensure_wrk() -> str:
    """The path of `wrk`."""
    apt_install("wrk", lambda: shutil.which("wrk") is not None, "wrk is not installed")
    return shutil.which("wrk") or "wrk"


def wrk_version(wrk: str) -> str:
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True)
    text = (done.stdout or done.stderr or "?").splitlines()[0]
    return text.split(" Copyright")[0].strip()


def ensure_image_libs() -> str:
    """The baseline's libvips: Debian's libvips42, whose libheif can read HEIC (the server's
    own libvips comes from PyPI). Returns its version."""
    code = "from bench.imagework import system_pyvips; v = system_pyvips().version; print(f'{v(0)}.{v(1)}.{v(2)}')"
    from bench.servers import clean_env

    def probe() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env({}), cwd=REPO)

    apt_install("libvips42", lambda: probe().returncode == 0, "pyvips cannot load the system's libvips")
    return probe().stdout.strip()


def ensure_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise MissingDependency(
            "matplotlib is not installed: install the bench extra, e.g. `.venv/bin/pip install -e '.[bench]'`."
        ) from None
