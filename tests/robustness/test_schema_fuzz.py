"""Schema fuzzing: schemathesis, driven by the server's own OpenAPI document.

Every operation gets generated and negative inputs (bad types, missing fields, huge and odd
strings, wrong content types). Checks: no 5xx; every status, header and body as documented
(so every non-2xx is the envelope); schema-invalid input is refused. Positive-data acceptance
is not checked: a schema-valid image URL can still be unfetchable, and a valid number can
still belong to someone else.

`CONTACTCARD_FUZZ_EXAMPLES` sets the examples per operation (the suite: 100); see docs/robustness.md
for a longer run against a server of your own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

# The longest test of the suite (about 50 s on each backend beside another worker on 2 cores,
# at 100 examples per operation: the suite's share; a longer hunt sets
# CONTACTCARD_FUZZ_EXAMPLES and lifts the timeout with --timeout 0).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_headers_conformance",
        "response_schema_conformance",
        "negative_data_rejection",
    ]
)


def test_schemathesis_finds_nothing(farm, backend, tmp_path):
    server = farm.get(backend, image_fetch="simulated", write_budget=0)
    partner = server.admin("POST", "/partners", json={"name": "fuzz"}).json()
    key = server.admin("POST", f"/partners/{partner['id']}/keys").json()["key"]
    # The document's example number, so the examples phase reaches a line the key owns (on
    # PostgreSQL every server of the session shares one database: take the number over).
    server.admin("DELETE", "/lines/+15551234567")
    server.admin("POST", "/lines", json={"partner_id": partner["id"], "phone_number": "+15551234567"})
    examples = os.environ.get("CONTACTCARD_FUZZ_EXAMPLES", "100")
    schemathesis = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [
            str(schemathesis),
            "run",
            f"{server.base_url}/openapi.json",
            "--header",
            f"Authorization: Bearer {key}",
            "--checks",
            CHECKS,
            "--max-examples",
            examples,
            "--seed",
            os.environ.get("CONTACTCARD_FUZZ_SEED", "20261122"),
            "--request-timeout",
            "30",
            "--generation-database",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout
