"""SIGTERM with writes in flight: the server drains within its bound and loses nothing.

One server (SQLite, or PostgreSQL) with `CONTACTCARD_SHUTDOWN_TIMEOUT` short. Writes go
out at once to many lines: PATCHes of cards set up earlier and POSTs of new ones; most
lines' devices are scripted slow (1-2 s, well inside the bound), and one line's device
takes far longer than the bound. Once every write is answered or stored (its device is
applying it), the server gets SIGTERM, and a second wave of writes follows at once.

- The process exits within the shutdown bound plus a margin, although one apply would
  take far longer.
- Every write in flight at the signal whose device answers within the bound is answered
  200 (the server let it finish); every acknowledged write is in the database.
- No card is half-written: each is the old values, or a request's new values inactive,
  or a request's new values active, and active only with what the device shows (checked
  in the database, and again through the admin API and GET after a restart).
"""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from tests.support.processes import (
    ServerProcess,
    cards_by_phone,
    database_engine,
    device,
    log_trouble,
    script,
)
from tests.support.writes import (
    Write,
    answer_problems,
    card_problems,
    create_partner_fast,
    device_shows,
    fire,
    first,
    log_excerpt,
    outcomes,
    set_up_cards,
    sigterm,
)

pytestmark = pytest.mark.slow

SHUTDOWN_TIMEOUT = 4.0
EXIT_MARGIN = 3.0  # uvicorn's own shutdown, the lifespan, closing pools
PATCHED = 10  # lines with a card, PATCHed
POSTED = 3  # lines without one, POSTed
SLOW = (1.0, 2.0)  # apply delay of most lines: inside the bound
STUCK_DELAY = 30.0  # one line's apply: far past the bound
SECOND_WAVE = 6


# uvicorn cancels what outlives the shutdown bound and logs the cancellation as an exception
# of the app, with its traceback: expected here, for the stuck write.
_SHUTDOWN_CANCEL = re.compile(
    r"ERROR: +Exception in ASGI application\nTraceback \(most recent call last\):\n(?:.*\n)*?"
    r"asyncio\.exceptions\.CancelledError: Task cancelled, timeout graceful shutdown exceeded\n"
)


def _without_the_shutdown_cancel(log: str) -> str:
    return _SHUTDOWN_CANCEL.sub("", log)


