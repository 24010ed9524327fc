"""The benchmark runs end to end at a tiny size and Cedar agrees on every request.

Not a timed test: latency figures come from ``python bench/policy_bench.py``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "policy_bench.py"


def test_bench_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    spec = importlib.util.spec_from_file_location("policy_bench", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--store", "300", "--requests", "400"]) == 0  # 0: full agreement
    out = capsys.readouterr().out
    assert "agreeing decisions: 400/400" in out
    assert "cedarpy.is_authorized" in out
