"""The docs say what the code does: error table, error pages, settings table."""

from __future__ import annotations

from pathlib import Path

from contactcard import docs, errors
from contactcard.settings import Settings

ROOT = Path(__file__).resolve().parent.parent


def test_errors_page_is_generated_from_the_catalogue():
    assert (ROOT / "docs" / "errors.md").read_text(encoding="utf-8") == docs.errors_page() + "\n"


def test_readme_tables_match_the_code():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert docs.readme(text) == text
    for entry in errors.CATALOGUE:
        assert f"[{entry.code}](docs/errors.md#{entry.code})" in text
    for name in Settings.model_fields:
        assert f"`CONTACTCARD_{name.upper()}`" in text


def test_catalogue_codes_are_unique_and_statuses_are_errors():
    codes = [e.code for e in errors.CATALOGUE]
    assert len(codes) == len(set(codes))
    assert all(400 <= e.status < 600 for e in errors.CATALOGUE)
