"""Webhook delivery in a process of its own, beside each server process.

Why: a delivery costs CPU (signing, the HTTP exchange, recording the outcome), and on the
server's event loop that CPU is taken from the writes whose events are delivered. With
the worker in a child process the deliveries run on the other cores, and the server's
loop only writes one byte per wake.

The two processes talk over the child's standard streams, nothing else:

- **stdin is the child's lifeline.** The server writes the settings as one JSON line, then
  one byte per wake ("an event was recorded: look now"), at most one per turn of its loop.
  A full pipe drops the byte: the child has unread wakes already. End of file (the server
  stopped, or was killed -9) stops the child: it records what it holds and exits.
- **stdout carries the attempt tallies back**, one JSON line every `TALLY_SECONDS`, so the
  server's `/metrics` still counts every attempt.
- stderr is the server's own: the child's log lines land where the server's do.
- On SQLite, a socket pair carries the child's claims and outcomes to the server's
  writer (`store/core/relay.py`): the file has one write lock, and two processes taking
  turns at it kept the child waiting while events piled up.

`DeliveryProcess` is the server side: a supervisor thread starts the child, reads its
tallies and starts a new one, after a growing pause, when it dies. `run_child` is the child
side (`contactcard deliver --lifeline`). Claims hold leases in the database, so a child that
dies mid-attempt loses nothing: the attempt is made again when its lease runs out.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any, Protocol

from contactcard.settings import Settings
from contactcard.store.core import Writer
from contactcard.webhooks.delivery import AttemptTally

log = logging.getLogger("contactcard")

TALLY_SECONDS = 0.2  # how often the child reports its attempts
CONTROLS_SECONDS = 0.5  # how often the child re-reads the runtime controls (a moved test clock)
RESTART_FIRST_S = 1.0  # the pause before a dead child is started again, doubling...
RESTART_MOST_S = 30.0  # ...up to this; a child that lived this long starts the count afresh
STOP_WAIT_S = 5.0  # how long the server waits for its child to stop before killing it
CHILD_CLOSE_S = 4.0  # the bound on the child's own close (recording what it holds included)
WAKE = b"w"


def child_settings(settings: Settings) -> str:
    """The settings line the child is started with: everything but the admin token, which
    the child has no use for."""
    return settings.model_dump_json(exclude={"admin_token"}) + "\n"


class DeliveryProcess:
    """The server side: one `contactcard deliver --lifeline` child, kept running."""

    def __init__(
        self,
        settings: Settings,
        tally: AttemptTally | None,
        command: list[str] | None = None,
        *,
        relay_to: Writer | None = None,
    ) -> None:
        """`relay_to`: the server's writer, which runs the child's transactions (SQLite)."""
        self._line = child_settings(settings).encode()
        self._relay_to = relay_to
        self._relays: set[asyncio.Task[None]] = set()  # one per child; each ends with its child
        self._tally = tally
        self._command = command or [sys.executable, "-m", "contactcard", "deliver", "--lifeline"]
        self._child: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake_due = False
        self.starts = 0  # children started so far (tests, logs)

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.pid if child is not None else None

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._supervisor = threading.Thread(target=self._supervise, name="contactcard-deliveries", daemon=True)
        self._supervisor.start()

    def wake(self) -> None:
        """An event was recorded: tell the child, once per turn of the loop however many
        events the turn recorded."""
        if self._wake_due or self._loop is None:
            return
        self._wake_due = True
        self._loop.call_soon(self._send_wake)

    def _send_wake(self) -> None:
        self._wake_due = False
        child = self._child
        if child is None or child.stdin is None:
            return  # between children: the new one claims at once when it starts
        try:
            os.write(child.stdin.fileno(), WAKE)
        except (BlockingIOError, BrokenPipeError, ValueError, OSError):
            pass  # full: it has wakes to read already; gone: the supervisor starts another

    async def aclose(self) -> None:
        """Close the lifeline, let the child record what it holds, kill it if it will not."""
        import anyio.to_thread

        self._stopping.set()
        await anyio.to_thread.run_sync(self._stop_child)
        if self._supervisor is not None:
            await anyio.to_thread.run_sync(self._supervisor.join, STOP_WAIT_S)
        if self._relays:  # its child is gone: each ends once it has answered what it holds
            await asyncio.wait(list(self._relays), timeout=STOP_WAIT_S)

    def _stop_child(self) -> None:
        child = self._child
        if child is None:
            return
        if child.stdin is not None:
            with contextlib.suppress(OSError):
                child.stdin.close()
        try:
            child.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            log.warning("webhook delivery process %d did not stop within %g s: killed", child.pid, STOP_WAIT_S)
            child.kill()
            child.wait()

    def _supervise(self) -> None:
        pause = RESTART_FIRST_S
        while not self._stopping.is_set():
            began = time.monotonic()
            code = self._run_one()
            if self._stopping.is_set():
                return
            if time.monotonic() - began >= RESTART_MOST_S:
                pause = RESTART_FIRST_S
            log.warning("webhook delivery process exited (code %s); starting another in %g s", code, pause)
            if self._stopping.wait(pause):
                return
            pause = min(pause * 2, RESTART_MOST_S)

    def _run_one(self) -> int | None:
        """Start a child, read its tallies until it ends; its exit code."""
        command, relay = self._command, None
        if self._relay_to is not None:
            relay, theirs = socket.socketpair()
            command = [*command, "--relay-fd", str(theirs.fileno())]
        try:
            passed = (theirs.fileno(),) if relay is not None else ()
            child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, pass_fds=passed)
        except OSError as exc:
            log.warning("could not start the webhook delivery process: %s", exc)
            if relay is not None:
                relay.close()
            return None
        finally:
            if relay is not None:
                theirs.close()  # the child's now
        if relay is not None:
            self._serve_relay(relay)
        assert child.stdin is not None and child.stdout is not None
        try:
            child.stdin.write(self._line)
            child.stdin.flush()
            # From here on a wake never blocks the server's loop: a full pipe drops it.
            os.set_blocking(child.stdin.fileno(), False)
        except OSError:
            pass  # it died at once: its exit code says so below
        self.starts += 1
        self._child = child
        if self._stopping.is_set():  # stopped while starting: aclose may have missed it
            self._stop_child()
        self._read_tallies(child.stdout)
        code = child.wait()
        self._child = None
        with contextlib.suppress(OSError):
            if child.stdin is not None:
                child.stdin.close()
        child.stdout.close()
        return code

    def _serve_relay(self, relay: socket.socket) -> None:
        """Answer the child's transactions on the server's loop until it closes its end.
        (A thread and loop of their own were tried: answers came sooner, but the thread's
        turns at the interpreter cost the card writes more than they saved.)"""
        from contactcard.store.core import relay as relays

        assert self._loop is not None and self._relay_to is not None
        relay.setblocking(False)
        writer = self._relay_to

        def start() -> None:
            # Held here: the loop keeps only a weak reference to a task.
            task = asyncio.ensure_future(relays.serve(relay, writer))
            self._relays.add(task)
            task.add_done_callback(self._relays.discard)

        try:
            self._loop.call_soon_threadsafe(start)
        except RuntimeError:  # the loop is closed: the server is stopping
            relay.close()

    def _read_tallies(self, stream: IO[bytes]) -> None:
        for raw in stream:
            try:
                attempts = json.loads(raw)
                for outcome, latency_ms in attempts:
                    if self._tally is not None:
                        self._tally.webhook_attempt(str(outcome), None if latency_ms is None else float(latency_ms))
            except (ValueError, TypeError):
                log.warning("webhook delivery process sent an unreadable tally line (%d bytes)", len(raw))


class PipeTally:
    """The child's `AttemptTally`: attempts gathered, written to stdout as one JSON line
    every `TALLY_SECONDS` (the server counts them in its metrics)."""

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._held: list[tuple[str, float | None]] = []

    def webhook_attempt(self, outcome: str, latency_ms: float | None) -> None:
        self._held.append((outcome, latency_ms))

    def flush(self) -> None:
        if not self._held:
            return
        held, self._held = self._held, []
        with contextlib.suppress(OSError, ValueError):  # the server is gone: nobody counts them
            self._out.write(json.dumps(held).encode() + b"\n")
            self._out.flush()


class ChildServices(Protocol):
    """What the child runs (`bootstrap.DeliveryServices`)."""

    def start(self) -> None: ...

    def wake(self) -> None: ...

    def reload_controls(self) -> None: ...

    async def aclose(self) -> None: ...

    def close(self) -> None: ...


BuildChild = Callable[[Settings, AttemptTally], ChildServices]


def read_settings_line(stream: IO[bytes]) -> Settings:
    """The first line of the lifeline: the server's settings."""
    line = stream.readline()
    if not line:
        raise SystemExit(0)  # the server went before it said anything
    try:
        values = json.loads(line)
        if not isinstance(values, dict):
            raise ValueError("not a JSON object")
        return Settings(**values)
    except ValueError as exc:  # pydantic's ValidationError is one too
        # Started by hand, most likely: say what this mode expects, without a traceback.
        print(
            "contactcard deliver --lifeline: the first line on stdin must be the server's settings as "
            f"one JSON object ({_first_line(exc)}); run `contactcard deliver` without --lifeline on its own",
            file=sys.stderr,
        )
        raise SystemExit(2) from None


