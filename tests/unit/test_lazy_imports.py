"""A server that only answers GETs never loads what only images and webhooks need: httpx
(the fetcher), Pillow and libvips. Each is megabytes of memory in
every worker (bench figure 5) and tens of milliseconds at start."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import asyncio, sys
from contactcard.http.app import create_app
from contactcard.settings import Settings

app = create_app(Settings(data_dir=sys.argv[1]))
while not hasattr(app, "state"):
    app = app.app

async def main():
    async with app.router.lifespan_context(app):  # the delivery worker starts and polls
        await asyncio.sleep(0.5)

asyncio.run(main())
print(*(name in sys.modules for name in ("httpx", "PIL", "pyvips")))
"""


def test_a_started_server_has_not_loaded_httpx_pillow_or_libvips(tmp_path):
    # In a process of its own: this test process has them all loaded already.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCARD_")}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False", "False"]


SERVE_SCRIPT = """
import sys
from contactcard import cli
from contactcard.bootstrap import build
from contactcard.settings import Settings

settings = Settings(data_dir=sys.argv[1])
services = build(settings)
cli._create_demo(services.admin, settings)  # what `serve` prints on an empty database
services.close()
print("rich loaded:", "rich" in sys.modules)
"""


def test_serve_prints_its_banner_without_loading_rich(tmp_path):
    # rich is for the admin commands' tables; a serving process would keep it for life.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCARD_")}
    done = subprocess.run(
        [sys.executable, "-c", SERVE_SCRIPT, str(tmp_path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "API key (shown once): cc_" in done.stdout
    assert done.stdout.strip().splitlines()[-1] == "rich loaded: False"
