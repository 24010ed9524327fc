"""The import contract: layers point down, agencies stay apart, pure cores do no I/O.

``make test`` runs it (``tests/test_import_contract.py``); ``python
tests/import_contract.py`` prints the violations on its own. It reads sources
with :mod:`ast` and runs none of them, so an import hidden inside a function
counts as much as one at the top of a module.

Layers, top to bottom (a module may import its own layer or any lower one;
siblings in one layer may not import each other; no module imports one of ours
inside a function, which is how module cycles hide)::

    sigbus            the command line (sigbus/*.py): the only place that wires everything
    broker | agents   services: the hub, and the adapter runtime with one package per agency
    transport         the shared edge: NATS, streams, TLS, the embedded server, key files
    policy | audit    pure cores
    protocol          the pure wire format every party shares
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Each inner tuple is one layer; earlier layers sit above later ones.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("sigbus",),
    ("sigbus.broker", "sigbus.agents"),
    ("sigbus.transport",),
    ("sigbus.policy", "sigbus.audit"),
    ("sigbus.protocol",),
)
PURE = (
    "sigbus.protocol",
    "sigbus.policy",
    "sigbus.audit",
    # The console's shaping of rows, its log status and its strings (the views do the I/O).
    "sigbus.console.shaping",
    "sigbus.console.status",
    "sigbus.console.i18n",
)
#: Modules that mean I/O, processes, the network or the clock's side effects.
PURE_FORBIDDEN = (
    "nats",
    "asyncio",
    "subprocess",
    "multiprocessing",
    "concurrent",
    "socket",
    "ssl",
    "shutil",
    "pathlib",
    "structlog",
    "logging",
)
#: The product's top-level folders; installed they are ``sigbus.<name>``.
SUBPACKAGES = ("protocol", "policy", "audit", "broker", "agents", "transport", "console")
AGENCY_PARENT = "sigbus.agents"


@dataclass(frozen=True)
class Violation:
    module: str
    line: int
    imported: str
    rule: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported}: {self.rule}"


def modules(root: Path) -> Iterator[tuple[str, Path]]:
    """(module name, file) for every source file of the distribution under ``root``."""
    for sub in SUBPACKAGES:
        for path in sorted((root / sub).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(("sigbus", *parts)), path
    for path in sorted((root / "sigbus").glob("*.py")):
        name = path.stem
        yield ("sigbus" if name == "__init__" else f"sigbus.{name}"), path


def local_imports(path: Path) -> Iterator[tuple[int, str]]:
    """Imports of our own modules inside a function: the way module cycles hide."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for func in ast.walk(tree):
        if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(func):
            if isinstance(node, ast.ImportFrom) and (node.level or _ours(node.module or "")):
                yield node.lineno, node.module or "."
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if _ours(alias.name):
                        yield node.lineno, alias.name


def _ours(name: str) -> bool:
    return name == "sigbus" or name.startswith("sigbus.")


def imports(path: Path, module: str) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            if node.module is None or node.level:
                # ``from . import x`` or ``from sigbus import config``: each name may be a module.
                for alias in node.names:
                    yield node.lineno, f"{base}.{alias.name}"
            else:
                yield node.lineno, base
                if base in ("sigbus", *(f"sigbus.{s}" for s in SUBPACKAGES)):
                    for alias in node.names:
                        yield node.lineno, f"{base}.{alias.name}"


def _within(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def layer_of(name: str) -> tuple[int, str] | None:
    """(layer index, package) of a module of ours; None for a foreign module."""
    for index, layer in enumerate(LAYERS):
        for package in layer:
            if package != "sigbus" and _within(name, package):
                return index, package
    if _within(name, "sigbus"):
        return 0, "sigbus"
    return None


def check_module(
    module: str, imported: str, line: int, agencies: frozenset[str] = frozenset()
) -> Violation | None:
    top = imported.split(".")[0]
    if top in SUBPACKAGES:
        return Violation(module, line, imported, f"import it as sigbus.{imported}")
    here = layer_of(module)
    assert here is not None
    if any(_within(module, p) for p in PURE) and top in PURE_FORBIDDEN:
        return Violation(module, line, imported, "a pure core does no I/O")
    there = layer_of(imported)
    if there is None:
        return None
    (mine, my_pkg), (theirs, their_pkg) = here, there
    if theirs < mine:
        return Violation(module, line, imported, f"{my_pkg} may not import the layer above it")
    if theirs == mine and my_pkg != their_pkg:
        return Violation(module, line, imported, f"{my_pkg} may not import its sibling {their_pkg}")
    mine_agency = _agency(module, agencies)
    theirs_agency = _agency(imported, agencies)
    if mine_agency and theirs_agency and mine_agency != theirs_agency:
        return Violation(module, line, imported, "agencies do not import each other")
    return None


def _agency(name: str, agencies: frozenset[str]) -> str | None:
    """``police`` for ``sigbus.agents.police.cli``: a package below the agents runtime."""
    parts = name.split(".")
    if len(parts) >= 3 and ".".join(parts[:2]) == AGENCY_PARENT and parts[2] in agencies:
        return parts[2]
    return None


def agency_packages(root: Path) -> frozenset[str]:
    return frozenset(d.name for d in (root / "agents").iterdir() if (d / "__init__.py").is_file())


def check(root: Path = ROOT) -> list[Violation]:
    found: list[Violation] = []
    seen: set[tuple[str, int, str]] = set()
    agencies = agency_packages(root)
    for module, path in modules(root):
        for line, imported in local_imports(path):
            found.append(Violation(module, line, imported, "no import inside a function"))
        for line, imported in imports(path, module):
            violation = check_module(module, imported, line, agencies)
            # ``from sigbus.broker import service`` names two modules: one finding a line.
            if violation is not None and (module, line, violation.rule) not in seen:
                seen.add((module, line, violation.rule))
                found.append(violation)
    return found


if __name__ == "__main__":
    problems = check()
    for problem in problems:
        print(problem)
    print(f"import contract: {len(problems)} violation(s)")
    sys.exit(1 if problems else 0)
