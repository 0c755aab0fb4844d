"""The seam to a line's device: apply a card, and check the line's RCS capability.

`Device` is the one interface; `SimulatedDevice` is the default implementation.
"""

from contactcard.device.base import Device, DeviceScript, DeviceView
from contactcard.device.simulated import SimulatedDevice

__all__ = ["Device", "DeviceScript", "DeviceView", "SimulatedDevice"]
