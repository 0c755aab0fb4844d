"""docs/testing.md's examples run: Python always (the plugin in a pytester session); the
TypeScript one when `CONTACTCARD_TEST_EXAMPLES=1` and npm is installed (it installs the SDK
from the npm registry); the Go one is not run here (it needs `linq-go` from the Go module
proxy, and the suite builds Go offline)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.processes import free_port

pytest_plugins = ["pytester"]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "testing"


def test_the_python_example(pytester):
    pytester.makepyfile(test_backoff=(EXAMPLES / "python" / "test_backoff.py").read_text())
    pytester.runpytest_subprocess("-p", "no:cacheprovider").assert_outcomes(passed=2)


def test_the_docs_show_the_examples_as_they_are():
    text = (EXAMPLES.parent.parent / "docs" / "testing.md").read_text()
    for example in ("python/test_backoff.py", "typescript/backoff.test.ts", "go/backoff_test.go", "seed.yaml"):
        assert (EXAMPLES / example).read_text().strip() in text, example


@pytest.mark.skipif(
    os.environ.get("CONTACTCARD_TEST_EXAMPLES") != "1" or shutil.which("npm") is None,
    reason="set CONTACTCARD_TEST_EXAMPLES=1 (needs npm and the npm registry)",
)
def test_the_typescript_example(tmp_path):
    work = tmp_path / "ts"
    shutil.copytree(EXAMPLES / "typescript", work)
    subprocess.run(["npm", "install", "--silent"], cwd=work, check=True, timeout=300)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCARD_")}
    env.update(CONTACTCARD_ADMIN_TOKEN="admin-token")
    command = [sys.executable, "-m", "contactcard", "serve", "--port", str(port), "--ephemeral", "--simulate-images"]
    server = subprocess.Popen(
        [*command, "--seed", str(EXAMPLES / "seed.yaml")], env=env, start_new_session=True, cwd=tmp_path
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None
                time.sleep(0.1)
        run = subprocess.run(
            ["npm", "test"],
            cwd=work,
            env={**env, "CONTACTCARD_URL": f"http://127.0.0.1:{port}"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "# pass 2" in run.stdout
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(20)
