"""The test kit's controls hold across server processes (and the CLI) on one database."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import linq
import pytest

from tests.support.processes import ServerProcess, create_partner, stop_all


@pytest.fixture
def pair(database_url, tmp_path) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two server processes on one database (the SQLite file of one data dir, or PostgreSQL)."""
    one = ServerProcess(tmp_path / "data", database_url, name="one")
    two = ServerProcess(tmp_path / "data", database_url, name="two")
    try:
        one.start()
        two.start()
        yield one, two
    finally:
        # The session's PostgreSQL database is shared with other tests: put the controls back.
        if one.running:
            one.admin("DELETE", "/settings")
            one.admin("DELETE", "/clock")
        stop_all([one, two])


def _eventually(check, timeout: float = 5.0):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_a_setting_and_the_clock_changed_in_one_process_hold_in_the_other(pair):
    one, two = pair
    partner = create_partner(one, lines=1)
    phone = partner.lines[0]
    client = two.client(partner.key)
    client.contact_card.create(phone_number=phone, first_name="First")  # process two has read its controls
    assert one.admin("PATCH", "/settings", json={"write_budget": 1}).status_code == 200
    # At once, not after a poll: the write reads the controls' version with the line's state.
    with pytest.raises(linq.RateLimitError) as refused:
        client.contact_card.update(phone_number=phone, first_name="Second")
    assert int(refused.value.response.headers["retry-after"]) > 500
    assert one.admin("POST", "/clock/advance", json={"seconds": 601}).status_code == 200
    assert client.contact_card.update(phone_number=phone, first_name="Second").first_name == "Second"
    shown = two.admin("GET", "/clock").json()
    assert 600 < shown["offset"] < 602
    assert two.admin("GET", "/settings").json()["write_budget"] == 1


def test_the_journal_and_reset_are_shared(pair):
    one, two = pair
    partner = create_partner(one, lines=1)
    phone = partner.lines[0]
    with two.http(partner.key) as http:
        http.post("/v3/contact_card", json={"phone_number": phone, "first_name": "Shared"})
        for _ in range(2):  # the second may come from process two's GET memo
            assert http.get("/v3/contact_card", params={"phone_number": phone}).json()["contact_cards"]
        trace = http.get("/v3/contact_card").headers["x-trace-id"]
        # Process two flushes its journal in the background; process one reads the table.
        seen = _eventually(lambda: one.admin("GET", "/requests", params={"trace_id": trace}).json())
        assert [e["path"] for e in seen] == ["/v3/contact_card"]
        assert one.admin("POST", "/reset").status_code == 204
        assert http.get("/v3/contact_card", params={"phone_number": phone}).json()["contact_cards"] == []


def _cli(data_dir: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCARD_")}
    env.update(CONTACTCARD_DATA_DIR=str(data_dir), COLUMNS="250")
    return subprocess.run(
        [sys.executable, "-m", "contactcard", *args], env=env, input=stdin, capture_output=True, text=True, timeout=60
    )


def test_the_cli_drives_a_running_server(tmp_path):
    server = ServerProcess(tmp_path / "data", None, name="cli")
    try:
        server.start()
        partner = create_partner(server, lines=1)
        phone = partner.lines[0]
        client = server.client(partner.key)
        set_ = _cli(server.data_dir, "admin", "settings", "set", "--write-budget", "1")
        assert set_.returncode == 0, set_.stderr
        assert "write_budget" in set_.stdout and " 1 " in set_.stdout
        client.contact_card.create(phone_number=phone, first_name="Cli")
        with pytest.raises(linq.RateLimitError):
            client.contact_card.update(phone_number=phone, first_name="Again")
        moved = _cli(server.data_dir, "admin", "clock", "advance", "600")
        assert moved.returncode == 0 and "+600" in moved.stdout, moved.stdout + moved.stderr
        assert client.contact_card.update(phone_number=phone, first_name="Again").first_name == "Again"

        trace = client.contact_card.with_raw_response.retrieve(phone_number=phone).headers["x-trace-id"]
        listed = _eventually(lambda: trace in _cli(server.data_dir, "admin", "requests", "--number", phone).stdout)
        assert listed
        assert partner.key not in _cli(server.data_dir, "admin", "requests").stdout

        refused = _cli(server.data_dir, "admin", "reset", stdin="n\n")
        assert refused.returncode != 0
        assert client.contact_card.retrieve(phone_number=phone).contact_cards  # not reset
        done = _cli(server.data_dir, "admin", "reset", "--yes")
        assert done.returncode == 0, done.stderr
        assert client.contact_card.retrieve(phone_number=phone).contact_cards == []
        bad = _cli(server.data_dir, "admin", "settings", "set", "--profile", "nope")
        assert bad.returncode == 1 and "profile must be one of" in bad.stdout
        real = _cli(server.data_dir, "admin", "clock", "real")
        assert real.returncode == 0 and "real time" in real.stdout
        shown = _cli(server.data_dir, "admin", "settings")
        assert shown.returncode == 0 and "write_budget" in shown.stdout and "journal_size" in shown.stdout
    finally:
        server.stop()


def test_requests_follow_prints_requests_as_they_arrive(tmp_path):
    server = ServerProcess(tmp_path / "data", None, name="follow")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCARD_")}
    env.update(CONTACTCARD_DATA_DIR=str(tmp_path / "data"), COLUMNS="250", PYTHONUNBUFFERED="1")
    follower = None
    try:
        server.start()
        partner = create_partner(server, lines=1)
        follower = subprocess.Popen(
            [sys.executable, "-m", "contactcard", "admin", "requests", "--follow", "--status", "403"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        time.sleep(1.5)  # let it print the (empty) table and start following
        with server.http(partner.key) as http:
            trace = http.get("/v3/contact_card", params={"phone_number": "+19998887777"}).headers["x-trace-id"]
            http.get("/v3/contact_card")  # a 200: filtered out
        lines: list[str] = []
        # Read in a thread: a follower that never prints must fail the test, not hang it.
        reader = threading.Thread(target=lambda: lines.extend(iter(follower.stdout.readline, "")), daemon=True)
        reader.start()
        _eventually(lambda: any(trace in line for line in list(lines)), timeout=15)
        assert any(trace in line and "403" in line and "+19998887777" in line for line in lines), "".join(lines)
    finally:
        if follower is not None:
            follower.kill()
            follower.wait(5)
        server.stop()
