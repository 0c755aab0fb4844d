"""Server processes on loopback: the real `contactcard serve` and the bare ASGI baseline.

Every process is started by this module, remembered by its pid and stopped by that pid
(SIGTERM, then SIGKILL after a grace period); nothing is ever stopped by name.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from bench import HarnessError
from bench.config import REPO

HOST = "127.0.0.1"
_ALL: list[Server] = []


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """The bench's environment without any CONTACTCARD_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTCARD_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def contactcard_argv(port: int) -> list[str]:
    """The documented command: the `contactcard` script next to this interpreter."""
    script = Path(sys.executable).parent / "contactcard"
    head = [str(script)] if script.exists() else [sys.executable, "-m", "contactcard"]
    return [*head, "serve", "--host", HOST, "--port", str(port)]


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, ... of a process, in KiB."""
    values: dict[str, int] = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, rest = line.partition(":")
            if name.startswith("Vm") and rest.strip().endswith("kB"):
                values[name] = int(rest.split()[0])
    return values


@dataclass
class Server:
    name: str
    argv: list[str]
    env: dict[str, str]
    port: int
    log_path: Path
    ready_path: str = "/healthz"
    ready_key: str | None = None  # a bearer key for the ready path
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    _log: object = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def start(self) -> Server:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed by stop())
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # our own cleanup stops it, by pid
        )
        _ALL.append(self)
        return self

    def connection(self, timeout: float = 120.0) -> http.client.HTTPConnection:
        """A keep-alive connection to the server, for a sequence of `call`s."""
        return http.client.HTTPConnection(HOST, self.port, timeout=timeout)

    def call(
        self,
        method: str,
        path: str,
        key: str | None = None,
        body: dict | None = None,
        *,
        timeout: float = 120.0,
        conn: http.client.HTTPConnection | None = None,
    ) -> tuple[int, bytes]:
        """One request (on `conn` when given, else on a connection of its own)."""
        own = conn is None
        conn = conn or self.connection(timeout)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            conn.request(method, path, body=None if body is None else json.dumps(body), headers=headers)
            response = conn.getresponse()
            return response.status, response.read()
        finally:
            if own:
                conn.close()

    def answer(self, timeout: float = 2.0) -> tuple[int, bytes] | None:
        """One GET of the ready path; None while nothing listens yet."""
        try:
            return self.call("GET", self.ready_path, self.ready_key, timeout=timeout)
        except (ConnectionError, OSError, http.client.HTTPException):
            return None

    def wait_ready(self, timeout: float = 60.0, poll: float = 0.005) -> float:
        """Seconds from start to the first 200 on the ready path."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise HarnessError(f"{self.name} exited with {self.process.returncode}:\n{self.log_tail()}")
            answered = self.answer()
            if answered is not None and answered[0] == 200:
                return time.perf_counter() - self.started_at
            time.sleep(poll)
        raise HarnessError(f"{self.name} did not answer {self.ready_path} within {timeout:.0f} s:\n{self.log_tail()}")

    def status(self) -> dict[str, int]:
        return proc_status(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(text[-lines:])

    def stop(self, grace: float = 10.0) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            self._close()
            return
        try:
            os.kill(process.pid, signal.SIGTERM)
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(5)
        except ProcessLookupError:
            pass
        self._close()

    def restart(self) -> None:
        """Stop (SIGKILL after 3 s) and start again: a server that no longer answers."""
        self.stop(grace=3.0)
        self.start().wait_ready()

    def _close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
        if self in _ALL:
            _ALL.remove(self)


def stop_all() -> None:
    for server in list(_ALL):
        try:
            server.stop(grace=5.0)
        except Exception:  # cleanup must reach every server
            pass


def contactcard_server(
    name: str,
    *,
    port: int,
    data_dir: Path,
    log_dir: Path,
    database_url: str | None = None,
    settings: dict[str, str] | None = None,
    bare: bool = False,
    args: list[str] | None = None,
) -> Server:
    """`contactcard serve` on `port`; `bare`: figure 1's baseline, the same command with the
    bare ASGI app swapped in (bench/bare_app.py), answering on `/`."""
    env = {"CONTACTCARD_DATA_DIR": str(data_dir), "CONTACTCARD_PUBLIC_BASE_URL": f"http://{HOST}:{port}"}
    env.update({"CONTACTCARD_DATABASE_URL": database_url} if database_url else {}, **(settings or {}))
    argv = [sys.executable, "-m", "bench.bare_app", "--host", HOST, "--port", str(port)] if bare else None
    argv = argv or [*contactcard_argv(port), *(args or [])]
    server = Server(name, argv, clean_env(env), port, log_dir / f"{name}.log")
    server.ready_path = "/" if bare else server.ready_path
    return server


def read_options(options_file: Path) -> dict:
    try:
        return json.loads(options_file.read_text())
    except (OSError, ValueError):
        return {}
