"""The `contactcard` command: `serve`, and `admin ...` for operators."""

from __future__ import annotations

import functools
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from contactcard import errors
from contactcard.admin import Admin
from contactcard.device import DeviceScript, DeviceView
from contactcard.errors import ApiError
from contactcard.settings import JOURNAL_HOLD_ALL, Settings, docs_table

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from contactcard.http.edge import Edge
    from contactcard.journal import Entry
    from contactcard.kit import ClockView, Kit

app = typer.Typer(help="A self-hostable server for the Linq API v3 contact card endpoints.", no_args_is_help=True)
admin_app = typer.Typer(help="Partners, keys, lines and simulated-device scripts.", no_args_is_help=True)
partner_app = typer.Typer(help="Partner accounts.", no_args_is_help=True)
key_app = typer.Typer(help="API keys (shown once, stored hashed).", no_args_is_help=True)
line_app = typer.Typer(help="Phone lines owned by partners.", no_args_is_help=True)
device_app = typer.Typer(help="The simulated device of a line.", no_args_is_help=True)
settings_app = typer.Typer(
    help="Settings that may change while servers run (every process on the database). Without a command: show them.",
    invoke_without_command=True,
)
clock_app = typer.Typer(
    help="The servers' clock, which every time rule reads. Without a command: show it.",
    invoke_without_command=True,
)
webhooks_app = typer.Typer(help="Webhook deliveries: list them, send one again.", no_args_is_help=True)
listen_app = typer.Typer(help="Webhooks for developers.", no_args_is_help=True)
app.add_typer(listen_app, name="webhooks")
app.add_typer(admin_app, name="admin")
admin_app.add_typer(settings_app, name="settings")
admin_app.add_typer(clock_app, name="clock")
admin_app.add_typer(webhooks_app, name="webhooks")

admin_app.add_typer(partner_app, name="partner")
admin_app.add_typer(key_app, name="key")
admin_app.add_typer(line_app, name="line")
admin_app.add_typer(device_app, name="device")

DEMO_LINES = ("+15551234567", "+15557654321", "+15550001111")


@functools.cache
def _out() -> Console:
    """rich's console for the admin commands, made on first use: `serve` prints its few
    lines with `_say` instead, so a serving process never loads rich (some 2.5 MiB it
    would keep for its whole life)."""
    from rich.console import Console

    return Console()


def _table(*columns: str) -> Table:
    from rich.table import Table

    return Table(*columns)


def _say(text: str, *, fg: str | None = None, label: str | None = None) -> None:
    """A line of `serve`'s output; `label` first, in `fg` (click drops the colour off a terminal)."""
    if label is not None:
        typer.secho(label, fg=fg, bold=True, nl=False)
        typer.echo(f" {text}")
    else:
        typer.secho(text, fg=fg)


def _admin() -> Admin:
    # The database and the operator use cases only: one command needs no writer thread,
    # line locks or webhook worker (the process ends with the command).
    from contactcard.bootstrap import admin_session

    return admin_session(Settings()).admin


