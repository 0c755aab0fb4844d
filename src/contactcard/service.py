"""The contact-card use cases: list, get, set up (POST) and update (PATCH).

Every write follows the same lifecycle: under the line's write gate, check the state,
spend the write budget, rehost the image, store the card inactive and commit, ask the
device to apply it, then mark it active. A crash anywhere leaves either the old card or
the new values inactive, never a half-written card.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import anyio.to_thread
from sqlalchemy import delete

from contactcard import contract, errors, images
from contactcard.card import Card, Outcome
from contactcard.cdn import BlobStore
from contactcard.contract import ImageRules, SetupRequest, UpdateRequest
from contactcard.device import Device
from contactcard.errors import ApiError
from contactcard.store import cards as store
from contactcard.store.db import Database
from contactcard.store.gate import LineGate, LineWriter
from contactcard.store.reads import CardReads, LineAccess
from contactcard.store.schema import write_attempts

# Decoding a large image takes hundreds of MB for a moment; a few at a time keep a burst
# of uploads from exhausting memory (the default thread limit is 40).
DECODERS = 2


@dataclass(frozen=True)
class WriteResult:
    card: dict  # as the API answers it
    # In the `hosted` profile a failed apply is an error *after* the card was stored.
    error: ApiError | None = None


@dataclass(frozen=True)
class Policy:
    profile: str  # "seed" | "hosted"
    write_budget: int  # 0: off
    write_budget_window: int
    read_cache_size: int = 0  # GET-by-number answers kept in the memo (store/memo.py); 0: off


class ContactCards:
    def __init__(
        self,
        database: Database,
        device: Device,
        cdn: BlobStore,
        fetcher: images.ImageFetcher,
        rules: ImageRules,
        policy: Policy,
    ) -> None:
        self._db = database
        self._gate = LineGate(database)
        self._device = device
        self._cdn = cdn
        self._fetcher = fetcher
        self.rules = rules
        self._policy = policy
        self._reads = CardReads(database, rules.own_cdn_prefix, memo=policy.read_cache_size > 0)
        self.read_cache_size = policy.read_cache_size
        self._decoders: anyio.CapacityLimiter | None = None  # made on the event loop

    def dispose(self) -> None:
        self._reads.dispose()

    async def aclose(self) -> None:
        await self._reads.aclose()

    # --- reads: one statement each, answered as API dicts; GETs are awaited ----------

    async def list_cards(self, key_hash: str) -> list[dict]:
        """Every card of the key's partner (awaited: PostgreSQL never blocks the event loop)."""
        partner, found = await self._reads.partner_cards(key_hash)
        if partner is None:
            raise ApiError(errors.UNAUTHORIZED)
        return found

    async def get_card(self, key_hash: str, phone: str) -> list[dict]:
        """The card of one line of the key's partner, as a list of zero or one."""
        access = self._checked(await self._reads.line_access_async(key_hash, phone))
        return [access.card] if access.card else []

    async def read_memo(self) -> dict | None:
        """Where the HTTP layer may keep GET answers: emptied whenever the database changes."""
        return await self._reads.memo()

    def _access(self, key_hash: str, phone: str) -> LineAccess:
        return self._checked(self._reads.line_access(key_hash, phone))

    @staticmethod
    def _checked(access: LineAccess) -> LineAccess:
        if access.partner_id is None:
            raise ApiError(errors.UNAUTHORIZED)
        if not access.owns_line:
            raise ApiError(errors.FORBIDDEN)
        return access

    def require_key(self, key_hash: str) -> None:
        """401 unless the key is known and not revoked (for requests refused before the lookup)."""
        if self._reads.line_access(key_hash, "").partner_id is None:
            raise ApiError(errors.UNAUTHORIZED)

    # --- writes ---------------------------------------------------------------------

    async def setup(self, key_hash: str, request: SetupRequest) -> WriteResult:
        phone = request.phone_number
        self._access(key_hash, phone)  # one indexed statement, like GET: no thread hop
        async with self._gate.hold(phone) as line:
            current = await line.run(store.card_for_line, phone)
            if current is not None and current.is_active:
                raise ApiError(errors.CARD_EXISTS, headers={"x-should-retry": "false"})
            await line.run(self._check_budget, phone)
            blob, source = None, None
            if request.image_url is not None:
                blob, source = await self._rehost(request.image_url), request.image_url
            return await self._store_and_apply(line, phone, request.first_name, request.last_name, blob, source)

    async def update(self, key_hash: str, phone: str, request: UpdateRequest) -> WriteResult:
        self._access(key_hash, phone)  # one indexed statement, like GET: no thread hop
        async with self._gate.hold(phone) as line:
            current = await line.run(store.card_for_line, phone)
            needs_setup_once = self._policy.profile == "seed"
            if current is None or (needs_setup_once and not current.ever_active):
                raise ApiError(errors.NOT_FOUND)
            if not await anyio.to_thread.run_sync(self._device.rcs_check_available, phone):
                raise ApiError(errors.RCS_UNAVAILABLE)
            await line.run(self._check_budget, phone)
            first_name = current.first_name if request.first_name is contract.UNSET else request.first_name
            last_name = current.last_name if request.last_name is contract.UNSET else request.last_name
            blob, source = current.image_blob, current.image_source_url
            wanted = request.image_url
            if wanted is None:
                blob, source = None, None
            elif wanted is not contract.UNSET and wanted not in (self.image_url(current), source):
                # Only a new URL is fetched: echoing back what GET returned costs nothing.
                blob, source = await self._rehost(wanted), wanted
            return await self._store_and_apply(line, phone, first_name, last_name, blob, source)

    def _check_budget(self, conn: Any, phone: str) -> None:
        budget, window = self._policy.write_budget, self._policy.write_budget_window
        if budget <= 0:
            return
        now = time.time()
        used, oldest = store.write_attempts_since(conn, phone, now - window)
        if used >= budget:
            wait = max(1, math.ceil((oldest or now) + window - now))
            raise ApiError(
                errors.RATE_LIMITED,
                headers={"retry-after": str(wait), "x-should-retry": "false"},
                retry_after=wait,
            )

    def _record_attempt(self, conn: Any, phone: str) -> None:
        now = time.time()
        store.record_write_attempt(conn, phone, now)
        # Attempts older than the window can never count again.
        conn.execute(
            delete(write_attempts).where(
                write_attempts.c.phone_number == phone,
                write_attempts.c.at <= now - self._policy.write_budget_window,
            )
        )

    async def _store_and_apply(
        self,
        line: LineWriter,
        phone: str,
        first_name: str,
        last_name: str | None,
        blob: str | None,
        source: str | None,
    ) -> WriteResult:
        def store_inactive(conn: Any) -> Card:
            self._record_attempt(conn, phone)
            return store.store_inactive(
                conn,
                phone=phone,
                first_name=first_name,
                last_name=last_name,
                image_blob=blob,
                image_source_url=source,
            )

        card = await line.run(store_inactive)
        outcome = await anyio.to_thread.run_sync(
            self._device.apply, card, self.image_url(card), abandon_on_cancel=False
        )
        if outcome is Outcome.APPLIED:
            return WriteResult(self.public(await line.run(store.mark_active, card)))
        if outcome is Outcome.RATE_LIMITED:
            raise ApiError(
                errors.RCS_UNAVAILABLE,
                headers={"x-should-retry": "false"},
                text=errors.UPSTREAM_RATE_LIMITED_MESSAGE,
            )
        if self._policy.profile == "hosted":
            return WriteResult(self.public(card), ApiError(errors.APPLY_INCOMPLETE))
        return WriteResult(self.public(card))

    def image_url(self, card: Card) -> str | None:
        return card.image_url(self.rules.own_cdn_prefix)

    def public(self, card: Card) -> dict:
        return card.public(self.rules.own_cdn_prefix)

    async def _rehost(self, raw: str) -> str:
        """Put the image behind `raw` on our CDN and return its blob name."""
        own = self.rules.own_blob(raw)
        if own is not None:
            if await anyio.to_thread.run_sync(self._cdn.get, own) is None:
                raise ApiError(errors.IMAGE_FETCH_FAILED, "no such image on this CDN")
            return own
        url = self.rules.parse(raw)
        try:
            data = await self._fetcher.fetch(url)
        except images.FetchError as exc:
            raise ApiError(errors.IMAGE_FETCH_FAILED, exc.reason) from None
        if self._decoders is None:
            self._decoders = anyio.CapacityLimiter(DECODERS)
        try:
            image = await anyio.to_thread.run_sync(images.normalise, data, limiter=self._decoders)
        except images.ImageError as exc:
            raise ApiError(errors.IMAGE_UNUSABLE, exc.reason) from None
        name = f"{image.digest}.{image.extension}"
        await anyio.to_thread.run_sync(self._cdn.put, name, image.data)
        return name
