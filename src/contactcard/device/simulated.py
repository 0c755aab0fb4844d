"""A simulated device that records what each line shows, as scripted by the operator.

Its records (scripts and displays) are kept in the database, so that another process can
script it and read what a line shows. The device asks only for the `DeviceRecords` below;
the store provides them (`store/devices.py`, wired by `bootstrap.py`), so this seam does
not import the layer beneath the use cases.

Its records being in the card's own database, its apply can join the card's transaction
(`joined_apply`) when the line's state read saw nothing scripted for it: the display
shows the card in the card's commit. A scripted outcome (a failure, a rate limit, a
delay) is taken by `apply` after the card was stored, as a real device would answer.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from contactcard.card import Card, Outcome
from contactcard.device.base import DeviceScript, DeviceView
from contactcard.domain import CardValues, JoinedApply, LineState


class DeviceRecords(Protocol):
    """Where the simulated device keeps each line's script and display."""

    async def take_apply(self, card: Card, image_url: str | None) -> tuple[Outcome, float]:
        """Apply `card` as scripted: the outcome, or a delay to wait before asking again."""
        ...

    async def rcs_unavailable(self, phone_number: str) -> bool: ...
    def set_script(self, phone_number: str, script: DeviceScript) -> None: ...
    def view(self, phone_number: str) -> DeviceView: ...


class SimulatedDevice:
    def __init__(self, records: DeviceRecords) -> None:
        self._records = records

    async def apply(self, card: Card, image_url: str | None) -> Outcome:
        while True:
            outcome, delay = await self._records.take_apply(card, image_url)
            if delay <= 0:
                return outcome
            await asyncio.sleep(delay)  # a slow device: the request waits, holding only its line

    async def rcs_check_available(self, phone_number: str) -> bool:
        return not await self._records.rcs_unavailable(phone_number)

    def joined_apply(self, state: LineState, values: CardValues, image_url: str | None) -> JoinedApply | None:
        # Only when the state read saw this device's records and no script: an outcome
        # scripted since makes the display show nothing, and `apply` then takes it.
        if state.device_scripted is not False:
            return None
        return JoinedApply(values.first_name, values.last_name, image_url)

    def set_script(self, phone_number: str, script: DeviceScript) -> None:
        self._records.set_script(phone_number, script)

    def view(self, phone_number: str) -> DeviceView:
        return self._records.view(phone_number)
