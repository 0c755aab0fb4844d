"""Webhook delivery in a process of its own (`CONTACTCARD_WEBHOOK_DELIVERY=process`, the
default of `serve`): the child makes the attempts, is started again when it dies, leaves
when its server does, and its attempts count in the server's metrics. With `off`, a
`contactcard deliver` run on its own delivers for the servers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.api.test_webhook_processes import CARD_EVENTS, webhook_env
from tests.support.processes import ADMIN_TOKEN, ServerProcess, _children, assert_clean_log, create_partner
from tests.support.receiver import Receiver


def delivery_children(pid: int) -> list[int]:
    """The `contactcard deliver` children of process `pid`."""
    found = []
    for child in _children(pid):
        try:
            if b"deliver" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(child)
        except FileNotFoundError:
            pass
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; its parent has not reaped it yet


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(0.05)


def attempts_counted(server: ServerProcess, outcome: str) -> float:
    text = httpx.get(f"{server.base_url}/metrics", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10).text
    for line in text.splitlines():
        if line.startswith(f'contactcard_webhook_attempts_total{{outcome="{outcome}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def subscribe(server: ServerProcess, receiver: Receiver, lines: int = 1):
    partner = create_partner(server, lines=lines)
    path = receiver.new_path()
    client = server.client(partner.key)
    client.webhook_subscriptions.create(target_url=f"{receiver.base_url}{path}", subscribed_events=CARD_EVENTS)
    return partner, client, path


def test_the_child_delivers_is_started_again_after_kill_9_and_its_attempts_are_counted(
    database, tmp_path, processes, receiver
):
    server = ServerProcess(tmp_path / "data", database, extra_env=webhook_env())
    processes.append(server)
    server.start()
    assert server.proc is not None
    wait_until(lambda: len(delivery_children(server.proc.pid)) == 1, 15, "one delivery child")
    (first,) = delivery_children(server.proc.pid)
    partner, client, path = subscribe(server, receiver, lines=2)
    client.contact_card.create(phone_number=partner.lines[0], first_name="Before")
    receiver.wait(path, 1)
    wait_until(lambda: attempts_counted(server, "delivered") == 1, 10, "the child's attempt in the metrics")

    os.kill(first, signal.SIGKILL)
    wait_until(
        lambda: delivery_children(server.proc.pid) not in ([], [first]), 15, "a new delivery child after kill -9"
    )
    client.contact_card.create(phone_number=partner.lines[1], first_name="After")
    (_, after) = receiver.wait(path, 2, timeout=20)
    assert "After" in after.body
    wait_until(lambda: attempts_counted(server, "delivered") == 2, 10, "both attempts in the metrics")
    assert "webhook delivery process exited" in server.log(None)  # the operator is told


def test_the_child_leaves_when_its_server_is_killed(tmp_path, processes):
    server = ServerProcess(tmp_path / "data", None, extra_env=webhook_env())
    processes.append(server)
    server.start()
    assert server.proc is not None
    wait_until(lambda: len(delivery_children(server.proc.pid)) == 1, 15, "one delivery child")
    (child,) = delivery_children(server.proc.pid)
    os.kill(server.proc.pid, signal.SIGKILL)  # the server alone: its lifeline ends
    server.proc.wait(10)
    wait_until(lambda: not alive(child), 10, "the orphaned child leaving")


def test_sigterm_stops_server_and_child_with_no_restart_and_no_traceback(tmp_path, processes, receiver):
    server = ServerProcess(tmp_path / "data", None, extra_env=webhook_env())
    processes.append(server)
    server.start()
    assert server.proc is not None
    wait_until(lambda: len(delivery_children(server.proc.pid)) == 1, 15, "one delivery child")
    (child,) = delivery_children(server.proc.pid)
    partner, client, path = subscribe(server, receiver)
    client.contact_card.create(phone_number=partner.lines[0], first_name="Last")
    receiver.wait(path, 1)
    os.killpg(server.proc.pid, signal.SIGTERM)  # the whole group, as a service manager stops it
    assert server.proc.wait(15) in (0, -signal.SIGTERM)  # uvicorn ends by the signal it stopped for
    wait_until(lambda: not alive(child), 10, "the child leaving with its server")
    assert "webhook delivery process exited" not in server.log(None)
    assert_clean_log(server)


def test_off_delivers_nothing_until_a_deliver_process_runs(database, tmp_path, processes, receiver):
    server = ServerProcess(tmp_path / "data", database, extra_env=webhook_env(CONTACTCARD_WEBHOOK_DELIVERY="off"))
    processes.append(server)
    server.start()
    assert server.proc is not None
    assert delivery_children(server.proc.pid) == []
    partner, client, path = subscribe(server, receiver)
    client.contact_card.create(phone_number=partner.lines[0], first_name="Waiting")
    time.sleep(1.0)
    assert receiver.on(path) == []
    deliver = subprocess.Popen(
        [sys.executable, "-m", "contactcard", "deliver"],
        env=server.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        (attempt,) = receiver.wait(path, 1, timeout=20)
        assert "Waiting" in attempt.body
    finally:
        deliver.send_signal(signal.SIGTERM)
        out, _ = deliver.communicate(timeout=15)
    assert deliver.returncode == 0, out.decode(errors="replace")
    assert b"Traceback" not in out, out.decode(errors="replace")