class _Lifeline(asyncio.Protocol):
    """The child's stdin: a byte is a wake, end of file is the end."""

    def __init__(self, wake: Callable[[], None], ended: asyncio.Event) -> None:
        self._wake, self._ended = wake, ended

    def data_received(self, data: bytes) -> None:
        self._wake()

    def eof_received(self) -> bool | None:
        self._ended.set()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended.set()


def run_child(build: BuildChild, *, lifeline: bool) -> int:
    """`contactcard deliver`: with `lifeline`, the child of a server (settings on stdin, stops at
    its end of file); without, a process of its own (settings from the environment, stopped
    by SIGTERM or Ctrl-C). The exit code.

    A child ignores SIGINT and SIGTERM: Ctrl-C, and a service manager stopping the whole
    group, reach it beside its server, and it must not leave (and be started again) while
    its server is still finishing requests whose events it is to deliver. Its server closes
    the lifeline when done, or kills it."""
    if lifeline:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        settings = read_settings_line(sys.stdin.buffer)
        tally: Any = PipeTally(sys.stdout.buffer)
    else:
        settings = Settings()
        tally = PipeTally(open(os.devnull, "wb"))  # noqa: SIM115 - lives as long as the process
    _configure_logs(settings)
    try:
        services = build(settings, tally)
    except Exception as exc:
        # Most often the database is away: the server starts another child after a pause.
        log.warning("webhook delivery process could not start: %s", _first_line(exc))
        return 1
    # Plain asyncio, not uvloop: under uvloop a SIGTERM was seen to leave the loop idle.
    return asyncio.run(_serve(services, tally, lifeline=lifeline))


