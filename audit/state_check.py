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

import base64
import hashlib
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum

from sigbus.audit.entry import LogEntry
from sigbus.audit.errors import ExportError


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


def check_state_tail(
    entries: Iterable[LogEntry],
    records: Sequence[StateRecordRef],
    *,
    earlier: Iterable[str],
    pending_ingress_from: int | None,
) -> list[StateFinding]:
    """:func:`check_state_against_log` from a snapshot on (issue 11).

    ``entries`` are the hub records the snapshot held as logged but not stored
    yet, then every hub record logged after it; ``records`` the state records
    stored after it; ``earlier`` the message ids of the records the snapshot
    holds. A later record for one of those is a second record: injected.
    """
    before = set(earlier)
    findings = check_state_against_log(
        entries,
        [r for r in records if r.message_id not in before],
        pending_ingress_from=pending_ingress_from,
    )
    findings += [
        StateFinding(StateFault.INJECTED, r.message_id, None, r.seq)
        for r in records
        if r.message_id in before
    ]
    return sorted(findings, key=lambda f: (f.state_seq or 0, f.log_index or 0))


#: First line of a state dump (``sigbus audit export-state``); one JSON record a line after.
STATE_DUMP_FORMAT = "sigbus-state-dump/v1"


def state_dump_lines(last_seq: int, records: Iterable[tuple[int, str, bytes]]) -> Iterator[bytes]:
    """A state dump: the header, then ``{"message_id","record","seq"}`` per stored record."""
    yield json.dumps({"format": STATE_DUMP_FORMAT, "last_seq": last_seq}).encode() + b"\n"
    for seq, message_id, data in records:
        record = {"message_id": message_id, "record": base64.b64encode(data).decode(), "seq": seq}
        yield json.dumps(record, sort_keys=True).encode() + b"\n"


def parse_state_dump(lines: Iterable[bytes]) -> list[StateRecordRef]:
    """The dump's records with digests recomputed from their bytes; ExportError if malformed."""
    refs: list[StateRecordRef] = []
    header_seen = False
    for number, line in enumerate(lines, start=1):
        try:
            value = json.loads(line)
            if number == 1:
                if not isinstance(value, dict) or value.get("format") != STATE_DUMP_FORMAT:
                    raise ExportError(f"state dump line 1 is not a {STATE_DUMP_FORMAT} header")
                header_seen = True
                continue
            seq, message_id = value["seq"], value["message_id"]
            data = base64.b64decode(value["record"], validate=True)
        except (ValueError, KeyError, TypeError) as e:
            raise ExportError(f"state dump line {number} is not a state record") from e
        if not isinstance(seq, int) or not isinstance(message_id, str):
            raise ExportError(f"state dump line {number} is not a state record")
        refs.append(StateRecordRef.of(seq, message_id, data))
    if not header_seen:
        raise ExportError("state dump is empty (no header)")
    return refs
