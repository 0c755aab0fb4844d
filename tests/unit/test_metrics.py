"""The request tallies reach prometheus-client's counter and histogram exactly."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from contactcard.metrics import Metrics


def _samples(metrics: Metrics) -> dict:
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_tallied_requests_land_in_the_right_buckets_at_the_scrape():
    metrics = Metrics()
    route = "/v3/contact_card"
    # On a bound counts in that bucket (Prometheus buckets are "less than or equal").
    for seconds in (0.0001, 0.0005, 0.0007, 0.003, 20.0):
        metrics.request(route, "GET", 200, 0, seconds)
    metrics.request(route, "GET", 404, 2001, 0.002)
    first = _samples(metrics)
    labels = (("method", "GET"), ("route", route))

    def bucket(le: str) -> float:
        return first[("contactcard_request_duration_seconds_bucket", (("le", le), *labels))]

    assert first[("contactcard_requests_total", (("code", "0"), *labels, ("status", "200")))] == 5
    assert first[("contactcard_requests_total", (("code", "2001"), *labels, ("status", "404")))] == 1
    assert [bucket("0.0005"), bucket("0.001"), bucket("0.0025"), bucket("0.005"), bucket("10.0")] == [2, 3, 4, 5, 5]
    assert bucket("+Inf") == 6
    assert abs(first[("contactcard_request_duration_seconds_sum", labels)] - 20.0063) < 1e-9

    # A second scrape adds only what came since.
    metrics.request(route, "GET", 200, 0, 0.0004)
    again = _samples(metrics)
    assert again[("contactcard_requests_total", (("code", "0"), *labels, ("status", "200")))] == 6
    assert again[("contactcard_request_duration_seconds_bucket", (("le", "0.0005"), *labels))] == 3


def test_a_scrape_from_another_thread_is_flushed_on_the_tallying_loop():
    """Requests are tallied without a lock on the event loop; a scrape from the metrics
    port's thread has the loop flush them, and sees every request tallied before it."""
    import asyncio
    import threading

    metrics = Metrics()
    route = "/v3/contact_card"
    flushed_on: list[int] = []
    original = metrics._flush_here

    def recording() -> None:
        flushed_on.append(threading.get_ident())
        original()

    metrics._flush_here = recording  # type: ignore[method-assign]

    async def scenario() -> dict:
        metrics.bind(asyncio.get_running_loop())
        for _ in range(3):
            metrics.request(route, "GET", 200, 0, 0.001)
        return await asyncio.to_thread(_samples, metrics)  # the scrape, from a worker thread

    loop_thread = threading.get_ident()  # asyncio.run runs the loop on this thread
    found = asyncio.run(scenario())
    labels = (("code", "0"), ("method", "GET"), ("route", route), ("status", "200"))
    assert found[("contactcard_requests_total", labels)] == 3
    assert flushed_on and set(flushed_on) == {loop_thread}
