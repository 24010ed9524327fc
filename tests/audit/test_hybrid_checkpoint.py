"""Hybrid (Ed25519 + ML-DSA-65) checkpoints and cosignatures (issue #10).

The Ed25519 line keeps its exact C2SP signed-note / tlog-cosignature form, so a
standard verifier that knows only the Ed25519 key still accepts the note; the
ML-DSA-65 signature is an additional line under its own key name and key hash,
which such a verifier skips. Given the hybrid key, our verifier needs both.
"""

from __future__ import annotations

import base64

import pytest

from sigbus.audit.checkpoint import (
    MLDSA65_NAME_SUFFIX,
    add_signature_lines,
    cosign,
    make_checkpoint_body,
    parse_signed_note,
    sign_note,
    verify_cosignature,
    verify_note,
)
from sigbus.audit.errors import SignatureError
from sigbus.protocol.signing import HybridPrivateKey

NAME = "sigbus/dev/disclosure-log"
WITNESS = "witness.police"
BODY = make_checkpoint_body(NAME, 5, bytes(range(32)))
LOG = HybridPrivateKey.generate()
POLICE = HybridPrivateKey.generate()


def _flip_last_signature(note: str, line_index: int) -> str:
    body, _, block = note.rpartition("\n\n")
    lines = block.removesuffix("\n").split("\n")
    dash, name, encoded = lines[line_index].split(" ")
    raw = bytearray(base64.b64decode(encoded))
    raw[-1] ^= 0x01
    lines[line_index] = f"{dash} {name} {base64.b64encode(bytes(raw)).decode()}"
    return body + "\n\n" + "\n".join(lines) + "\n"


def test_a_hybrid_note_has_the_ed25519_line_and_an_extra_mldsa_line() -> None:
    note = parse_signed_note(sign_note(BODY, NAME, LOG))
    assert [s.name for s in note.signatures] == [NAME, NAME + MLDSA65_NAME_SUFFIX]
    assert len(note.signatures[0].signature) == 64  # C2SP Ed25519, unchanged
    assert len(note.signatures[1].signature) == 3309
    assert verify_note(sign_note(BODY, NAME, LOG), NAME, LOG.public_key()).size == 5


def test_a_standard_ed25519_verifier_still_accepts_and_skips_the_mldsa_line() -> None:
    """What any C2SP signed-note verifier does: only the line of its known key counts."""
    note = sign_note(BODY, NAME, LOG)
    assert verify_note(note, NAME, LOG.public_key().ed25519).size == 5
    # The Ed25519 line is byte for byte what an Ed25519-only signer writes.
    assert note.split("\n")[-3] == sign_note(BODY, NAME, LOG.ed25519).split("\n")[-2]


def test_our_verifier_needs_the_mldsa_line() -> None:
    classical_only = sign_note(BODY, NAME, LOG.ed25519)
    with pytest.raises(SignatureError, match="no ML-DSA-65 signature"):
        verify_note(classical_only, NAME, LOG.public_key())


@pytest.mark.parametrize("line", [0, 1])
def test_either_line_tampered_is_refused(line: int) -> None:
    tampered = _flip_last_signature(sign_note(BODY, NAME, LOG), line)
    with pytest.raises(SignatureError):
        verify_note(tampered, NAME, LOG.public_key())


def test_an_mldsa_line_of_another_key_is_refused() -> None:
    other = HybridPrivateKey.generate()
    mine = sign_note(BODY, NAME, LOG).split("\n")
    theirs = sign_note(BODY, NAME, other).split("\n")
    mixed = "\n".join([*mine[:-2], theirs[-2], ""])
    with pytest.raises(SignatureError, match="no ML-DSA-65 signature"):
        verify_note(mixed, NAME, LOG.public_key())


def test_hybrid_cosignature_round_trip_and_standard_form() -> None:
    lines = cosign(BODY, WITNESS, POLICE, timestamp=1_700_000_000)
    v1, pq = lines.removesuffix("\n").split("\n")
    assert verify_cosignature(BODY, lines, WITNESS, POLICE.public_key()) == 1_700_000_000
    # A tlog-cosignature/v1 verifier with the Ed25519 key accepts the first line alone.
    assert verify_cosignature(BODY, v1, WITNESS, POLICE.public_key().ed25519) == 1_700_000_000
    assert pq.split(" ")[1] == WITNESS + MLDSA65_NAME_SUFFIX
    note = add_signature_lines(sign_note(BODY, NAME, LOG), [lines])
    assert verify_note(note, NAME, LOG.public_key()).size == 5


def test_hybrid_cosignature_without_or_with_a_foreign_mldsa_line_is_refused() -> None:
    lines = cosign(BODY, WITNESS, POLICE, timestamp=1_700_000_000)
    v1, _ = lines.removesuffix("\n").split("\n")
    with pytest.raises(SignatureError, match="needs its Ed25519 and ML-DSA-65"):
        verify_cosignature(BODY, v1, WITNESS, POLICE.public_key())
    _, later = cosign(BODY, WITNESS, POLICE, timestamp=1_700_000_001).split("\n")[:2]
    with pytest.raises(SignatureError, match="another timestamp"):
        verify_cosignature(BODY, v1 + "\n" + later + "\n", WITNESS, POLICE.public_key())
    other = HybridPrivateKey.generate()
    _, foreign = cosign(BODY, WITNESS, other, timestamp=1_700_000_000).split("\n")[:2]
    with pytest.raises(SignatureError, match="key hash"):
        verify_cosignature(BODY, v1 + "\n" + foreign + "\n", WITNESS, POLICE.public_key())
