"""Hybrid signatures: Ed25519 (RFC 8032) and ML-DSA-65 (FIPS 204), both required.

The disclosure log and the envelopes must stay trustworthy for the 70 years the
secrets they carry last (OSL 26 kap.), past the point where a quantum computer
could forge Ed25519; ML-DSA-65 covers that, and Ed25519 covers a flaw found in
the young ML-DSA. A hybrid signature verifies only if *both* halves verify
over the same message, so an attacker must break both schemes.

The objects mirror ``cryptography``'s Ed25519 API (``sign``, ``verify``,
``public_key``, ``*_bytes_raw``, ``from_*_bytes``), so code that signs or
verifies does not care which scheme it holds.

Encodings (raw bytes, fixed lengths, so a split is unambiguous):

- private key: Ed25519 seed (32) || ML-DSA-65 seed ξ (32)
- public key:  Ed25519 public key (32) || ML-DSA-65 public key (1952)
- signature:   Ed25519 signature (64) || ML-DSA-65 signature (3309)

The ML-DSA half is made with the FIPS 204 context string ``ML_DSA_CONTEXT``,
so an ML-DSA signature lifted out of a sigbus hybrid is not valid for a
protocol that signs the same bytes without that context.
"""

from __future__ import annotations

from collections.abc import Callable

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PrivateKey, MLDSA65PublicKey

ED25519_SEED_BYTES = 32
ED25519_PUBLIC_BYTES = 32
ED25519_SIGNATURE_BYTES = 64
MLDSA65_SEED_BYTES = 32
MLDSA65_PUBLIC_BYTES = 1952
MLDSA65_SIGNATURE_BYTES = 3309

HYBRID_PRIVATE_BYTES = ED25519_SEED_BYTES + MLDSA65_SEED_BYTES
HYBRID_PUBLIC_BYTES = ED25519_PUBLIC_BYTES + MLDSA65_PUBLIC_BYTES
HYBRID_SIGNATURE_BYTES = ED25519_SIGNATURE_BYTES + MLDSA65_SIGNATURE_BYTES

#: FIPS 204 §5.2 context string of every sigbus ML-DSA signature.
ML_DSA_CONTEXT = b"sigbus/v1/hybrid"


class HybridPublicKey:
    """An Ed25519 and an ML-DSA-65 public key; :meth:`verify` needs both signatures."""

    __slots__ = ("ed25519", "mldsa")

    def __init__(self, ed25519: Ed25519PublicKey, mldsa: MLDSA65PublicKey) -> None:
        self.ed25519 = ed25519
        self.mldsa = mldsa

    @classmethod
    def from_public_bytes(cls, raw: bytes) -> HybridPublicKey:
        """Raises ``ValueError`` unless ``raw`` is a well-formed hybrid public key."""
        if len(raw) != HYBRID_PUBLIC_BYTES:
            raise ValueError(f"a hybrid public key is {HYBRID_PUBLIC_BYTES} bytes")
        return cls(
            Ed25519PublicKey.from_public_bytes(raw[:ED25519_PUBLIC_BYTES]),
            MLDSA65PublicKey.from_public_bytes(raw[ED25519_PUBLIC_BYTES:]),
        )

    def public_bytes_raw(self) -> bytes:
        return self.ed25519.public_bytes_raw() + self.mldsa.public_bytes_raw()

    def verify(self, signature: bytes, message: bytes) -> None:
        """Raise ``InvalidSignature`` unless both halves verify over ``message``."""
        if len(signature) != HYBRID_SIGNATURE_BYTES:
            raise InvalidSignature("a hybrid signature has the wrong length")
        # Both are checked even when the first fails: no early exit that tells
        # a forger which half it got right.
        ed_ok = _verified(lambda: self.ed25519.verify(signature[:ED25519_SIGNATURE_BYTES], message))
        pq_ok = _verified(
            lambda: self.mldsa.verify(signature[ED25519_SIGNATURE_BYTES:], message, ML_DSA_CONTEXT)
        )
        if not (ed_ok and pq_ok):
            raise InvalidSignature("hybrid signature does not verify")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, HybridPublicKey) and (
            self.public_bytes_raw() == other.public_bytes_raw()
        )

    def __hash__(self) -> int:
        return hash(self.public_bytes_raw())


class HybridPrivateKey:
    """An Ed25519 and an ML-DSA-65 private key that always sign together."""

    __slots__ = ("_ed25519", "_mldsa", "_public")

    def __init__(self, ed25519: Ed25519PrivateKey, mldsa: MLDSA65PrivateKey) -> None:
        self._ed25519 = ed25519
        self._mldsa = mldsa
        self._public = HybridPublicKey(ed25519.public_key(), mldsa.public_key())

    @classmethod
    def generate(cls) -> HybridPrivateKey:
        return cls(Ed25519PrivateKey.generate(), MLDSA65PrivateKey.generate())

    @classmethod
    def from_private_bytes(cls, raw: bytes) -> HybridPrivateKey:
        """Raises ``ValueError`` unless ``raw`` is the two 32-byte seeds."""
        if len(raw) != HYBRID_PRIVATE_BYTES:
            raise ValueError(f"a hybrid private key is {HYBRID_PRIVATE_BYTES} bytes")
        return cls(
            Ed25519PrivateKey.from_private_bytes(raw[:ED25519_SEED_BYTES]),
            MLDSA65PrivateKey.from_seed_bytes(raw[ED25519_SEED_BYTES:]),
        )

    def private_bytes_raw(self) -> bytes:
        return self._ed25519.private_bytes_raw() + self._mldsa.private_bytes_raw()

    def public_key(self) -> HybridPublicKey:
        return self._public

    @property
    def ed25519(self) -> Ed25519PrivateKey:
        """The classical half alone, for the C2SP signed-note Ed25519 line only."""
        return self._ed25519

    @property
    def mldsa(self) -> MLDSA65PrivateKey:
        return self._mldsa

    def sign(self, message: bytes) -> bytes:
        return self._ed25519.sign(message) + self._mldsa.sign(message, ML_DSA_CONTEXT)


def _verified(check: Callable[[], None]) -> bool:
    try:
        check()
    except InvalidSignature:
        return False
    return True
