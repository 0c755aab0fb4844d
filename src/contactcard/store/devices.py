"""The simulated device's records: each line's script and what its device shows.

They live in the database, so another process (the admin CLI, a test suite in another
language through the admin API) can script outcomes and read what a line shows. An
apply on its own (`take_apply`) is one transaction of three statements that need no
answer from each other: the scripted counts are read, the card is shown unless something
is scripted, and the counts are taken down, the conditions written in SQL (an UPDATE's
SET sees the row as it was). An apply joined to the card's transaction (`show`) is the
display's statement alone, made only when nothing was scripted.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, delete, insert, select

from contactcard.card import Card, Outcome
from contactcard.device.base import DeviceScript, DeviceView
from contactcard.domain import JoinedApply
from contactcard.store.core import NO_LINES, Stmt, Writer
from contactcard.store.schema import device_displays, device_scripts

_SCRIPTED = "(fail_next > 0 OR rate_limit_next > 0 OR apply_delay > 0)"

_READ_SCRIPT = "SELECT fail_next, rate_limit_next, apply_delay FROM device_scripts WHERE phone_number = :phone"

SHOW = f"""
INSERT INTO device_displays (phone_number, first_name, last_name, image_url, applies, applied_at)
SELECT CAST(:phone AS VARCHAR), CAST(:first_name AS VARCHAR), CAST(:last_name AS VARCHAR),
       CAST(:image_url AS VARCHAR), 1, :now
WHERE NOT EXISTS (SELECT 1 FROM device_scripts WHERE phone_number = :phone AND {_SCRIPTED})
ON CONFLICT (phone_number) DO UPDATE SET
  first_name = excluded.first_name, last_name = excluded.last_name, image_url = excluded.image_url,
  applies = device_displays.applies + 1, applied_at = excluded.applied_at
"""

# (The casts: PostgreSQL must deduce one type for a parameter used in two places.)
# A delay is taken first (the apply then runs again after it), then an upstream rate
# limit, then a failure: the order the admin's script documents.
_TAKE_SCRIPTED = f"""
UPDATE device_scripts SET
  rate_limit_next = CASE WHEN apply_delay > 0 THEN rate_limit_next
                         WHEN rate_limit_next > 0 THEN rate_limit_next - 1 ELSE rate_limit_next END,
  fail_next = CASE WHEN apply_delay > 0 OR rate_limit_next > 0 THEN fail_next
                   WHEN fail_next > 0 THEN fail_next - 1 ELSE fail_next END,
  apply_delay = 0
WHERE phone_number = :phone AND {_SCRIPTED}
"""

_RCS = "SELECT rcs_unavailable FROM device_scripts WHERE phone_number = :phone"

# The same check, and whether any outcome is scripted, as columns of the write path's
# state read (see `store/cards.py`).
STATE_COLUMNS = (
    "(SELECT d.rcs_unavailable FROM device_scripts AS d WHERE d.phone_number = :phone), "
    f"EXISTS (SELECT 1 FROM device_scripts AS d WHERE d.phone_number = :phone AND {_SCRIPTED})"
)

# The display's part of a card's store when the device's apply joins it (`JoinedApply`):
# the card is shown unless an outcome is scripted (one set since the state read makes it
# show nothing), and the statement answers a row only if it was shown.
_SHOW_JOINED = SHOW + " RETURNING 1"

# Whether the display showed the card, as the card's own statement reads it, so the card
# is stored active exactly then. In a later statement of the same transaction (SQLite):
# the display was written with the same `:now`. Within one statement (PostgreSQL, the
# display a CTE named `DISPLAY_PART`, whose rows the statement's parts share).
SHOWN_IN_THIS_TX = "EXISTS (SELECT 1 FROM device_displays AS s WHERE s.phone_number = :phone AND s.applied_at = :now)"
DISPLAY_PART = "shown"
SHOWN_IN_THIS_STATEMENT = f"EXISTS (SELECT 1 FROM {DISPLAY_PART})"


def show(phone: str, joined: JoinedApply, now: datetime) -> Stmt:
    """The simulated device's apply as a statement of the card's transaction."""
    params = {
        "phone": phone,
        "first_name": joined.first_name,
        "last_name": joined.last_name,
        "image_url": joined.image_url,
        "now": now,
    }
    return Stmt(_SHOW_JOINED, params, rows=True)


class DeviceRecords:
    def __init__(self, writer: Writer, engine: Engine) -> None:
        self._writer = writer
        self._engine = engine  # the admin side: scripts set and displays read

    async def take_apply(self, card: Card, image_url: str | None) -> tuple[Outcome, float]:
        """Apply `card` as scripted: the outcome, or a delay to wait before asking again."""
        params = {
            "phone": card.phone_number,
            "first_name": card.first_name,
            "last_name": card.last_name,
            "image_url": image_url,
            "now": datetime.now(UTC),
        }
        script, _, _ = await self._writer.run(
            [Stmt(_READ_SCRIPT, params, rows=True), Stmt(SHOW, params), Stmt(_TAKE_SCRIPTED, params)],
            lines=NO_LINES,  # the device's own records: no GET answer shows them
        )
        if not script:
            return Outcome.APPLIED, 0.0
        fail_next, rate_limit_next, apply_delay = script[0]
        if apply_delay > 0:
            return Outcome.APPLIED, float(apply_delay)
        if rate_limit_next > 0:
            return Outcome.RATE_LIMITED, 0.0
        if fail_next > 0:
            return Outcome.FAILED, 0.0
        return Outcome.APPLIED, 0.0

    async def rcs_unavailable(self, phone_number: str) -> bool:
        rows = await self._writer.read(Stmt(_RCS, {"phone": phone_number}))
        return bool(rows and rows[0][0])

    def set_script(self, phone_number: str, script: DeviceScript) -> None:
        with self._engine.begin() as conn:
            conn.execute(delete(device_scripts).where(device_scripts.c.phone_number == phone_number))
            conn.execute(
                insert(device_scripts).values(
                    phone_number=phone_number,
                    fail_next=script.fail_next,
                    rate_limit_next=script.rate_limit_next,
                    rcs_unavailable=script.rcs_unavailable,
                    apply_delay=script.apply_delay,
                )
            )

    def view(self, phone_number: str) -> DeviceView:
        with self._engine.connect() as conn:
            row = conn.execute(select(device_scripts).where(device_scripts.c.phone_number == phone_number)).first()
            shown = conn.execute(select(device_displays).where(device_displays.c.phone_number == phone_number)).first()
        script = (
            DeviceScript(row.fail_next, row.rate_limit_next, bool(row.rcs_unavailable), row.apply_delay)
            if row is not None
            else DeviceScript()
        )
        return DeviceView(
            phone_number=phone_number,
            first_name=shown.first_name if shown else None,
            last_name=shown.last_name if shown else None,
            image_url=shown.image_url if shown else None,
            applies=shown.applies if shown else 0,
            applied_at=shown.applied_at if shown else None,
            script=script,
        )
