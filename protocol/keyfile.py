"""On-disk shape of an agency's private keys (the file is written 0600 by the CLI)."""

from __future__ import annotations

from typing import Literal

from sigbus.protocol.canonical import B64Bytes
from sigbus.protocol.identity import AgencyIdentity
from sigbus.protocol.ids import AgencyId
from sigbus.protocol.messages import StrictModel
from sigbus.protocol.sealing import SuiteId
from sigbus.protocol.signing import HybridPrivateKey


class HubSecrets(StrictModel):
    """Keys only the hub holds, beyond its agency keys."""

    log_signing_private: B64Bytes  # hybrid Ed25519+ML-DSA-65 seeds, signs checkpoints
    pseudonym_key: B64Bytes  # HMAC key: personnummer -> opaque subject id
    state_key: B64Bytes  # AES-256-GCM key for the hub's private state stream


class PrivateKeyFile(StrictModel):
    format: Literal["sigbus-private-keys/v1"] = "sigbus-private-keys/v1"
    agency: AgencyId
    signing_private: B64Bytes  # hybrid: Ed25519 seed || ML-DSA-65 seed (64 bytes)
    signing_key_id: str
    sealing_suite: SuiteId
    sealing_private: B64Bytes
    sealing_key_id: str
    #: Hybrid witness key (seeds), for cosigning checkpoints; party agencies only.
    witness_private: B64Bytes | None = None
    witness_key_id: str | None = None
    #: NATS user nkey seed (the public nkey is the directory's ``nats_user``).
    nats_seed: str | None = None
    hub: HubSecrets | None = None

    def identity(self) -> AgencyIdentity:
        return AgencyIdentity(
            agency=self.agency,
            signing_key=HybridPrivateKey.from_private_bytes(self.signing_private),
            signing_key_id=self.signing_key_id,
            sealing_suite=self.sealing_suite,
            sealing_private=self.sealing_private,
            sealing_key_id=self.sealing_key_id,
            witness_key=(
                HybridPrivateKey.from_private_bytes(self.witness_private)
                if self.witness_private is not None
                else None
            ),
            witness_key_id=self.witness_key_id,
        )


class RootKeyFile(StrictModel):
    """One root key holder's hybrid (Ed25519 + ML-DSA-65) private root key."""

    format: Literal["sigbus-root-key/v2"] = "sigbus-root-key/v2"
    holder: AgencyId
    root_private: B64Bytes  # HybridPrivateKey.private_bytes_raw()
