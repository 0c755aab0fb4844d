"""A simulated device that records what each line shows, as scripted by the operator.

Its records (scripts and displays) are kept in the database, so that another process can
script it and read what a line shows. The device asks only for the `DeviceRecords` below;
the store provides them (`store/devices.py`, wired by `bootstrap.py`), so this seam does
not import the layer beneath the use cases.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

from contactcard.card import Card, Outcome
from contactcard.device.base import DeviceScript, DeviceView


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

    def set_script(self, phone_number: str, script: DeviceScript) -> None:
        self._records.set_script(phone_number, script)

    def view(self, phone_number: str) -> DeviceView:
        return self._records.view(phone_number)
