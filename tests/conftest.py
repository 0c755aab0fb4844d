"""Shared fixtures: real servers over real HTTP, on SQLite and on PostgreSQL.

Each server runs uvicorn in a thread on a socket bound to 127.0.0.1; tests drive it
with the official SDK and raw httpx. PostgreSQL runs when `CONTACTCARD_TEST_POSTGRES_URL`
names a server (CI sets it); each test session gets a database of its own there.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from linq import AsyncLinqAPIV3, LinqAPIV3
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from contactcard.bootstrap import build
from contactcard.http.app import create_app
from contactcard.http.transport import TurnWritesProtocol
from contactcard.settings import Settings
from contactcard.webhooks.delivery import Resolver
from tests.support.image_host import ImageHost

ADMIN_TOKEN = "admin-token-for-tests"
POSTGRES_ENV = "CONTACTCARD_TEST_POSTGRES_URL"
_numbers = itertools.count(1_000_000)


def admin_request(base_url: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
    """A call to a server's `/admin/v1` API with the tests' admin token."""
    return httpx.request(
        method, f"{base_url}/admin/v1{path}", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10, **kwargs
    )


def new_number() -> str:
    """A phone number no other test uses in this session."""
    return f"+1555{next(_numbers):07d}"


@dataclass
class RunningServer:
    base_url: str
    settings: Settings
    app: Any
    server: uvicorn.Server
    thread: threading.Thread

    @property
    def framework(self) -> Any:
        """The FastAPI app inside the ASGI layers."""
        app = self.app
        while not hasattr(app, "state"):
            app = app.app
        return app

    @property
    def partner_base(self) -> str:
        return f"{self.base_url}/api/partner"

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return admin_request(self.base_url, method, path, **kwargs)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def free_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def start_server(
    settings_overrides: dict[str, Any], data_dir: Path, *, resolver: Resolver | None = None
) -> RunningServer:
    """`resolver`: the server's DNS (image hosts, webhook targets); the system's when None."""
    sock = free_socket()
    port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    settings = Settings(
        data_dir=data_dir,
        public_base_url=base_url,
        admin_token=ADMIN_TOKEN,
        # In this process: its resolver and clock are the test's, which a child would not share.
        **{"webhook_delivery": "inline", **settings_overrides},
    )
    app = create_app(settings, build(settings, resolver=resolver) if resolver else None)
    # The protocol production serves with (cli._run_uvicorn), so the tests run what it runs.
    config = uvicorn.Config(app, http=TurnWritesProtocol, log_level="warning", lifespan="on", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    return RunningServer(base_url, settings, app, server, thread)


@pytest.fixture(scope="session")
def image_host() -> Iterator[ImageHost]:
    host = ImageHost()
    yield host
    host.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    admin_url = os.environ.get(POSTGRES_ENV)
    if not admin_url:
        yield None
        return
    name = f"contactcard_test_{uuid.uuid4().hex[:10]}"
    # No pooled connection: an `outage` test restarts PostgreSQL in between, and a connection
    # kept from before would fail the DROP at the end.
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


class ServerFarm:
    """Servers by (backend, settings), started once per session and shared."""

    def __init__(self, tmp: Path, postgres: str | None, image_host: ImageHost) -> None:
        self._tmp = tmp
        self._postgres = postgres
        self._image_host = image_host
        self._servers: dict[tuple, RunningServer] = {}

    def get(self, backend: str, **overrides: Any) -> RunningServer:
        key = (backend, tuple(sorted(overrides.items())))
        if key not in self._servers:
            data_dir = self._tmp / f"server{len(self._servers)}"
            settings: dict[str, Any] = {"image_allowed_hosts": self._image_host.host_port, **overrides}
            if backend == "postgres":
                if self._postgres is None:
                    pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV} (CI sets it)")
                settings["database_url"] = self._postgres
            self._servers[key] = start_server(settings, data_dir)
        return self._servers[key]

    def close(self) -> None:
        for server in self._servers.values():
            server.stop()


@pytest.fixture(scope="session")
def farm(tmp_path_factory, postgres_url, image_host) -> Iterator[ServerFarm]:
    farm = ServerFarm(tmp_path_factory.mktemp("servers"), postgres_url, image_host)
    yield farm
    farm.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, postgres_url) -> str | None:
    """For tests that run server processes: None is SQLite in the data dir (the server's
    default); otherwise the session's PostgreSQL database."""
    if request.param == "sqlite":
        return None
    if postgres_url is None:
        pytest.skip(f"needs PostgreSQL: set {POSTGRES_ENV} (CI sets it)")
    return postgres_url


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def server(farm, backend) -> RunningServer:
    return farm.get(backend)


@dataclass
class Partner:
    id: str
    key: str
    key_id: str
    lines: list[str]
    server: RunningServer

    def client(self, **kwargs: Any) -> LinqAPIV3:
        kwargs.setdefault("max_retries", 0)
        return LinqAPIV3(api_key=self.key, base_url=self.server.partner_base, **kwargs)

    def async_client(self, **kwargs: Any) -> AsyncLinqAPIV3:
        kwargs.setdefault("max_retries", 0)
        return AsyncLinqAPIV3(api_key=self.key, base_url=self.server.partner_base, **kwargs)

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.server.base_url, headers={"authorization": f"Bearer {self.key}"}, timeout=20)

    def script(self, phone: str, **script: Any) -> dict:
        response = self.server.admin("PUT", f"/devices/{phone}/script", json=script)
        assert response.status_code == 200, response.text
        return response.json()

    def device(self, phone: str) -> dict:
        response = self.server.admin("GET", f"/devices/{phone}")
        assert response.status_code == 200, response.text
        return response.json()


def make_partner(server: RunningServer, lines: int = 3) -> Partner:
    created = server.admin("POST", "/partners", json={"name": f"partner {uuid.uuid4().hex[:6]}"})
    assert created.status_code == 200, created.text
    partner_id = created.json()["id"]
    issued = server.admin("POST", f"/partners/{partner_id}/keys").json()
    numbers = [new_number() for _ in range(lines)]
    for number in numbers:
        added = server.admin("POST", "/lines", json={"partner_id": partner_id, "phone_number": number})
        assert added.status_code == 200, added.text
    return Partner(partner_id, issued["key"], issued["id"], numbers, server)


@pytest.fixture
def partner(server) -> Partner:
    return make_partner(server)


@pytest.fixture
def other_partner(server) -> Partner:
    return make_partner(server)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