def _kit() -> Kit:
    from contactcard.bootstrap import kit_for
    from contactcard.store.db import connect, migrate

    settings = Settings()
    database = connect(settings.resolved_database_url, timeout=settings.database_timeout)
    migrate(database)
    return kit_for(settings, database)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (PostgreSQL for more than one).")] = 1,
    simulate_images: Annotated[
        bool, typer.Option(help="Never fetch images from the network; generate placeholders instead.")
    ] = False,
    ephemeral: Annotated[
        bool, typer.Option(help="A temporary SQLite database and CDN folder, removed when the server stops.")
    ] = False,
    seed: Annotated[
        Path | None,
        typer.Option(help="A JSON or YAML file of settings, partners, keys, lines, cards and device scripts to load."),
    ] = None,
    open_sandbox: Annotated[
        bool,
        typer.Option(
            "--open",
            help="Open sandbox: any bearer key is its own partner, any number it touches its line. Tests only.",
        ),
    ] = False,
    force_open: Annotated[bool, typer.Option(help="Let an open sandbox listen beyond loopback.")] = False,
) -> None:
    """Run the server. An empty database gets a demo partner, key and lines (unless seeded or open)."""
    if open_sandbox:
        if not _loopback(host) and not force_open:
            _say(f"an open sandbox accepts any key; {host} is not loopback (--force-open)", fg="red", label="refused:")
            raise typer.Exit(2)
        os.environ["CONTACTCARD_OPEN_SANDBOX"] = "true"
        if not _loopback(host):  # forced: whoever reaches it must not reach the server's own loopback
            os.environ["CONTACTCARD_OPEN_SANDBOX_LOOPBACK_RECEIVERS"] = "false"
        # Images are simulated unless the operator chose: the SDKs' tests name cdn.linqapp.com.
        os.environ.setdefault("CONTACTCARD_IMAGE_FETCH", "simulated")
    if ephemeral or open_sandbox:
        # Servers for tests: a first look at the journal sees every request sent before it.
        os.environ.setdefault("CONTACTCARD_JOURNAL_UNREAD", str(JOURNAL_HOLD_ALL))
    if not ephemeral:
        _serve(host, port, workers, simulate_images, seed)
        return
    folder = tempfile.mkdtemp(prefix="contactcard-ephemeral-")
    os.environ["CONTACTCARD_DATA_DIR"] = folder
    os.environ.pop("CONTACTCARD_DATABASE_URL", None)  # the temporary SQLite file, whatever the shell says
    _say(f"data in {folder}, removed at exit", fg="yellow", label="ephemeral:")
    try:
        _serve(host, port, workers, simulate_images, seed)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _serve(host: str, port: int, workers: int, simulate_images: bool, seed_file: Path | None) -> None:
    import anyio

    if simulate_images:
        os.environ["CONTACTCARD_IMAGE_FETCH"] = "simulated"
    os.environ.setdefault("CONTACTCARD_PUBLIC_BASE_URL", f"http://{_display_host(host)}:{port}")
    settings = Settings()
    if workers > 1 and settings.metrics != "off":
        from contactcard.metrics import prepare_multiprocess

        # Before prometheus-client is first imported, here and in the workers (which inherit it).
        prepare_multiprocess(settings.data_dir / "metrics")

    from contactcard import seed
    from contactcard.bootstrap import build
    from contactcard.http.app import create_app
    from contactcard.metrics import serve_port
    from contactcard.store.db import startup_lock

    # Processes starting at once on one PostgreSQL database (several hosts, `--workers`)
    # do their start-up writes one after another: each sees what the one before it wrote.
    with startup_lock(settings.resolved_database_url, timeout=settings.database_timeout):
        if seed_file is not None:
            try:
                loaded = seed.load(seed_file)
                # Its own services, closed before serving: what a use case binds to an event
                # loop (locks, the PostgreSQL pool) must not outlive the loop the seed ran on.
                seeding = build(settings)
                try:
                    applied = anyio.run(_seeded, loaded, seeding)
                finally:
                    seeding.close()
            except seed.SeedError as exc:
                _say(str(exc), fg="red", label="seed:")
                raise typer.Exit(2) from None
            if applied:
                _say(f"seeded {len(loaded.partners)} partners from {seed_file}")
            else:
                _say(f"{seed_file} is loaded already (its keys are known)", fg="yellow")
        services = build(settings)
        if settings.open_sandbox:
            _say(
                "any bearer key is accepted as its own partner on every partner route, and any number a key "
                "touches becomes its line. "
                + (
                    "Webhook targets on loopback (http://127.0.0.1, http://localhost, http://[::1]) are allowed. "
                    if settings.open_sandbox_loopback_receivers
                    else ""
                )
                + "Never expose this server.",
                fg="red",
                label="OPEN SANDBOX:",
            )
        if settings.open_sandbox:
            # No demo partner: it would own +15551234567, the number the SDKs' own tests use.
            _say(f"serving {settings.public_base_url} ({_describe(settings)})", label="contactcard")
        elif services.admin.partner_count() == 0:
            _create_demo(services.admin, settings)
        else:
            _say(f"serving {settings.public_base_url} ({_describe(settings)})", label="contactcard")
    if settings.admin_token:
        # The address only: the token is the operator's own, never printed.
        _say(f"{settings.public_base_url}/dashboard/ (sign in with the admin token)", label="dashboard:")
    if workers == 1:  # this process serves: reuse what was just built
        if settings.metrics == "port":
            serve_port(settings.metrics_host, settings.metrics_port, services.metrics)
        _run_uvicorn(create_app(settings, services), settings, host=host, port=port)
        return
    services.close()
    if settings.metrics == "port":
        serve_port(settings.metrics_host, settings.metrics_port)
    _run_uvicorn(
        "contactcard.http.app:create_app_from_env", settings, host=host, port=port, factory=True, workers=workers
    )


