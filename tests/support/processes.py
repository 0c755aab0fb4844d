"""The server as separate operating-system processes, for tests that kill and share them.

`ServerProcess` runs `python -m contactcard serve` configured through `CONTACTCARD_*`
environment variables (hermetic: nothing leaks in from the shell running the tests),
waits for `/healthz`, and can be SIGKILLed and started again on the same port, data dir
and database. The helpers around it create partners and lines through the admin API and
read the database directly with SQLAlchemy.

The subprocess inherits `PYTHONPATH`, so a test run with `PYTHONPATH=<copy>/src` drives a
modified copy of the server (the way the robustness tests are shown to be able to fail).
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import linq
from sqlalchemy import Engine, create_engine, func, select

from contactcard.bootstrap import admin_for
from contactcard.store.db import connect, migrate
from contactcard.store.schema import cards, write_attempts
from tests.conftest import ADMIN_TOKEN, POSTGRES_ENV, admin_request, new_number

STARTUP_TIMEOUT = 30.0
NEEDS_POSTGRES = f"needs PostgreSQL: set {POSTGRES_ENV} (e.g. postgresql+psycopg://root@127.0.0.1:5432/test)"


def free_port() -> int:
    """A free port below the ephemeral range where possible.

    A server restarted on the same port after a kill must find it free again: a port from
    the ephemeral range could meanwhile become the local end of some outgoing connection.
    """
    low = 32768
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    rng = random.SystemRandom()
    for _ in range(50 if low > 12000 else 0):
        port = rng.randrange(10000, low)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServerProcess:
    """One `contactcard serve` process; `start` may be called again after it died.

    With `workers > 1` the process is uvicorn's supervisor and the workers are its
    children; the whole group runs in a session of its own, so `kill` takes them all.
    """

    data_dir: Path
    database_url: str | None
    port: int = field(default_factory=free_port)
    extra_env: dict[str, str] = field(default_factory=dict)
    name: str = "server"
    workers: int = 1
    # `serve` gives an empty database a demo partner owning fixed numbers (+15551234567…),
    # which other tests of the session give to partners of their own. Unless a test wants
    # the demo, a shared (PostgreSQL) database gets a placeholder partner first.
    demo: bool = False
    proc: subprocess.Popen | None = None
    starts: int = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def partner_base(self) -> str:
        return f"{self.base_url}/api/partner"

    @property
    def log_path(self) -> Path:
        return self.data_dir / f"{self.name}.{self.starts}.log"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def env(self) -> dict[str, str]:
        # Hermetic: no CONTACTCARD_* setting leaks in from the shell running the tests.
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCARD_")}
        env.update(
            CONTACTCARD_DATA_DIR=str(self.data_dir),
            CONTACTCARD_ADMIN_TOKEN=ADMIN_TOKEN,
            CONTACTCARD_PUBLIC_BASE_URL=self.base_url,
            CONTACTCARD_DEMO_API_KEY=f"demo-key-{uuid.uuid4().hex}",
            # Several workers: uvicorn's "Application startup complete." lines (info) tell
            # when every worker is up, not just the first.
            CONTACTCARD_LOG_LEVEL="info" if self.workers > 1 else "warning",
            PYTHONUNBUFFERED="1",
        )
        if self.database_url:
            env["CONTACTCARD_DATABASE_URL"] = self.database_url
        env.update(self.extra_env)
        return env

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "contactcard", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        if self.workers > 1:
            command += ["--workers", str(self.workers)]
        return command

    def start(self) -> ServerProcess:
        assert not self.running, "already running"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.starts == 0 and self.database_url and not self.demo:
            keep_demo_partner_out(self.database_url)
        self.starts += 1
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                self.command(),
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        healthy = False
        workers_loaded_at: float | None = None
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
            if not healthy:
                try:
                    healthy = httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200
                except httpx.TransportError:
                    pass
            if healthy and self.workers == 1:
                return
            if healthy:
                # /healthz answered by one worker says nothing of the others: uvicorn logs each
                # worker's startup (info). Without lifespan messages, allow a moment after
                # every worker has loaded the app.
                log = self.log(None)
                if log.count("Application startup complete.") >= self.workers:
                    return
                if workers_loaded_at is None and log.count("Started server process") >= self.workers:
                    workers_loaded_at = time.monotonic()
                if workers_loaded_at is not None and time.monotonic() - workers_loaded_at > 1.0:
                    return
            time.sleep(0.05)
        raise AssertionError(f"{self.name} not ready after {STARTUP_TIMEOUT}s:\n{self.log()}")

    def log(self, tail: int | None = 4000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        return text if tail is None else text[-tail:]

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the workers, or the process itself."""
        assert self.proc is not None
        if self.workers == 1:
            return [self.proc.pid]
        pids = []
        for child in _children(self.proc.pid):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"spawn_main" in cmdline:  # not multiprocessing's resource tracker
                pids.append(child)
        return pids

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no cleanup, exactly like a crash (workers included)."""
        assert self.running, "not running"
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        assert self.proc.returncode == -signal.SIGKILL

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # not reaped yet: the id is still ours
                self.proc.wait(5)
        if self.workers > 1:
            # Workers that outlived their supervisor keep the group (and so its id) alive.
            try:
                os.killpg(self.proc.pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            os.killpg(self.proc.pid, signal.SIGKILL)

    def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return admin_request(self.base_url, method, path, **kwargs)

    def client(self, key: str, **kwargs: Any) -> linq.LinqAPIV3:
        kwargs.setdefault("max_retries", 0)
        kwargs.setdefault("timeout", 20)
        return linq.LinqAPIV3(api_key=key, base_url=self.partner_base, **kwargs)

    def http(self, key: str, **kwargs: Any) -> httpx.Client:
        """Raw httpx for `key`; `keepalive=False` opens a fresh connection per request."""
        keepalive = kwargs.pop("keepalive", True)
        if not keepalive:
            kwargs["limits"] = httpx.Limits(max_keepalive_connections=0)
        kwargs.setdefault("timeout", 30)
        return httpx.Client(base_url=self.base_url, headers={"authorization": f"Bearer {key}"}, **kwargs)


def keep_demo_partner_out(database_url: str) -> None:
    """Give an empty database (migrated) a partner, so `serve` seeds no demo partner into it."""
    database = connect(database_url)
    try:
        migrate(database)
        admin = admin_for(database)
        if admin.partner_count() == 0:
            admin.create_partner("process tests (keeps the demo partner out)")
    finally:
        database.dispose()


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            found += [int(p) for p in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
        except FileNotFoundError:
            pass
    return found


def connections_by_pid(port: int, pids: Iterable[int]) -> dict[int, int]:
    """How many established TCP connections to local `port` each of `pids` holds now (Linux)."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for row in rows:
            fields = row.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # 01: ESTABLISHED
                inodes.add(fields[9])
    held: dict[int, int] = {}
    for pid in pids:
        count = 0
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except (FileNotFoundError, PermissionError):
            fds = []
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                count += 1
        held[pid] = count
    return held


