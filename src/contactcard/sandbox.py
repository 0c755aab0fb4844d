"""The open sandbox (`contactcard serve --open`, off by default): any bearer key is its own
partner, made on first use on whichever partner route it first appears (contact cards,
webhook subscriptions, the event list), and any number that partner touches (a card's,
or a subscription's `phone_numbers`) becomes its line unless another partner owns it. So
the SDKs' generated tests and the seed snippets (key `My API Key`, number `+15551234567`)
run against a fresh server with no setup, the way stripe-mock accepts any test key.
Partner isolation still holds between keys: a number another key touched first answers
`403` to this one, and another key's subscription `404`, as on a normal server.

Webhook targets on loopback (`LOOPBACK_RECEIVERS`) are allowed, `http` included: the
developer's receiver lives there, and the sandbox itself listens on loopback only.

It acts before the request reaches the API, by making the partner, key and line the
request needs; the API then answers as it always does. What it made is remembered in the
process, so a known key and number cost a set lookup.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence

from contactcard import contract, keys
from contactcard.admin import Admin
from contactcard.errors import ApiError

# Host entries (any port) a sandbox's webhook policy adds to the operator's allowlist.
LOOPBACK_RECEIVERS = frozenset({"127.0.0.1", "localhost", "[::1]"})


def usable_key(given: str) -> str:
    """A key the API's parser takes for `given`. A key with spaces (`My API Key`) is not a
    bearer token; the sandbox stands in a token derived from it, the same every time."""
    return given if " " not in given else "sandbox-" + hashlib.sha256(given.encode()).hexdigest()[:40]


class Sandbox:
    def __init__(self, admin: Admin) -> None:
        self._admin = admin
        self._partners: dict[str, str] = {}  # key hash -> partner id (None: revoked, left alone)
        self._lines: set[str] = set()  # numbers that have an owner, whoever it is
        self._lock = threading.Lock()  # one first use at a time: requests arrive in threads

    def known(self, key: str, phones: Sequence[str] = ()) -> bool:
        return keys.key_hash(key) in self._partners and all(phone in self._lines for phone in phones)

    def prepare(self, key: str, phones: Sequence[str] = ()) -> None:
        """Make the key's partner and the numbers' lines if they do not exist (blocking)."""
        with self._lock:
            partner = self._partner(key)
            if partner is None:
                return
            for phone in phones:
                if phone not in self._lines:
                    self._line(partner, phone)

    def _line(self, partner: str, phone: str) -> None:
        try:
            contract.phone_number(phone)
        except ApiError:
            return  # not a number: the API answers that
        try:
            self._admin.add_line(partner, phone)
        except ApiError:
            pass  # another partner's: the API answers 403, as it should
        self._lines.add(phone)

    def _partner(self, key: str) -> str | None:
        hashed = keys.key_hash(key)
        found = self._partners.get(hashed)
        if found is not None:
            return found
        owner = self._admin.key_owner(hashed)
        if owner is None:
            made = self._admin.create_partner(f"open sandbox key {keys.display_prefix(key)}")
            try:
                self._admin.issue_key(made.id, key)
                owner = made.id
            except ApiError:  # another process made it meanwhile
                owner = self._admin.key_owner(hashed)
        if owner is not None:
            self._partners[hashed] = owner
        return owner