@app.command()
def deliver(
    lifeline: Annotated[
        bool, typer.Option(help="Run as a server's child: settings and wakes on stdin, stop at its end.")
    ] = False,
    relay_fd: Annotated[
        int | None,
        typer.Option(help="With --lifeline on SQLite: the socket its server's writer runs its transactions on."),
    ] = None,
) -> None:
    """Make webhook attempts, and nothing else. A server starts one of these itself (unless
    `CONTACTCARD_WEBHOOK_DELIVERY` says otherwise); run it on its own beside servers set to
    `off`. SIGTERM or Ctrl-C stops it."""
    from contactcard.bootstrap import delivery_services
    from contactcard.webhooks.process import run_child

    if relay_fd is not None and not lifeline:
        raise typer.BadParameter("is for a server's child only: give it with --lifeline", param_hint="--relay-fd")

    def services(settings: Settings, tally: Any) -> Any:
        return delivery_services(settings, tally, run_migrations=not lifeline, relay_fd=relay_fd)

    raise typer.Exit(run_child(services, lifeline=lifeline))


async def _seeded(loaded: Any, services: Any) -> bool:
    from contactcard import seed

    try:
        return await seed.apply(loaded, services)
    finally:
        await services.aclose()


def _run_uvicorn(
    target: Edge | str, settings: Settings, *, host: str, port: int, factory: bool = False, workers: int | None = None
) -> None:
    """uvicorn.run with the options every server process shares, spelled out so each is type-checked."""
    import uvicorn

    from contactcard import logs
    from contactcard.http.transport import TurnWritesProtocol

    uvicorn.run(
        target,
        factory=factory,
        http=TurnWritesProtocol,  # an answer's head and body in one send (see the module)
        workers=workers,
        host=host,
        port=port,
        log_level=settings.log_level,
        log_config=logs.config(settings.log_format, settings.log_level),
        access_log=False,  # the edge logs requests itself, as structured lines (CONTACTCARD_ACCESS_LOG)
        proxy_headers=False,
        server_header=False,
        ws="none",  # no WebSocket routes; not loading a WebSocket stack saves memory
        # On SIGTERM: stop accepting, let requests under way finish within this bound.
        timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout)),
    )


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _display_host(host: str) -> str:
    return "127.0.0.1" if host in ("0.0.0.0", "") else (f"[{host}]" if ":" in host else host)


def _describe(settings: Settings) -> str:
    database = "PostgreSQL" if settings.resolved_database_url.startswith("postgresql") else "SQLite"
    return f"{database}, profile {settings.profile}, images {settings.image_fetch}"


def _create_demo(admin: Admin, settings: Settings) -> None:
    partner = admin.create_partner("Demo partner")
    issued = admin.issue_key(partner.id, settings.demo_api_key)
    for number in DEMO_LINES:
        admin.add_line(partner.id, number)
    base = f"{settings.public_base_url}/api/partner"
    snippet = (
        f"export LINQ_API_V3_BASE_URL={base}\n"
        f"export LINQ_API_V3_API_KEY={issued.key}\n\n"
        f'curl -s -H "Authorization: Bearer $LINQ_API_V3_API_KEY" \\\n'
        f"  -H 'Content-Type: application/json' \\\n"
        f'  -d \'{{"phone_number": "{DEMO_LINES[0]}", "first_name": "John", "last_name": "Doe"}}\' \\\n'
        f"  $LINQ_API_V3_BASE_URL/v3/contact_card\n\n"
        "python - <<'EOF'\n"
        "import os\n"
        "from linq import LinqAPIV3\n\n"
        "client = LinqAPIV3(\n"
        '    api_key=os.environ.get("LINQ_API_V3_API_KEY"),  # This is the default and can be omitted\n'
        ")\n"
        "contact_card = client.contact_card.retrieve()\n"
        "print(contact_card.contact_cards)\n"
        "EOF"
    )
    _say(f"serving {settings.public_base_url} ({_describe(settings)})", label="contactcard")
    _say(f"demo partner {partner.id} with lines {', '.join(DEMO_LINES)}")
    _say(issued.key, fg="green", label="API key (shown once):")
    typer.echo("\nTry it:\n")
    # Plain text: it is meant to be copied into a shell.
    typer.echo(snippet)