async def _serve(services: ChildServices, tally: PipeTally, *, lifeline: bool) -> int:
    loop = asyncio.get_running_loop()
    ended = asyncio.Event()
    services.start()
    if lifeline:
        await loop.connect_read_pipe(lambda: _Lifeline(services.wake, ended), sys.stdin)
    else:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, ended.set)
    chores = asyncio.ensure_future(_chores(services, tally))
    await ended.wait()
    chores.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await chores
    try:
        async with asyncio.timeout(CHILD_CLOSE_S):
            await services.aclose()
    except TimeoutError:
        log.warning("webhook delivery process: close took over %g s; leaving", CHILD_CLOSE_S)
    tally.flush()
    services.close()
    return 0


async def _chores(services: ChildServices, tally: PipeTally) -> None:
    """Report tallies, and re-read the controls (a moved test clock makes due retries run);
    a reload that waits on a slow database holds back no tally."""

    async def reload_now_and_then() -> None:
        while True:
            await asyncio.sleep(CONTROLS_SECONDS)
            try:
                await asyncio.to_thread(services.reload_controls)
            except Exception as exc:  # the database is away: the last controls hold
                log.debug("webhook delivery process could not reload the controls: %s", _first_line(exc))

    reloads = asyncio.ensure_future(reload_now_and_then())
    try:
        while True:
            await asyncio.sleep(TALLY_SECONDS)
            tally.flush()
    finally:
        reloads.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reloads


def _configure_logs(settings: Settings) -> None:
    import logging.config

    from contactcard import logs

    logging.config.dictConfig(logs.config(settings.log_format, settings.log_level))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
