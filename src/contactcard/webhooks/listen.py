"""`contactcard webhooks listen`: a developer's window onto the webhooks of a partner.

It subscribes a receiver on 127.0.0.1 for the partner (the server must allow private
hosts, as for local work), verifies each delivery with the subscription's secret, hands
a readable line to `show`, forwards the delivery unchanged to the developer's handler
and answers with that handler's status (so the server retries when the handler fails).
The subscription is deleted when listening stops.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

FORWARDED = ("content-type", "webhook-id", "webhook-timestamp", "webhook-signature")


class ListenError(Exception):
    """The subscription could not be made; the message says why."""


def describe(body: dict[str, object]) -> str:
    """One readable line about an event."""
    data = body.get("data") if isinstance(body.get("data"), dict) else {}
    assert isinstance(data, dict)
    parts = [str(body.get("event_type")), str(data.get("phone_number", ""))]
    card = data.get("contact_card")
    if isinstance(card, dict):
        name = " ".join(str(card[k]) for k in ("first_name", "last_name") if card.get(k))
        parts.append(repr(name))
    change = data.get("change")
    if isinstance(change, dict):
        parts.append(", ".join(f"{field}: {v.get('from')!r} -> {v.get('to')!r}" for field, v in change.items()))
    return "  ".join(p for p in parts if p)


class Listener:
    def __init__(
        self,
        server_url: str,
        key: str,
        forward_to: str | None,
        *,
        events: list[str],
        show: Callable[[str], None],
        port: int = 0,
    ) -> None:
        self._api = httpx.Client(base_url=server_url, headers={"authorization": f"Bearer {key}"}, timeout=10)
        self._forward_to = forward_to
        self._events = events
        self._show = show
        self._http = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._http.daemon_threads = True
        self.subscription_id: str | None = None
        self._secret = ""

    @property
    def target_url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}/"

    def start(self) -> None:
        answer = self._api.post(
            "/v3/webhook-subscriptions", json={"target_url": self.target_url, "subscribed_events": self._events}
        )
        if answer.status_code != 201:
            try:
                message = answer.json()["error"]["message"]
            except (ValueError, KeyError, TypeError):
                message = answer.text[:200]
            raise ListenError(f"the server refused the subscription ({answer.status_code}): {message}")
        created = answer.json()
        self.subscription_id, self._secret = created["id"], created["signing_secret"]
        threading.Thread(target=self._http.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
        if self.subscription_id is not None:
            self._api.delete(f"/v3/webhook-subscriptions/{self.subscription_id}")
        self._api.close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("content-length") or 0))
                status = listener._receive(raw, {k.lower(): v for k, v in self.headers.items()})
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def _receive(self, raw: bytes, headers: dict[str, str]) -> int:
        from standardwebhooks import Webhook, WebhookVerificationError

        try:
            Webhook(self._secret).verify(raw, headers)
        except WebhookVerificationError as exc:
            self._show(f"refused a delivery: {exc}")
            return 400
        self._show(describe(json.loads(raw)))
        if self._forward_to is None:
            return 204
        forwarded = {k: v for k, v in headers.items() if k in FORWARDED or k.startswith("x-webhook-")}
        try:
            answer = httpx.post(self._forward_to, content=raw, headers=forwarded, timeout=10)
        except httpx.HTTPError as exc:
            self._show(f"  forward to {self._forward_to} failed: {type(exc).__name__}")
            return 502
        self._show(f"  forwarded: {answer.status_code}")
        return answer.status_code
