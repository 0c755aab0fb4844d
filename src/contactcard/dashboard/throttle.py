"""Wrong admin tokens, counted per client address: a few tries a minute, then a short wait.

Guessing the token by trying many is stopped (five wrong tries a minute from one address,
instead of hundreds a second); the operator who mistyped waits at most a minute, and a
refused try neither checks the token nor lengthens the wait. Counted in each process's
memory: several workers allow that many tries each, still a handful a minute.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable

TRIES = 5  # wrong tokens allowed from one address ...
WINDOW = 60.0  # ... within this many seconds
_ADDRESSES = 10_000  # addresses remembered at most (the oldest forgotten first)


class SignInThrottle:
    def __init__(self, tries: int = TRIES, window: float = WINDOW, clock: Callable[[], float] = time.monotonic) -> None:
        self.tries = tries
        self.window = window
        self.clock = clock
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def wait(self, address: str) -> float:
        """Seconds before `address` may try again; 0 when it may now."""
        now = self.clock()
        failures = self._failures.get(address)
        if failures is None:
            return 0.0
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if len(failures) < self.tries:
            return 0.0
        return failures[0] + self.window - now

    def failed(self, address: str) -> None:
        failures = self._failures.setdefault(address, deque(maxlen=self.tries))
        failures.append(self.clock())
        self._failures.move_to_end(address)
        while len(self._failures) > _ADDRESSES:
            self._failures.popitem(last=False)

    def succeeded(self, address: str) -> None:
        self._failures.pop(address, None)
