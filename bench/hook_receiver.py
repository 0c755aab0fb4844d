"""The webhook benchmarks' receiver: a bare ASGI app on uvicorn, in a process of its own.

`python -m bench.hook_receiver --port N` answers every POST with 200 at once, except on a
path that starts with `/slow/`, which answers after `?delay=` seconds (never when the
delay is `never`). It notes when each delivery arrived (real unix seconds, the clock the
bench reads too) by path and `webhook-id`, with the event's `created_at` as the body gives it (found by a
substring search: nothing here parses JSON, so its own cost per delivery is uvicorn's);
`GET /_arrivals` hands back what it noted and forgets it, `GET /_count` only the number
noted so far.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import parse_qs

# path, webhook-id, the event's created_at (text, or ""), arrival (unix seconds)
_arrivals: list[tuple[str, str, str, float]] = []
_CREATED = b'"created_at":"'
_count = 0
_OK = [(b"content-type", b"text/plain"), (b"content-length", b"2")]


async def _body(receive) -> bytes:
    parts = []
    while True:
        message = await receive()
        parts.append(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body"):
            return b"".join(parts)


async def _answer(send, status: int, body: bytes, content_type: bytes = b"text/plain") -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send) -> None:
    global _count, _arrivals
    kind = scope["type"]
    if kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if kind != "http":
        return
    path = scope["path"]
    if scope["method"] == "GET":
        if path == "/_arrivals":
            taken, _arrivals = _arrivals, []
            await _answer(send, 200, json.dumps(taken).encode(), b"application/json")
        else:
            await _answer(send, 200, str(_count).encode())
        return
    body = await _body(receive)
    if path.startswith("/slow/"):
        delay = parse_qs(scope["query_string"].decode()).get("delay", ["5"])[0]
        if delay == "never":
            await asyncio.Event().wait()  # until the sender gives up and closes
        await asyncio.sleep(float(delay))
    webhook_id = next((v.decode() for k, v in scope["headers"] if k == b"webhook-id"), "")
    _count += 1
    at = body.find(_CREATED)
    created = body[at + len(_CREATED) : at + len(_CREATED) + 24].split(b'"', 1)[0].decode() if at >= 0 else ""
    _arrivals.append((path, webhook_id, created, time.time()))
    await send({"type": "http.response.start", "status": 200, "headers": _OK})
    await send({"type": "http.response.body", "body": b"ok"})


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    options = parser.parse_args()
    uvicorn.run(
        app, host="127.0.0.1", port=options.port, log_level="warning", access_log=False, http="httptools",
        loop="uvloop" if _has_uvloop() else "asyncio", lifespan="on",
    )  # fmt: skip


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    main()
