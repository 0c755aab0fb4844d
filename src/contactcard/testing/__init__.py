"""A real contactcard server for your own tests, as moto and WireMock give theirs.

    from contactcard.testing import serve

    with serve() as server:                  # a thread, a free port, a temporary database
        partner = server.partner(lines=1)    # a partner with a key and a line
        client = partner.client()            # linq.LinqAPIV3 on this server
        server.admin.change_settings(write_budget=1)
        client.contact_card.create(phone_number=partner.lines[0], first_name="Ada")
        ...                                  # the next write is a 429
        server.clock.advance(600)            # ... until the window has passed

With pytest the same comes as fixtures (`contactcard.testing.plugin`, installed with the
package): `contactcard` (the server, clean for each test), `contactcard_partner`,
`linq_client`, `contactcard_clock`, `contactcard_device` and `contactcard_admin`.
"""

from __future__ import annotations

import itertools
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import linq
    import uvicorn

    from contactcard.settings import Settings

__all__ = ["AdminClient", "AdminFailure", "Clock", "Device", "Partner", "Server", "serve"]

START_TIMEOUT = 30.0


class AdminFailure(Exception):
    """The admin API refused a call; `status` and `body` say why."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"admin API answered {status}: {body}")
        self.status = status
        self.body = body


class AdminClient:
    """The `/admin/v1` API of one server, as methods answering its JSON."""

    def __init__(self, base_url: str, token: str) -> None:
        self._http = httpx.Client(
            base_url=f"{base_url}/admin/v1", headers={"authorization": f"Bearer {token}"}, timeout=30
        )
        self._numbers = itertools.count(1)

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        if response.status_code >= 400:
            try:
                body: Any = response.json()
            except ValueError:
                body = response.text
            raise AdminFailure(response.status_code, body)
        return response.json() if response.content else None

    # partners, keys, lines and devices
    def create_partner(self, name: str = "test partner") -> dict[str, Any]:
        created: dict[str, Any] = self.call("POST", "/partners", json={"name": name})
        return created

    def issue_key(self, partner_id: str, key: str | None = None) -> dict[str, Any]:
        issued: dict[str, Any] = self.call("POST", f"/partners/{partner_id}/keys", json={"key": key})
        return issued

    def add_line(self, partner_id: str, phone_number: str | None = None) -> dict[str, Any]:
        """Give a number to the partner; None: a fresh number of this server's."""
        number = phone_number or f"+1555{next(self._numbers):07d}"
        line: dict[str, Any] = self.call("POST", "/lines", json={"partner_id": partner_id, "phone_number": number})
        return line

    def script_device(self, phone_number: str, **script: Any) -> dict[str, Any]:
        """`fail_next`, `rate_limit_next`, `rcs_unavailable`, `apply_delay` (replaces the script)."""
        device: dict[str, Any] = self.call("PUT", f"/devices/{phone_number}/script", json=script)
        return device

    def device(self, phone_number: str) -> dict[str, Any]:
        device: dict[str, Any] = self.call("GET", f"/devices/{phone_number}")
        return device

    # the test kit
    def settings(self) -> dict[str, Any]:
        found: dict[str, Any] = self.call("GET", "/settings")
        return found

    def change_settings(self, **changes: Any) -> dict[str, Any]:
        """`profile`, `write_budget` (0: off), `write_budget_window`, `journal_size` (0: off)."""
        changed: dict[str, Any] = self.call("PATCH", "/settings", json=changes)
        return changed

    def restore_settings(self) -> dict[str, Any]:
        restored: dict[str, Any] = self.call("DELETE", "/settings")
        return restored

    def clock(self) -> dict[str, Any]:
        shown: dict[str, Any] = self.call("GET", "/clock")
        return shown

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        moved: dict[str, Any] = self.call("POST", "/clock/advance", json={"seconds": seconds})
        return moved

    def set_clock(self, instant: datetime) -> dict[str, Any]:
        moved: dict[str, Any] = self.call("PUT", "/clock", json={"now": instant.isoformat()})
        return moved

    def real_clock(self) -> dict[str, Any]:
        real: dict[str, Any] = self.call("DELETE", "/clock")
        return real

    def reset(self, *, everything: bool = False) -> None:
        self.call("POST", "/reset", json={"everything": everything})

    def requests(self, **filters: Any) -> list[dict[str, Any]]:
        """The request journal: `trace_id`, `phone_number`, `status`, `since`, `until`, `limit`."""
        params = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in filters.items() if v is not None}
        found: list[dict[str, Any]] = self.call("GET", "/requests", params=params)
        return found


@dataclass(frozen=True)
class Clock:
    """The server's clock: every time rule (budget windows, `Retry-After`) reads it."""

    admin: AdminClient

    def now(self) -> datetime:
        return datetime.fromisoformat(self.admin.clock()["now"])

    def advance(self, seconds: float) -> datetime:
        return datetime.fromisoformat(self.admin.advance_clock(seconds)["now"])

    def set(self, instant: datetime) -> datetime:
        return datetime.fromisoformat(self.admin.set_clock(instant)["now"])

    def real(self) -> None:
        self.admin.real_clock()


