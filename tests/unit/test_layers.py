"""The layers of docs/architecture.md, held by the imports: no circle, and no import that
runs upward (the store and the seams to the outside never import the use cases, the
webhooks package or the HTTP layer). Read from the source with `ast`, lazy imports too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "contactcard"

# Above the store and the seams: what they must not import.
UPPER = (
    "contactcard.http",
    "contactcard.dashboard",
    "contactcard.webhooks",
    "contactcard.service",
    "contactcard.admin",
    "contactcard.kit",
    "contactcard.journal",
    "contactcard.bootstrap",
    "contactcard.cli",
    "contactcard.testing",
    "contactcard.sandbox",
    "contactcard.seed",
)
LOWER = ("contactcard.store", "contactcard.device", "contactcard.cdn", "contactcard.images")
# Upward imports still there (none now). One listed and fixed must leave this list.
KNOWN_UPWARD: set[tuple[str, str]] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _graph() -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*parts, base] if base else parts)
                targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return _graph()


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_the_graph_is_read_from_the_source(graph):
    # The reader sees relative, lazy and package imports alike, or the tests below prove nothing.
    assert "contactcard.store.core" in graph["contactcard.store.cards"]
    assert "contactcard.http.admin_kit" in graph["contactcard.http.admin"]  # imported inside a function
    assert "contactcard.device.simulated" in graph["contactcard.device"]


def test_no_module_imports_itself_round_a_circle(graph):
    assert _cycles(graph) == []


def test_the_store_and_the_seams_import_nothing_above_them(graph):
    upward = {
        (name, target)
        for name, targets in graph.items()
        if _within(name, LOWER)
        for target in targets
        if _within(target, UPPER)
    }
    assert upward - KNOWN_UPWARD == set()
    assert KNOWN_UPWARD - upward == set(), "fixed: take it off KNOWN_UPWARD"


def test_the_device_seam_does_not_import_the_store(graph):
    assert not {
        t
        for n, ts in graph.items()
        if _within(n, ("contactcard.device",))
        for t in ts
        if _within(t, ("contactcard.store",))
    }


def test_the_cycle_finder_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_domain_imports_nothing_of_the_store_nor_the_seams(graph):
    # The store and the device seam import the write's values from the domain, never back.
    below = ("contactcard.store", "contactcard.device", "contactcard.cdn", "contactcard.images")
    assert "contactcard.domain" in graph["contactcard.store.cards"]
    assert "contactcard.domain" in graph["contactcard.device.base"]
    assert {t for t in graph["contactcard.domain"] | graph["contactcard.card"] if _within(t, below + UPPER)} == set()


def test_the_card_has_one_wire_form_and_the_openapi_schema_is_built_from_it():
    from contactcard.card import WIRE_PROPERTIES, Card, wire
    from contactcard.http.openapi import document

    card = Card("id", "+15551234567", "Ada", None, "abc.jpg", "https://example.com/a.jpg", True, True)
    shown = card.public("https://cdn.example/")
    assert list(shown) == list(WIRE_PROPERTIES)  # every field described, in the order written
    assert shown == wire("+15551234567", "Ada", None, "https://cdn.example/abc.jpg", 1)
    schema = document("http://127.0.0.1:1")["components"]["schemas"]["ContactCard"]
    assert schema["properties"] == WIRE_PROPERTIES and schema["required"] == list(WIRE_PROPERTIES)
