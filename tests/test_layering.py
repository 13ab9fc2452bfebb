"""The rooms of the sidecar and which way their imports run (DESIGN.md's data flow).

- ``sidecar.kernel`` (events, bus, clock, errors, settings, text, redaction) imports nothing of ours
  outside itself: every room may import it.
- ``coach`` and ``knowledge`` import the kernel, never the media modules or the service.
- ``knowledge`` never imports ``coach``; the coach reaches the suggestion policy through a small
  Protocol of its own (``coach.suggestions``) and imports only the embedder of ``knowledge``.
- The taps never import the web service: they open calls through an interface the service hands in.

Every import is read from the source, including those inside functions and under
``TYPE_CHECKING``, so a lazy import cannot hide an arrow running the wrong way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = ("sidecar", "coach", "knowledge", "models")

pytestmark = pytest.mark.unit


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module of ours that ``path`` imports, wherever in the file the import sits."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            # ``from sidecar import kernel`` imports the subpackage, not just the package
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] in OURS}


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for top in OURS:
        for path in sorted((ROOT / top).rglob("*.py")):
            graph[_module_name(path)] = _imports(path)
    return graph


def _within(module: str, room: str) -> bool:
    return module == room or module.startswith(room + ".")


# (importer's room, imported room, rooms the imported one may be inside of and still be allowed)
FORBIDDEN: list[tuple[str, str, tuple[str, ...]]] = [
    ("sidecar.kernel", "sidecar", ("sidecar.kernel",)),
    ("sidecar.kernel", "coach", ()),
    ("sidecar.kernel", "knowledge", ()),
    ("sidecar.kernel", "models", ()),
    ("coach", "sidecar", ("sidecar.kernel",)),
    ("knowledge", "sidecar", ("sidecar.kernel",)),
    ("knowledge", "coach", ()),
    ("coach", "knowledge", ("knowledge.embed",)),
    ("sidecar.taps", "sidecar.service", ()),
]

# Arrows that still run the wrong way, each removed from here by the change that turns it round;
# the test fails both on a new wrong arrow and on an entry here that no longer exists.
PENDING: set[tuple[str, str]] = set()  # none left


def wrong_arrows(graph: dict[str, set[str]]) -> set[tuple[str, str]]:
    out: set[tuple[str, str]] = set()
    for importer, imported in graph.items():
        for room, target, allowed in FORBIDDEN:
            if not _within(importer, room):
                continue
            for module in imported:
                if _within(module, target) and not any(_within(module, a) for a in allowed):
                    out.add((importer, module))
    # ``from pkg import name`` records both pkg and pkg.name: keep only modules that exist
    return {(a, b) for a, b in out if b in graph}


def test_the_graph_is_read_from_every_room():
    graph = _graph()
    assert "sidecar.kernel.events" in graph
    assert "coach.session" in graph
    assert "knowledge.policy" in graph
    assert "sidecar.taps.webrtc" in graph
    # a lazy import inside a function is seen
    assert "sidecar.kernel.events" in graph["coach.session"]


def test_no_new_arrow_runs_the_wrong_way():
    new = wrong_arrows(_graph()) - PENDING
    assert not new, "imports that run against the data flow:\n" + "\n".join(
        f"{a} -> {b}" for a, b in sorted(new)
    )


def test_every_pending_arrow_still_exists():
    gone = PENDING - wrong_arrows(_graph())
    assert not gone, "turned round; remove from PENDING:\n" + "\n".join(
        f"{a} -> {b}" for a, b in sorted(gone)
    )


def test_the_kernel_imports_nothing_of_ours_outside_itself():
    graph = _graph()
    for module, imported in graph.items():
        if _within(module, "sidecar.kernel"):
            outside = {m for m in imported if m in graph and not _within(m, "sidecar.kernel")}
            assert not outside, f"{module} imports {sorted(outside)}"
