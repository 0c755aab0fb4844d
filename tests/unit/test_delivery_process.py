"""The server side of the webhook delivery process (`webhooks/process.py`) with a stand-in
child: the settings line leaves the admin token out, wakes are one byte per loop turn
however many events the turn recorded, tallies reach the metrics, an unreadable tally
line is logged and skipped, and closing the lifeline stops the child."""

from __future__ import annotations

import asyncio
import logging
import sys
import textwrap

import pytest

from contactcard.settings import Settings
from contactcard.webhooks.process import DeliveryProcess

pytestmark = pytest.mark.anyio

# Reads the settings line, then every wake byte until the end of its lifeline; then says
# what it saw as tally lines (and one line that is no tally).
CHILD = textwrap.dedent(
    """
    import json, os, sys
    settings = json.loads(sys.stdin.buffer.readline())
    wakes = 0
    while True:
        chunk = os.read(0, 65536)
        if not chunk:
            break
        wakes += len(chunk)
    out = sys.stdout.buffer
    out.write(json.dumps([["token_sent", float("admin_token" in settings)], ["wakes", float(wakes)]]).encode() + b"\\n")
    out.write(b"this is no tally\\n")
    out.write(json.dumps([["delivered", None]]).encode() + b"\\n")
    out.flush()
    """
)


@pytest.fixture
def anyio_backend():
    return "asyncio"


class Tally:
    def __init__(self) -> None:
        self.seen: list[tuple[str, float | None]] = []

    def webhook_attempt(self, outcome: str, latency_ms: float | None) -> None:
        self.seen.append((outcome, latency_ms))


async def test_wakes_are_one_byte_per_turn_and_tallies_come_back(tmp_path, caplog):
    tally = Tally()
    process = DeliveryProcess(
        Settings(data_dir=tmp_path, admin_token="secret-token"), tally, command=[sys.executable, "-c", CHILD]
    )
    process.start()
    for _ in range(500):
        if process.pid is not None:
            break
        await asyncio.sleep(0.01)
    assert process.pid is not None
    await asyncio.sleep(0.2)  # the settings line written and the pipe made non-blocking
    turns = 4
    for _ in range(turns):
        for _ in range(1000):  # a turn that recorded a thousand events
            process.wake()
        await asyncio.sleep(0.02)
    with caplog.at_level(logging.WARNING, logger="contactcard"):
        await process.aclose()
    assert ("token_sent", 0.0) in tally.seen  # the admin token never reaches the child
    assert ("wakes", float(turns)) in tally.seen
    assert ("delivered", None) in tally.seen  # read on past the unreadable line
    assert "unreadable tally line" in caplog.text
    assert "exited" not in caplog.text  # stopped, not died: no restart
    assert process.starts == 1


@pytest.mark.parametrize("line", [b"not json\n", b"[1, 2]\n", b'{"webhook_concurrency": 0}\n'])
def test_a_child_started_with_a_bad_settings_line_says_so_without_a_traceback(line):
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "contactcard", "deliver", "--lifeline"], input=line, capture_output=True, timeout=60
    )
    assert done.returncode == 2
    assert b"the first line on stdin must be the server's settings" in done.stderr
    assert b"Traceback" not in done.stderr + done.stdout


def test_a_relay_socket_without_a_lifeline_is_refused_without_a_traceback():
    import subprocess

    done = subprocess.run(
        [sys.executable, "-m", "contactcard", "deliver", "--relay-fd", "5"], capture_output=True, timeout=60
    )
    assert done.returncode == 2
    assert b"--relay-fd" in done.stderr and b"--lifeline" in done.stderr
    assert b"Traceback" not in done.stderr + done.stdout
