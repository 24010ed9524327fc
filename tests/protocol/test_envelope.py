"""Envelope round trip and tamper detection (pure: no server)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from sigbus.fixtures import fictitious_personnummer
from sigbus.protocol.codes import ReferralKind, ReferralReason
from sigbus.protocol.envelope import (
    Envelope,
    Header,
    open_body,
    parse_body,
    parse_envelope,
    seal_envelope,
    verify_sender,
)
from sigbus.protocol.errors import EnvelopeFormatError, OpenError, SignatureError
from sigbus.protocol.identity import AgencyIdentity
from sigbus.protocol.ids import HUB, MessageType
from sigbus.protocol.messages import Referral
from sigbus.protocol.reasons import ReasonCode
from sigbus.transport.keystore import load_directory, load_private

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def police(keys_dir: Path) -> AgencyIdentity:
    return load_private(keys_dir, "police").identity()


@pytest.fixture(scope="module")
def hub(keys_dir: Path) -> AgencyIdentity:
    return load_private(keys_dir, HUB).identity()


def referral() -> Referral:
    return Referral(
        kind=ReferralKind.LUL_6_NOTIFICATION,
        personnummer=fictitious_personnummer(date(2010, 3, 15), 981),
        reasons=(ReferralReason.SUSPECTED_OFFENCE,),
        observed_on=date(2026, 11, 20),
        contact_function="police_youth_unit",
    )


def sealed(police: AgencyIdentity, hub: AgencyIdentity, keys_dir: Path) -> Envelope:
    directory = load_directory(keys_dir)
    hub_key = directory.sealing_key(HUB, at=NOW)
    assert hub_key.suite is not None
    header = Header(
        message_id="msg-roundtripcase",
        type=MessageType.REFERRAL,
        sender="police",
        sender_key_id=police.signing_key_id,
        created_at=NOW,
        recipients=("social",),
        suite=hub_key.suite,
    )
    return seal_envelope(
        header,
        referral(),
        police,
        recipient=HUB,
        recipient_key_id=hub_key.key_id,
        recipient_public=hub_key.public_key,
    )


def test_round_trip_opens_to_the_same_body(
    police: AgencyIdentity, hub: AgencyIdentity, keys_dir: Path
) -> None:
    env = parse_envelope(sealed(police, hub, keys_dir).to_wire())
    verify_sender(env, police.signing_key.public_key())
    body = parse_body(
        env.header.type, open_body(env, recipient=HUB, suite_private=hub.sealing_private)
    )
    assert body == referral()


def test_wire_carries_no_personnummer(
    police: AgencyIdentity, hub: AgencyIdentity, keys_dir: Path
) -> None:
    wire = sealed(police, hub, keys_dir).to_wire()
    pnr = referral().personnummer
    assert pnr.encode() not in wire
    assert pnr.replace("-", "").encode() not in wire


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


@pytest.mark.parametrize("field", ["ciphertext", "nonce"])
def test_any_ciphertext_byte_change_breaks_the_signature(
    police: AgencyIdentity, hub: AgencyIdentity, keys_dir: Path, field: str
) -> None:
    env = sealed(police, hub, keys_dir)
    original: bytes = getattr(env, field)
    for at in range(0, len(original), max(1, len(original) // 7)):
        tampered = env.model_copy(update={field: _flip(original, at)})
        with pytest.raises(SignatureError):
            verify_sender(tampered, police.signing_key.public_key())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("message_id", "msg-anotheridentity"),
        ("sender", "school"),
        ("recipients", ("social", "school")),
        ("created_at", datetime(2026, 11, 23, 10, 1, tzinfo=UTC)),
        ("case_ref", "case-injected"),
    ],
)
def test_any_header_change_breaks_the_signature(
    police: AgencyIdentity, hub: AgencyIdentity, keys_dir: Path, field: str, value: object
) -> None:
    env = sealed(police, hub, keys_dir)
    tampered = env.model_copy(update={"header": env.header.model_copy(update={field: value})})
    with pytest.raises(SignatureError):
        verify_sender(tampered, police.signing_key.public_key())


def test_changed_signature_byte_is_rejected(
    police: AgencyIdentity, hub: AgencyIdentity, keys_dir: Path
) -> None:
    env = sealed(police, hub, keys_dir)
    for at in (0, 31, 63):
        with pytest.raises(SignatureError):
            verify_sender(
                env.model_copy(update={"signature": _flip(env.signature, at)}),
                police.signing_key.public_key(),
            )


def test_tampered_sealed_key_breaks_the_signature(
    police: AgencyIdentity, hub: AgencyIdentity, keys_dir: Path
) -> None:
    """The sender signs the sealed key's digest and its key id (issue #10)."""
    env = sealed(police, hub, keys_dir)
    for update in (
        {"sealed_key": _flip(env.sealed_key, 100)},
        {"sealed_key_id": "hub-seal-0000000000000000"},
    ):
        with pytest.raises(SignatureError):
            verify_sender(env.model_copy(update=update), police.signing_key.public_key())


