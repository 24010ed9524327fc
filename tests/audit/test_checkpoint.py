"""C2SP tlog-checkpoint, signed-note (Ed25519) and tlog-cosignature/v1."""

from __future__ import annotations

import base64
import hashlib

import pytest
from audit_fixtures import LOG_KEY, POLICE_KEY, POLICE_WITNESS, SCHOOL_KEY, key_from_seed

from sigbus.audit.checkpoint import (
    DEFAULT_ORIGIN,
    Checkpoint,
    add_signature_lines,
    cosign,
    key_hash,
    make_checkpoint_body,
    parse_checkpoint_body,
    parse_signed_note,
    public_key_bytes,
    sign_note,
    verify_cosignature,
    verify_note,
)
from sigbus.audit.errors import CheckpointError, SignatureError
from sigbus.audit.merkle import hash_leaf

ROOT = hash_leaf(b"root")


def test_body_is_three_newline_terminated_lines() -> None:
    body = make_checkpoint_body("sigbus.example/log", 42, ROOT)
    assert body == f"sigbus.example/log\n42\n{base64.b64encode(ROOT).decode()}\n"
    assert parse_checkpoint_body(body) == Checkpoint(
        origin="sigbus.example/log", size=42, root=ROOT
    )


def test_key_hash_follows_signed_note() -> None:
    public = LOG_KEY.public_key()
    expected = hashlib.sha256(
        DEFAULT_ORIGIN.encode() + b"\n\x01" + public_key_bytes(public)
    ).digest()[:4]
    assert key_hash(DEFAULT_ORIGIN, 0x01, public) == expected
    assert key_hash(DEFAULT_ORIGIN, 0x04, public) != expected


def test_sign_and_verify_round_trip() -> None:
    body = make_checkpoint_body(DEFAULT_ORIGIN, 7, ROOT)
    note = sign_note(body, DEFAULT_ORIGIN, LOG_KEY)
    assert note.startswith(body + "\n\u2014 " + DEFAULT_ORIGIN + " ")
    raw = base64.b64decode(note.rsplit(" ", 1)[1])
    assert len(raw) == 4 + 64
    assert raw[:4] == key_hash(DEFAULT_ORIGIN, 0x01, LOG_KEY.public_key())
    checkpoint = verify_note(note, DEFAULT_ORIGIN, LOG_KEY.public_key())
    assert (checkpoint.origin, checkpoint.size, checkpoint.root) == (DEFAULT_ORIGIN, 7, ROOT)


def test_wrong_key_and_tampered_body_are_rejected() -> None:
    note = sign_note(make_checkpoint_body(DEFAULT_ORIGIN, 7, ROOT), DEFAULT_ORIGIN, LOG_KEY)
    with pytest.raises(SignatureError):
        verify_note(note, DEFAULT_ORIGIN, POLICE_KEY.public_key())
    with pytest.raises(SignatureError):
        verify_note(note.replace("\n7\n", "\n8\n"), DEFAULT_ORIGIN, LOG_KEY.public_key())
    with pytest.raises(SignatureError):
        verify_note(note, "other/name", LOG_KEY.public_key())


def test_signature_by_an_impostor_with_the_same_name_is_rejected() -> None:
    body = make_checkpoint_body(DEFAULT_ORIGIN, 7, ROOT)
    forged = sign_note(body, DEFAULT_ORIGIN, key_from_seed(99))
    with pytest.raises(SignatureError):
        verify_note(forged, DEFAULT_ORIGIN, LOG_KEY.public_key())


def test_unknown_signatures_are_ignored() -> None:
    body = make_checkpoint_body(DEFAULT_ORIGIN, 7, ROOT)
    other = sign_note(body, "someone/else", SCHOOL_KEY)
    note = add_signature_lines(sign_note(body, DEFAULT_ORIGIN, LOG_KEY), [other.splitlines()[-1]])
    assert len(parse_signed_note(note).signatures) == 2
    assert verify_note(note, DEFAULT_ORIGIN, LOG_KEY.public_key()).size == 7


