"""The package's layers, read from the source with `ast` (nothing is imported).

Every import counts, at module level or inside a function (a lazy import is still a dependency: the
security -> web cycle this test guards against was one). The rules:

- no import cycle between modules of the package;
- the stages (imaging, detect, embed, quality, pipeline, faces, index, store, ledger, calibration) import
  none of engine, services, api, cli;
- services (what engine.py wires) import none of engine, api, cli;
- the api never imports the cli; the cli imports the api only inside a function, and only its app
  factory (`faceledger serve`), so no other command loads the web framework;
- the CLI's search without SQLAlchemy (direct_search) imports none of engine, services, api, cli, and no
  module of the store but its direct reader and writer (and the stdlib pieces beside it): what it imports
  must not load SQLAlchemy (tests/test_cli_imports.py checks that at run time).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "faceledger"

STAGES = ("imaging", "detect", "embed", "quality", "pipeline", "faces", "index", "store", "ledger", "calibration")
CLI = ("cli", "cli_common", "cli_governance", "evaluate.cli")
API = ("api",)
SERVE_ALLOWED = {f"{PACKAGE}.api", f"{PACKAGE}.api.app"}
DIRECT = ("direct_search",)
DIRECT_STORE = {f"{PACKAGE}.store.{m}" for m in ("direct", "pragmas", "rows")}


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    lineno: int
    in_function: bool


def read_sources(root: Path = SRC) -> dict[str, tuple[str, bool]]:
    """{module name: (source text, is a package __init__)} for every .py file of the package."""
    found = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts = parts[:-1]
        found[".".join(parts)] = (path.read_text(), is_package)
    return found


def _absolute(module: str, is_package: bool, level: int, name: str | None) -> str:
    if level == 0:
        return name or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([name] if name else []))


class _Visitor(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, modules: set[str]) -> None:
        self.module, self.is_package, self.modules = module, is_package, modules
        self.depth = 0
        self.edges: list[Edge] = []

    def _add(self, target: str, node: ast.AST) -> None:
        # the longest prefix that is a module of the package (`from .x import name` where name is a function)
        while target and target not in self.modules:
            target = target.rpartition(".")[0]
        if target and target != self.module:
            self.edges.append(Edge(self.module, target, node.lineno, self.depth > 0))

    def visit_FunctionDef(self, node) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.orelse:  # `if TYPE_CHECKING:` imports are for type checkers only
                self.visit(child)
            return
        self.generic_visit(node)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.name.split(".")[0] == PACKAGE:
                self._add(alias.name, node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = _absolute(self.module, self.is_package, node.level, node.module)
        if base.split(".")[0] != PACKAGE:
            return
        for alias in node.names:
            full = f"{base}.{alias.name}"
            self._add(full if full in self.modules else base, node)


def import_edges(sources: dict[str, tuple[str, bool]]) -> list[Edge]:
    modules = set(sources)
    edges: list[Edge] = []
    for module, (text, is_package) in sources.items():
        visitor = _Visitor(module, is_package, modules)
        visitor.visit(ast.parse(text, filename=module))
        edges += visitor.edges
    return edges


def cycles(edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for e in edges:
        graph.setdefault(e.source, set()).add(e.target)
        graph.setdefault(e.target, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def _in(module: str, layer: tuple[str, ...]) -> bool:
    return any(module == f"{PACKAGE}.{m}" or module.startswith(f"{PACKAGE}.{m}.") for m in layer)


def violations(edges: list[Edge]) -> list[str]:
    """Every import that breaks a layering rule, as 'source:line -> target (rule)'."""
    found = []
    for e in edges:
        where = f"{e.source}:{e.lineno} -> {e.target}"
        if _in(e.source, STAGES) and _in(e.target, ("engine", "services", *API, *CLI)):
            found.append(f"{where} (a stage imports engine, services, api or cli)")
        if _in(e.source, ("services",)) and _in(e.target, ("engine", *API, *CLI)):
            found.append(f"{where} (a service imports engine, api or cli)")
        if _in(e.source, DIRECT) and _in(e.target, ("engine", "services", *API, *CLI)):
            found.append(f"{where} (the direct search imports engine, services, api or cli)")
        if _in(e.source, DIRECT + tuple(m.removeprefix(f"{PACKAGE}.") for m in DIRECT_STORE)) \
                and _in(e.target, ("store",)) and e.target not in DIRECT_STORE:
            found.append(f"{where} (the direct search reaches the SQLAlchemy store)")
        if _in(e.source, API) and _in(e.target, CLI):
            found.append(f"{where} (the api imports the cli)")
        if _in(e.source, CLI) and _in(e.target, API) and (not e.in_function or e.target not in SERVE_ALLOWED):
            found.append(f"{where} (the cli imports the api other than the app factory inside `serve`)")
    return found


@pytest.fixture(scope="module")
def sources() -> dict[str, tuple[str, bool]]:
    return read_sources()


def test_the_reader_sees_the_package(sources):
    edges = import_edges(sources)
    pairs = {(e.source, e.target) for e in edges}
    assert len(sources) > 40
    assert ("faceledger.api.routes", "faceledger.api.deps") in pairs
    assert ("faceledger.api.web", "faceledger.api.deps") in pairs
    assert ("faceledger.cli", "faceledger.cli_common") in pairs
    assert ("faceledger.evaluate.cli", "faceledger.cli_common") in pairs
    lazy = [e for e in edges if (e.source, e.target) == ("faceledger.cli", "faceledger.api")]
    assert lazy and all(e.in_function for e in lazy)  # `serve`'s import, seen although inside a function


def test_no_import_cycles(sources):
    assert cycles(import_edges(sources)) == []


def test_layers(sources):
    assert violations(import_edges(sources)) == []


def test_both_http_shells_use_the_one_dependency_layer(sources):
    for module in ("faceledger.api.routes", "faceledger.api.web"):
        text = sources[module][0]
        tree = ast.parse(text)
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert not defined & {"engine_of", "principal", "user", "current_user", "check_csrf", "error_page"}, module
    assert "from .web" not in sources["faceledger.api.security"][0]


def test_the_checks_catch_what_they_guard_against(sources):
    """Each rule fails when broken: a stage importing the api, a lazy cycle, the api importing the cli."""
    broken = dict(sources)

    def add(module: str, line: str) -> None:
        text, is_package = broken[module]
        broken[module] = (text + "\n\ndef _later():\n    " + line + "\n", is_package)

    add("faceledger.imaging", "from .api import deps")
    add("faceledger.detect.yunet", "from ..api import deps")
    add("faceledger.api.security", "from .web import router")  # the old cycle, inside a function
    add("faceledger.api.deps", "from .. import cli")
    add("faceledger.cli", "from .api.routes import router")
    add("faceledger.direct_search", "from .store import Gallery")
    add("faceledger.store.direct", "from .queries import face_subjects")
    found = violations(import_edges(broken))
    assert any(v.startswith("faceledger.direct_search:") and "SQLAlchemy store" in v for v in found)
    assert any(v.startswith("faceledger.store.direct:") and "SQLAlchemy store" in v for v in found)
    assert any(v.startswith("faceledger.imaging:") and "faceledger.api.deps" in v for v in found)
    assert any(v.startswith("faceledger.detect.yunet:") for v in found)
    assert any(v.startswith("faceledger.api.deps:") and "the api imports the cli" in v for v in found)
    assert any(v.startswith("faceledger.cli:") and "faceledger.api.routes" in v for v in found)
    assert any({"faceledger.api.security", "faceledger.api.web"} <= set(c) for c in cycles(import_edges(broken)))
    services = {"faceledger.services.search": ("from ..engine import Engine\n", False)}
    assert any("a service imports" in v for v in violations(import_edges({**sources, **services})))
