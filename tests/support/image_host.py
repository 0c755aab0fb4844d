"""A remote image host on 127.0.0.1: the outside world the server fetches images from."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class ImageHost:
    def __init__(self) -> None:
        self._files: dict[str, tuple[int, bytes, str]] = {}
        self.hits: Counter[str] = Counter()
        host = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                host.hits[self.path] += 1
                status, body, content_type = host._files.get(self.path, (404, b"not found", "text/plain"))
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def host_port(self) -> str:
        return f"127.0.0.1:{self.port}"

    def serve(self, body: bytes, content_type: str = "image/jpeg", status: int = 200, name: str | None = None) -> str:
        """Publish `body` at a new path; returns its URL."""
        path = f"/{name or uuid.uuid4().hex}"
        self._files[path] = (status, body, content_type)
        return f"http://{self.host_port}{path}"

    def hits_for(self, url: str) -> int:
        return self.hits[url.split(self.host_port, 1)[1]]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
