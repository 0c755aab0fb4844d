"""Bulk data for the benchmark, inserted with plain SQL after the server's own migrations.

Layout of a seeded database of N cards: ceil(N / 10,000) partners, each with one API key and
up to 10,000 lines that all have an active card; partner 0 also owns `post_lines` lines
without a card, for the POST figure. Phone numbers: `+1<200+partner><7-digit index>`;
POST lines: `+1199<7-digit index>`.
"""

from __future__ import annotations

import functools
import hashlib
import random
import secrets
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import HarnessError

FIRST = ("John", "Mary", "Wei", "Amara", "Lucas", "Sofia", "Kenji", "Fatima", "Olga", "Diego")
LAST = ("Doe", "Smith", "Chen", "Okafor", "Martin", "Rossi", "Sato", "Khan", "Ivanova", "Lopez", None)


@dataclass
class Seeded:
    total_cards: int
    partners: int
    keys: list[str]  # keys[p] belongs to partner p
    key_hashes: list[str]
    pairs: list[tuple[str, str]]  # (key, phone number with a card of that key's partner)
    post_numbers: list[str]  # partner 0's lines without a card
    partner0_cards: int
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)

    def public(self) -> dict:
        return {
            "total_cards": self.total_cards,
            "partners": self.partners,
            "partner0_cards": self.partner0_cards,
            "get_numbers": len(self.pairs),
            "post_lines": len(self.post_numbers),
            "seconds": round(self.seconds, 2),
            **self.extra,
        }


def number(partner: int, index: int) -> str:
    return f"+1{200 + partner:03d}{index:07d}"


def post_number(index: int) -> str:
    return f"+1199{index:07d}"


