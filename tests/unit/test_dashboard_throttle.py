"""Wrong admin tokens per client address: a few a minute, then a wait of a minute at most."""

from __future__ import annotations

from contactcard.dashboard.throttle import SignInThrottle


def _throttle() -> tuple[SignInThrottle, list[float]]:
    now = [1000.0]
    return SignInThrottle(tries=5, window=60, clock=lambda: now[0]), now


def test_five_wrong_tries_a_minute_then_the_rest_of_that_minute_waits():
    throttle, now = _throttle()
    for _ in range(5):
        assert throttle.wait("203.0.113.7") == 0
        throttle.failed("203.0.113.7")
    assert throttle.wait("203.0.113.7") == 60
    assert throttle.wait("198.51.100.1") == 0  # another address is not held up
    now[0] += 30
    assert throttle.wait("203.0.113.7") == 30  # waiting (or trying) does not lengthen it
    now[0] += 30
    assert throttle.wait("203.0.113.7") == 0


def test_tries_spread_out_never_wait_and_a_success_forgets_them():
    throttle, now = _throttle()
    for _ in range(20):
        assert throttle.wait("203.0.113.7") == 0
        throttle.failed("203.0.113.7")
        now[0] += 13  # under five a minute
    for _ in range(4):
        throttle.failed("203.0.113.8")
    throttle.succeeded("203.0.113.8")
    throttle.failed("203.0.113.8")
    assert throttle.wait("203.0.113.8") == 0
