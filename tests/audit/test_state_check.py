"""The pure state-against-log check: a dropped, altered, reordered or injected record."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from sigbus.audit.entry import GENESIS_PREV_HASH, EntryOutcome, LogEntry
from sigbus.audit.errors import ExportError
from sigbus.audit.state_check import (
    StateFault,
    StateRecordRef,
    check_state_against_log,
    check_state_tail,
    parse_state_dump,
    state_dump_lines,
)
from sigbus.protocol.codes import ConsentAction, ConsenterRole
from sigbus.protocol.ids import MessageType

NOW = datetime(2026, 12, 3, 7, 0, tzinfo=UTC)


def _entry(index: int, data: bytes | None, action: ConsentAction | None) -> LogEntry:
    return LogEntry(
        index=index,
        prev_leaf_hash=GENESIS_PREV_HASH,
        decision_id=f"dec-{index}",
        decided_at=NOW,
        ingress_seq=index + 1,
        message_id=f"msg-{index}",
        message_type=MessageType.CONSENT_EVENT if action else MessageType.CASE_OPENED,
        sender="social",
        recipient="hub" if data is not None else "school",
        subject_ref="sref-1",
        case_ref="case-1",
        legal_basis=None,
        rules_hash="ab" * 32,
        ciphertext_sha256="cd" * 32,
        outcome=EntryOutcome.RECORDED if data is not None else EntryOutcome.RELEASE,
        consent_action=action,
        consenter_role=ConsenterRole.GUARDIAN if action else None,
        state_sha256=StateRecordRef.of(0, "", data).sha256 if data is not None else None,
    )


# The log: case opened, consent given, a release, then the withdrawal.
SEALED = {0: b"sealed-open", 1: b"sealed-given", 3: b"sealed-withdrawn"}
ENTRIES = [_entry(0, SEALED[0], None), _entry(1, SEALED[1], ConsentAction.GIVEN)]
ENTRIES += [_entry(2, None, None), _entry(3, SEALED[3], ConsentAction.WITHDRAWN)]
RECORDS = [StateRecordRef.of(seq, f"msg-{i}", SEALED[i]) for seq, i in ((1, 0), (2, 1), (3, 3))]
ACKED_ALL = 5  # the first ingress sequence not acknowledged


def _faults(
    records: list[StateRecordRef], pending: int | None = ACKED_ALL
) -> list[tuple[str, str]]:
    findings = check_state_against_log(ENTRIES, records, pending_ingress_from=pending)
    return [(f.fault.value, f.message_id) for f in findings]


def test_matching_state_has_no_finding() -> None:
    assert _faults(RECORDS) == []
    assert _faults(RECORDS, pending=None) == []


def test_a_dropped_withdrawal_is_named() -> None:
    findings = check_state_against_log(ENTRIES, RECORDS[:2], pending_ingress_from=ACKED_ALL)
    assert [(f.fault, f.log_index) for f in findings] == [(StateFault.DROPPED, 3)]
    assert "log entry 3" in findings[0].describe()


def test_the_record_of_the_message_in_flight_may_be_missing() -> None:
    # Crash between the log append and the state write: message 4 is not acked.
    assert _faults(RECORDS[:2], pending=4) == []
    # Offline nothing is in flight: the same gap is a finding.
    assert _faults(RECORDS[:2], pending=None) == [("dropped", "msg-3")]


def test_an_altered_withdrawal_is_named() -> None:
    altered = [*RECORDS[:2], StateRecordRef.of(3, "msg-3", b"sealed-given-again")]
    assert _faults(altered) == [("altered", "msg-3")]


def test_reordered_records_are_named() -> None:
    swapped = [
        RECORDS[0],
        StateRecordRef(2, "msg-3", RECORDS[2].sha256),
        StateRecordRef(3, "msg-1", RECORDS[1].sha256),
    ]
    assert _faults(swapped) == [("reordered", "msg-3")]


def test_an_injected_record_is_named() -> None:
    injected = [*RECORDS, StateRecordRef.of(4, "msg-forged", b"sealed-extra")]
    assert _faults(injected) == [("injected", "msg-forged")]


def test_a_second_record_for_one_message_is_injected() -> None:
    twice = [*RECORDS, StateRecordRef.of(4, "msg-3", b"sealed-other")]
    assert _faults(twice) == [("injected", "msg-3")]


def test_a_withdrawal_deleted_and_republished_is_caught() -> None:
    # What an operator can do on JetStream: delete the record, publish another.
    edited = [*RECORDS[:2], StateRecordRef.of(4, "msg-3", b"sealed-other")]
    assert _faults(edited) == [("altered", "msg-3")]


def test_a_state_dump_round_trips_and_a_malformed_one_is_refused() -> None:
    lines = list(state_dump_lines(2, [(1, "msg-0", SEALED[0]), (2, "msg-1", SEALED[1])]))
    assert parse_state_dump(lines) == RECORDS[:2]
    for bad in ([], [b'{"format":"other"}\n'], [lines[0], b'{"seq":1}\n'], [lines[0], b"\xff\n"]):
        with pytest.raises(ExportError):
            parse_state_dump(bad)


def test_the_tail_after_a_snapshot_is_checked_like_the_whole() -> None:
    """A snapshot holds records 1-2 (msg-0, msg-1); the tail is the withdrawal."""
    earlier = ("msg-0", "msg-1")
    tail = ENTRIES[2:]
    ok = check_state_tail(tail, RECORDS[2:], earlier=earlier, pending_ingress_from=ACKED_ALL)
    assert ok == []
    # The withdrawal's record dropped after the snapshot: found in the tail.
    dropped = check_state_tail(tail, [], earlier=earlier, pending_ingress_from=ACKED_ALL)
    assert [(f.fault.value, f.message_id) for f in dropped] == [("dropped", "msg-3")]
    # A second record for a message the snapshot already holds: injected.
    again = StateRecordRef.of(4, "msg-1", b"sealed-given")
    injected = check_state_tail(
        tail, [*RECORDS[2:], again], earlier=earlier, pending_ingress_from=ACKED_ALL
    )
    assert [(f.fault.value, f.message_id) for f in injected] == [("injected", "msg-1")]
