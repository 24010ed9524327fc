"""The fast entry check agrees with pydantic + RFC 8785 in both directions."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from audit_fixtures import make_entries
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from sigbus.audit.entry import ConsentRef, EntryOutcome, LogEntry
from sigbus.audit.entry_line import check_entry_line, diagnose_entry_line
from sigbus.protocol.codes import ConsentAction, ConsenterRole
from sigbus.protocol.ids import MessageType

text = st.text(max_size=12)
#: Any agency name (profiles make agencies data): the pattern, minus six-digit runs.
agency_names = st.from_regex(r"\A[a-z][a-z0-9_]{1,30}\Z").filter(
    lambda name: re.search(r"[0-9]{6}", name) is None
)
optional_text = st.none() | text
safe_ints = st.integers(min_value=0, max_value=2**53 - 1)

entries = st.builds(
    LogEntry,
    index=safe_ints,
    prev_leaf_hash=st.text("0123456789abcdef", min_size=64, max_size=64),
    decision_id=text,
    decided_at=st.datetimes(
        min_value=datetime(1970, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from(
            [UTC, timezone(timedelta(hours=1)), timezone(timedelta(hours=-5, minutes=-30))]
        ),
    ),
    ingress_seq=safe_ints,
    message_id=text,
    message_type=st.none() | st.sampled_from(MessageType),
    sender=st.none() | agency_names,
    recipient=st.none() | agency_names,
    subject_ref=optional_text,
    case_ref=optional_text,
    legal_basis=optional_text,
    statutory=st.booleans(),
    consent_refs=st.lists(
        st.builds(
            ConsentRef, consent_id=text, revision=st.integers(min_value=1, max_value=2**53 - 1)
        ),
        max_size=2,
    ).map(tuple),
    rule_ids=st.lists(text, max_size=2).map(tuple),
    rules_hash=optional_text,
    ciphertext_sha256=optional_text,
    outcome=st.sampled_from(EntryOutcome),
    reasons=st.lists(text, max_size=2).map(tuple),
    release_id=optional_text,
    consent_action=st.none() | st.sampled_from(ConsentAction),
    consenter_role=st.none() | st.sampled_from(ConsenterRole),
    state_sha256=st.none() | st.text("0123456789abcdef", min_size=64, max_size=64),
)


def slow_is_canonical_entry(line: bytes) -> bool:
    try:
        return LogEntry.model_validate_json(line).canonical_bytes() == line
    except (ValidationError, ValueError):
        return False


@given(entry=entries)
@settings(max_examples=300)
def test_every_canonical_entry_is_accepted(entry: LogEntry) -> None:
    line = entry.canonical_bytes()
    match = check_entry_line(line)
    assert match is not None
    assert int(match[2]) == entry.index
    assert match[3].decode() == entry.prev_leaf_hash


@given(entry=entries, data=st.data())
@settings(max_examples=400)
def test_accepted_mutations_are_exactly_canonical_entries(
    entry: LogEntry, data: st.DataObject
) -> None:
    line = bytearray(entry.canonical_bytes())
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(line) - 1))
        line[position] = data.draw(
            st.sampled_from(
                [*b'"\\ 0129aZ{}[],:-+.eE\x00\x1fu', 0xC3, 0xA9, 0xFF, line[position] ^ 1]
            )
        )
    mutated = bytes(line)
    assert (check_entry_line(mutated) is not None) == slow_is_canonical_entry(mutated)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b'"version":3', b'"version":2'),  # the format before state-bound hub records
        (b'"state_sha256":null', b'"state_sha256":"00"'),
        (b'"consent_action":null', b'"consent_action":"maybe"'),
        (b'"index":', b'"index": '),
        (b'"statutory":false', b'"statutory":0'),
        (b'"outcome":"release"', b'"outcome":"maybe"'),
        (b'"case_ref":"case-0001"', b'"case_ref":"case\\u002d0001"'),
        (b'"case_ref":"case-0001"', b'"case_ref":"case\\/0001"'),
        (b'"ingress_seq":11', b'"ingress_seq":11.0'),
        (b'"ingress_seq":11', b'"ingress_seq":9007199254740992'),
        (b'"ingress_seq":11', b'"ingress_seq":011'),
        (b"2026-11-23T", b"2026-02-30T"),
        (b'"revision":1', b'"revision":0'),
    ],
)
def test_non_canonical_or_invalid_variants_are_rejected(old: bytes, new: bytes) -> None:
    line = make_entries(2)[1]
    assert old in line
    mutated = line.replace(old, new, 1)
    assert check_entry_line(mutated) is None
    assert not slow_is_canonical_entry(mutated)
    assert diagnose_entry_line(mutated)


def test_control_characters_use_rfc8785_escapes() -> None:
    entry = LogEntry.model_validate_json(make_entries(1)[0]).model_copy(
        update={"case_ref": 'a\x01\x1f\x7f\b\t\n\f\r"\\é\u2028'}
    )
    line = entry.canonical_bytes()
    assert b"\\u0001" in line
    assert b"\\b" in line
    assert check_entry_line(line) is not None
    assert check_entry_line(line.replace(b"\\u001f", b"\\u001F")) is None
