"""Figure 11: the dashboard's pages on figure 2's database (at least 10,000 cards), against
GET all of partner 0's 10,000 cards (figure 2's request), on the same server in the same run.

Each page is asked for one request at a time over one signed-in connection, as a person's
browser would; the figure is the median time of a page (target: 200 ms), with GET all's
beside it so that the machine's speed can be read off.
"""

from __future__ import annotations

import re
import time

import httpx

from bench import HarnessError
from bench.load import Side, interleave
from bench.rows import compare
from bench.seed import number

REQUESTS = 15  # per page and round


def _signed_in(base_url: str, token: str) -> httpx.Client:
    client = httpx.Client(base_url=base_url, timeout=30)
    form = client.get("/dashboard/sign-in")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    if csrf is None:
        raise HarnessError(f"{base_url}: no sign-in form on /dashboard/sign-in ({form.status_code})")
    done = client.post("/dashboard/sign-in", data={"csrf": csrf.group(1), "token": token})
    if done.status_code != 303:
        raise HarnessError(f"{base_url}: the dashboard's sign-in answered {done.status_code}")
    return client


def _pages() -> dict[str, tuple[str, dict[str, str]]]:
    deep = number(0, 9_000)  # page 181 of 200: keyset paging reads no row before it
    return {
        "lines, first page": ("/dashboard/lines", {}),
        "lines, deep page": ("/dashboard/lines", {"after": deep}),
        "lines, search": ("/dashboard/lines", {"q": number(0, 5_120)[:-1]}),
        "one line": (f"/dashboard/lines/{number(0, 5_000)}", {}),
        "requests": ("/dashboard/requests", {}),
        "webhooks": ("/dashboard/webhooks", {}),
    }


def _timed(client: httpx.Client, path: str, params: dict[str, str], headers: dict[str, str] | None = None) -> dict:
    times = []
    for _ in range(REQUESTS):
        started = time.perf_counter()
        answer = client.get(path, params=params, headers=headers)
        times.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise HarnessError(f"{path} answered {answer.status_code} during the figure")
    times.sort()
    return {"ms": times[len(times) // 2], "requests": REQUESTS}


def dashboard_pages(run) -> list[dict]:
    rows = []
    for db in run.databases:
        (server,) = run.variants((db, "large", "dashboard"))
        seeded = run.seeded(db, "large")
        key, total, mine = seeded.keys[0], seeded.total_cards, seeded.partner0_cards
        page_client = _signed_in(server.url, run.admin_token)
        api = httpx.Client(base_url=server.url, timeout=60)
        try:
            get_all = Side(
                "get-all",
                f"{db}: GET all, {mine:,} cards",
                lambda _s, c=api, k=key: _timed(c, "/v3/contact_card", {}, {"authorization": f"Bearer {k}"}),
                unit="ms",
            )
            pages = {
                title: Side(
                    f"page-{i}",
                    f"{db}: dashboard, {title}",
                    lambda _s, c=page_client, p=path, q=params: _timed(c, p, q),
                    unit="ms",
                )
                for i, (title, (path, params)) in enumerate(_pages().items())
            }
            sides = [get_all, *pages.values()]
            for side in sides:
                side.show = lambda result: f"{result['ms']:.1f} ms"
            interleave(sides, rounds=run.config.rounds, duration=0, warmup=0, log=run.log)
        finally:
            page_client.close()
            api.close()
        run.raw.setdefault("dashboard", {})[db] = {side.name: side.raw() for side in sides}
        for title, side in pages.items():
            title = f"dashboard, {title} ({total:,} cards)"
            rows.append(compare(11, db, title, "ms", "dashboard_ms", side, None, key="ms", checked=False))
        # (A page or GET all that fails raises: no failed requests to count here.)
        rows.append(compare(11, db, f"GET all of {mine:,} cards (same run)", "ms", "dashboard_ms", get_all, None,
                            key="ms", info=True, checked=False))  # fmt: skip
    return rows
