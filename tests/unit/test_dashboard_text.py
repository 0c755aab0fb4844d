"""How the dashboard shows names stored before control and bidi characters were refused."""

from __future__ import annotations

from contactcard.dashboard.flash import Flash, Flashes
from contactcard.dashboard.web import safe_next, visible


def test_bidi_and_control_characters_are_spelled_out():
    assert visible("Acme \u202egnp.exe Ltd") == "Acme ⟨U+202E⟩gnp.exe Ltd"
    assert visible("a\u2066b\u200fc\x07") == "a⟨U+2066⟩b⟨U+200F⟩c⟨U+0007⟩"
    assert visible("Zoë 日本 مرحبا") == "Zoë 日本 مرحبا"  # right-to-left text itself is fine
    assert visible(None) == ""


def test_a_flash_reads_back_only_for_the_session_it_was_made_for():
    flashes = Flashes("admin-token-one")
    flash = Flash(error="no", form="add-line", typed={"phone_number": "+1555"}, secret="cc_x")
    cookie = flashes.dump(flash, bound_to="csrf-one")
    assert flashes.load(cookie, bound_to="csrf-one") == flash
    assert flashes.load(cookie, bound_to="csrf-two") == Flash()  # another session's
    assert Flashes("admin-token-two").load(cookie, bound_to="csrf-one") == Flash()
    payload, signature = cookie.split(".")
    assert flashes.load(f"{payload}x.{signature}", bound_to="csrf-one") == Flash()
    assert flash.field("add-line", "phone_number") == "+1555" and flash.field("script", "fail_next", 0) == 0


def test_sign_in_lands_only_on_a_page_below_the_dashboard():
    for kept in ("/lines?q=%2B1555", "/webhooks/deliveries/ab/cd", "/requests?status=5xx&api=on"):
        assert safe_next(kept) == kept
    for refused in (
        "https://evil.example/",
        "//evil.example",
        "/\\\\evil.example",
        "javascript:alert(1)",
        "lines",
        "/sign-in?next=/x",
        "/sign-out",
        "/a\\nb",
        "/" + "a" * 600,
        "",
    ):
        assert safe_next(refused) == "/", refused
