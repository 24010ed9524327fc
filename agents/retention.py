"""An adapter's retention pass (issue 13): the hub's schedule, applied to what the adapter stored.

The outbox keeps each sent envelope after the bus took it (a retry's content check),
the processed store each handed-on release id, and a file sink each opened release.
On the schedule of the rules file (``[retention]``, :mod:`sigbus.policy.retention`)
all three go: rows deleted (then the SQLite file vacuumed), lines and files removed.
A webhook sink keeps nothing here: the receiving case system applies its own rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog

from sigbus.agents.casesystem import CaseSystem, DirectoryCaseSystem, JsonlCaseSystem
from sigbus.agents.outbox import Outbox
from sigbus.policy.retention import due
from sigbus.policy.rules import Rules

log = structlog.get_logger("sigbus.adapter.retention")


@dataclass(frozen=True)
class RetentionResult:
    outbox: int
    processed: int
    documents: int


def apply_retention(
    rules: Rules, now: datetime, *, outbox: Outbox | None, sink: CaseSystem | None
) -> RetentionResult:
    """Delete what the period of its category ended for, as of ``now``."""
    expired = due(rules, outbox.kept(), now) if outbox is not None else []
    if outbox is not None:
        outbox.forget(expired)
    documents = 0
    if isinstance(sink, JsonlCaseSystem | DirectoryCaseSystem):
        documents = sink.expire(rules, now)
    result = RetentionResult(
        outbox=sum(1 for k in expired if k.table == "outbox"),
        processed=sum(1 for k in expired if k.table == "processed"),
        documents=documents,
    )
    log.info(
        "adapter_retention",
        outbox=result.outbox,
        processed=result.processed,
        documents=result.documents,
    )
    return result
