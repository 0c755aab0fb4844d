"""Operator use cases: partners, keys, lines and device scripts.

The `contactcard admin` command and the `/admin/v1` HTTP API both call these.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from contactcard import contract, keys
from contactcard.device import DeviceScript, DeviceView, SimulatedDevice
from contactcard.store.db import Database
from contactcard.store.schema import api_keys, cards, lines, partners


class AdminError(Exception):
    """An operator request that cannot be done; the message says why."""

    def __init__(self, message: str, *, not_found: bool = False) -> None:
        super().__init__(message)
        self.not_found = not_found


@dataclass(frozen=True)
class Partner:
    id: str
    name: str
    created_at: datetime


@dataclass(frozen=True)
class IssuedKey:
    id: str
    partner_id: str
    key: str  # shown once; only its hash is stored


@dataclass(frozen=True)
class KeyInfo:
    id: str
    partner_id: str
    prefix: str
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class Line:
    phone_number: str
    partner_id: str
    has_card: bool
    is_active: bool


class Admin:
    def __init__(self, database: Database, device: SimulatedDevice) -> None:
        self._db = database
        self.device = device

    def create_partner(self, name: str) -> Partner:
        name = name.strip()
        if not name:
            raise AdminError("a partner needs a name")
        partner = Partner(uuid.uuid4().hex, name, datetime.now(UTC))
        with self._db.writer.begin() as conn:
            conn.execute(insert(partners).values(id=partner.id, name=partner.name, created_at=partner.created_at))
        return partner

    def list_partners(self) -> list[Partner]:
        with self._db.reader.connect() as conn:
            rows = conn.execute(select(partners).order_by(partners.c.created_at, partners.c.id)).all()
        return [Partner(r.id, r.name, r.created_at) for r in rows]

    def partner_count(self) -> int:
        with self._db.reader.connect() as conn:
            return conn.execute(select(func.count()).select_from(partners)).scalar_one()

    def _require_partner(self, conn, partner_id: str) -> None:
        if conn.execute(select(partners.c.id).where(partners.c.id == partner_id)).first() is None:
            raise AdminError(f"no partner {partner_id}", not_found=True)

    def issue_key(self, partner_id: str, key: str | None = None) -> IssuedKey:
        key = key or keys.new_key()
        issued = IssuedKey(uuid.uuid4().hex, partner_id, key)
        with self._db.writer.begin() as conn:
            self._require_partner(conn, partner_id)
            try:
                conn.execute(
                    insert(api_keys).values(
                        id=issued.id,
                        partner_id=partner_id,
                        key_hash=keys.key_hash(key),
                        prefix=keys.display_prefix(key),
                        created_at=datetime.now(UTC),
                    )
                )
            except IntegrityError:
                raise AdminError("that key is already in use") from None
        return issued

    def list_keys(self, partner_id: str | None = None) -> list[KeyInfo]:
        query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if partner_id:
            query = query.where(api_keys.c.partner_id == partner_id)
        with self._db.reader.connect() as conn:
            rows = conn.execute(query).all()
        return [KeyInfo(r.id, r.partner_id, r.prefix, r.created_at, r.revoked_at) for r in rows]

    def revoke_key(self, key_id: str) -> None:
        with self._db.writer.begin() as conn:
            done = conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            if done.rowcount == 0:
                exists = conn.execute(select(api_keys.c.id).where(api_keys.c.id == key_id)).first()
                if exists is None:
                    raise AdminError(f"no key {key_id}", not_found=True)

    def add_line(self, partner_id: str, phone_number: str) -> Line:
        if not isinstance(phone_number, str) or not contract.E164.fullmatch(phone_number):
            raise AdminError(f"{phone_number!r} is not an E.164 phone number")
        with self._db.writer.begin() as conn:
            self._require_partner(conn, partner_id)
            owner = conn.execute(select(lines.c.partner_id).where(lines.c.phone_number == phone_number)).first()
            if owner is not None:
                if owner.partner_id == partner_id:
                    return self._line(conn, phone_number)
                raise AdminError(f"{phone_number} already belongs to another partner")
            conn.execute(
                insert(lines).values(phone_number=phone_number, partner_id=partner_id, created_at=datetime.now(UTC))
            )
            return self._line(conn, phone_number)

    def remove_line(self, phone_number: str) -> None:
        with self._db.writer.begin() as conn:
            conn.execute(delete(cards).where(cards.c.phone_number == phone_number))
            gone = conn.execute(delete(lines).where(lines.c.phone_number == phone_number))
            if gone.rowcount == 0:
                raise AdminError(f"no line {phone_number}", not_found=True)
            self.device.forget(conn, phone_number)

    def list_lines(self, partner_id: str | None = None) -> list[Line]:
        query = (
            select(lines.c.phone_number, lines.c.partner_id, cards.c.id, cards.c.is_active)
            .select_from(lines)
            .outerjoin(cards, cards.c.phone_number == lines.c.phone_number)
            .order_by(lines.c.phone_number)
        )
        if partner_id:
            query = query.where(lines.c.partner_id == partner_id)
        with self._db.reader.connect() as conn:
            rows = conn.execute(query).all()
        return [Line(r.phone_number, r.partner_id, r.id is not None, bool(r.is_active)) for r in rows]

    def _line(self, conn, phone_number: str) -> Line:
        row = conn.execute(
            select(lines.c.phone_number, lines.c.partner_id, cards.c.id, cards.c.is_active)
            .select_from(lines)
            .outerjoin(cards, cards.c.phone_number == lines.c.phone_number)
            .where(lines.c.phone_number == phone_number)
        ).one()
        return Line(row.phone_number, row.partner_id, row.id is not None, bool(row.is_active))

    def _require_line(self, phone_number: str) -> None:
        with self._db.reader.connect() as conn:
            if conn.execute(select(lines.c.phone_number).where(lines.c.phone_number == phone_number)).first() is None:
                raise AdminError(f"no line {phone_number}", not_found=True)

    def script_device(self, phone_number: str, script: DeviceScript) -> DeviceView:
        if script.fail_next < 0 or script.rate_limit_next < 0:
            raise AdminError("scripted counts cannot be negative")
        self._require_line(phone_number)
        self.device.set_script(phone_number, script)
        return self.device.view(phone_number)

    def device_view(self, phone_number: str) -> DeviceView:
        self._require_line(phone_number)
        return self.device.view(phone_number)