@pytest.fixture
def server(database_url, tmp_path) -> Iterator[ServerProcess]:
    server = ServerProcess(
        tmp_path / "data",
        database_url,
        extra_env={"CONTACTCARD_WRITE_BUDGET": "0", "CONTACTCARD_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT)},
    )
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def engine(server) -> Iterator[Engine]:
    engine = database_engine(server.database_url, server.data_dir)
    yield engine
    engine.dispose()


def test_sigterm_drains_writes_in_flight_and_loses_none(server, engine):
    where = f"[{'postgres' if server.database_url else 'sqlite'}]"
    rng = random.Random(15)
    server.start()
    partner = create_partner_fast(server, engine, PATCHED + POSTED)
    patched, posted = partner.lines[:PATCHED], partner.lines[PATCHED:]
    setups = set_up_cards(server, partner.key, patched)
    stuck = patched[0]
    slow = [line for i, line in enumerate(partner.lines) if line != stuck and i % 4 != 3]
    for line in slow:
        script(server, line, apply_delay=round(rng.uniform(*SLOW), 2))
    script(server, stuck, apply_delay=STUCK_DELAY)

    wave = [Write(line, "PATCH") for line in patched] + [Write(line, "POST") for line in posted]
    rng.shuffle(wave)
    firing = threading.Thread(
        target=fire,
        args=(server.base_url, partner.key, wave),
        kwargs={"timeout": STUCK_DELAY + 10, "deadline": STUCK_DELAY + 10},
        daemon=True,
    )
    firing.start()
    # In flight: every write answered, or its values stored (the device is applying them).
    deadline = time.monotonic() + 15
    while True:
        rows = cards_by_phone(engine, partner.lines)
        stored = {line: (found[0].first_name, found[0].last_name) for line, found in rows.items() if found}
        waiting = [w for w in wave if w.status is None and stored.get(w.line) != w.names]
        if not waiting:
            break
        assert time.monotonic() < deadline, f"{where} writes never got going: {waiting}\n{log_excerpt(server)}"
        time.sleep(0.02)
    in_flight = [w for w in wave if w.status is None]
    assert any(w.line == stuck for w in in_flight), f"{where} the stuck write was answered: {wave}"

    exited = sigterm(server, SHUTDOWN_TIMEOUT + EXIT_MARGIN)
    second = [Write(line, "PATCH") for line in rng.sample([line for line in patched if line != stuck], SECOND_WAVE)]
    fire(server.base_url, partner.key, second, timeout=5, deadline=10)
    assert exited is not None, (
        f"{where} still running {SHUTDOWN_TIMEOUT + EXIT_MARGIN}s after SIGTERM (shutdown timeout "
        f"{SHUTDOWN_TIMEOUT}s, one apply takes {STUCK_DELAY}s); writes so far: {outcomes(wave)}"
    )
    firing.join(10)
    assert not firing.is_alive(), f"{where} a write is still waiting for its answer after the exit"
    everything = [*setups, *wave, *second]

    # The writes in flight at the signal whose device answers within the bound finished.
    drained = [w for w in in_flight if w.line != stuck]
    unfinished = [w for w in drained if w.status != 200]
    assert not unfinished, f"{where} in flight at SIGTERM, not let finish: {unfinished}"
    assert not list(answer_problems(everything)), first(list(answer_problems(everything)))
    # The write cut off by the bound: no answer, or an error in the envelope; never a 500.
    (cut,) = [w for w in wave if w.line == stuck]
    if cut.status is not None:
        envelope = isinstance(cut.body, dict) and cut.body.get("success") is False and "error" in cut.body
        assert cut.status != 500 and envelope, f"{where} the write cut off by the shutdown: {cut!r} {cut.body!r}"

    rows = cards_by_phone(engine, partner.lines)
    shown = device_shows(engine, partner.lines)
    history: dict[str, list[Write]] = {line: [] for line in partner.lines}
    for write in everything:
        history[write.line].append(write)
    problems = [p for line in partner.lines for p in card_problems(line, history[line], rows[line], shown.get(line))]
    assert not problems, f"{where}\n{first(problems)}"
    # The stuck line never saw its apply finish: its device still shows the old values.
    (stuck_row,) = rows[stuck]
    old = next(w for w in setups if w.line == stuck)
    assert shown.get(stuck) == old.names, f"{where} the stuck device shows {shown.get(stuck)}"
    assert not stuck_row.is_active or (stuck_row.first_name, stuck_row.last_name) == old.names, stuck_row

    # Restarted, the server tells the same through the admin API (what each device shows)
    # and GET (the cards).
    server.start()
    for line in partner.lines:
        view = device(server, line)
        assert (view["first_name"], view["last_name"]) == (shown.get(line) or (None, None)), (where, line, view)
    with server.http(partner.key) as http:
        listed = http.get("/v3/contact_card")
    assert listed.status_code == 200, listed.text
    assert [
        (c["phone_number"], c["first_name"], c["last_name"], c["is_active"]) for c in listed.json()["contact_cards"]
    ] == [
        (line, rows[line][0].first_name, rows[line][0].last_name, bool(rows[line][0].is_active))
        for line in sorted(partner.lines)
        if rows[line]
    ], where
    for start in (1, 2):
        log = (server.data_dir / f"{server.name}.{start}.log").read_text(errors="replace")
        trouble = log_trouble(_without_the_shutdown_cancel(log))
        assert trouble is None, f"{where} start {start} logged:\n{trouble}"
    print(
        f"{where} exited {exited:.1f}s after SIGTERM with {len(in_flight)} writes in flight; "
        f"first wave {outcomes(wave)}, second wave {outcomes(second)}"
    )
