"""The `contactcard` command: `serve`, and `admin ...` for operators."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from contactcard.admin import Admin, AdminError
from contactcard.device import DeviceScript, DeviceView
from contactcard.settings import Settings, docs_table

if TYPE_CHECKING:
    from contactcard.http.edge import Edge

app = typer.Typer(help="A self-hostable server for the Linq API v3 contact card endpoints.", no_args_is_help=True)
admin_app = typer.Typer(help="Partners, keys, lines and simulated-device scripts.", no_args_is_help=True)
partner_app = typer.Typer(help="Partner accounts.", no_args_is_help=True)
key_app = typer.Typer(help="API keys (shown once, stored hashed).", no_args_is_help=True)
line_app = typer.Typer(help="Phone lines owned by partners.", no_args_is_help=True)
device_app = typer.Typer(help="The simulated device of a line.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Webhook deliveries: list them, send one again.", no_args_is_help=True)
listen_app = typer.Typer(help="Webhooks for developers.", no_args_is_help=True)
app.add_typer(listen_app, name="webhooks")
app.add_typer(admin_app, name="admin")
admin_app.add_typer(webhooks_app, name="webhooks")
admin_app.add_typer(partner_app, name="partner")
admin_app.add_typer(key_app, name="key")
admin_app.add_typer(line_app, name="line")
admin_app.add_typer(device_app, name="device")

console = Console()
DEMO_LINES = ("+15551234567", "+15557654321", "+15550001111")


def _admin() -> Admin:
    from contactcard.bootstrap import build

    return build(Settings()).admin


def _fail(exc: AdminError) -> NoReturn:
    console.print(f"[red]error:[/red] {exc}")
    raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(help="Worker processes (PostgreSQL for more than one).")] = 1,
    simulate_images: Annotated[
        bool, typer.Option(help="Never fetch images from the network; generate placeholders instead.")
    ] = False,
) -> None:
    """Run the server. An empty database gets a demo partner, key and lines."""
    from contactcard.bootstrap import build
    from contactcard.http.app import create_app

    if simulate_images:
        os.environ["CONTACTCARD_IMAGE_FETCH"] = "simulated"
    os.environ.setdefault("CONTACTCARD_PUBLIC_BASE_URL", f"http://{_display_host(host)}:{port}")
    settings = Settings()
    services = build(settings)
    if services.admin.partner_count() == 0:
        try:
            _create_demo(services.admin, settings)
        except AdminError:  # another process started at the same moment made the demo
            console.print("[yellow]demo partner already created by another process[/yellow]")
    else:
        console.print(f"[bold]contactcard[/bold] serving {settings.public_base_url} ({_describe(settings)})")
    if workers == 1:  # this process serves: reuse what was just built
        _run_uvicorn(create_app(settings, services), settings, host=host, port=port)
        return
    services.close()
    _run_uvicorn(
        "contactcard.http.app:create_app_from_env", settings, host=host, port=port, factory=True, workers=workers
    )


def _run_uvicorn(
    target: Edge | str, settings: Settings, *, host: str, port: int, factory: bool = False, workers: int | None = None
) -> None:
    """uvicorn.run with the options every server process shares, spelled out so each is type-checked."""
    import uvicorn

    uvicorn.run(
        target,
        factory=factory,
        workers=workers,
        host=host,
        port=port,
        log_level=settings.log_level,
        access_log=settings.access_log,
        proxy_headers=False,
        server_header=False,
        ws="none",  # no WebSocket routes; not loading a WebSocket stack saves memory
        # On SIGTERM: stop accepting, let requests under way finish within this bound.
        timeout_graceful_shutdown=max(1, round(settings.shutdown_timeout)),
    )


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
    console.print(
        Panel(
            f"Serving {settings.public_base_url} ({_describe(settings)})\n"
            f"Demo partner [bold]{partner.id}[/bold] with lines {', '.join(DEMO_LINES)}\n"
            f"API key (shown once): [bold green]{issued.key}[/bold green]",
            title="contactcard",
            expand=False,
        )
    )
    console.print("Try it:\n")
    # Plain text, never wrapped: it is meant to be copied into a shell.
    console.print(snippet, markup=False, highlight=False, soft_wrap=True)


@app.command("settings")
def show_settings() -> None:
    """Print the settings table (environment variables, defaults, meaning)."""
    console.print(docs_table(), markup=False, highlight=False)


@partner_app.command("create")
def partner_create(name: str) -> None:
    """Create a partner; prints its id."""
    try:
        partner = _admin().create_partner(name)
    except AdminError as exc:
        _fail(exc)
    console.print(partner.id)


@partner_app.command("list")
def partner_list() -> None:
    table = Table("id", "name", "created")
    for partner in _admin().list_partners():
        table.add_row(partner.id, partner.name, partner.created_at.isoformat(timespec="seconds"))
    console.print(table)


@key_app.command("create")
def key_create(partner_id: str) -> None:
    """Issue a key for a partner. The key is printed once; only its hash is kept."""
    try:
        issued = _admin().issue_key(partner_id)
    except AdminError as exc:
        _fail(exc)
    console.print(f"key id {issued.id}", style="dim")
    console.print(issued.key, markup=False, highlight=False)


@key_app.command("list")
def key_list(partner_id: Annotated[str | None, typer.Option("--partner")] = None) -> None:
    table = Table("id", "partner", "prefix", "created", "revoked")
    for key in _admin().list_keys(partner_id):
        revoked = key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else ""
        table.add_row(key.id, key.partner_id, key.prefix + "…", key.created_at.isoformat(timespec="seconds"), revoked)
    console.print(table)


@key_app.command("revoke")
def key_revoke(key_id: str) -> None:
    """Revoke a key; it stops working at once, in every server process."""
    try:
        _admin().revoke_key(key_id)
    except AdminError as exc:
        _fail(exc)
    console.print(f"revoked {key_id}")


@line_app.command("add")
def line_add(partner_id: str, phone_numbers: list[str]) -> None:
    """Give one or more E.164 numbers to a partner."""
    admin = _admin()
    for number in phone_numbers:
        try:
            admin.add_line(partner_id, number)
        except AdminError as exc:
            _fail(exc)
        console.print(f"added {number}")


@line_app.command("remove")
def line_remove(phone_number: str) -> None:
    """Remove a line and its card."""
    try:
        _admin().remove_line(phone_number)
    except AdminError as exc:
        _fail(exc)
    console.print(f"removed {phone_number}")


@line_app.command("list")
def line_list(partner_id: Annotated[str | None, typer.Option("--partner")] = None) -> None:
    table = Table("phone number", "partner", "card", "active")
    for line in _admin().list_lines(partner_id):
        table.add_row(
            line.phone_number, line.partner_id, "yes" if line.has_card else "no", "yes" if line.is_active else "no"
        )
    console.print(table)


def _print_device(view: DeviceView) -> None:
    console.print_json(
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
    try:
        _print_device(
            _admin().script_device(phone_number, DeviceScript(fail_next, rate_limit_next, rcs_unavailable, apply_delay))
        )
    except AdminError as exc:
        _fail(exc)


@device_app.command("show")
def device_show(phone_number: str) -> None:
    """What a line's simulated device shows now, and its script."""
    try:
        _print_device(_admin().device_view(phone_number))
    except AdminError as exc:
        _fail(exc)


@webhooks_app.command("deliveries")
def webhook_deliveries(
    subscription_id: Annotated[str | None, typer.Option("--subscription")] = None,
    event_id: Annotated[str | None, typer.Option("--event")] = None,
) -> None:
    """Deliveries, newest first, of one subscription or one event."""
    table = Table("event", "subscription", "type", "status", "attempts", "answer", "ms", "error")
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
    console.print(table)


@webhooks_app.command("redeliver")
def webhook_redeliver(event_id: str, subscription_id: str) -> None:
    """Send one delivery again now, with a fresh retry schedule."""
    try:
        _admin().redeliver(event_id, subscription_id)
    except AdminError as exc:
        _fail(exc)
    console.print(f"queued {event_id} for {subscription_id}")


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
        server, key, forward_to, events=chosen, show=lambda line: console.print(line, markup=False), port=port
    )
    try:
        listener.start()
    except ListenError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(1) from None
    console.print(f"Ready: subscription {listener.subscription_id} sends {', '.join(chosen)} to {listener.target_url}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        listener.stop()
        console.print("stopped; the subscription is deleted")


def main() -> None:
    app()