def test_either_half_of_the_hybrid_signature_is_required(
    police: AgencyIdentity, hub: AgencyIdentity, keys_dir: Path
) -> None:
    """Ed25519 half (bytes 0-63) and ML-DSA-65 half (64-3372): a flip in either fails."""
    env = sealed(police, hub, keys_dir)
    assert len(env.signature) == 64 + 3309
    for at in (5, 64 + 5, 64 + 3308):
        with pytest.raises(SignatureError):
            verify_sender(
                env.model_copy(update={"signature": _flip(env.signature, at)}),
                police.signing_key.public_key(),
            )


def test_tampered_sealed_key_does_not_open(
    police: AgencyIdentity, hub: AgencyIdentity, keys_dir: Path
) -> None:
    env = sealed(police, hub, keys_dir)
    tampered = env.model_copy(update={"sealed_key": _flip(env.sealed_key, 100)})
    with pytest.raises(OpenError) as info:
        open_body(tampered, recipient=HUB, suite_private=hub.sealing_private)
    assert info.value.reason is ReasonCode.SEAL_OPEN_FAILED


def test_body_under_another_header_does_not_decrypt(
    police: AgencyIdentity, hub: AgencyIdentity, keys_dir: Path
) -> None:
    """The header is AEAD associated data: a body cannot move under another header."""
    env = sealed(police, hub, keys_dir)
    moved = env.model_copy(
        update={"header": env.header.model_copy(update={"recipients": ("school",)})}
    )
    with pytest.raises(OpenError) as info:
        open_body(moved, recipient=HUB, suite_private=hub.sealing_private)
    assert info.value.reason is ReasonCode.DECRYPT_FAILED


def test_sealed_key_is_bound_to_the_recipient(
    police: AgencyIdentity, hub: AgencyIdentity, keys_dir: Path
) -> None:
    env = sealed(police, hub, keys_dir)
    with pytest.raises(OpenError):
        open_body(env, recipient="social", suite_private=hub.sealing_private)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"not json at all", ReasonCode.NOT_JSON),
        (b'{"header": {"version": 2, "type": "referral"}}', ReasonCode.UNSUPPORTED_VERSION),
        (b'{"header": {"version": 1, "type": "gossip"}}', ReasonCode.UNKNOWN_TYPE),
        (b"[1,2,3]", ReasonCode.MALFORMED_ENVELOPE),
        (b"{" + b" " * (70 * 1024) + b"}", ReasonCode.OVERSIZE),
    ],
)
def test_parse_envelope_names_the_reason(raw: bytes, reason: ReasonCode) -> None:
    with pytest.raises(EnvelopeFormatError) as info:
        parse_envelope(raw)
    assert info.value.reason is reason


def test_extra_header_field_is_rejected(
    police: AgencyIdentity, hub: AgencyIdentity, keys_dir: Path
) -> None:
    import json

    doc = json.loads(sealed(police, hub, keys_dir).to_wire())
    doc["header"]["subject_name"] = "x"
    with pytest.raises(EnvelopeFormatError) as info:
        parse_envelope(json.dumps(doc).encode())
    assert info.value.reason is ReasonCode.MALFORMED_ENVELOPE
    assert "header.subject_name" in str(info.value)
