"""A throwaway PostgreSQL cluster of a test's own: made with `initdb` in a temporary folder,
run by `pg_ctl` on a free port, and frozen (SIGSTOP to its own processes, by PID), thawed,
stopped and started at will. The shared PostgreSQL the other tests use is never touched.

As root, PostgreSQL refuses to run: the cluster is then made and run as the `postgres`
user, which owns the folder.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.support.processes import free_port


def _binaries() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class OwnCluster:
    def __init__(self) -> None:
        binaries = _binaries()
        if binaries is None:
            pytest.skip("needs PostgreSQL's initdb and pg_ctl (Debian: postgresql)")
        self._bin = binaries
        self.port = free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="contactcard-cluster-"))
        self.data = self.folder / "data"
        self._user = None
        if os.geteuid() == 0:
            try:
                self._user = pwd.getpwnam("postgres")
            except KeyError:
                pytest.skip("running as root needs a `postgres` user to run PostgreSQL as")
            os.chown(self.folder, self._user.pw_uid, self._user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"port = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.folder}'\nfsync = off\n"
                "shared_buffers = 16MB\nmax_connections = 60\n"
            )

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def conninfo(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres connect_timeout=5"

    def _run(self, tool: str, *args: str) -> None:
        command = [str(self._bin / tool), *args]
        if self._user is not None:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.folder)
        if done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout}\n{done.stderr}")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "log"), "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def pids(self) -> list[int]:
        """The postmaster and every process it started."""
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        found = [postmaster]
        for task in os.listdir(f"/proc/{postmaster}/task"):
            try:
                found += [int(p) for p in Path(f"/proc/{postmaster}/task/{task}/children").read_text().split()]
            except FileNotFoundError:
                pass
        return found

    @contextmanager
    def frozen(self) -> Iterator[None]:
        """Every process of the cluster stopped (SIGSTOP) for the body, continued after."""
        stopped = self.pids()
        try:
            for pid in stopped:
                os.kill(pid, signal.SIGSTOP)
            yield
        finally:
            for pid in stopped:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass

    @contextmanager
    def stopped(self) -> Iterator[None]:
        self.stop()
        try:
            yield
        finally:
            self.start()

    def sessions(self) -> int:
        """Client sessions on the server now, besides the one asking."""
        with psycopg.connect(self.conninfo, autocommit=True) as connection:
            row = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
                "AND pid <> pg_backend_pid()"
            ).fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                for pid in self.pids():  # never leave it frozen
                    try:
                        os.kill(pid, signal.SIGCONT)
                    except ProcessLookupError:
                        pass
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


@contextmanager
def own_cluster() -> Iterator[OwnCluster]:
    cluster = OwnCluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


def wait_for(check: object, within: float, step: float = 0.05) -> bool:
    """Whether `check()` came true within `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        if check():  # type: ignore[operator]
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(step)