@app.command("settings")
def show_settings() -> None:
    """Print the settings table (environment variables, defaults, meaning)."""
    _out().print(docs_table(), markup=False, highlight=False)


@partner_app.command("create")
def partner_create(name: str) -> None:
    """Create a partner; prints its id."""
    partner = _admin().create_partner(name)
    _out().print(partner.id)


@partner_app.command("list")
def partner_list() -> None:
    table = _table("id", "name", "created")
    for partner in _admin().list_partners():
        table.add_row(partner.id, partner.name, partner.created_at.isoformat(timespec="seconds"))
    _out().print(table)


@key_app.command("create")
def key_create(partner_id: str) -> None:
    """Issue a key for a partner. The key is printed once; only its hash is kept."""
    issued = _admin().issue_key(partner_id)
    _out().print(f"key id {issued.id}", style="dim")
    _out().print(issued.key, markup=False, highlight=False)


@key_app.command("list")
def key_list(partner_id: Annotated[str | None, typer.Option("--partner")] = None) -> None:
    table = _table("id", "partner", "prefix", "created", "revoked")
    for key in _admin().list_keys(partner_id):
        revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else ""
        table.add_row(key.id, key.partner_id, key.prefix + "…", key.created_at.isoformat(timespec="seconds"), revoked)
    _out().print(table)


@key_app.command("revoke")
def key_revoke(key_id: str) -> None:
    """Revoke a key; it stops working at once, in every server process."""
    _admin().revoke_key(key_id)
    _out().print(f"revoked {key_id}")


@line_app.command("add")
def line_add(partner_id: str, phone_numbers: list[str]) -> None:
    """Give one or more E.164 numbers to a partner."""
    admin = _admin()
    for number in phone_numbers:
        admin.add_line(partner_id, number)
        _out().print(f"added {number}")


@line_app.command("remove")
def line_remove(phone_number: str) -> None:
    """Remove a line and its card."""
    _admin().remove_line(phone_number)
    _out().print(f"removed {phone_number}")


@line_app.command("list")
def line_list(partner_id: Annotated[str | None, typer.Option("--partner")] = None) -> None:
    table = _table("phone number", "partner", "card", "active")
    for line in _admin().list_lines(partner_id):
        table.add_row(
            line.phone_number, line.partner_id, "yes" if line.has_card else "no", "yes" if line.is_active else "no"
        )
    _out().print(table)


def _print_device(view: DeviceView) -> None:
    _out().print_json(
        json.dumps(
            {
                "phone_number": view.phone_number,
                "shows": {"first_name": view.first_name, "last_name": view.last_name, "image_url": view.image_url},
                "applies": view.applies,
                "script": view.script.__dict__,
            }
        )
    )


@device_app.command("script")
def device_script(
    phone_number: str,
    fail_next: Annotated[int, typer.Option(min=0, help="Fail the next N applies.")] = 0,
    rate_limit_next: Annotated[int, typer.Option(min=0, help="Answer upstream-rate-limited for the next N.")] = 0,
    rcs_unavailable: Annotated[bool, typer.Option(help="Make the RCS capability check unavailable.")] = False,
    apply_delay: Annotated[float, typer.Option(min=0, help="Seconds the next apply takes.")] = 0.0,
) -> None:
    """Script the outcomes of a line's simulated device (replaces the previous script)."""
    _print_device(
        _admin().script_device(phone_number, DeviceScript(fail_next, rate_limit_next, rcs_unavailable, apply_delay))
    )


@device_app.command("show")
def device_show(phone_number: str) -> None:
    """What a line's simulated device shows now, and its script."""
    _print_device(_admin().device_view(phone_number))


