"""Signing in and out of the dashboard: a kept cookie opens nothing after sign-out, sign-in
lands on the page asked for, wrong tokens are throttled, serve prints the address."""

from __future__ import annotations

import re
import warnings
from urllib.parse import quote

import httpx

from contactcard.dashboard.session import COOKIE
from contactcard.dashboard.throttle import TRIES as THROTTLE_TRIES
from tests.conftest import ADMIN_TOKEN
from tests.dashboard.conftest import csrf_of, sign_in
from tests.dashboard.test_http import _app

with warnings.catch_warnings():
    # Starlette asks for its `httpx2` fork; the locked httpx serves these in-process checks.
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient


def test_a_cookie_kept_after_sign_out_opens_nothing(page, dash_server):
    sign_in(page)
    (kept,) = [c for c in page.context.cookies() if c["name"] == COOKIE]
    page.click("button:has-text('Sign out')")
    page.wait_for_url(re.compile(r"/dashboard/sign-in$"))
    # The cookie as a shared machine, a proxy log or curl kept it: replayed, it is refused.
    replayed = httpx.get(
        f"{dash_server.base_url}/dashboard/partners", cookies={COOKIE: kept["value"]}, follow_redirects=False
    )
    assert replayed.status_code == 303 and "/dashboard/sign-in" in replayed.headers["location"]
    # Back, on a shared machine: no page of the session comes back (none was cached).
    page.go_back()
    assert "/dashboard/sign-in" in page.url and page.locator("h1").inner_text() == "Sign in"
    page.context.add_cookies([kept])
    page.goto("/dashboard/partners")
    assert "/dashboard/sign-in" in page.url
    assert page.locator("h1").inner_text() == "Sign in"


def test_sign_in_lands_on_the_page_asked_for(page, dash_server):
    page.goto("/dashboard/lines?q=%2B1555")
    assert "/dashboard/sign-in?next=" in page.url
    page.fill("input[name=token]", ADMIN_TOKEN)
    page.click("button:has-text('Sign in')")
    page.wait_for_url(re.compile(r"/dashboard/lines\?q=%2B1555$"))
    assert page.input_value("input[name=q]") == "+1555"
    # Another site, a scheme or a protocol-relative address is never followed.
    for hostile in ("https://evil.example/", "//evil.example/", "/\\evil.example", "javascript:alert(1)"):
        page.context.clear_cookies()
        page.goto(f"/dashboard/sign-in?next={quote(hostile, safe='')}")
        page.fill("input[name=token]", ADMIN_TOKEN)
        page.click("button:has-text('Sign in')")
        page.wait_for_url(re.compile(r"/dashboard/$"))
        assert page.url.startswith(dash_server.base_url), hostile


def test_wrong_admin_tokens_are_throttled_per_address(tmp_path):
    # In-process: the module's server is shared by the other tests, which sign in from the
    # same address. (How long the wait lasts is the throttle's unit test, on a clock of its own.)
    token = "a-long-admin-token-here"
    with TestClient(_app(tmp_path, token), base_url="https://cards.example.test", follow_redirects=False) as client:
        csrf = csrf_of(client.get("/dashboard/sign-in").text)

        def attempt(given: str) -> str:
            answer = client.post("/dashboard/sign-in", data={"csrf": csrf, "token": given})
            assert answer.status_code == 303
            return client.get(answer.headers["location"]).text

        for _ in range(THROTTLE_TRIES):
            assert "That is not the admin token." in attempt("guess")
        # Then even the right token waits: the tries stopped are not checked at all.
        assert "Too many wrong tokens from this address: try again in" in attempt(token)
        assert client.get("/dashboard/partners").status_code == 303  # not signed in


def test_serve_prints_the_dashboards_address_never_the_token(dash_server):
    printed = dash_server.log(None)
    assert f"{dash_server.base_url}/dashboard/" in printed
    assert ADMIN_TOKEN not in printed
