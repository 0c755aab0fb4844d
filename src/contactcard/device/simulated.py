"""A simulated device that records what each line shows.

Its scripts and displays live in the database, so another process (the admin CLI, a
test suite in another language through the admin API) can script outcomes and read
what a line shows now.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, delete, insert, select, update

from contactcard.card import Card, Outcome
from contactcard.device.base import DeviceScript, DeviceView
from contactcard.store.schema import device_displays, device_scripts


class SimulatedDevice:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def apply(self, card: Card, image_url: str | None) -> Outcome:
        with self._engine.connect() as conn:
            delay = self._script(conn, card.phone_number).apply_delay
        if delay > 0:
            with self._engine.begin() as conn:
                conn.execute(
                    update(device_scripts)
                    .where(device_scripts.c.phone_number == card.phone_number)
                    .values(apply_delay=0.0)
                )
            time.sleep(delay)  # a slow device; the caller is a worker thread
        with self._engine.begin() as conn:
            outcome = self._take_scripted_outcome(conn, card.phone_number)
            if outcome is Outcome.APPLIED:
                self._show(conn, card, image_url)
        return outcome

    def rcs_check_available(self, phone_number: str) -> bool:
        with self._engine.connect() as conn:
            return not self._script(conn, phone_number).rcs_unavailable

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
            script = self._script(conn, phone_number)
            shown = conn.execute(select(device_displays).where(device_displays.c.phone_number == phone_number)).first()
        return DeviceView(
            phone_number=phone_number,
            first_name=shown.first_name if shown else None,
            last_name=shown.last_name if shown else None,
            image_url=shown.image_url if shown else None,
            applies=shown.applies if shown else 0,
            applied_at=shown.applied_at if shown else None,
            script=script,
        )

    def forget(self, conn: Connection, phone_number: str) -> None:
        """Drop a removed line's display and script."""
        conn.execute(delete(device_scripts).where(device_scripts.c.phone_number == phone_number))
        conn.execute(delete(device_displays).where(device_displays.c.phone_number == phone_number))

    @staticmethod
    def _script(conn: Connection, phone_number: str) -> DeviceScript:
        row = conn.execute(select(device_scripts).where(device_scripts.c.phone_number == phone_number)).first()
        if row is None:
            return DeviceScript()
        return DeviceScript(row.fail_next, row.rate_limit_next, bool(row.rcs_unavailable), row.apply_delay)

    def _take_scripted_outcome(self, conn: Connection, phone_number: str) -> Outcome:
        script = self._script(conn, phone_number)
        where = device_scripts.c.phone_number == phone_number
        if script.rate_limit_next > 0:
            conn.execute(update(device_scripts).where(where).values(rate_limit_next=script.rate_limit_next - 1))
            return Outcome.RATE_LIMITED
        if script.fail_next > 0:
            conn.execute(update(device_scripts).where(where).values(fail_next=script.fail_next - 1))
            return Outcome.FAILED
        return Outcome.APPLIED

    @staticmethod
    def _show(conn: Connection, card: Card, image_url: str | None) -> None:
        now = datetime.now(UTC)
        where = device_displays.c.phone_number == card.phone_number
        values = {"first_name": card.first_name, "last_name": card.last_name, "image_url": image_url}
        shown = conn.execute(select(device_displays.c.applies).where(where)).first()
        if shown is None:
            conn.execute(
                insert(device_displays).values(phone_number=card.phone_number, applies=1, applied_at=now, **values)
            )
        else:
            conn.execute(
                update(device_displays).where(where).values(applies=shown.applies + 1, applied_at=now, **values)
            )
