"""What an operator sees: `/metrics` (Prometheus), the JSON log lines, `/readyz`.

Real server processes (`contactcard serve`), driven over HTTP; their logs are read from
the files their stderr went to, as a log shipper would.
"""

from __future__ import annotations

import io
import json
import logging
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from contactcard import logs
from tests.conftest import ADMIN_TOKEN
from tests.support import images
from tests.support.processes import (
    NEEDS_POSTGRES,
    ServerProcess,
    create_partner,
    free_port,
)
from tests.support.s3 import SECRET_KEY, S3Server

CARDS = "/api/partner/v3/contact_card"


def scrape(server: ServerProcess, *, base: str | None = None, token: str | None = ADMIN_TOKEN) -> dict:
    """Every sample of a scrape: {(name, sorted labels): value}."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    answer = httpx.get(f"{base or server.base_url}/metrics", headers=headers, timeout=10)
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def sample(samples: dict, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def json_lines(server: ServerProcess) -> list[dict]:
    """The log's JSON lines. `serve` prints its start-up banner (the demo key, shown once) to
    stdout, which the test captures in the same file: only that may precede them."""
    lines = [line for line in server.log(None).splitlines() if line.strip()]
    first = next(i for i, line in enumerate(lines) if line.startswith("{"))
    parsed = []
    for line in lines[first:]:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line in {server.name}'s log: {line!r}") from None
    return parsed


def test_metrics_count_requests_writes_and_images_behind_the_admin_token(tmp_path, processes, image_host):
    server = ServerProcess(
        tmp_path / "data",
        None,
        extra_env={"CONTACTCARD_IMAGE_ALLOWED_HOSTS": image_host.host_port, "CONTACTCARD_WRITE_BUDGET": "2"},
    )
    processes.append(server)
    server.start()
    partner = create_partner(server, lines=1)
    phone = partner.lines[0]

    assert httpx.get(f"{server.base_url}/metrics", timeout=10).status_code == 401
    wrong = httpx.get(f"{server.base_url}/metrics", headers={"authorization": f"Bearer {partner.key}"}, timeout=10)
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == 2004
    before = scrape(server)

    source = image_host.serve(images.jpeg(200, 200))
    with server.http(partner.key) as http:
        assert http.post(CARDS, json={"phone_number": phone, "first_name": "M", "image_url": source}).status_code == 200
        for _ in range(5):
            assert http.get(CARDS, params={"phone_number": phone}).status_code == 200
        assert http.get(CARDS, params={"phone_number": "+1"}).status_code == 400
        assert http.patch(CARDS, params={"phone_number": phone}, json={"first_name": "N"}).status_code == 200
        refused = http.patch(CARDS, params={"phone_number": phone}, json={"first_name": "O"})
        assert refused.status_code == 429
    after = scrape(server)

    def grew(name: str, **labels: str) -> float:
        return sample(after, name, **labels) - sample(before, name, **labels)

    route = "/v3/contact_card"
    assert grew("contactcard_requests_total", route=route, method="GET", status="200", code="0") == 5
    assert grew("contactcard_requests_total", route=route, method="GET", status="400", code="1002") == 1
    assert grew("contactcard_requests_total", route=route, method="POST", status="200", code="0") == 1
    assert grew("contactcard_requests_total", route=route, method="PATCH", status="429", code="1007") == 1
    assert grew("contactcard_request_duration_seconds_count", route=route, method="GET") == 6
    assert grew("contactcard_request_duration_seconds_bucket", route=route, method="GET", le="+Inf") == 6
    # Each GET took more than nothing and less than the top bucket: every bucket was filled right.
    assert grew("contactcard_request_duration_seconds_bucket", route=route, method="GET", le="10.0") == 6
    assert 0 < grew("contactcard_request_duration_seconds_sum", route=route, method="GET") < 6 * 10
    assert grew("contactcard_writes_total", outcome="applied") == 2
    assert grew("contactcard_writes_total", outcome="budget_refused") == 1
    assert grew("contactcard_image_fetches_total", outcome="stored") == 1
    fetched = grew("contactcard_image_fetch_bytes_total")
    assert fetched == len(images.jpeg(200, 200))
    assert sample(after, "contactcard_queued_writes") == 0
    # SQLite has no GET pool; the writers' backlog is sampled all the same.
    assert ("contactcard_db_writer_backlog", ()) in after
    assert sample(after, "contactcard_db_pool_connections", state="open") == 0


def test_metrics_on_a_port_of_their_own(tmp_path, processes):
    port = free_port()
    server = ServerProcess(
        tmp_path / "data", None, extra_env={"CONTACTCARD_METRICS": "port", "CONTACTCARD_METRICS_PORT": str(port)}
    )
    processes.append(server)
    server.start()
    assert httpx.get(f"{server.base_url}/healthz", timeout=10).status_code == 200
    # Not on the API port (a 404 envelope); on its own, without a token.
    on_api = httpx.get(f"{server.base_url}/metrics", headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)
    assert on_api.status_code == 404
    samples = scrape(server, base=f"http://127.0.0.1:{port}", token=None)
    assert sample(samples, "contactcard_requests_total", route="/healthz", method="GET", status="200", code="0") >= 1


def test_metrics_of_several_workers_are_summed_whichever_answers(postgres_url, tmp_path, processes):
    if postgres_url is None:
        pytest.skip(NEEDS_POSTGRES)
    server = ServerProcess(tmp_path / "data", postgres_url, workers=2)
    processes.append(server)
    server.start()
    partner = create_partner(server, lines=1)
    before = scrape(server)
    count = 40
    # A fresh connection per request: the kernel spreads them over both workers.
    with server.http(partner.key, keepalive=False) as http:
        for _ in range(count):
            assert http.get(CARDS, params={"phone_number": partner.lines[0]}).status_code == 200
    labels = {"route": "/v3/contact_card", "method": "GET", "status": "200", "code": "0"}
    # A worker writes its tallies to the shared files once a second (and the one answering
    # a scrape, at once): within a second or two every scrape sees them all, never more.
    start = sample(before, "contactcard_requests_total", **labels)
    deadline = time.monotonic() + 5
    while sample(scrape(server), "contactcard_requests_total", **labels) - start < count:
        assert time.monotonic() < deadline, "the workers' requests never reached the scrape"
        time.sleep(0.2)
    totals = []
    for _ in range(6):  # each scrape on a fresh connection, answered by either worker
        totals.append(sample(scrape(server), "contactcard_requests_total", **labels))
    assert all(total - sample(before, "contactcard_requests_total", **labels) == count for total in totals), totals
    assert (server.data_dir / "metrics").is_dir() and any((server.data_dir / "metrics").iterdir())
    # A worker that answered GETs opened its GET pool; the sampler (once a second) writes its
    # connections, summed over the workers.
    deadline = time.monotonic() + 5
    opened = 0.0
    while time.monotonic() < deadline and opened < 1:
        opened = sample(scrape(server), "contactcard_db_pool_connections", state="open")
        time.sleep(0.2)
    # At least one open (a GET was answered), at most max_size (4) in each of the two workers.
    assert opened >= 1 and opened <= 8, opened


def test_json_log_lines_carry_the_request_and_never_a_secret(tmp_path, processes, image_host):
    s3 = S3Server().start()
    try:
        bucket = s3.new_bucket()
        server = ServerProcess(
            tmp_path / "data",
            None,
            extra_env={
                "CONTACTCARD_IMAGE_ALLOWED_HOSTS": image_host.host_port,
                "CONTACTCARD_LOG_LEVEL": "info",
                "CONTACTCARD_LOG_FORMAT": "json",
                "CONTACTCARD_ACCESS_LOG": "true",
                **s3.env(bucket),
            },
        )
        processes.append(server)
        server.start()
        partner = create_partner(server, lines=2)
        phone, other = partner.lines
        with server.http(partner.key) as http:
            posted = http.post(
                CARDS, json={"phone_number": phone, "first_name": "Log", "image_url": image_host.serve(images.jpeg())}
            )
            assert posted.status_code == 200, posted.text
            assert http.get(CARDS, params={"phone_number": phone}).status_code == 200
            # A URL with credentials is refused before anything is fetched; its password is never written.
            with_userinfo = "https://photo-user:hunter2-userinfo-pw@images.example.com/a.jpg"
            refused = http.post(CARDS, json={"phone_number": other, "first_name": "Pw", "image_url": with_userinfo})
            assert refused.status_code == 400
            # The image store gone: a notable event of its own, with the request's trace id.
            s3.stop()
            down = http.post(
                CARDS,
                json={"phone_number": other, "first_name": "Down", "image_url": image_host.serve(images.png(40, 40))},
            )
            assert down.status_code == 503 and down.json()["error"]["code"] == 4008
        server.stop()
    finally:
        s3.stop()

    lines = json_lines(server)
    requests = {line["trace_id"]: line for line in lines if line.get("logger") == "contactcard.request"}
    post = requests[posted.headers["x-trace-id"]]
    assert (post["method"], post["route"], post["status"], post["partner"], post["line"], post["outcome"]) == (
        "POST",
        "/v3/contact_card",
        200,
        partner.id,
        phone,
        "applied",
    )
    assert isinstance(post["duration_ms"], float | int) and post["duration_ms"] > 0
    assert post["level"] == "info" and post["time"].endswith("Z")
    assert "code" not in post
    failed = requests[down.headers["x-trace-id"]]
    assert (failed["status"], failed["code"], failed["outcome"]) == (503, 4008, "image_store_unavailable")
    assert requests[refused.headers["x-trace-id"]]["code"] == 1005
    events = [line for line in lines if line.get("event") == "image_store_unavailable"]
    assert [event["trace_id"] for event in events] == [down.headers["x-trace-id"]]
    assert len([line for line in lines if line.get("method") == "GET" and line.get("route") == "/v3/contact_card"]) == 1

    text = server.log(None)
    for secret in (partner.key, ADMIN_TOKEN, SECRET_KEY, "hunter2-userinfo-pw"):
        assert secret not in text, f"{secret[:6]}... appears in the log"


def test_formats_text_on_a_terminal_and_redact_what_slips_into_a_message():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert logs.use_json("auto", Terminal()) is False
    assert logs.use_json("auto", io.StringIO()) is True
    assert logs.use_json("text", io.StringIO()) is False

    record = logging.LogRecord(
        "contactcard", logging.WARNING, __file__, 1, "fetch of %s with Bearer %s failed", None, None
    )
    record.args = ("https://ann:pa55word@img.example.com/x.jpg", "sk-live-abcdef")
    record.status = 503
    for formatter in (logs.JsonFormatter(), logs.TextFormatter()):
        out = formatter.format(record)
        assert "pa55word" not in out and "sk-live-abcdef" not in out
        assert "https://[redacted]@img.example.com/x.jpg" in out
    assert json.loads(logs.JsonFormatter().format(record))["status"] == 503
    assert "status=503" in logs.TextFormatter().format(record)


def test_metrics_port_of_several_workers_is_answered_by_the_supervisor(postgres_url, tmp_path, processes):
    if postgres_url is None:
        pytest.skip(NEEDS_POSTGRES)
    port = free_port()
    server = ServerProcess(
        tmp_path / "data",
        postgres_url,
        workers=2,
        extra_env={"CONTACTCARD_METRICS": "port", "CONTACTCARD_METRICS_PORT": str(port)},
    )
    processes.append(server)
    server.start()
    partner = create_partner(server, lines=1)
    labels = {"route": "/v3/contact_card", "method": "GET", "status": "401", "code": "2004"}
    before = sample(scrape(server, base=f"http://127.0.0.1:{port}", token=None), "contactcard_requests_total", **labels)
    with server.http("not-a-key", keepalive=False) as http:
        for _ in range(12):
            assert http.get(CARDS, params={"phone_number": partner.lines[0]}).status_code == 401
    # The supervisor reads the workers' files, which they write once a second.
    deadline = time.monotonic() + 5
    while True:
        after = sample(
            scrape(server, base=f"http://127.0.0.1:{port}", token=None), "contactcard_requests_total", **labels
        )
        if after - before >= 12 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert after - before == 12
