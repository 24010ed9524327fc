"""The import contract holds for the tree, and catches each kind of inversion."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.import_contract import ROOT, SUBPACKAGES, check


def test_the_tree_keeps_the_contract() -> None:
    assert [str(v) for v in check()] == []


def _copy_tree(tmp_path: Path) -> Path:
    for sub in SUBPACKAGES:
        shutil.copytree(ROOT / sub, tmp_path / sub, ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "sigbus").mkdir()
    for path in (ROOT / "sigbus").glob("*.py"):
        shutil.copy(path, tmp_path / "sigbus" / path.name)
    return tmp_path


def _inject(root: Path, file: str, line: str) -> list[str]:
    before = set(check(root))
    path = root / file
    path.write_text(path.read_text() + f"\n{line}\n")
    return [v.rule for v in check(root) if v not in before]


def test_a_copy_of_the_tree_checks_like_the_tree(tmp_path: Path) -> None:
    assert [(v.module, v.rule) for v in check(_copy_tree(tmp_path))] == [
        (v.module, v.rule) for v in check()
    ]


def test_a_pure_core_importing_the_hub_fails(tmp_path: Path) -> None:
    rules = _inject(_copy_tree(tmp_path), "protocol/ids.py", "from sigbus.broker import service")
    assert rules == ["sigbus.protocol may not import the layer above it"]


def test_a_service_importing_the_command_line_fails(tmp_path: Path) -> None:
    rules = _inject(_copy_tree(tmp_path), "broker/service.py", "import sigbus.cli")
    assert rules == ["sigbus.broker may not import the layer above it"]


def test_the_hub_and_the_adapters_stay_apart(tmp_path: Path) -> None:
    rules = _inject(_copy_tree(tmp_path), "agents/runtime.py", "from sigbus.broker import pipeline")
    assert rules == ["sigbus.agents may not import its sibling sigbus.broker"]


def test_agencies_do_not_import_each_other(tmp_path: Path) -> None:
    rules = _inject(
        _copy_tree(tmp_path), "agents/police/__init__.py", "from sigbus.agents.school import x"
    )
    assert rules == ["agencies do not import each other"]


def test_a_pure_core_doing_io_fails(tmp_path: Path) -> None:
    root = _copy_tree(tmp_path)
    assert _inject(root, "policy/engine.py", "import nats") == ["a pure core does no I/O"]


def test_a_bare_top_level_import_fails(tmp_path: Path) -> None:
    rules = _inject(_copy_tree(tmp_path), "broker/state.py", "from protocol import ids")
    assert rules == ["import it as sigbus.protocol"]


def test_an_import_hidden_in_a_function_fails(tmp_path: Path) -> None:
    rules = _inject(
        _copy_tree(tmp_path),
        "transport/bus.py",
        "def _late() -> None:\n    from sigbus.transport import keystore  # noqa: F401",
    )
    assert rules == ["no import inside a function"]