def _print_settings(kit: Kit) -> None:
    current = kit.settings()
    table = _table("setting", "value")
    for name in ("profile", "write_budget", "write_budget_window", "journal_size"):
        table.add_row(name, str(getattr(current, name)))
    _out().print(table)


@settings_app.callback()
def settings_show(context: typer.Context) -> None:
    """Settings changed at run time, else this shell's environment (as a server started here)."""
    if context.invoked_subcommand is None:
        _print_settings(_kit())


@settings_app.command("set")
def settings_set(
    profile: Annotated[str | None, typer.Option(help="seed or hosted.")] = None,
    write_budget: Annotated[int | None, typer.Option(help="Writes per number per window; 0: off.")] = None,
    write_budget_window: Annotated[int | None, typer.Option(help="Seconds.")] = None,
    journal_size: Annotated[int | None, typer.Option(help="Requests the journal keeps; 0: off.")] = None,
) -> None:
    """Change some settings in every server process on the database."""
    given = {
        "profile": profile,
        "write_budget": write_budget,
        "write_budget_window": write_budget_window,
        "journal_size": journal_size,
    }
    kit = _kit()
    kit.change_settings({k: v for k, v in given.items() if v is not None})
    _print_settings(kit)


@settings_app.command("restore")
def settings_restore() -> None:
    """Every setting back to the server processes' own (their environment)."""
    kit = _kit()
    kit.restore_settings()
    _print_settings(kit)


def _print_clock(view: ClockView) -> None:
    state = "real time" if view.real else f"{view.offset:+.3f} s from real time"
    _out().print(f"{view.now.isoformat(timespec='milliseconds')} ({state})", markup=False, highlight=False)


@clock_app.callback()
def clock_show(context: typer.Context) -> None:
    if context.invoked_subcommand is None:
        _print_clock(_kit().clock())


@clock_app.command("advance")
def clock_advance(seconds: Annotated[float, typer.Argument(help="Seconds to move forward.")]) -> None:
    """Move the clock forward: as if that much time had passed (budget windows end)."""
    _print_clock(_kit().advance_clock(seconds))


@clock_app.command("set")
def clock_set(instant: Annotated[str, typer.Argument(help="ISO 8601 with a zone, e.g. 2030-01-01T00:00:00Z.")]) -> None:
    """Make now that instant; time goes on from there."""
    _print_clock(_kit().set_clock(_instant(instant)))


@clock_app.command("real")
def clock_real() -> None:
    """Back to real time."""
    _print_clock(_kit().real_clock())


