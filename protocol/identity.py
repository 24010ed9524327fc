"""An agency's private key material, as loaded by its adapter or the hub."""

from __future__ import annotations

from dataclasses import dataclass

from sigbus.protocol.ids import AgencyId
from sigbus.protocol.sealing import SuiteId
from sigbus.protocol.signing import HybridPrivateKey


@dataclass(frozen=True)
class AgencyIdentity:
    agency: AgencyId
    signing_key: HybridPrivateKey  # Ed25519 + ML-DSA-65: envelopes, releases, notices
    signing_key_id: str
    sealing_suite: SuiteId
    sealing_private: bytes
    sealing_key_id: str
    #: Cosigns checkpoints as a witness (KeyUse.WITNESS): never the message-signing key.
    witness_key: HybridPrivateKey | None = None
    witness_key_id: str | None = None
