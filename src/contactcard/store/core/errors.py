"""How the store says the database did not do what was asked: the HTTP layer maps each to
the catalogue's "database unavailable" answer, and a caller told `WriteInDoubt` must read
before it writes again."""

from __future__ import annotations


class StoreUnavailable(Exception):
    """The database could not be reached, or refused the change (locked, read-only, full)."""


class WriteExpired(StoreUnavailable):
    """The transaction waited in the queue past its deadline: it was never sent."""


class WriteInDoubt(StoreUnavailable):
    """The transaction was sent, and the database did not answer by its deadline: it is
    committed or rolled back whole, whichever the database does when it answers again."""
