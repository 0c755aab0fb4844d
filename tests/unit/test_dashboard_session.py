"""The dashboard's signed session cookie, without a server."""

from __future__ import annotations

from contactcard.dashboard.session import LIFETIME, Session, Sessions


def test_a_session_reads_back_as_written():
    sessions = Sessions("admin-token-one")
    session = Session.new(signed_in=True)
    assert sessions.load(sessions.dump(session)) == session


def test_a_new_admin_token_signs_every_session_out():
    cookie = Sessions("admin-token-one").dump(Session.new(signed_in=True))
    assert Sessions("admin-token-two").load(cookie) is None


def test_an_altered_payload_or_signature_is_no_session():
    sessions = Sessions("admin-token-one")
    cookie = sessions.dump(Session.new(signed_in=False))
    payload, signature = cookie.split(".")
    # Someone flipping "signed in" on: the payload no longer matches its signature.
    forged_payload = Sessions("another-key").dump(Session(True, "c", 1)).split(".")[0]
    for forged in (f"{forged_payload}.{signature}", f"{payload}.{signature[::-1]}", f"{payload}", "a.b.c", "", None):
        assert sessions.load(forged) is None, forged


def test_a_session_ends_after_its_lifetime_and_is_not_from_the_future():
    sessions = Sessions("admin-token-one")
    session = Session.new(signed_in=True)
    cookie = sessions.dump(session)
    assert sessions.load(cookie, now=session.issued_at + LIFETIME - 1) == session
    assert sessions.load(cookie, now=session.issued_at + LIFETIME) is None
    assert sessions.load(cookie, now=session.issued_at - 10) is None


def test_each_session_has_its_own_csrf_token():
    tokens = {Session.new(signed_in=True).csrf for _ in range(50)}
    assert len(tokens) == 50 and all(len(t) >= 32 for t in tokens)