def _instant(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ApiError(errors.BAD_VALUE, f"{text!r} is not an ISO 8601 instant") from None


@admin_app.command("reset")
def reset(
    everything: Annotated[
        bool, typer.Option(help="Forget partners, keys, lines and subscriptions too; settings and clock back.")
    ] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """Forget cards, write budgets, device scripts, the request journal and webhook deliveries
    (partners, keys, lines and subscriptions stay, unless --everything)."""
    from contactcard.kit import EVERYTHING_ALSO_FORGETS, RESET_FORGETS

    forgets = RESET_FORGETS + (EVERYTHING_ALSO_FORGETS if everything else ())
    what = ("EVERYTHING: " if everything else "") + ", ".join(forgets)
    if not yes:
        typer.confirm(f"Forget {what} in this database?", abort=True)
    _kit().reset(everything=everything)
    _out().print("reset: forgotten " + ", ".join(forgets) + ("; settings and clock back" if everything else ""))


def _request_row(entry: Entry) -> list[str]:
    return [
        str(entry.id),
        datetime.fromtimestamp(entry.at, UTC).isoformat(timespec="milliseconds"),
        entry.trace_id,
        entry.method,
        entry.path,
        entry.phone_number or "",
        str(entry.status),
        "" if entry.error_code is None else str(entry.error_code),
        f"{entry.duration_ms:.1f}",
        "" if entry.retry_count is None else str(entry.retry_count),
        entry.user_agent or "",
    ]


_REQUEST_COLUMNS = ("id", "at", "trace id", "method", "path", "number", "status", "code", "ms", "retries", "agent")


@admin_app.command("requests")
def requests(
    trace_id: Annotated[str | None, typer.Option(help="Only this trace id.")] = None,
    number: Annotated[str | None, typer.Option(help="Only this phone number.")] = None,
    status: Annotated[int | None, typer.Option(help="Only this HTTP status.")] = None,
    since: Annotated[str | None, typer.Option(help="Only from this instant on (ISO 8601; server clock).")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many (the newest).")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing requests as they arrive.")] = False,
) -> None:
    """The recent API requests of every server process on the database (the request journal)."""
    from contactcard.journal import Query

    kit = _kit()
    given = _instant(since) if since else None
    # No zone: UTC, as the admin API reads it (never this machine's local time).
    start = (given if given.tzinfo else given.replace(tzinfo=UTC)).timestamp() if given else None
    query: dict[str, Any] = {"trace_id": trace_id, "phone_number": number, "status": status, "since": start}
    found = kit.requests(Query(**query, limit=limit))
    table = _table(*_REQUEST_COLUMNS)
    for entry in found:
        table.add_row(*_request_row(entry))
    _out().print(table)
    if not follow:
        return
    last = found[-1].id if found else 0
    try:
        while True:
            time.sleep(0.5)
            for entry in kit.requests(Query(**query, after_id=last, limit=1000)):
                _out().print("  ".join(_request_row(entry)), markup=False, highlight=False, soft_wrap=True)
                last = entry.id
    except KeyboardInterrupt:
        pass


@webhooks_app.command("deliveries")
def webhook_deliveries(
    subscription_id: Annotated[str | None, typer.Option("--subscription")] = None,
    event_id: Annotated[str | None, typer.Option("--event")] = None,
) -> None:
    """Deliveries, newest first, of one subscription or one event."""
    table = _table("event", "subscription", "type", "status", "attempts", "answer", "ms", "error")
    for d in _admin().list_deliveries(subscription_id, event_id):
        table.add_row(
            d.event_id,
            d.subscription_id,
            d.event_type,
            d.status,
            str(d.attempts),
            str(d.last_status or ""),
            f"{d.last_latency_ms:.0f}" if d.last_latency_ms is not None else "",
            d.last_error or "",
        )
    _out().print(table)


@webhooks_app.command("redeliver")
def webhook_redeliver(event_id: str, subscription_id: str) -> None:
    """Send one delivery again now, with a fresh retry schedule."""
    _admin().redeliver(event_id, subscription_id)
    _out().print(f"queued {event_id} for {subscription_id}")


@listen_app.command("listen")
def webhooks_listen(
    key: Annotated[str, typer.Option(help="The partner's API key.", envvar="CONTACTCARD_LISTEN_KEY")],
    forward_to: Annotated[str | None, typer.Option(help="Your handler's URL; deliveries are POSTed there.")] = None,
    server: Annotated[str, typer.Option(help="The server's base URL.")] = "http://127.0.0.1:8000",
    events: Annotated[list[str] | None, typer.Option("--event", help="An event type (repeatable).")] = None,
    port: Annotated[int, typer.Option(help="Port of the local receiver; 0: any free one.")] = 0,
) -> None:
    """Subscribe a local receiver, print each verified delivery, forward it; until Ctrl-C.

    The server must allow private hosts (`CONTACTCARD_IMAGE_ALLOW_PRIVATE=true`)."""
    import time

    from contactcard.webhooks.listen import Listener, ListenError

    chosen = events or ["contact_card.created", "contact_card.updated", "contact_card.deleted"]
    listener = Listener(
        server, key, forward_to, events=chosen, show=lambda line: _out().print(line, markup=False), port=port
    )
    try:
        listener.start()
    except ListenError as exc:
        _out().print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    _out().print(f"Ready: subscription {listener.subscription_id} sends {', '.join(chosen)} to {listener.target_url}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        listener.stop()
        _out().print("stopped; the subscription is deleted")


def main() -> None:
    # An operator's refusal (unknown partner, bad number, ...) from any command: its message
    # and exit status 1, rather than a traceback.
    try:
        app()
    except ApiError as exc:
        _out().print(f"[red]error:[/red] {exc.reason}", highlight=False)
        sys.exit(1)
