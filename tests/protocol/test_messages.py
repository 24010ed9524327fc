"""Body schemas: strict, closed, personnummer validated and screened (pure)."""

from __future__ import annotations

import json

import pytest

from sigbus.protocol.envelope import parse_body
from sigbus.protocol.errors import BodyValidationError
from sigbus.protocol.ids import MessageType
from sigbus.protocol.reasons import ReasonCode

VALID_PNR = "20100315-9801"  # fictitious (serial 98x), valid check digit
REFERRAL = {
    "kind": "lul_6_notification",
    "personnummer": VALID_PNR,
    "reasons": ["suspected_offence"],
    "observed_on": "2026-11-20",
    "contact_function": "police_youth_unit",
}


def parse(msg_type: MessageType, doc: dict[str, object]) -> object:
    return parse_body(msg_type, json.dumps(doc).encode())


def test_valid_referral_parses_and_normalises() -> None:
    body = parse(MessageType.REFERRAL, {**REFERRAL, "personnummer": "201003159801"})
    assert body.personnummer == VALID_PNR


def test_extra_field_is_rejected() -> None:
    with pytest.raises(BodyValidationError) as info:
        parse(MessageType.REFERRAL, {**REFERRAL, "narrative": "free text"})
    assert info.value.reason is ReasonCode.SCHEMA_INVALID


@pytest.mark.parametrize("pnr", ["20100315-9802", "20101315-9801", "1003159801", "abc"])
def test_bad_personnummer_is_rejected_without_echoing_it(pnr: str) -> None:
    with pytest.raises(BodyValidationError) as info:
        parse(MessageType.REFERRAL, {**REFERRAL, "personnummer": pnr})
    assert info.value.reason is ReasonCode.PERSONNUMMER_INVALID
    assert pnr not in str(info.value)


@pytest.mark.parametrize("note", ["see 201003159801", "id 100315-9801", "x 1003159801 y"])
def test_personnummer_pattern_in_free_text_is_rejected(note: str) -> None:
    doc = {
        "commitment_id": "cm-abcdef",
        "status": "in_progress",
        "as_of": "2026-11-20",
        "note": note,
    }
    with pytest.raises(BodyValidationError) as info:
        parse(MessageType.COMMITMENT_STATUS, doc)
    assert info.value.reason is ReasonCode.PERSONNUMMER_IN_FREE_TEXT
    assert note not in str(info.value)


def test_wrong_version_is_rejected() -> None:
    with pytest.raises(BodyValidationError):
        parse(MessageType.REFERRAL, {**REFERRAL, "version": 2})


def test_unknown_code_is_rejected() -> None:
    with pytest.raises(BodyValidationError):
        parse(MessageType.REFERRAL, {**REFERRAL, "reasons": ["looks_suspicious"]})


def test_consent_event_shape_follows_action() -> None:
    withdrawn = {
        "consent_id": "consent-abcd",
        "action": "withdrawn",
        "consenter_role": "guardian",
        "guardian_ref": "vh-1",
        "acted_at": "2026-11-20T10:00:00+01:00",
        "recorded_by": "social_case_worker",
    }
    parse(MessageType.CONSENT_EVENT, withdrawn)
    with pytest.raises(BodyValidationError):
        parse(MessageType.CONSENT_EVENT, {**withdrawn, "action": "given"})  # no scope
    with pytest.raises(BodyValidationError):
        parse(MessageType.CONSENT_EVENT, {**withdrawn, "guardian_ref": None})


def test_ids_cannot_carry_a_personnummer() -> None:
    doc = {"commitment_id": "cm-201003159801", "status": "done", "as_of": "2026-11-20"}
    with pytest.raises(BodyValidationError):
        parse(MessageType.COMMITMENT_STATUS, doc)


def test_a_guardian_ref_cannot_carry_a_personnummer() -> None:
    doc = {
        "personnummer": "201003159801",
        "guardians_with_custody": ["vh-201003159801"],
        "parties": ["police", "social"],
    }
    with pytest.raises(BodyValidationError) as info:
        parse(MessageType.CASE_OPENED, doc)
    assert "201003159801" not in str(info.value)


def test_a_field_named_like_a_personnummer_is_not_echoed() -> None:
    with pytest.raises(BodyValidationError) as info:
        parse(MessageType.REFERRAL, {**REFERRAL, "201003159801": "x"})
    assert "201003159801" not in str(info.value)
    assert "#" in str(info.value)
