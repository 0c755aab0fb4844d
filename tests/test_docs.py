"""The docs say what the code does: error table, error pages, settings table; the README
stays a quick start and every page of docs/ is in the site."""

from __future__ import annotations

from pathlib import Path

import yaml

from contactcard import docs, errors
from contactcard.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README_LINES = 150  # a quick start; the rest is the documentation site (mkdocs.yml, docs/)


def test_errors_page_is_generated_from_the_catalogue():
    text = (ROOT / "docs" / "errors.md").read_text(encoding="utf-8")
    assert text == docs.errors_page() + "\n"
    for entry in errors.CATALOGUE:
        assert f"| [{entry.code}](#{entry.code}) |" in text
        assert f'<a id="{entry.code}"></a>' in text


def test_settings_page_table_matches_the_code():
    text = (ROOT / "docs" / "settings.md").read_text(encoding="utf-8")
    assert docs.settings_page(text) == text
    for name in Settings.model_fields:
        assert f"`CONTACTCARD_{name.upper()}`" in text


def test_catalogue_codes_are_unique_and_statuses_are_errors():
    codes = [e.code for e in errors.CATALOGUE]
    assert len(codes) == len(set(codes))
    assert all(400 <= e.status < 600 for e in errors.CATALOGUE)


def test_readme_is_a_quick_start_that_links_into_the_site():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= README_LINES
    for link in ("docs/index.md", "docs/settings.md", "docs/errors.md", "docs/architecture.md"):
        assert f"]({link}" in text, link
    # The SDK snippet it shows is the one CI runs (tests/test_seeds.py, .ci/run).
    assert (ROOT / "examples" / "seed_create.py").read_text(encoding="utf-8") in text


def test_every_page_of_docs_is_in_the_site_navigation():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))

    def pages(entries: list) -> set[str]:
        found: set[str] = set()
        for entry in entries:
            value = next(iter(entry.values())) if isinstance(entry, dict) else entry
            found |= pages(value) if isinstance(value, list) else {value}
        return found

    on_disk = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    assert on_disk == pages(config["nav"])
