"""The overview: how much there is, and whether anything needs the operator."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contactcard.dashboard.session import Session
from contactcard.dashboard.web import Nav, dashboard, off_loop, render, signed_in
from contactcard.journal import Query
from contactcard.kit import Kit

NAV: Nav | None = None  # the overview is the menu's home link (the brand)


RECENT_SECONDS = 3600  # "recent" requests on the overview: the last hour of the server's clock


def _recent(kit: Kit) -> tuple[int, int, int] | None:
    """Requests of the last hour, those answered 4xx, those answered 5xx (None: no journal)."""
    if kit.journal is None or kit.settings().journal_size == 0:
        return None
    since = kit.clock().now.timestamp() - RECENT_SECONDS
    entries = kit.requests(Query(since=since, limit=1000))
    return (
        len(entries),
        sum(400 <= e.status < 500 for e in entries),
        sum(e.status >= 500 for e in entries),
    )


@signed_in
async def overview(request: Request, session: Session) -> Response:
    """What an operator looks at first: how much there is, and whether anything needs them."""
    board = dashboard(request)
    counts = await off_loop(board.admin.counts)
    recent = await off_loop(_recent, board.kit)
    attention = counts.failed_deliveries or counts.retrying_deliveries or (recent is not None and recent[2] > 0)
    return render(request, "overview.html", session, counts=counts, recent=recent, attention=attention)


def routes() -> list[Route]:
    return [Route("/", overview, methods=["GET"])]
