"""The operator surface: the admin HTTP API and the `contactcard admin` command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
from sqlalchemy import create_engine, select

from contactcard.keys import key_hash
from contactcard.store.schema import api_keys
from tests.conftest import new_number


def test_admin_api_needs_the_token(server):
    for headers in ({}, {"authorization": "Bearer wrong"}):
        response = httpx.get(f"{server.base_url}/admin/v1/partners", headers=headers)
        assert response.status_code == 401 and response.json()["error"]["code"] == 2004


def test_admin_api_validation_uses_the_envelope(server):
    missing = server.admin("POST", "/partners", json={})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == 1001
    bad = server.admin("POST", "/lines", json={"partner_id": "nope", "phone_number": "123"})
    assert bad.status_code in (400, 404) and bad.json()["error"]["code"] in (1005, 2001)
    unknown = server.admin("DELETE", "/keys/does-not-exist")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == 2001
    negative = server.admin("PUT", "/devices/+15550000000/script", json={"fail_next": -1})
    assert negative.status_code == 400 and negative.json()["error"]["code"] == 1005


def test_keys_are_stored_hashed_and_shown_once(server):
    partner = server.admin("POST", "/partners", json={"name": "Hashed"}).json()
    issued = server.admin("POST", f"/partners/{partner['id']}/keys").json()
    listed = server.admin("GET", "/keys", params={"partner_id": partner["id"]}).json()
    assert [k["id"] for k in listed] == [issued["id"]]
    assert issued["key"] not in str(listed)
    engine = create_engine(server.settings.resolved_database_url)
    with engine.connect() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.id == issued["id"])).one()
    engine.dispose()
    assert row.key_hash == key_hash(issued["key"]) and issued["key"] not in row.key_hash


def test_a_line_belongs_to_one_partner(server):
    one = server.admin("POST", "/partners", json={"name": "One"}).json()["id"]
    two = server.admin("POST", "/partners", json={"name": "Two"}).json()["id"]
    number = new_number()
    assert server.admin("POST", "/lines", json={"partner_id": one, "phone_number": number}).status_code == 200
    taken = server.admin("POST", "/lines", json={"partner_id": two, "phone_number": number})
    assert taken.status_code == 400 and "another partner" in taken.json()["error"]["message"]


def test_removing_a_line_removes_its_card(partner):
    phone = partner.lines[0]
    partner.client().contact_card.create(phone_number=phone, first_name="Gone")
    assert partner.server.admin("DELETE", f"/lines/{phone}").status_code == 204
    with partner.http() as http:
        assert http.get("/v3/contact_card", params={"phone_number": phone}).status_code == 403
        assert http.get("/v3/contact_card").json()["contact_cards"] == []


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "CONTACTCARD_DATA_DIR": str(data_dir), "COLUMNS": "200"}
    env.pop("CONTACTCARD_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "contactcard", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_cli_admin_round_trip(tmp_path):
    created = _cli(tmp_path, "admin", "partner", "create", "Acme")
    assert created.returncode == 0, created.stderr
    partner_id = created.stdout.strip()
    assert len(partner_id) == 32
    key = _cli(tmp_path, "admin", "key", "create", partner_id)
    assert key.returncode == 0, key.stderr
    key_id_line, secret = key.stdout.strip().splitlines()
    assert secret.startswith("cc_") and key_id_line.startswith("key id ")
    assert _cli(tmp_path, "admin", "line", "add", partner_id, "+15559990001", "+15559990002").returncode == 0
    bad = _cli(tmp_path, "admin", "line", "add", partner_id, "5559990003")
    assert bad.returncode == 1 and "E.164" in bad.stdout
    listed = _cli(tmp_path, "admin", "line", "list", "--partner", partner_id)
    assert "+15559990001" in listed.stdout and "+15559990002" in listed.stdout
    scripted = _cli(tmp_path, "admin", "device", "script", "+15559990001", "--fail-next", "2", "--rcs-unavailable")
    assert scripted.returncode == 0, scripted.stderr
    assert '"fail_next": 2' in scripted.stdout and '"rcs_unavailable": true' in scripted.stdout
    shown = _cli(tmp_path, "admin", "device", "show", "+15559990001")
    assert '"applies": 0' in shown.stdout
    keys = _cli(tmp_path, "admin", "key", "list")
    assert secret not in keys.stdout and secret[:10] in keys.stdout
    revoked = _cli(tmp_path, "admin", "key", "revoke", key_id_line.removeprefix("key id "))
    assert revoked.returncode == 0, revoked.stderr
    assert _cli(tmp_path, "admin", "line", "remove", "+15559990002").returncode == 0
    assert "+15559990002" not in _cli(tmp_path, "admin", "line", "list").stdout
    missing = _cli(tmp_path, "admin", "line", "remove", "+15559990002")
    assert missing.returncode == 1 and "no line" in missing.stdout


def test_cli_settings_prints_the_table(tmp_path):
    shown = _cli(tmp_path, "settings")
    assert shown.returncode == 0 and "CONTACTCARD_WRITE_BUDGET" in shown.stdout


def test_serve_on_an_empty_database_prints_a_ready_demo(tmp_path):
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "CONTACTCARD_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
    env.pop("CONTACTCARD_DATABASE_URL", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "contactcard", "serve", "--port", str(port), "--simulate-images"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise AssertionError("server did not start")
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert f"export LINQ_API_V3_BASE_URL=http://127.0.0.1:{port}/api/partner" in output
    key = output.split("export LINQ_API_V3_API_KEY=", 1)[1].split()[0]
    assert key.startswith("cc_")
    assert "client.contact_card.retrieve()" in output and "curl" in output
    assert "+15551234567" in output


def test_without_a_token_the_admin_api_is_a_401_and_fastapi_is_never_loaded(tmp_path):
    # In a process of its own: this test process has FastAPI loaded already.
    script = """
import sys
from starlette.testclient import TestClient
from contactcard.http.app import create_app
from contactcard.settings import Settings

app = create_app(Settings(data_dir=sys.argv[1]))
with TestClient(app) as client:
    for method, path in (("GET", "/admin/v1/partners"), ("POST", "/admin/v1/lines"), ("DELETE", "/admin/v1/keys/x")):
        answer = client.request(method, path, headers={"authorization": "Bearer anything"})
        print(answer.status_code, answer.json()["error"]["code"])
print("fastapi" in sys.modules, "pydantic" in sys.modules and "fastapi.routing" in sys.modules)
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCARD_")}
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:4] == ["401 2004", "401 2004", "401 2004", "False False"]
