"""A webhook receiver on 127.0.0.1: records every request, answers as scripted per path.

The only fake of the webhook tests: the server under test delivers to it over real HTTP.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]  # lowercased names
    body: str
    at: float  # time.monotonic()


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self._answers: dict[str, list[tuple[int, dict[str, str], float]]] = {}
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length).decode()
                path = self.path.split("?", 1)[0]
                with receiver._changed:
                    queued = receiver._answers.get(path)
                    status, headers, delay = queued.pop(0) if queued else (200, {}, 0.0)
                    receiver.requests.append(
                        Received(path, {k.lower(): v for k, v in self.headers.items()}, body, time.monotonic())
                    )
                    receiver._changed.notify_all()
                if delay:
                    time.sleep(delay)  # a receiver slower than the sender's deadline
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def new_path(self) -> str:
        """A path no other test uses: one subscription target per test."""
        return f"/hook/{uuid.uuid4().hex[:12]}"

    def answer(
        self, path: str, *statuses: int | tuple[int, dict[str, str]] | tuple[int, dict[str, str], float]
    ) -> None:
        """The next answers to POSTs on `path`, in order (status, headers, seconds to wait
        before answering); then 200 at once."""
        with self._changed:
            self._answers[path] = [
                (s, {}, 0.0) if isinstance(s, int) else (s[0], s[1], s[2] if len(s) > 2 else 0.0) for s in statuses
            ]

    def on(self, path: str) -> list[Received]:
        with self._changed:
            return [r for r in self.requests if r.path == path]

    def wait(self, path: str, count: int, timeout: float = 15.0) -> list[Received]:
        """The first `count` requests on `path`, waiting up to `timeout` for them."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [r for r in self.requests if r.path == path]
                if len(found) >= count:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"{len(found)} of {count} deliveries on {path} after {timeout}s")
                self._changed.wait(left)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
