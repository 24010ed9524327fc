"""structlog set-up: readable on a terminal, JSON lines otherwise.

Events are names with key-values and carry ids only. As a second line of
defence, any value that looks like a personnummer is masked before output,
so a programming mistake cannot put one in a log file.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from sigbus.protocol.personnummer import PERSONNUMMER_PATTERN

REDACTED = "[redacted]"


def _redacted(value: Any) -> Any:
    """``value`` with every personnummer-shaped run masked, at any depth."""
    if isinstance(value, str):
        return PERSONNUMMER_PATTERN.sub(REDACTED, value)
    if isinstance(value, dict):
        return {_redacted(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_redacted(v) for v in value]
    return value


def redact_personnummer(
    _logger: object, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Runs after exceptions are formatted, so a traceback's text is masked too."""
    for key, value in list(event_dict.items()):
        event_dict[key] = _redacted(value)
    return event_dict


def _stderr_logger(*_args: object) -> structlog.PrintLogger:
    return structlog.PrintLogger(sys.stderr)


def configure_logging(*, json_output: bool | None = None, level: str = "info") -> None:
    if json_output is None:
        json_output = not sys.stderr.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if json_output
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    # asyncio warns "returning true from eof_received() has no effect when using ssl"
    # on every TLS close by the NATS client: harmless, and not for users' eyes.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_personnummer,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        # Look stderr up at each call: a captured stream (tests, CliRunner) may be gone later.
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=False,
    )