@pytest.mark.parametrize(
    "text",
    [
        "",
        "origin\n1\n",
        "origin\n1\nAAAA\n",  # root too short
        "origin\n01\n" + base64.b64encode(ROOT).decode() + "\n",  # leading zero
        "origin\n-1\n" + base64.b64encode(ROOT).decode() + "\n",
        "origin\n1\n" + base64.b64encode(ROOT).decode(),  # no final newline
        "\n1\n" + base64.b64encode(ROOT).decode() + "\n",  # empty origin
    ],
)
def test_malformed_bodies_are_rejected(text: str) -> None:
    with pytest.raises(CheckpointError):
        parse_checkpoint_body(text)


@pytest.mark.parametrize(
    "note",
    [
        "origin\n1\nxx\n",  # no signature block
        "origin\n1\nxx\n\n",  # empty signature block
        "origin\n1\nxx\n\n- name AAAAAAAA\n",  # hyphen instead of em dash
        "origin\n1\nxx\n\n\u2014 name !!!\n",  # not base64
        "origin\n1\nxx\n\n\u2014 name AAAA\n",  # no room for a signature
    ],
)
def test_malformed_notes_are_rejected(note: str) -> None:
    with pytest.raises(CheckpointError):
        parse_signed_note(note)


def test_cosignature_round_trip_and_format() -> None:
    body = make_checkpoint_body(DEFAULT_ORIGIN, 7, ROOT)
    line = cosign(body, POLICE_WITNESS, POLICE_KEY, timestamp=1_795_000_000)
    assert line.startswith(f"\u2014 {POLICE_WITNESS} ")
    assert line.endswith("\n")
    raw = base64.b64decode(line.split(" ")[2])
    assert len(raw) == 4 + 8 + 64
    assert raw[:4] == key_hash(POLICE_WITNESS, 0x04, POLICE_KEY.public_key())
    assert int.from_bytes(raw[4:12], "big") == 1_795_000_000
    # The signed message is the cosignature/v1 header and the checkpoint body.
    message = b"cosignature/v1\ntime 1795000000\n" + body.encode()
    POLICE_KEY.public_key().verify(raw[12:], message)
    assert verify_cosignature(body, line, POLICE_WITNESS, POLICE_KEY.public_key()) == 1_795_000_000


def test_cosignature_over_another_body_or_key_is_rejected() -> None:
    body = make_checkpoint_body(DEFAULT_ORIGIN, 7, ROOT)
    line = cosign(body, POLICE_WITNESS, POLICE_KEY, timestamp=1_795_000_000)
    other_body = make_checkpoint_body(DEFAULT_ORIGIN, 8, ROOT)
    with pytest.raises(SignatureError):
        verify_cosignature(other_body, line, POLICE_WITNESS, POLICE_KEY.public_key())
    with pytest.raises(SignatureError):
        verify_cosignature(body, line, POLICE_WITNESS, SCHOOL_KEY.public_key())
    with pytest.raises(SignatureError):
        verify_cosignature(body, line, "sigbus/witness/school", POLICE_KEY.public_key())
    # A different timestamp spliced into the line breaks the signature.
    raw = bytearray(base64.b64decode(line.split(" ")[2]))
    raw[11] ^= 1
    spliced = f"\u2014 {POLICE_WITNESS} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(SignatureError):
        verify_cosignature(body, spliced, POLICE_WITNESS, POLICE_KEY.public_key())


def test_note_signature_cannot_be_replayed_as_cosignature() -> None:
    body = make_checkpoint_body(DEFAULT_ORIGIN, 7, ROOT)
    note = sign_note(body, POLICE_WITNESS, POLICE_KEY)
    with pytest.raises(SignatureError):
        verify_cosignature(body, note.splitlines()[-1], POLICE_WITNESS, POLICE_KEY.public_key())
