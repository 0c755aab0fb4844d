"""Figure 1's baseline: a bare ASGI app (no framework) that answers the same JSON body.

`python -m bench.bare_app --port N` runs contactcard's own `serve` command with one change:
uvicorn's `Config` is given this app instead of the server's. Whatever options `serve` passes
to uvicorn (workers, log level, access log, proxy headers, server header, loop, http
implementation...) are therefore exactly the ones the real server runs with, now and after
any change to `cli.py`. The options seen are written to `$BENCH_BARE_OPTIONS_FILE`.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

_BODY_FILE = os.environ.get("BENCH_BARE_BODY_FILE")
BODY: bytes = Path(_BODY_FILE).read_bytes() if _BODY_FILE else b'{"contact_cards":[]}'
HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
]


async def app(scope, receive, send) -> None:
    kind = scope["type"]
    if kind == "http":
        await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
        await send({"type": "http.response.body", "body": BODY})
    elif kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def _swap_app_in_uvicorn(options_file: str | None) -> None:
    import inspect

    import uvicorn.config

    original = uvicorn.config.Config.__init__
    defaults = {
        name: p.default for name, p in inspect.signature(original).parameters.items() if p.default is not p.empty
    }

    def init(self, app_ref, *args, **kwargs):
        # What `serve` set: the options that differ from uvicorn's own defaults.
        seen = {
            k: f"{v.__module__}.{v.__qualname__}" if isinstance(v, type) else v  # a protocol class, by name
            for k, v in kwargs.items()
            if isinstance(v, (str, int, float, bool, type(None), type)) and (k not in defaults or defaults[k] != v)
        }
        if options_file:
            Path(options_file).write_text(json.dumps(seen, indent=2, sort_keys=True))
        kwargs["factory"] = False
        original(self, "bench.bare_app:app", *args, **kwargs)

    uvicorn.config.Config.__init__ = init


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    _swap_app_in_uvicorn(os.environ.get("BENCH_BARE_OPTIONS_FILE"))
    from contactcard.cli import serve

    serve(host=args.host, port=args.port, workers=1, simulate_images=False)


if __name__ == "__main__":
    main()
