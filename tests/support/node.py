"""A folder with the TypeScript SDK (`@linqapp/sdk`, from the npm registry) and the
project's check scripts of tests/node, for tests that run the SDK under node."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

NODE_CHECKS = Path(__file__).resolve().parent.parent / "node"


def node_sdk_folder(work: Path) -> Path:
    if shutil.which("npm") is None:
        pytest.fail("npm is needed to check the TypeScript SDK (Debian: apt-get install nodejs npm)")
    for script in (NODE_CHECKS / "package.json", *NODE_CHECKS.glob("*.mjs")):
        shutil.copy(script, work / script.name)
    subprocess.run(["npm", "install", "--silent", "--no-audit", "--no-fund"], cwd=work, check=True, timeout=300)
    return work
