"""The seed documents' Python snippets, verbatim, against a running server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run(snippet: str, base_url: str, key: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LINQ_API_V3_BASE_URL": base_url, "LINQ_API_V3_API_KEY": key}
    return subprocess.run(
        [sys.executable, str(EXAMPLES / snippet)], env=env, capture_output=True, text=True, timeout=60
    )


def test_seed_snippets_run_verbatim(farm, backend):
    # The snippets' number is used by other tests too, and on PostgreSQL every server of the
    # session shares one database: take the number over, with no write budget to share.
    server = farm.get(backend, image_fetch="simulated", write_budget=0)
    server.admin("DELETE", "/lines/+15551234567")
    created = server.admin("POST", "/partners", json={"name": "seed"}).json()
    key = server.admin("POST", f"/partners/{created['id']}/keys").json()["key"]
    assert (
        server.admin("POST", "/lines", json={"partner_id": created["id"], "phone_number": "+15551234567"}).status_code
        == 200
    )

    empty = run("seed_retrieve.py", server.partner_base, key)
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout.strip() == "[]"

    setup = run("seed_create.py", server.partner_base, key)
    assert setup.returncode == 0, setup.stderr
    assert setup.stdout.strip() == "John"

    listed = run("seed_retrieve.py", server.partner_base, key)
    assert listed.returncode == 0, listed.stderr
    assert "phone_number='+15551234567'" in listed.stdout and "is_active=True" in listed.stdout
    assert f"image_url='{server.settings.resolved_cdn_base_url}/contact-card/" in listed.stdout