def _plan(total_cards: int, per_partner: int, sample: int, post_lines: int, seed: int) -> Seeded:
    partners = max(1, -(-total_cards // per_partner))
    keys = [f"cc_bench_{p:04d}_{secrets.token_urlsafe(24)}" for p in range(partners)]
    hashes = [hashlib.sha256(k.encode()).hexdigest() for k in keys]
    rng = random.Random(seed)
    pairs = []
    for i in range(sample):
        p = i % partners
        count = _cards_of(p, total_cards, per_partner)
        pairs.append((keys[p], number(p, rng.randrange(count))))
    return Seeded(
        total_cards=total_cards,
        partners=partners,
        keys=keys,
        key_hashes=hashes,
        pairs=pairs,
        post_numbers=[post_number(i) for i in range(post_lines)],
        partner0_cards=_cards_of(0, total_cards, per_partner),
    )


def _cards_of(partner: int, total: int, per_partner: int) -> int:
    return max(0, min(per_partner, total - partner * per_partner))


def _card_rows(total: int, per_partner: int, now) -> Iterator[tuple]:
    partners = max(1, -(-total // per_partner))
    for p in range(partners):
        for i in range(_cards_of(p, total, per_partner)):
            phone = number(p, i)
            blob = hashlib.sha256(phone.encode()).hexdigest() + ".jpg"
            source = f"https://images.example.com/people/{p}/{i}.jpg"
            card_id = uuid.UUID(int=(p << 40) | i, version=4).hex
            yield card_id, phone, FIRST[i % len(FIRST)], LAST[(i // 7) % len(LAST)], blob, source, True, True, now, now


def _line_rows(seeded: Seeded, per_partner: int, partner_ids: list[str], now) -> Iterator[tuple]:
    for p, partner_id in enumerate(partner_ids):
        for i in range(_cards_of(p, seeded.total_cards, per_partner)):
            yield (number(p, i), partner_id, now)
    for phone in seeded.post_numbers:
        yield (phone, partner_ids[0], now)


def _migrate(url: str) -> None:
    from contactcard.store.db import connect, migrate

    database = connect(url)
    try:
        migrate(database)
    except Exception as exc:  # the server's own migration code: report it as such
        raise HarnessError(
            f"the server's migrations failed on {database.dialect}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        database.dispose()


COLUMNS = {
    "partners": "id, name, created_at",
    "api_keys": "id, partner_id, key_hash, prefix, created_at, revoked_at",
    "lines": "phone_number, partner_id, created_at",
    "cards": "id, phone_number, first_name, last_name, image_blob, image_source_url, is_active, ever_active, "
    "created_at, updated_at",
}


def _tables(seeded: Seeded, per_partner: int, now) -> Iterator[tuple[str, Iterable[tuple]]]:
    """Each table with its rows, in the order foreign keys need."""
    partner_ids = [uuid.uuid4().hex for _ in range(seeded.partners)]
    yield "partners", [(pid, f"Bench partner {p}", now) for p, pid in enumerate(partner_ids)]
    keys = seeded.keys
    yield (
        "api_keys",
        [(uuid.uuid4().hex, pid, seeded.key_hashes[p], keys[p][:10], now, None) for p, pid in enumerate(partner_ids)],
    )
    yield "lines", _line_rows(seeded, per_partner, partner_ids, now)
    yield "cards", _card_rows(seeded.total_cards, per_partner, now)


def _counted(seeded: Seeded, count: int, db: str, started: float) -> Seeded:
    if count != seeded.total_cards:
        raise HarnessError(f"seeded {count} cards into {db}, expected {seeded.total_cards}")
    seeded.seconds = time.perf_counter() - started
    return seeded


@functools.cache
def _sqlite_datetime():
    from sqlalchemy import DateTime
    from sqlalchemy.dialects import sqlite

    dialect = sqlite.dialect()
    return DateTime(timezone=True).dialect_impl(dialect).bind_processor(dialect)


def sqlite_now() -> str:
    """The exact text SQLAlchemy stores on SQLite for a timezone-aware DateTime of now."""
    return _sqlite_datetime()(datetime.now(UTC))


def seed_sqlite(
    data_dir: Path, *, total_cards: int, per_partner: int, sample: int, post_lines: int, seed: int = 1
) -> Seeded:
    """Create `<data_dir>/contactcard.db` (the server's default path) and fill it."""
    started = time.perf_counter()
    data_dir.mkdir(parents=True, exist_ok=True)
    path = (data_dir / "contactcard.db").resolve()
    _migrate(f"sqlite:///{path}")
    seeded = _plan(total_cards, per_partner, sample, post_lines, seed)

    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA synchronous=OFF")
        conn.execute("PRAGMA cache_size=-262144")  # 256 MiB while seeding only
        conn.execute("BEGIN")
        for table, rows in _tables(seeded, per_partner, sqlite_now()):
            marks = ", ".join("?" * (COLUMNS[table].count(",") + 1))
            conn.executemany(f"INSERT INTO {table} ({COLUMNS[table]}) VALUES ({marks})", rows)
        conn.execute("COMMIT")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        count = conn.execute("SELECT count(*) FROM cards").fetchone()[0]
    finally:
        conn.close()
    seeded.extra["file_mib"] = round(path.stat().st_size / 2**20, 1)
    return _counted(seeded, count, "SQLite", started)


# --- PostgreSQL ----------------------------------------------------------------------


def libpq_url(sqlalchemy_url: str, database: str | None = None) -> str:
    """A psycopg conninfo URL from a SQLAlchemy URL (optionally for another database)."""
    from sqlalchemy.engine import make_url

    url = make_url(sqlalchemy_url).set(drivername="postgresql")
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


def with_database(sqlalchemy_url: str, database: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(sqlalchemy_url).set(database=database).render_as_string(hide_password=False)


def postgres_reachable(sqlalchemy_url: str) -> str | None:
    """The server's version, or None when it cannot be reached."""
    import psycopg

    try:
        with psycopg.connect(libpq_url(sqlalchemy_url), connect_timeout=3, autocommit=True) as conn:
            return conn.execute("SHOW server_version").fetchone()[0]
    except psycopg.Error:
        return None


def create_database(sqlalchemy_url: str, name: str) -> None:
    import psycopg

    with psycopg.connect(libpq_url(sqlalchemy_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def drop_database(sqlalchemy_url: str, name: str) -> None:
    import psycopg

    assert name.startswith("contactcard_bench_"), name  # only ever our own databases
    with psycopg.connect(libpq_url(sqlalchemy_url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def seed_postgres(
    sqlalchemy_url: str, *, total_cards: int, per_partner: int, sample: int, post_lines: int, seed: int = 1
) -> Seeded:
    """Fill an empty database (its URL given) after running the server's migrations."""
    import psycopg

    started = time.perf_counter()
    _migrate(sqlalchemy_url)
    seeded = _plan(total_cards, per_partner, sample, post_lines, seed)
    with psycopg.connect(libpq_url(sqlalchemy_url)) as conn:
        try:  # skip the foreign-key triggers during the bulk load (needs a superuser)
            conn.execute("SET session_replication_role = replica")
        except psycopg.Error:
            conn.rollback()
        with conn.cursor() as cur:
            for table, rows in _tables(seeded, per_partner, datetime.now(UTC)):
                with cur.copy(f"COPY {table} ({COLUMNS[table]}) FROM STDIN") as copy:
                    for row in rows:
                        copy.write_row(row)
        conn.commit()
        conn.autocommit = True
        # A long-running database is analysed by autovacuum; do it now so the plans are
        # the settled ones and not whatever autovacuum has reached mid-run.
        conn.execute("ANALYZE")
        count = conn.execute("SELECT count(*) FROM cards").fetchone()[0]
    return _counted(seeded, count, "PostgreSQL", started)