def stop_all(servers: Iterable[ServerProcess]) -> None:
    for server in servers:
        server.stop()


@dataclass
class ProcPartner:
    id: str
    key: str
    key_id: str
    lines: list[str]


def create_partner(server: ServerProcess, lines: int) -> ProcPartner:
    created = server.admin("POST", "/partners", json={"name": f"proc partner {uuid.uuid4().hex[:6]}"})
    assert created.status_code == 200, created.text
    partner_id = created.json()["id"]
    issued = server.admin("POST", f"/partners/{partner_id}/keys")
    assert issued.status_code == 200, issued.text
    numbers = [new_number() for _ in range(lines)]
    for number in numbers:
        added = server.admin("POST", "/lines", json={"partner_id": partner_id, "phone_number": number})
        assert added.status_code == 200, added.text
    return ProcPartner(partner_id, issued.json()["key"], issued.json()["id"], numbers)


def issue_key(server: ServerProcess, partner_id: str) -> tuple[str, str]:
    issued = server.admin("POST", f"/partners/{partner_id}/keys")
    assert issued.status_code == 200, issued.text
    return issued.json()["key"], issued.json()["id"]


def script(server: ServerProcess, phone: str, **values: Any) -> dict:
    response = server.admin("PUT", f"/devices/{phone}/script", json=values)
    assert response.status_code == 200, response.text
    return response.json()


def device(server: ServerProcess, phone: str) -> dict:
    response = server.admin("GET", f"/devices/{phone}")
    assert response.status_code == 200, response.text
    return response.json()


def database_engine(database_url: str | None, data_dir: Path) -> Engine:
    """An engine on the server's database: PostgreSQL, or the SQLite file in its data dir."""
    return create_engine(database_url or f"sqlite:///{data_dir / 'contactcard.db'}")


def card_rows(engine: Engine, phone: str) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(select(cards).where(cards.c.phone_number == phone)).all()


def cards_by_phone(engine: Engine, phones: Iterable[str]) -> dict[str, list[Any]]:
    """Every card row of each number (a list, so a duplicate would show)."""
    phones = list(phones)
    found: dict[str, list[Any]] = {phone: [] for phone in phones}
    with engine.connect() as conn:
        for row in conn.execute(select(cards).where(cards.c.phone_number.in_(phones))):
            found[row.phone_number].append(row)
    return found


def attempts(engine: Engine, phone: str) -> int:
    with engine.connect() as conn:
        return conn.execute(
            select(func.count()).select_from(write_attempts).where(write_attempts.c.phone_number == phone)
        ).scalar_one()


def log_trouble(log: str) -> str | None:
    """The part of a server log around its first traceback or unhandled error, if any."""
    found = [log.find(marker) for marker in ("unhandled error", "Traceback") if marker in log]
    if not found:
        return None
    first = min(found)
    return log[max(0, first - 500) : first + 5000]


def assert_clean_log(server: ServerProcess) -> None:
    """No traceback and no unhandled error in the log of any start of `server`."""
    for start in range(1, server.starts + 1):
        path = server.data_dir / f"{server.name}.{start}.log"
        trouble = log_trouble(path.read_text(errors="replace") if path.exists() else "")
        assert trouble is None, f"{path} logged:\n{trouble}"
