"""The database tables. Alembic migrations in `contactcard/migrations` create them."""

from __future__ import annotations

from sqlalchemy import (
    DDL,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    event,
    text,
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

partners = Table(
    "partners",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("partner_id", String(32), ForeignKey("partners.id", ondelete="CASCADE"), nullable=False),
    # sha256 of the key: keys are long random tokens, so a fast hash is enough and the
    # lookup stays one indexed query.
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    # What the operator calls it ("staging", "Ada's laptop"); never read on the hot path.
    Column("label", String(100), nullable=True),
    # When a request last used it (the server's clock), as this server's processes flush
    # their tallies (`keys_seen.py`): up to a flush interval behind; NULL: never.
    Column("last_used_at", DateTime(timezone=True), nullable=True),
)

lines = Table(
    "lines",
    metadata,
    Column("phone_number", String(16), primary_key=True),
    Column("partner_id", String(32), ForeignKey("partners.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # A partner's lines in number order: GET all reads them without sorting.
    Index("ix_lines_partner_phone", "partner_id", "phone_number"),
    # Clustered by number on SQLite: a lookup is one B-tree descent, not index then table.
    sqlite_with_rowid=False,
)

cards = Table(
    "cards",
    metadata,
    # Keyed by its line: the backstop for "never two cards for one line", and the key every
    # read uses (clustered on SQLite, like `lines`).
    Column("phone_number", String(16), ForeignKey("lines.phone_number", ondelete="CASCADE"), primary_key=True),
    Column("id", String(32), nullable=False, unique=True),  # the card's stable id (webhooks)
    Column("first_name", String(400), nullable=False),
    Column("last_name", String(400), nullable=True),
    # The blob name on our CDN; URLs are built from the CDN base at read time, so a new
    # public address or CDN does not strand stored cards.
    Column("image_blob", String(80), nullable=True),
    Column("image_source_url", String(2048), nullable=True),
    Column("is_active", Boolean, nullable=False),
    Column("ever_active", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    sqlite_with_rowid=False,
)

write_attempts = Table(
    "write_attempts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("phone_number", String(16), nullable=False),
    Column("at", Float, nullable=False),  # unix seconds
    Index("ix_write_attempts_phone_at", "phone_number", "at"),
)

device_scripts = Table(
    "device_scripts",
    metadata,
    Column("phone_number", String(16), primary_key=True),
    Column("fail_next", Integer, nullable=False, default=0),
    Column("rate_limit_next", Integer, nullable=False, default=0),
    Column("rcs_unavailable", Boolean, nullable=False, default=False),
    # Seconds the next apply takes: lets a test catch a write between "stored" and "applied".
    Column("apply_delay", Float, nullable=False, default=0.0),
)

device_displays = Table(
    "device_displays",
    metadata,
    Column("phone_number", String(16), primary_key=True),
    Column("first_name", String(400), nullable=False),
    Column("last_name", String(400), nullable=True),
    Column("image_url", String(2048), nullable=True),
    Column("applies", Integer, nullable=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

webhook_subscriptions = Table(
    "webhook_subscriptions",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("partner_id", String(32), ForeignKey("partners.id", ondelete="CASCADE"), nullable=False),
    Column("target_url", String(2048), nullable=False),
    # Wrapped in commas (",a,b,"): the write path matches an event type or a line with one
    # LIKE, the same SQL on SQLite and PostgreSQL, without a join table.
    Column("events", Text, nullable=False),
    Column("phone_numbers", Text, nullable=True),  # NULL: every line of the partner
    Column("is_active", Boolean, nullable=False),
    Column("signing_secret", String(100), nullable=False),
    Column("webhook_version", String(10), nullable=False),  # copied into each body
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # One subscription per target URL per partner (the hosted rule); also the index the
    # write path's match uses (partner first).
    UniqueConstraint("partner_id", "target_url", name="uq_webhook_subscriptions_partner_target"),
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    # The outbox: one row per event per matching subscription, written in the card
    # change's own transaction, then attempted by the delivery worker of any process.
    Column("event_id", String(32), primary_key=True),
    Column(
        "subscription_id",
        String(32),
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("event_type", String(64), nullable=False),
    Column("phone_number", String(16), nullable=True),
    Column("body", Text, nullable=False),  # the exact bytes sent on every attempt
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_at", Float, nullable=False),  # unix seconds on the server's clock
    # Real unix seconds until which a claimed attempt belongs to one process; a process
    # that died mid-attempt lets it go when the lease runs out.
    Column("lease_until", Float, nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", String(400), nullable=True),
    Column("last_latency_ms", Float, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Index("ix_webhook_deliveries_status_next_at", "status", "next_at"),
    Index("ix_webhook_deliveries_subscription_id", "subscription_id"),
    # A claim takes a line's events in order (store/webhooks.py): only the pending rows.
    Index(
        "ix_webhook_deliveries_line_order",
        "subscription_id",
        "phone_number",
        "created_at",
        "event_id",
        sqlite_where=text("status = 'pending'"),
        postgresql_where=text("status = 'pending'"),
    ),
)

webhook_attempts = Table(
    "webhook_attempts",
    metadata,
    # Every attempt of a delivery, as the operator sees it on the dashboard; the delivery's
    # row keeps only the last one. Written in the same statement batch as that row.
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("event_id", String(32), nullable=False),
    Column("subscription_id", String(32), nullable=False),
    Column("attempt", Integer, nullable=False),  # 1, 2, ...; from 1 again after a redelivery
    Column("at", DateTime(timezone=True), nullable=False),  # on the server's clock
    Column("outcome", String(16), nullable=False),  # pending (a retry follows) | delivered | failed
    Column("answer", Integer, nullable=True),  # the receiver's HTTP status; none if it never answered
    Column("latency_ms", Float, nullable=True),
    Column("error", String(400), nullable=True),
    ForeignKeyConstraint(
        ["event_id", "subscription_id"],
        ["webhook_deliveries.event_id", "webhook_deliveries.subscription_id"],
        ondelete="CASCADE",
    ),
    Index("ix_webhook_attempts_delivery", "event_id", "subscription_id"),
)


# One row (id 1): what an operator or a test changed at run time, shared by every process
# on the database. NULL: the process's own setting. `version` grows with every change, so
# the write path can tell its cached copy is old from one column of a statement it runs anyway.
runtime_controls = Table(
    "runtime_controls",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("version", Integer, nullable=False),
    Column("profile", String(16), nullable=True),
    Column("write_budget", Integer, nullable=True),
    Column("write_budget_window", Integer, nullable=True),
    Column("journal_size", Integer, nullable=True),
    # Seconds added to real time: advancing moves it forward, setting an instant sets it so
    # that now is that instant (time goes on from there), real time is 0.
    Column("clock_offset", Float, nullable=False),
)

# The recent API requests (bounded, trimmed by the process that flushes). No key, header
# secret or body is ever stored: the columns are all there is.
request_journal = Table(
    "request_journal",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trace_id", String(32), nullable=False),
    Column("at", Float, nullable=False),  # unix seconds, on the server's clock (moved or not)
    Column("method", String(8), nullable=False),
    Column("path", String(200), nullable=False),
    Column("phone_number", String(16), nullable=True),
    Column("status", Integer, nullable=False),
    Column("error_code", Integer, nullable=True),
    Column("duration_ms", Float, nullable=False),
    Column("retry_count", Integer, nullable=True),  # the SDKs' x-stainless-retry-count
    Column("user_agent", String(200), nullable=True),
    Index("ix_request_journal_trace_id", "trace_id"),
    Index("ix_request_journal_at", "at"),
)

# One row (id 1): until when someone reads the journal (real unix seconds). Processes store
# their buffered requests only while it lies ahead, so a journal nobody reads costs no writes.
journal_readers = Table(
    "journal_readers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("wanted_until", Float, nullable=False),
    # When the journal was last reset (real unix seconds): requests a process still holds
    # from before it are dropped instead of stored.
    Column("cleared_at", Float, nullable=False),
)

# The dashboard's signed-in sessions, by the SHA-256 of the id their cookie carries: a
# session is in force only while its row is here and unexpired, so signing out (which
# deletes the row) ends it in every process, whatever copy of the cookie is replayed.
dashboard_sessions = Table(
    "dashboard_sessions",
    metadata,
    Column("id_hash", String(64), primary_key=True),
    Column("created_at", Float, nullable=False),  # real unix seconds
    Column("expires_at", Float, nullable=False),
    Index("ix_dashboard_sessions_expires_at", "expires_at"),
)

# One row (id 1): on SQLite, a count of the changes to everything a GET answer is read from
# (keys, lines, cards), kept by the triggers below in the changing transaction itself, so
# that every writer (another process, the admin CLI, a statement typed in sqlite3) moves
# it. The GET memo's version: with this process's own writes known as ranges of the count
# (`store/core/commits.py`), a move made only by them drops only their lines' answers.
# PostgreSQL leaves the row alone; its memo reads the cluster's snapshot instead.
change_count = Table(
    "change_count",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("n", Integer, nullable=False),
    CheckConstraint("id = 1", name="ck_change_count_one_row"),
)

# The tables whose rows a GET answer is read from (`store/reads.py`).
COUNTED_TABLES = ("api_keys", "lines", "cards")
# The columns of `api_keys` whose update counts: every one but `last_used_at`, which no GET
# answer reads, so that storing when keys were used does not empty every GET memo.
COUNTED_KEY_COLUMNS = ("id", "partner_id", "key_hash", "prefix", "created_at", "revoked_at", "label")


def change_count_trigger(table: str, operation: str) -> str:
    """The SQLite trigger that counts one kind of change to one table."""
    event_clause = operation
    if table == "api_keys" and operation == "UPDATE":
        event_clause = f"UPDATE OF {', '.join(COUNTED_KEY_COLUMNS)}"
    return (
        f"CREATE TRIGGER change_count_{table}_{operation.lower()} AFTER {event_clause} ON {table} "
        "BEGIN UPDATE change_count SET n = n + 1 WHERE id = 1; END"
    )


def change_count_ddl() -> list[str]:
    """The SQLite statements that create the counted row and its triggers."""
    statements = ["INSERT INTO change_count (id, n) VALUES (1, 0)"]
    for table in COUNTED_TABLES:
        for operation in ("INSERT", "UPDATE", "DELETE"):
            statements.append(change_count_trigger(table, operation))
    return statements


for _statement in change_count_ddl():
    # After every table exists: the triggers name three of them.
    event.listen(metadata, "after_create", DDL(_statement).execute_if(dialect="sqlite"))  # type: ignore[no-untyped-call]
