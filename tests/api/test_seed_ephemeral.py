"""`contactcard serve --ephemeral --seed FILE`: a known state at start, nothing left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import linq
import pytest

from tests.conftest import ADMIN_TOKEN
from tests.support.processes import free_port

KEY = "test-key-seeded-acme-000001"
SEED_YAML = f"""
settings:
  write_budget: 1
partners:
  - name: Acme
    keys: ["{KEY}"]
    lines: ["+15553330001", "+15553330002"]
    cards:
      - {{phone_number: "+15553330001", first_name: Ada, last_name: Lovelace}}
    devices:
      "+15553330002": {{fail_next: 1}}
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCARD_")}
    env.update(CONTACTCARD_ADMIN_TOKEN=ADMIN_TOKEN, PYTHONUNBUFFERED="1")
    return env


def _serve(tmp_path: Path, *args: str) -> tuple[subprocess.Popen, int, Path]:
    port = free_port()
    log = tmp_path / f"serve-{port}.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "contactcard", "serve", "--port", str(port), *args],
            env=_env(),
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return proc, port, log


def _wait_ready(proc: subprocess.Popen, port: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise AssertionError(log.read_text())


def test_a_seeded_ephemeral_server(tmp_path):
    seed = tmp_path / "seed.yaml"
    seed.write_text(SEED_YAML)
    proc, port, log = _serve(tmp_path, "--ephemeral", "--seed", str(seed), "--simulate-images")
    try:
        _wait_ready(proc, port, log)
        client = linq.LinqAPIV3(api_key=KEY, base_url=f"http://127.0.0.1:{port}/api/partner", max_retries=0)
        [card] = client.contact_card.retrieve(phone_number="+15553330001").contact_cards
        assert (card.first_name, card.last_name, card.is_active) == ("Ada", "Lovelace", True)
        # The seed's own write spent no budget: one write (budget 1) passes, the next is a 429.
        client.contact_card.update(phone_number="+15553330001", first_name="Grace")
        with pytest.raises(linq.RateLimitError):
            client.contact_card.update(phone_number="+15553330001", first_name="Edith")
        scripted = client.contact_card.create(phone_number="+15553330002", first_name="Failing")
        assert scripted.is_active is False
        listed = httpx.get(
            f"http://127.0.0.1:{port}/admin/v1/partners", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}
        ).json()
        assert [p["name"] for p in listed] == ["Acme"]  # no demo partner beside the seed's
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)
    folder = re.search(r"data in (\S+)", log.read_text())
    assert folder is not None, log.read_text()
    assert not Path(folder.group(1)).exists()
    assert not (tmp_path / "data").exists()  # nothing in the default data dir either


@pytest.mark.parametrize(
    ("name", "text", "says"),
    [
        ("seed.json", json.dumps({"partners": [{"name": "A", "lines": ["12345"]}]}), "E.164"),
        ("seed.json", "{not json", "not valid JSON"),
        ("seed.yaml", "partners: [{name: A, colour: blue}]", "partners.0.colour"),
        (
            "seed.json",
            json.dumps({"partners": [{"name": "A", "lines": ["+15553330009"], "cards": [{"first_name": "x"}]}]}),
            "phone_number",
        ),
    ],
)
def test_a_bad_seed_stops_the_start_with_the_reason(tmp_path, name, text, says):
    (tmp_path / name).write_text(text)
    proc, _port, log = _serve(tmp_path, "--ephemeral", "--seed", str(tmp_path / name))
    assert proc.wait(60) == 2
    assert says in log.read_text()
