"""The hub state checked against the disclosure log: pure, no I/O.

Every hub record entry (case opened, consent event) carries ``state_sha256``:
SHA-256 over the exact encrypted state record as stored on ``SIGBUS_STATE``.
The record's ``Nats-Msg-Id`` is the message id of the entry. Against the log
a state stream can have a record dropped (an acknowledged hub record whose
record is missing), altered (other bytes than the ones logged), reordered (the
records are not in the order of their entries) or injected (a record no entry
names, or a second one for a message).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sigbus.audit.entry import LogEntry


class StateFault(StrEnum):
    DROPPED = "dropped"
    ALTERED = "altered"
    REORDERED = "reordered"
    INJECTED = "injected"


@dataclass(frozen=True)
class StateRecordRef:
    """One stored state record: its stream sequence, message id and digest."""

    seq: int
    message_id: str
    sha256: str

    @classmethod
    def of(cls, seq: int, message_id: str, data: bytes) -> StateRecordRef:
        return cls(seq=seq, message_id=message_id, sha256=hashlib.sha256(data).hexdigest())


@dataclass(frozen=True)
class StateFinding:
    fault: StateFault
    message_id: str
    log_index: int | None
    state_seq: int | None

    def describe(self) -> str:
        where = []
        if self.log_index is not None:
            where.append(f"log entry {self.log_index}")
        if self.state_seq is not None:
            where.append(f"state record {self.state_seq}")
        return f"{self.fault.value}: {', '.join(where)}"


def check_state_against_log(
    entries: Iterable[LogEntry],
    records: Sequence[StateRecordRef],
    *,
    pending_ingress_from: int | None,
) -> list[StateFinding]:
    """Every bound entry has its record, in log order, and every record its entry.

    An entry whose ingress message is not acknowledged yet (``ingress_seq >=
    pending_ingress_from``) may lack its record: the hub crashed between the
    log append and the state write, and the redelivered message redoes it.
    Offline (no consumer state) pass None: every missing record is dropped.
    """
    bound = [e for e in entries if e.state_sha256 is not None]
    by_message: dict[str, StateRecordRef] = {}
    findings: list[StateFinding] = []
    for record in records:
        if record.message_id in by_message:
            findings.append(StateFinding(StateFault.INJECTED, record.message_id, None, record.seq))
        else:
            by_message[record.message_id] = record
    named: set[str] = set()
    last_seq = 0
    for entry in bound:
        named.add(entry.message_id)
        stored = by_message.get(entry.message_id)
        if stored is None:
            in_flight = (
                pending_ingress_from is not None and entry.ingress_seq >= pending_ingress_from
            )
            if not in_flight:
                findings.append(
                    StateFinding(StateFault.DROPPED, entry.message_id, entry.index, None)
                )
            continue
        if stored.sha256 != entry.state_sha256:
            findings.append(
                StateFinding(StateFault.ALTERED, entry.message_id, entry.index, stored.seq)
            )
        elif stored.seq < last_seq:
            findings.append(
                StateFinding(StateFault.REORDERED, entry.message_id, entry.index, stored.seq)
            )
        last_seq = max(last_seq, stored.seq)
    for message_id, record in by_message.items():
        if message_id not in named:
            findings.append(StateFinding(StateFault.INJECTED, message_id, None, record.seq))
    return sorted(findings, key=lambda f: (f.state_seq or 0, f.log_index or 0))
