"""The logs' second line of defence: personnummer-shaped text is masked at any depth,
also inside a formatted exception."""

from __future__ import annotations

import pytest
import structlog

from sigbus.transport.logging import configure_logging

FICTITIOUS = ("201003159801", "20100315-9801", "1003159801", "100315-9801")


def _fail() -> None:
    raise ValueError(f"bad input {FICTITIOUS[2]} and {FICTITIOUS[3]}")


def test_nested_values_and_tracebacks_are_masked(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(json_output=True, level="info")
    log = structlog.get_logger("test")
    log.info("nested", detail={"who": [f"x {FICTITIOUS[0]}", (FICTITIOUS[1],)]})
    try:
        _fail()
    except ValueError:
        log.exception("failed")
    err = capsys.readouterr().err
    assert "[redacted]" in err
    assert "ValueError" in err  # the traceback is kept, only the number is masked
    for form in FICTITIOUS:
        assert form not in err