@dataclass(frozen=True)
class Device:
    """The simulated devices of the server's lines."""

    admin: AdminClient

    def script(
        self,
        phone_number: str,
        *,
        fail_next: int = 0,
        rate_limit_next: int = 0,
        rcs_unavailable: bool = False,
        apply_delay: float = 0.0,
    ) -> dict[str, Any]:
        return self.admin.script_device(
            phone_number,
            fail_next=fail_next,
            rate_limit_next=rate_limit_next,
            rcs_unavailable=rcs_unavailable,
            apply_delay=apply_delay,
        )

    def show(self, phone_number: str) -> dict[str, Any]:
        """What the line's device shows, how often it applied, and its script."""
        return self.admin.device(phone_number)


@dataclass(frozen=True)
class Partner:
    id: str
    key: str
    key_id: str
    lines: list[str]
    server: Server

    def client(self, **kwargs: Any) -> linq.LinqAPIV3:
        """The official SDK (`linq-python`) with this partner's key, on this server."""
        return self.server.client(self.key, **kwargs)


@dataclass
class Server:
    base_url: str
    admin: AdminClient
    settings: Settings
    _uvicorn: uvicorn.Server = field(repr=False)
    _thread: threading.Thread = field(repr=False)

    @property
    def sdk_base_url(self) -> str:
        """What the SDKs take as `base_url` (their paths start at `/v3`)."""
        return f"{self.base_url}/api/partner"

    @property
    def clock(self) -> Clock:
        return Clock(self.admin)

    @property
    def device(self) -> Device:
        return Device(self.admin)

    def client(self, key: str, **kwargs: Any) -> linq.LinqAPIV3:
        import linq

        # No retries unless asked: a test of a 429 or a 5xx should see it, not sleep through it.
        kwargs.setdefault("max_retries", 0)
        return linq.LinqAPIV3(api_key=key, base_url=self.sdk_base_url, **kwargs)

    def partner(self, *, lines: int = 1, name: str = "test partner") -> Partner:
        """A new partner with a key and `lines` fresh numbers."""
        created = self.admin.create_partner(name)
        issued = self.admin.issue_key(created["id"])
        numbers = [self.admin.add_line(created["id"])["phone_number"] for _ in range(lines)]
        return Partner(created["id"], issued["key"], issued["id"], numbers, self)

    def clean(self) -> None:
        """Cards, budgets, device scripts and the journal forgotten (partners, keys and lines
        kept); settings back to the server's own; real time."""
        self.admin.reset()
        self.admin.restore_settings()
        self.admin.real_clock()

    def stop(self) -> None:
        self._uvicorn.should_exit = True
        self._thread.join(15)
        self.admin.close()


@contextmanager
def serve(*, data_dir: Path | str | None = None, **settings: Any) -> Iterator[Server]:
    """A server in a thread of this process, on a free port of 127.0.0.1, with a temporary
    SQLite database (unless `data_dir` or `database_url` is given) and simulated images.
    `settings` are `contactcard.settings.Settings` fields (e.g. `write_budget=1`)."""
    if data_dir is not None:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        server = _start(Path(data_dir), settings)
        try:
            yield server
        finally:
            server.stop()
        return
    with tempfile.TemporaryDirectory(prefix="contactcard-") as folder:
        server = _start(Path(folder), settings)
        try:
            yield server
        finally:
            server.stop()


def _start(data_dir: Path, overrides: dict[str, Any]) -> Server:
    import uvicorn

    from contactcard.http.app import create_app
    from contactcard.http.transport import TurnWritesProtocol
    from contactcard.settings import JOURNAL_HOLD_ALL, Settings

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    base_url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "public_base_url": base_url,
        "admin_token": secrets.token_urlsafe(24),
        "image_fetch": "simulated",  # never the network, unless a test asks for it
        "journal_unread": JOURNAL_HOLD_ALL,  # a test's first look at the journal sees all it sent
        # One process: a test server starts in a moment and stops with no child left behind.
        "webhook_delivery": "inline",
        **overrides,
    }
    settings = Settings(**values)
    # The protocol a production server runs with (cli._run_uvicorn), so a test sees what it sees.
    config = uvicorn.Config(
        create_app(settings), http=TurnWritesProtocol, log_level="warning", lifespan="on", access_log=False
    )
    runner = uvicorn.Server(config)
    thread = threading.Thread(target=runner.run, kwargs={"sockets": [sock]}, name="contactcard-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + START_TIMEOUT
    while not runner.started:
        if time.monotonic() > deadline or not thread.is_alive():
            sock.close()
            raise RuntimeError("the contactcard server did not start")
        time.sleep(0.01)
    assert settings.admin_token is not None
    return Server(base_url, AdminClient(base_url, settings.admin_token), settings, runner, thread)
