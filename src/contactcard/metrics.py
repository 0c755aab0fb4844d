"""Prometheus metrics: requests, latency, write outcomes, image fetches, queued writes.

With several worker processes, prometheus-client's multiprocess mode keeps each worker's
values in files of a folder (`PROMETHEUS_MULTIPROC_DIR`, set by `contactcard serve` to
`<data_dir>/metrics` before the workers start) and sums them when scraped, so any worker,
or the supervisor's metrics port, answers for all of them. One process keeps them in memory.

The request path pays for one dict lookup and two additions under an uncontended lock: a
request is tallied in plain lists, which `flush` adds to prometheus-client's counter and
histogram in bulk, before every scrape this process answers and once a second (so that
another worker, or the supervisor, answering a scrape sees it within a second). Calling
prometheus-client per request (a lock per increment, a Python loop over the buckets) cost
GETs about 10 % (bench figure 9 measures on against off).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import threading
from bisect import bisect_left
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Latency buckets from a memo hit (well under a millisecond) to a slow image write (seconds).
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
_SUM = len(BUCKETS) + 1  # a tally's last slot: after one count per bucket and one for +Inf
FLUSH_WAIT = 1.0  # seconds a scrape's thread waits for the event loop to flush

_EXACT_ROUTES = {
    "/v3/contact_card": "/v3/contact_card",
    "/api/partner/v3/contact_card": "/v3/contact_card",
    "/healthz": "/healthz",
    "/readyz": "/readyz",
    "/metrics": "/metrics",
    "/openapi.json": "/openapi.json",
    "/docs/errors": "/docs/errors",
    "/docs": "/docs",
    "/docs/admin-api.json": "/docs/admin-api.json",
    "/favicon.ico": "/favicon.ico",
}
_PREFIX_ROUTES = (
    ("/cdn/contact-card/", "/cdn/contact-card/{name}"),
    ("/docs/errors/", "/docs/errors/{code}"),
    ("/admin/v1/", "/admin/v1"),
    ("/docs/assets/", "/docs/assets/{name}"),
    ("/dashboard", "/dashboard"),  # one label for all its pages (line numbers are in its paths)
)


def route_of(path: str) -> str:
    """A route label of bounded cardinality: unknown paths share one label."""
    found = _EXACT_ROUTES.get(path)
    if found is not None:
        return found
    for prefix, label in _PREFIX_ROUTES:
        if path.startswith(prefix):
            return label
    return "other"


def prepare_multiprocess(folder: Path) -> None:
    """Point prometheus-client at a fresh `folder` for this server's workers. Called by the
    supervisor before any worker starts (and before prometheus-client is used): files left
    by an earlier run would otherwise be summed into the new one."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    os.environ[MULTIPROC_ENV] = str(folder)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # Requests tallied since the last flush: (route, method, status, code) -> a count
        # per latency bucket (as prometheus-client keeps them, not cumulative), then the sum.
        self._tallies: dict[tuple[str, str, int, int], list[float]] = {}
        # Tallied and flushed on the event loop only (`bind`), so the request path takes
        # no lock: a scrape's thread asks the loop to flush and waits for it.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        # Registered first, so collected first: every scrape of this registry (the API's
        # /metrics or the metrics port) sees this process's requests up to that moment.
        self.registry.register(_FlushFirst(self))
        # In multiprocess mode values go to files and are collected from there; registering
        # the metrics as well would count them twice.
        own = None if self.multiprocess else self.registry
        if self.multiprocess:
            MultiProcessCollector(self.registry)  # type: ignore[no-untyped-call]
        self.requests = Counter(
            "contactcard_requests",
            "Requests answered, by route, method, status and envelope error code (0: none).",
            ["route", "method", "status", "code"],
            registry=own,
        )
        self.latency = Histogram(
            "contactcard_request_duration_seconds",
            "Time from the request's arrival to the end of its answer.",
            ["route", "method"],
            buckets=BUCKETS,
            registry=own,
        )
        self.writes = Counter(
            "contactcard_writes",
            "POST and PATCH outcomes: applied, failed (stored inactive), upstream_rate_limited, budget_refused; "
            "past the database deadline: expired (never sent, nothing changed) and in_doubt (sent, "
            "the database settles it whole when it answers).",
            ["outcome"],
            registry=own,
        )
        self.image_fetches = Counter(
            "contactcard_image_fetches",
            "Image URLs fetched, by outcome: stored, fetch_failed, unusable, store_unavailable.",
            ["outcome"],
            registry=own,
        )
        self.image_bytes = Counter("contactcard_image_fetch_bytes", "Bytes downloaded from image URLs.", registry=own)
        self.queued_writes = Gauge(
            "contactcard_queued_writes",
            "Writes waiting for their line or the database, or under way, now.",
            registry=own,
            multiprocess_mode="livesum",
        )
        self.pool_connections = Gauge(
            "contactcard_db_pool_connections",
            "Connections of the GET pool (PostgreSQL): open, idle, and requests waiting for one.",
            ["state"],
            registry=own,
            multiprocess_mode="livesum",
        )
        self.writer_backlog = Gauge(
            "contactcard_db_writer_backlog",
            "Transactions queued for the writer threads and not yet started.",
            registry=own,
            multiprocess_mode="livesum",
        )
        self.webhook_attempts = Counter(
            "contactcard_webhook_attempts",
            "Webhook delivery attempts, by outcome: delivered, retrying (to be tried again), failed (given up).",
            ["outcome"],
            registry=own,
        )
        self.webhook_latency = Histogram(
            "contactcard_webhook_attempt_duration_seconds",
            "Time from sending a webhook attempt to the receiver's answer (or its failure).",
            buckets=BUCKETS,
            registry=own,
        )
        self._request_children: dict[tuple[str, str, int, int], Any] = {}
        self._latency_children: dict[tuple[str, str], Any] = {}

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Requests are tallied on `loop` (called on it, before the first request)."""
        self._loop, self._loop_thread = loop, threading.get_ident()

    def request(self, route: str, method: str, status: int, code: int, seconds: float) -> None:
        """On the bound loop's thread (the edge)."""
        key = (route, method, status, code)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = [0] * (_SUM + 1)
        tally[bisect_left(BUCKETS, seconds)] += 1  # the first bucket whose bound is >= seconds
        tally[_SUM] += seconds

    def flush(self) -> None:
        """Add the requests tallied so far to the counter and the histogram: on the loop
        that tallies them, waited for (a moment at most) when called from another thread."""
        loop = self._loop
        if loop is None or threading.get_ident() == self._loop_thread or not loop.is_running():
            self._flush_here()
            return
        done = threading.Event()

        def on_the_loop() -> None:
            try:
                self._flush_here()
            finally:
                done.set()

        try:
            loop.call_soon_threadsafe(on_the_loop)
        except RuntimeError:  # the loop closed meanwhile: nothing tallies any more
            self._flush_here()
            return
        done.wait(FLUSH_WAIT)  # a loop too busy to answer: this scrape has the last second's values

    def _flush_here(self) -> None:
        tallies, self._tallies = self._tallies, {}
        for (route, method, status, code), tally in tallies.items():
            counter = self._request_children.get((route, method, status, code))
            if counter is None:
                counter = self._request_children[(route, method, status, code)] = self.requests.labels(
                    route, method, str(status), str(code)
                )
            counter.inc(sum(tally[:_SUM]))
            timing = self._latency_children.get((route, method))
            if timing is None:
                timing = self._latency_children[(route, method)] = self.latency.labels(route, method)
            # prometheus-client has no bulk observe: its per-bucket values (private, stable
            # for years; the observability test reads every bucket back) take the counts.
            for bucket, count in zip(timing._buckets, tally[:_SUM], strict=True):
                if count:
                    bucket.inc(count)
            timing._sum.inc(tally[_SUM])

    def write(self, outcome: str) -> None:
        self.writes.labels(outcome).inc()

    def image_fetch(self, outcome: str, size: int = 0) -> None:
        self.image_fetches.labels(outcome).inc()
        if size:
            self.image_bytes.inc(size)

    def webhook_attempt(self, outcome: str, latency_ms: float | None) -> None:
        self.webhook_attempts.labels(outcome).inc()
        if latency_ms is not None:
            self.webhook_latency.observe(latency_ms / 1000)

    def database(self, pool: tuple[int, int, int], backlog: int) -> None:
        opened, idle, waiting = pool
        self.pool_connections.labels("open").set(opened)
        self.pool_connections.labels("idle").set(idle)
        self.pool_connections.labels("waiting").set(waiting)
        self.writer_backlog.set(backlog)

    def queued(self, delta: int) -> None:
        self.queued_writes.inc(delta)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _FlushFirst:
    """A collector of nothing that flushes the tallies when the registry is collected."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> list[Any]:
        self._metrics.flush()
        return []


def serve_port(host: str, port: int, metrics: Metrics | None = None) -> None:
    """Answer scrapes on a port of their own, from a thread of this process: this process's
    `metrics`, or (the supervisor of several workers) every worker's files."""
    from prometheus_client import start_http_server

    if metrics is not None:
        registry = metrics.registry
    else:
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    start_http_server(port, addr=host, registry=registry)
