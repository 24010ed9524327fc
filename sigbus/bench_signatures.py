"""Signature cost, hybrid (Ed25519 + ML-DSA-65) beside Ed25519 alone, in the same run.

Per message: the sender signs the envelope's signed bytes once and the hub verifies
them once (each recipient verifies the same again, and the hub signs a release
record per recipient: multiply by what a deployment does). Per checkpoint: the hub
signs a C2SP checkpoint note body and a verifier checks it. The inputs are random
bytes of the sizes sigbus signs; each figure is the median of ``repeats`` timed
batches of CPU time on one thread.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sigbus.protocol.signing import HybridPrivateKey

#: Domain tag + RFC 8785 {ciphertext_sha256, header, sealed_key_id, sealed_key_sha256}.
ENVELOPE_SIGNED_BYTES = 760
#: Origin, size and root hash lines of a C2SP tlog-checkpoint body.
CHECKPOINT_BODY_BYTES = 110


@dataclass(frozen=True)
class SignatureCosts:
    """CPU seconds of one sign + one verify."""

    ed25519_message_s: float
    hybrid_message_s: float
    ed25519_checkpoint_s: float
    hybrid_checkpoint_s: float

    def as_figures(self) -> dict[str, float]:
        return {
            "sig_ed25519_msg_s": self.ed25519_message_s,
            "sig_hybrid_msg_s": self.hybrid_message_s,
            "sig_hybrid_vs_ed25519_msg": self.hybrid_message_s / self.ed25519_message_s,
            "sig_ed25519_checkpoint_s": self.ed25519_checkpoint_s,
            "sig_hybrid_checkpoint_s": self.hybrid_checkpoint_s,
            "sig_hybrid_vs_ed25519_checkpoint": (
                self.hybrid_checkpoint_s / self.ed25519_checkpoint_s
            ),
        }


def _sign_verify_seconds(
    sign: Callable[[bytes], bytes],
    verify: Callable[[bytes, bytes], None],
    size: int,
    iterations: int,
    repeats: int,
) -> float:
    message = os.urandom(size)
    batches = []
    for _ in range(repeats):
        started = time.thread_time()  # CPU, not wall: other processes share the cores
        for _ in range(iterations):
            verify(sign(message), message)
        batches.append((time.thread_time() - started) / iterations)
    return statistics.median(batches)


def signature_costs(iterations: int, *, repeats: int = 5) -> SignatureCosts:
    ed = Ed25519PrivateKey.generate()
    ed_public = ed.public_key()
    hybrid = HybridPrivateKey.generate()
    hybrid_public = hybrid.public_key()

    def cost(size: int, private: Ed25519PrivateKey | HybridPrivateKey) -> float:
        public = ed_public if private is ed else hybrid_public
        return _sign_verify_seconds(private.sign, public.verify, size, iterations, repeats)

    return SignatureCosts(
        ed25519_message_s=cost(ENVELOPE_SIGNED_BYTES, ed),
        hybrid_message_s=cost(ENVELOPE_SIGNED_BYTES, hybrid),
        ed25519_checkpoint_s=cost(CHECKPOINT_BODY_BYTES, ed),
        hybrid_checkpoint_s=cost(CHECKPOINT_BODY_BYTES, hybrid),
    )
