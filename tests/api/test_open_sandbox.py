"""`contactcard serve --open`: any key is its own partner, any number it touches its line;
the SDKs' generated tests and the seed snippets run against a fresh server with no setup."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import linq
import pytest

from tests.support.processes import free_port

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
IMAGE = "https://cdn.linqapp.com/contact-card/example.jpg"  # what the generated tests send


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCARD_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture
def sandbox(tmp_path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    log = tmp_path / "open.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "contactcard", "serve", "--open", "--ephemeral", "--port", str(port)],
            env=_env(),
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.05)
        yield base, log
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def test_the_generated_tests_calls_run_with_no_setup(sandbox):
    base, log = sandbox
    assert "OPEN SANDBOX" in log.read_text()
    # In file order, as linq-go's contactcard_test.go: New, Get, Update, key "My API Key".
    client = linq.LinqAPIV3(api_key="My API Key", base_url=base, max_retries=0)
    created = client.contact_card.create(
        first_name="John", phone_number="+15551234567", image_url=IMAGE, last_name="Doe"
    )
    assert created.is_active is True and created.image_url.startswith(f"{base}/cdn/contact-card/")
    [got] = client.contact_card.retrieve(phone_number="+15551234567").contact_cards
    assert got.first_name == "John"
    updated = client.contact_card.update(
        phone_number="+15551234567", first_name="John", image_url=IMAGE, last_name="Doe"
    )
    assert (updated.first_name, updated.last_name) == ("John", "Doe")


def test_partners_stay_apart_between_keys(sandbox):
    base, _ = sandbox
    first = linq.LinqAPIV3(api_key="first-sandbox-key-00001", base_url=base, max_retries=0)
    second = linq.LinqAPIV3(api_key="second-sandbox-key-0002", base_url=base, max_retries=0)
    first.contact_card.create(phone_number="+15554440001", first_name="First")
    with pytest.raises(linq.PermissionDeniedError):
        second.contact_card.create(phone_number="+15554440001", first_name="Second")
    with pytest.raises(linq.PermissionDeniedError):
        second.contact_card.retrieve(phone_number="+15554440001")
    second.contact_card.create(phone_number="+15554440002", first_name="Second")
    assert [c.phone_number for c in second.contact_card.retrieve().contact_cards] == ["+15554440002"]
    assert [c.phone_number for c in first.contact_card.retrieve().contact_cards] == ["+15554440001"]
    # A request without a key is still refused.
    assert httpx.get(f"{base}/v3/contact_card").status_code == 401


def test_the_seed_snippets_run_verbatim(sandbox):
    base, _ = sandbox
    env = {**_env(), "LINQ_API_V3_BASE_URL": base, "LINQ_API_V3_API_KEY": "My API Key"}
    for snippet, expected in (("seed_retrieve.py", "[]"), ("seed_create.py", "John")):
        done = subprocess.run(
            [sys.executable, str(EXAMPLES / snippet)], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == expected


def test_an_open_sandbox_refuses_to_listen_beyond_loopback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "contactcard", "serve", "--open", "--ephemeral", "--host", "0.0.0.0"],
        env=_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "not loopback" in done.stdout
