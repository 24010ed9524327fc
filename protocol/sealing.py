"""Sealing data keys to a recipient with HPKE (RFC 9180), base mode.

The default suite is the hybrid post-quantum KEM ML-KEM-768 + X25519 with
HKDF-SHA256 and AES-256-GCM: social services' records stay secret for up to
70 years (OSL 26 kap.), so "harvest now, decrypt later" is in the threat
model. The classical X25519 suite has no post-quantum KEM: :class:`SuitePolicy`
refuses to seal to it (and the hub refuses envelopes and recipient keys of it)
unless the configuration explicitly allows it (``SIGBUS_ALLOW_CLASSICAL_SUITE=1``).

Keys travel as raw bytes; for the hybrid suite the private key is the 64-byte
ML-KEM seed followed by the 32-byte X25519 scalar, and the public key is the
1184-byte ML-KEM encapsulation key followed by the 32-byte X25519 key.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from enum import StrEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519

from sigbus.protocol.canonical import DATA_KEY_INFO_DOMAIN
from sigbus.protocol.errors import OpenError, SuiteRefused
from sigbus.protocol.reasons import ReasonCode

DATA_KEY_BYTES = 32
_MLKEM_SEED = 64
_MLKEM768_PUBLIC = 1184
_X25519 = 32


class SuiteId(StrEnum):
    MLKEM768_X25519 = "mlkem768x25519-hkdfsha256-aes256gcm"
    X25519 = "x25519-hkdfsha256-aes256gcm"


DEFAULT_SUITE = SuiteId.MLKEM768_X25519
#: Suites without a post-quantum KEM: what is sealed with them today can be opened
#: by whoever records it now and has a quantum computer later.
CLASSICAL_SUITES = frozenset({SuiteId.X25519})


@dataclass(frozen=True)
class SuitePolicy:
    """Which HPKE suites a party seals to and accepts: post-quantum only, unless
    ``allow_classical`` is set explicitly by configuration."""

    allow_classical: bool = False

    def check(self, suite: SuiteId) -> None:
        """Raise :class:`SuiteRefused` unless ``suite`` is allowed."""
        if suite in CLASSICAL_SUITES and not self.allow_classical:
            raise SuiteRefused(
                f"HPKE suite {suite.value} has no post-quantum KEM and is not allowed "
                "(set SIGBUS_ALLOW_CLASSICAL_SUITE=1 to allow it)"
            )


#: Post-quantum suites only.
STRICT_SUITES = SuitePolicy()

_SUITES: dict[SuiteId, hpke.Suite] = {
    SuiteId.MLKEM768_X25519: hpke.Suite(
        hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM
    ),
    SuiteId.X25519: hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM),
}


@dataclass(frozen=True)
class SealingKeyPair:
    suite: SuiteId
    private_bytes: bytes
    public_bytes: bytes


def generate_sealing_key(suite: SuiteId = DEFAULT_SUITE) -> SealingKeyPair:
    xk = x25519.X25519PrivateKey.generate()
    x_priv = xk.private_bytes_raw()
    x_pub = xk.public_key().public_bytes_raw()
    if suite is SuiteId.X25519:
        return SealingKeyPair(suite, x_priv, x_pub)
    mk = mlkem.MLKEM768PrivateKey.generate()
    return SealingKeyPair(
        suite,
        mk.private_bytes_raw() + x_priv,
        mk.public_key().public_bytes_raw() + x_pub,
    )


#: Distinct recipient keys kept built; a directory holds a few per agency (MAX_KEYS_PER_AGENCY).
_PUBLIC_KEY_CACHE = 1024
#: Own private keys kept built: the hub's and an adapter's current and previous ones.
_PRIVATE_KEY_CACHE = 16


# Building a key object costs more than using it (ML-KEM-768 expands its seed into
# the full decapsulation key: ~140 µs of a ~190 µs open). Both caches are keyed by
# the raw key bytes, so a rotated or re-issued key is a new entry and a key never
# answers for other bytes; entries live in this process's memory only, like the
# bytes they are built from. A malformed key raises and is not cached.
@functools.lru_cache(maxsize=_PUBLIC_KEY_CACHE)
def _public_key(
    suite: SuiteId, public_bytes: bytes
) -> x25519.X25519PublicKey | hpke.MLKEM768X25519PublicKey:
    if suite is SuiteId.X25519:
        return x25519.X25519PublicKey.from_public_bytes(public_bytes)
    if len(public_bytes) != _MLKEM768_PUBLIC + _X25519:
        raise ValueError("hybrid public key has the wrong length")
    return hpke.MLKEM768X25519PublicKey(
        mlkem.MLKEM768PublicKey.from_public_bytes(public_bytes[:_MLKEM768_PUBLIC]),
        x25519.X25519PublicKey.from_public_bytes(public_bytes[_MLKEM768_PUBLIC:]),
    )


@functools.lru_cache(maxsize=_PRIVATE_KEY_CACHE)
def _private_key(
    suite: SuiteId, private_bytes: bytes
) -> x25519.X25519PrivateKey | hpke.MLKEM768X25519PrivateKey:
    if suite is SuiteId.X25519:
        return x25519.X25519PrivateKey.from_private_bytes(private_bytes)
    if len(private_bytes) != _MLKEM_SEED + _X25519:
        raise ValueError("hybrid private key has the wrong length")
    return hpke.MLKEM768X25519PrivateKey(
        mlkem.MLKEM768PrivateKey.from_seed_bytes(private_bytes[:_MLKEM_SEED]),
        x25519.X25519PrivateKey.from_private_bytes(private_bytes[_MLKEM_SEED:]),
    )


def validate_public_key(suite: SuiteId, public_bytes: bytes) -> None:
    """Raise ValueError if ``public_bytes`` is not a key of ``suite``."""
    _public_key(suite, public_bytes)


def data_key_info(message_id: str, recipient: str, recipient_key_id: str) -> bytes:
    """HPKE ``info`` (RFC 9180 §5.1): binds a sealed key to one message and recipient
    key, so a sealed key cannot be moved to another message or recipient."""
    return b"".join(
        (
            DATA_KEY_INFO_DOMAIN,
            message_id.encode(),
            b"\n",
            recipient.encode(),
            b"\n",
            recipient_key_id.encode(),
        )
    )


def new_data_key() -> bytes:
    return os.urandom(DATA_KEY_BYTES)


def seal_data_key(
    suite: SuiteId,
    public_bytes: bytes,
    data_key: bytes,
    info: bytes,
    *,
    policy: SuitePolicy = STRICT_SUITES,
) -> bytes:
    """RFC 9180 §6.1 single-shot SealBase: encapsulation || ciphertext.

    Raises :class:`SuiteRefused` for a suite ``policy`` does not allow."""
    policy.check(suite)
    sealed: bytes = _SUITES[suite].encrypt(data_key, _public_key(suite, public_bytes), info=info)
    return sealed


def open_data_key(suite: SuiteId, private_bytes: bytes, sealed: bytes, info: bytes) -> bytes:
    """RFC 9180 §6.1 single-shot OpenBase; any failure is a typed :class:`OpenError`."""
    try:
        data_key: bytes = _SUITES[suite].decrypt(
            sealed, _private_key(suite, private_bytes), info=info
        )
    except (InvalidTag, ValueError, TypeError) as e:
        raise OpenError(
            "sealed data key could not be opened", reason=ReasonCode.SEAL_OPEN_FAILED
        ) from e
    if len(data_key) != DATA_KEY_BYTES:
        raise OpenError("sealed data key has the wrong length", reason=ReasonCode.SEAL_OPEN_FAILED)
    return data_key
