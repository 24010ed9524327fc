"""The crypto floor of one released message on one core: what the hub cannot avoid.

verify the sender's hybrid Ed25519+ML-DSA-65 signature + open the data key (HPKE,
default hybrid suite) and the body (AES-256-GCM) + for each of 2 recipients: seal
the data key (HPKE) and sign a release record (hybrid). Keys are built once, inputs are
precomputed bytes of the sizes the hub sees: no parsing, no JSON, no I/O.
"""

from __future__ import annotations

import os
import time

from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sigbus.protocol.signing import HybridPrivateKey

#: RFC 9180 suite of sealing.SuiteId.MLKEM768_X25519 (the default).
_SUITE = hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)
RECIPIENTS = 2


def _hybrid_pair() -> tuple[hpke.MLKEM768X25519PrivateKey, hpke.MLKEM768X25519PublicKey]:
    mk, xk = mlkem.MLKEM768PrivateKey.generate(), x25519.X25519PrivateKey.generate()
    return (
        hpke.MLKEM768X25519PrivateKey(mk, xk),
        hpke.MLKEM768X25519PublicKey(mk.public_key(), xk.public_key()),
    )


def crypto_floor_seconds(iterations: int, *, body_bytes: int = 400) -> float:
    """CPU seconds per message of the floor on one thread (one core)."""
    sender, hub = HybridPrivateKey.generate(), HybridPrivateKey.generate()
    sender_public = sender.public_key()
    hub_private, hub_public = _hybrid_pair()
    recipients = [_hybrid_pair()[1] for _ in range(RECIPIENTS)]
    data_key, nonce = os.urandom(32), os.urandom(12)
    ciphertext = AESGCM(data_key).encrypt(nonce, os.urandom(body_bytes), b"header" * 60)
    signed = os.urandom(760)  # domain tag + canonical header + ciphertext and sealed key
    signature = sender.sign(signed)
    sealed = _SUITE.encrypt(data_key, hub_public, info=b"info" * 20)
    record = os.urandom(700)  # domain tag + canonical release record
    started = time.thread_time()  # CPU, not wall: other processes share the cores
    for _ in range(iterations):
        sender_public.verify(signature, signed)
        key = _SUITE.decrypt(sealed, hub_private, info=b"info" * 20)
        AESGCM(key).decrypt(nonce, ciphertext, b"header" * 60)
        for public in recipients:
            _SUITE.encrypt(key, public, info=b"info" * 20)
            hub.sign(record)
    return (time.thread_time() - started) / iterations
