"""Hybrid Ed25519 + ML-DSA-65 signatures: both halves are required."""

from __future__ import annotations

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey

from sigbus.protocol.signing import (
    ED25519_SIGNATURE_BYTES,
    HYBRID_PUBLIC_BYTES,
    HYBRID_SIGNATURE_BYTES,
    HybridPrivateKey,
    HybridPublicKey,
)

MESSAGE = b"sigbus/v1/test\nhello"


@pytest.fixture(scope="module")
def key() -> HybridPrivateKey:
    return HybridPrivateKey.generate()


def test_round_trip_through_bytes(key: HybridPrivateKey) -> None:
    again = HybridPrivateKey.from_private_bytes(key.private_bytes_raw())
    public = HybridPublicKey.from_public_bytes(again.public_key().public_bytes_raw())
    assert len(public.public_bytes_raw()) == HYBRID_PUBLIC_BYTES
    signature = key.sign(MESSAGE)
    assert len(signature) == HYBRID_SIGNATURE_BYTES
    public.verify(signature, MESSAGE)
    assert public == key.public_key()


def test_other_message_is_refused(key: HybridPrivateKey) -> None:
    with pytest.raises(InvalidSignature):
        key.public_key().verify(key.sign(MESSAGE), MESSAGE + b"!")


@pytest.mark.parametrize("half", ["ed25519", "mldsa"])
def test_either_half_forged_is_refused(key: HybridPrivateKey, half: str) -> None:
    """A forger who breaks one scheme (say ML-DSA, or Ed25519 with a quantum computer)
    still cannot pass: the other half is checked too."""
    good = key.sign(MESSAGE)
    other = HybridPrivateKey.generate().sign(MESSAGE)
    if half == "ed25519":
        spliced = other[:ED25519_SIGNATURE_BYTES] + good[ED25519_SIGNATURE_BYTES:]
    else:
        spliced = good[:ED25519_SIGNATURE_BYTES] + other[ED25519_SIGNATURE_BYTES:]
    with pytest.raises(InvalidSignature):
        key.public_key().verify(spliced, MESSAGE)


def test_stripped_or_padded_signature_is_refused(key: HybridPrivateKey) -> None:
    good = key.sign(MESSAGE)
    for bad in (good[:ED25519_SIGNATURE_BYTES], good + b"\0", b""):
        with pytest.raises(InvalidSignature):
            key.public_key().verify(bad, MESSAGE)


def test_mldsa_half_is_bound_to_the_sigbus_context(key: HybridPrivateKey) -> None:
    """The ML-DSA half carries a FIPS 204 context, so one made without it does not pass."""
    ed = Ed25519PrivateKey.from_private_bytes(key.private_bytes_raw()[:32])
    pq = MLDSA65PrivateKey.from_seed_bytes(key.private_bytes_raw()[32:])
    without_context = ed.sign(MESSAGE) + pq.sign(MESSAGE)
    with pytest.raises(InvalidSignature):
        key.public_key().verify(without_context, MESSAGE)


@pytest.mark.parametrize("length", [0, 32, 63, 65, HYBRID_PUBLIC_BYTES - 1])
def test_malformed_key_bytes_raise_value_error(length: int) -> None:
    with pytest.raises(ValueError):
        HybridPublicKey.from_public_bytes(b"\1" * length)
    with pytest.raises(ValueError):
        HybridPrivateKey.from_private_bytes(b"\1" * (length % 64 or 1))
