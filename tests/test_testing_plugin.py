"""The pytest plugin and `contactcard.testing.serve`, as a user of the package meets them:
the plugin is loaded from its entry point in a separate pytest session (pytester)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import linq
import pytest

from contactcard.testing import AdminFailure, serve

pytest_plugins = ["pytester"]

USER_TESTS = """
import linq
import pytest


def test_429_then_the_window_passes(contactcard_partner, linq_client, contactcard_clock, contactcard_admin):
    phone = contactcard_partner.lines[0]
    contactcard_admin.change_settings(write_budget=1)
    linq_client.contact_card.create(phone_number=phone, first_name="Ada")
    with pytest.raises(linq.RateLimitError):
        linq_client.contact_card.update(phone_number=phone, first_name="Grace")
    contactcard_clock.advance(600)
    assert linq_client.contact_card.update(phone_number=phone, first_name="Grace").first_name == "Grace"


def test_each_test_starts_clean(contactcard, contactcard_admin):
    # Runs after the test above on the same server: its setting, clock and card are gone.
    assert contactcard_admin.settings()["write_budget"] == contactcard.settings.write_budget
    assert contactcard_admin.clock()["real"] is True
    assert all(not line["has_card"] for line in contactcard_admin.call("GET", "/lines"))


def test_a_scripted_device(contactcard_partner, linq_client, contactcard_device):
    phone = contactcard_partner.lines[1]
    contactcard_device.script(phone, fail_next=1)
    card = linq_client.contact_card.create(phone_number=phone, first_name="Failing")
    assert card.is_active is False
    assert contactcard_device.show(phone)["applies"] == 0


def test_the_journal_saw_the_request(contactcard_partner, linq_client, contactcard_admin):
    answer = linq_client.contact_card.with_raw_response.retrieve()
    seen = contactcard_admin.requests(trace_id=answer.headers["x-trace-id"])
    assert [entry["status"] for entry in seen] == [200]
"""


def test_the_fixtures_in_a_user_session(pytester):
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


def test_one_server_per_xdist_worker(pytester, tmp_path, monkeypatch):
    seen = tmp_path / "seen"
    seen.mkdir()
    monkeypatch.setenv("CONTACTCARD_PLUGIN_TEST_OUT", str(seen))
    recording = """
import os
from pathlib import Path


def _record(server, worker_id, name):
    Path(os.environ["CONTACTCARD_PLUGIN_TEST_OUT"], name).write_text(f"{worker_id} {server.base_url}")
""" + "".join(
        f"""

def test_record_{n}(contactcard, worker_id):
    _record(contactcard, worker_id, "{n}")
"""
        for n in range(6)
    )
    pytester.makepyfile(test_user=USER_TESTS, test_record=recording)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=10)
    pairs = {tuple(path.read_text().split()) for path in seen.iterdir()}
    workers = {worker for worker, _ in pairs}
    urls = {url for _, url in pairs}
    assert len(workers) == 2, pairs
    assert len(urls) == 2 and len(pairs) == 2  # one server each, the same for all of a worker's tests


def test_serve_as_a_context_manager():
    with serve(write_budget=1) as server:
        partner = server.partner(lines=2)
        client = partner.client()
        phone = partner.lines[0]
        client.contact_card.create(phone_number=phone, first_name="Ada")
        with pytest.raises(linq.RateLimitError):
            client.contact_card.update(phone_number=phone, first_name="Grace")
        moved = server.clock.advance(601)
        assert moved - datetime.now(UTC) > timedelta(seconds=590)
        assert client.contact_card.update(phone_number=phone, first_name="Grace").first_name == "Grace"
        with pytest.raises(AdminFailure) as refused:
            server.admin.change_settings(write_budget=-1)
        assert refused.value.status == 400
        data_dir, base_url = server.settings.data_dir, server.base_url
        assert (data_dir / "contactcard.db").exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base_url}/healthz", timeout=2)
    assert not data_dir.exists()  # nothing left behind
