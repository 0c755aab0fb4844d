"""Every setting of the server, read once from `CONTACTCARD_*` environment variables.

The settings table of the docs (docs/settings.md) is generated from this class (see `docs_table`), so the
documentation and the code cannot drift apart.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "CONTACTCARD_"
# What the journal holds per process while nobody reads it (see `journal.py`), and what a
# test server holds instead: everything the journal keeps, so a first read misses nothing.
JOURNAL_UNREAD = 64
JOURNAL_HOLD_ALL = 1_000_000


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    data_dir: Path = Field(
        Path("data"),
        description="Folder for the SQLite file and the local CDN folder.",
    )
    database_url: str | None = Field(
        None,
        description="SQLAlchemy URL. Empty: `sqlite:///<data_dir>/contactcard.db`. "
        "PostgreSQL: `postgresql+psycopg://user@host/db`.",
    )
    public_base_url: str = Field(
        "http://127.0.0.1:8000",
        description="Base URL clients reach this server at; CDN and doc links are built from it.",
    )
    cdn_base_url: str | None = Field(
        None,
        description="Base URL of the CDN that serves rehosted images at `<base>/contact-card/<name>` (with "
        "`CONTACTCARD_S3_BUCKET`: a CDN in front of the bucket). Empty: `<public_base_url>/cdn`, "
        "served by this server from its store.",
    )
    docs_base_url: str | None = Field(
        None,
        description="Base of `error.doc_url`. Empty: `<public_base_url>/docs` (served by this server).",
    )
    profile: Literal["seed", "hosted"] = Field(
        "seed",
        description="`seed`: a failed apply answers 200 with `is_active: false`; PATCH needs a card "
        "set up once. `hosted`: a failed apply answers 500 2022; PATCH needs only a card.",
    )
    write_budget: int = Field(
        3, ge=0, description="POST+PATCH calls allowed per phone number per window; 0 switches the budget off."
    )
    write_budget_window: int = Field(600, ge=1, description="Length of the write-budget window, in seconds.")
    read_cache_size: int = Field(
        4096,
        ge=0,
        description="GET-by-number answers kept in memory, emptied whenever anyone commits to the "
        "database (on PostgreSQL, only the written lines' answers when the commits are this process's "
        "own writes; checked after each request arrives, so never stale); 0 switches the memo off.",
    )
    journal_size: int = Field(
        1000,
        ge=0,
        description="Recent API requests kept in the request journal (`/admin/v1/requests`); 0 switches it off.",
    )
    journal_unread: int = Field(
        JOURNAL_UNREAD,
        ge=1,
        description="Newest requests each process holds for the journal while nobody has read it for a minute "
        "(from a read on, every request is stored); the test kit, `--ephemeral` and `--open` hold all "
        "of `journal_size`.",
    )
    write_queue_limit: int = Field(
        10000,
        ge=1,
        description="Writes that may wait at once (for their line or the database) in one process; "
        "past it a write answers `503 4005` at once, with `Retry-After`.",
    )
    write_wait_timeout: float = Field(
        30.0,
        gt=0,
        description="Longest a write waits for its line or the database before answering `503 4005`, in seconds.",
    )
    database_timeout: float = Field(
        2.0,
        gt=0,
        description="Longest a request waits to reach the database before answering `503 4006`, in seconds.",
    )
    key_use_flush_interval: float = Field(
        30.0,
        gt=0,
        le=3600,
        description="How often each process stores when its API keys were last used (one statement for all of "
        "them; also at shutdown), in seconds. The dashboard and the admin API's key listing are this far behind.",
    )
    shutdown_timeout: float = Field(
        10.0,
        gt=0,
        description="On SIGTERM, how long in-flight requests may take to finish before the server exits, in seconds.",
    )
    image_fetch: Literal["network", "simulated"] = Field(
        "network",
        description="`network` fetches image URLs for real (public addresses only). `simulated` never "
        "leaves the machine: allow-listed hosts are fetched, any other URL yields a generated placeholder.",
    )
    image_allow_private: bool = Field(
        False, description="Allow image URLs on any private address (and `http`). For local work only."
    )
    image_allowed_hosts: str = Field(
        "",
        description="Comma-separated `host:port` entries allowed although private (and over `http`), "
        "e.g. `127.0.0.1:9000,localhost:8080`.",
    )
    image_fetch_timeout: float = Field(10.0, gt=0, description="Total deadline for one image fetch, in seconds.")
    image_max_bytes: int = Field(10 * 1024 * 1024, gt=0, description="Largest image download accepted, in bytes.")
    webhook_retry_delays: str = Field(
        "5,10,20,40,80,160,320,600,600",
        description="Seconds before each retry of a failed webhook delivery, comma-separated (each varies "
        "by ±20 %); their count is the retries, so the default makes 10 attempts over about 30 minutes. "
        "Target URLs follow the image rules: private hosts only with the image private-host settings.",
    )
    webhook_attempt_timeout: float = Field(
        10.0, gt=0, description="Total deadline for one webhook delivery attempt, in seconds."
    )
    webhook_max_answer_bytes: int = Field(
        4096, gt=0, description="Most bytes of a receiver's answer read per attempt (the status is what counts)."
    )
    webhook_concurrency: int = Field(128, ge=1, description="Webhook deliveries one process makes at once.")
    webhook_concurrency_per_target: int = Field(
        64,
        ge=1,
        description="Of those, at most this many to one subscription: a slow receiver cannot take them all. "
        "Each is a kept-alive connection to the receiver.",
    )
    webhook_delivery: Literal["process", "inline", "off"] = Field(
        "process",
        description="Who makes this server's webhook attempts. `process`: a `contactcard deliver` child of "
        "each server process, on the other cores (restarted if it dies, stopped with its server). `inline`: "
        "a task on the server's own event loop. `off`: none here; run `contactcard deliver` yourself.",
    )
    webhook_poll_interval: float = Field(
        0.5,
        gt=0,
        description="How often each process looks for due webhook attempts it was not told of "
        "(retries, events recorded by other processes), in seconds.",
    )
    s3_bucket: str | None = Field(
        None,
        description="Keep rehosted images in this S3-compatible bucket (objects `contact-card/<sha256>.<ext>`), "
        "so several server hosts share them. Empty: the local folder `<data_dir>/cdn`. Credentials come from "
        "the standard AWS chain (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, instance role).",
    )
    s3_endpoint_url: str | None = Field(
        None, description="Endpoint of an S3-compatible server (MinIO, Ceph, R2...). Empty: AWS S3."
    )
    s3_region: str | None = Field(None, description="Region of the bucket. Empty: from the AWS chain (`AWS_REGION`).")
    s3_addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto", description="`path` puts the bucket in the URL path (most self-hosted servers); `virtual` in the host."
    )
    s3_timeout: float = Field(
        2.0,
        gt=0,
        description="Longest wait for one S3 call (two tries at most), in seconds; a write whose image "
        "is not stored within it answers `503 4008`.",
    )
    open_sandbox: bool = Field(
        False,
        description="Open sandbox (`serve --open`): any bearer key is its own partner, made on first use, and "
        "any number it touches becomes its line unless another partner owns it. For local tests only.",
    )
    open_sandbox_loopback_receivers: bool = Field(
        True,
        description="In the open sandbox, webhook targets on loopback (`127.0.0.1`, `localhost`, `[::1]`, "
        "`http` too) are allowed: the developer's receiver lives there. `serve --open --force-open` on an "
        "interface beyond loopback switches it off (loopback is then the server's own, not the developer's).",
    )
    admin_token: str | None = Field(
        None, description="Bearer token for the `/admin/v1` HTTP API. Empty: the admin API is switched off."
    )
    demo_api_key: str | None = Field(
        None,
        description="Key given to the demo partner `serve` creates in an empty database. Empty: a random key.",
    )
    log_level: str = Field("info", description="Log level of the server.")
    log_format: Literal["auto", "json", "text"] = Field(
        "auto",
        description="`json`: one JSON object a line (trace id, partner, line, route, status, code, duration, "
        "outcome). `text`: readable lines. `auto`: text when stderr is a terminal, JSON otherwise.",
    )
    access_log: bool = Field(
        False,
        description="Log a line for every request. Off: only writes, admin calls and failures (5xx) get one, "
        "which keeps the GET path lean.",
    )
    metrics: Literal["admin", "port", "off"] = Field(
        "admin",
        description="Prometheus metrics. `admin`: `GET /metrics` on the API port with the admin token as bearer "
        "(401 without one). `port`: on `CONTACTCARD_METRICS_HOST:CONTACTCARD_METRICS_PORT`, no token (keep that "
        "port private). `off`: none.",
    )
    metrics_host: str = Field("127.0.0.1", description="Interface of the metrics port (`CONTACTCARD_METRICS=port`).")
    metrics_port: int = Field(9464, ge=1, le=65535, description="Port of the metrics (`CONTACTCARD_METRICS=port`).")

    @field_validator("public_base_url", "cdn_base_url", "docs_base_url", "s3_endpoint_url")
    @classmethod
    def _no_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'contactcard.db').resolve()}"

    @property
    def resolved_cdn_base_url(self) -> str:
        return self.cdn_base_url or f"{self.public_base_url}/cdn"

    @property
    def resolved_docs_base_url(self) -> str:
        return self.docs_base_url or f"{self.public_base_url}/docs"

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "cdn"

    @property
    def retry_delays(self) -> tuple[float, ...]:
        return tuple(float(d) for d in self.webhook_retry_delays.split(",") if d.strip())

    @property
    def allowed_image_hosts(self) -> frozenset[str]:
        return frozenset(h.strip().lower() for h in self.image_allowed_hosts.split(",") if h.strip())


def docs_table() -> str:
    """The settings table of docs/settings.md, as Markdown."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default
        shown = "*(empty)*" if default is None or default == "" else f"`{default}`"
        if isinstance(default, Path):
            shown = f"`{default.as_posix()}`"
        rows.append(f"| `{ENV_PREFIX}{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(rows)
