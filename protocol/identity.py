"""An agency's private key material, as loaded by its adapter or the hub."""

from __future__ import annotations

from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sigbus.protocol.ids import AgencyId
from sigbus.protocol.sealing import SuiteId


@dataclass(frozen=True)
class AgencyIdentity:
    agency: AgencyId
    signing_key: Ed25519PrivateKey
    signing_key_id: str
    sealing_suite: SuiteId
    sealing_private: bytes
    sealing_key_id: str
