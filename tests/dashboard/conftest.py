"""The dashboard's tests: a real server (SQLite and PostgreSQL) and one headless Debian Chromium per module."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_TOKEN, admin_request
from tests.support.databases import own_database
from tests.support.processes import ServerProcess
from tests.support.receiver import Receiver

CHROMIUM = "/usr/bin/chromium"  # Debian's; playwright's own browser download is never used
# The README's screenshots. Taken on every run (a page that cannot render fails the test),
# but kept in docs/ only when asked, so that a test run leaves the work tree as it was:
#   CONTACTCARD_TEST_SCREENSHOTS=1 ./scripts/test tests/dashboard/test_browser*.py \
#     tests/dashboard/test_pages.py -k sqlite
README_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


@pytest.fixture(scope="session")
def screenshots(tmp_path_factory) -> Path:
    if os.environ.get("CONTACTCARD_TEST_SCREENSHOTS"):
        README_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return README_SCREENSHOTS
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not shutil.which(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"needs Debian's chromium at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def receiver() -> Iterator[Receiver]:
    """A webhook receiver on 127.0.0.1, allowed as a target by the dashboard's servers."""
    found = Receiver()
    yield found
    found.close()


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def dash_server(request, tmp_path_factory, postgres_url, image_host, receiver) -> Iterator[ServerProcess]:
    """The real `serve` command, with the admin token (so the dashboard is on)."""
    if request.param == "postgres" and postgres_url is None:
        pytest.skip("needs PostgreSQL: set CONTACTCARD_TEST_POSTGRES_URL (CI sets it)")
    # A database of its own: every server on a database claims its webhook deliveries, and
    # the session's other servers would refuse this receiver's private address.
    with own_database(request.param, postgres_url) as database_url:
        server = ServerProcess(
            data_dir=tmp_path_factory.mktemp(f"dash-{request.param}"),
            database_url=database_url,
            # Private hosts by name only: the image host and the webhook receiver.
            extra_env={
                "CONTACTCARD_IMAGE_ALLOWED_HOSTS": f"{image_host.host_port},{receiver.base_url.removeprefix('http://')}"
            },
            name=f"dash-{request.param}",
        )
        server.backend = request.param  # type: ignore[attr-defined]
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def page(browser, dash_server) -> Iterator[object]:
    context = browser.new_context(viewport={"width": 1200, "height": 800}, base_url=dash_server.base_url)
    page = context.new_page()
    yield page
    context.close()


def sign_in(page) -> None:
    page.goto("/dashboard")
    page.fill("input[name=token]", ADMIN_TOKEN)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(re.compile(r"/dashboard/$"))


def signed_in_http(base_url: str) -> tuple[httpx.Client, str]:
    """A plain HTTP client signed in through the form, and its session's CSRF token."""
    client = httpx.Client(base_url=base_url, timeout=10)
    form = client.get("/dashboard/sign-in")
    csrf = csrf_of(form.text)
    done = client.post("/dashboard/sign-in", data={"csrf": csrf, "token": ADMIN_TOKEN})
    assert done.status_code == 303, done.text
    return client, csrf_of(client.get("/dashboard/partners").text)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, "no CSRF field on the page"
    return found.group(1)


class AdminCalls:
    """The admin API of one server, for a test's setup and its checks."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def ok(self, method: str, path: str, **kwargs: object) -> Any:
        answer = admin_request(self.base_url, method, path, **kwargs)
        assert answer.status_code < 300, answer.text
        return answer.json() if answer.content else None

    def new_partner(self, name: str | None = None) -> tuple[str, str]:
        name = name or f"Daily {uuid.uuid4().hex[:6]}"
        return self.ok("POST", "/partners", json={"name": name})["id"], name

    def keys_of(self, partner_id: str) -> list[dict[str, Any]]:
        return [k for k in self.ok("GET", "/keys") if k["partner_id"] == partner_id]


@pytest.fixture
def admin(dash_server) -> AdminCalls:
    return AdminCalls(dash_server.base_url)


def submit(page, button) -> None:
    """Click a form's button and wait for the page it leads to (before any reload)."""
    with page.expect_navigation():
        (page.locator(button) if isinstance(button, str) else button).click()


def section(page, name: str):
    """A partner's section on the partners page, by its name."""
    return page.locator("section.partner", has=page.locator(f"bdi:text-is('{name}')"))


# Every page a browser test walks (a line's page is added where a line exists).
PAGES = (
    "/dashboard/",
    "/dashboard/partners",
    "/dashboard/lines",
    "/dashboard/webhooks",
    "/dashboard/requests",
    "/dashboard/controls",
    "/dashboard/controls/reset",
    "/docs/errors",
    "/docs/errors/1007",
)
