"""The decision notice: signed under its own domain, told apart from a release, bounded."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from sigbus.agents.notice_text import describe_notice
from sigbus.audit.entry import EntryOutcome, LogEntry
from sigbus.broker.notices import notice_for
from sigbus.protocol.canonical import RELEASE_RECORD_DOMAIN, canonical_json
from sigbus.protocol.errors import EnvelopeFormatError, NoticeError
from sigbus.protocol.ids import MessageType
from sigbus.protocol.notice import (
    DecisionNotice,
    NoticeItem,
    NoticeOutcome,
    SignedNotice,
    notice_id_for,
    parse_inbox_item,
    sign_notice,
    verify_notice,
)
from sigbus.protocol.signing import HybridPrivateKey

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
KEY = HybridPrivateKey.generate()


def _notice(**changes: object) -> DecisionNotice:
    fields: dict[str, object] = {
        "notice_id": notice_id_for("msg-abcdefghij", 7),
        "message_id": "msg-abcdefghij",
        "message_type": MessageType.MEETING_NOTICE,
        "sender": "social",
        "decided_at": NOW,
        "items": (
            NoticeItem(recipient="police", outcome=NoticeOutcome.RELEASED, log_index=3),
            NoticeItem(
                recipient="school",
                outcome=NoticeOutcome.DENIED,
                reasons=("policy:consent_missing:guardian:vh-1",),
                log_index=4,
            ),
        ),
        "hub_key_id": "hub-sign-1",
    }
    return DecisionNotice(**{**fields, **changes})  # type: ignore[arg-type]


def _entry(index: int, outcome: EntryOutcome, recipient: str | None, **kw: object) -> LogEntry:
    fields: dict[str, object] = {
        "index": index,
        "prev_leaf_hash": "0" * 64,
        "decision_id": "dec-1",
        "decided_at": NOW,
        "ingress_seq": 9,
        "message_id": "msg-abcdefghij",
        "message_type": MessageType.CONSENT_EVENT,
        "sender": "social",
        "recipient": recipient,
        "subject_ref": "sref-abc",
        "case_ref": "case-abcdefghijkl",
        "legal_basis": None,
        "rules_hash": "r" * 64,
        "ciphertext_sha256": "c" * 64,
        "outcome": outcome,
    }
    return LogEntry(**{**fields, **kw})  # type: ignore[arg-type]


def test_a_signed_notice_verifies_and_round_trips_through_the_inbox() -> None:
    signed = sign_notice(_notice(), KEY)
    item = parse_inbox_item(signed.to_wire())
    assert isinstance(item, SignedNotice)
    assert verify_notice(item, KEY.public_key(), me="social") == _notice()


@pytest.mark.parametrize(
    "tamper",
    [
        {"items": (NoticeItem(recipient="school", outcome=NoticeOutcome.RELEASED, log_index=4),)},
        {"message_id": "msg-otherother"},
        {"hub_key_id": "hub-sign-2"},
    ],
    ids=["deny-made-release", "other-message", "other-key-id"],
)
def test_a_changed_notice_does_not_verify(tamper: dict[str, object]) -> None:
    signed = sign_notice(_notice(), KEY)
    changed = SignedNotice(notice=_notice(**tamper), signature=signed.signature)
    with pytest.raises(NoticeError, match="does not verify"):
        verify_notice(changed, KEY.public_key(), me="social")


def test_a_notice_for_another_agency_and_a_release_signature_are_refused() -> None:
    with pytest.raises(NoticeError, match="another agency"):
        verify_notice(sign_notice(_notice(), KEY), KEY.public_key(), me="police")
    # A hub signature made under the release-record domain never passes for a notice.
    cross = SignedNotice(
        notice=_notice(), signature=KEY.sign(RELEASE_RECORD_DOMAIN + canonical_json(_notice()))
    )
    with pytest.raises(NoticeError):
        verify_notice(cross, KEY.public_key(), me="social")


@pytest.mark.parametrize(
    "raw", [b"[]", b"not json", b'{"kind": "evil"}', b'{"kind": "decision_notice"}']
)
def test_inbox_items_of_no_known_shape_are_refused(raw: bytes) -> None:
    with pytest.raises(EnvelopeFormatError):
        parse_inbox_item(raw)


def test_a_reason_with_spaces_or_personal_text_does_not_fit() -> None:
    with pytest.raises(ValidationError):
        NoticeItem(recipient="school", outcome=NoticeOutcome.DENIED, reasons=("a b",), log_index=1)


def test_hub_records_are_confirmed_or_refused_and_disclosures_released_or_denied() -> None:
    recorded = notice_for([_entry(5, EntryOutcome.RECORDED, "hub")], hub_key_id="k")
    refused = notice_for(
        [_entry(6, EntryOutcome.DENY, None, reasons=("consent_conflict",))], hub_key_id="k"
    )
    shared = notice_for(
        [
            _entry(7, EntryOutcome.RELEASE, "police", message_type=MessageType.MEETING_NOTICE),
            _entry(8, EntryOutcome.DENY, "school", message_type=MessageType.MEETING_NOTICE),
        ],
        hub_key_id="k",
    )
    assert recorded is not None
    assert refused is not None
    assert shared is not None
    assert [(i.outcome, i.log_index) for i in recorded.items] == [(NoticeOutcome.CONFIRMED, 5)]
    assert recorded.all_taken
    assert not refused.all_taken
    assert not shared.all_taken
    assert refused.items[0].outcome is NoticeOutcome.REFUSED
    assert refused.items[0].reasons == ("consent_conflict",)
    assert [i.outcome for i in shared.items] == [NoticeOutcome.RELEASED, NoticeOutcome.DENIED]
    # Nothing of the entry that names the person or the case reaches the notice.
    text = recorded.model_dump_json()
    assert "sref-" not in text
    assert "case-" not in text
    assert notice_for([], hub_key_id="k") is None
    assert notice_for([_entry(1, EntryOutcome.DENY, None, sender=None)], hub_key_id="k") is None


def test_the_notice_in_plain_words() -> None:
    lines = describe_notice(_notice())
    assert lines == [
        "decision for meeting_notice msg-abcdefghij: denied for 1 of 2 recipient(s)",
        "  released to police (log index 3)",
        "  DENIED to school: policy:consent_missing:guardian:vh-1 (log index 4)",
    ]
    refused = _notice(
        items=(
            NoticeItem(
                recipient=None,
                outcome=NoticeOutcome.REFUSED,
                reasons=("consent_conflict",),
                log_index=9,
            ),
        )
    )
    assert describe_notice(refused)[0].endswith(": refused")
    assert "REFUSED by the hub, nothing changed: consent_conflict" in describe_notice(refused)[1]
