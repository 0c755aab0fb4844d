"""pytest fixtures for testing against a real contactcard server (a `pytest11` entry point,
so installing the package is enough).

- `contactcard_server` (session): one server per test process; with pytest-xdist each
  worker is its own process, so `pytest -n auto` gives each worker a server of its own.
- `contactcard`: the same server, cleaned before each test (cards, budgets, device scripts
  and the journal forgotten; settings and clock back).
- `contactcard_partner`: a new partner with a key and three lines.
- `linq_client`: the official SDK for that partner (no retries).
- `contactcard_admin`, `contactcard_clock`, `contactcard_device`: the admin API, the clock
  and the simulated devices.

Override `contactcard_server` in a conftest to start it with other settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import linq

    from contactcard.testing import AdminClient, Clock, Device, Partner, Server


@pytest.fixture(scope="session")
def contactcard_server() -> Iterator[Server]:
    from contactcard.testing import serve

    with serve() as server:
        yield server


@pytest.fixture
def contactcard(contactcard_server: Server) -> Server:
    contactcard_server.clean()
    return contactcard_server


@pytest.fixture
def contactcard_partner(contactcard: Server) -> Partner:
    return contactcard.partner(lines=3)


@pytest.fixture
def linq_client(contactcard_partner: Partner) -> linq.LinqAPIV3:
    return contactcard_partner.client()


@pytest.fixture
def contactcard_admin(contactcard: Server) -> AdminClient:
    return contactcard.admin


@pytest.fixture
def contactcard_clock(contactcard: Server) -> Clock:
    return contactcard.clock


@pytest.fixture
def contactcard_device(contactcard: Server) -> Device:
    return contactcard.device
