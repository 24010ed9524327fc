"""The agency key directory: who may sign as whom, and whom to seal to.

The directory is signed by the hub's root key and every party verifies it
before use. Keys have ids and a validity period; a new key can be added
before the old one expires (overlap), and a revoked key is refused from its
revocation time on: signatures made with it are not accepted, and nothing is
sealed to it any more.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, Field, ValidationError

from sigbus.protocol.canonical import DIRECTORY_DOMAIN, B64Bytes, canonical_json
from sigbus.protocol.errors import DirectoryError, KeyLookupError
from sigbus.protocol.ids import AgencyId, KeyIdStr
from sigbus.protocol.messages import StrictModel
from sigbus.protocol.reasons import ReasonCode
from sigbus.protocol.sealing import SuiteId


class KeyUse(StrEnum):
    SIGNING = "signing"  # Ed25519 envelope / release signatures
    SEALING = "sealing"  # HPKE recipient key
    LOG = "log"  # Ed25519 checkpoint signatures (hub only)


class KeyStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


_KEY_ID_TAG = {KeyUse.SIGNING: "sig", KeyUse.SEALING: "seal", KeyUse.LOG: "sig"}


def key_id_for(agency: AgencyId, use: KeyUse, public_bytes: bytes) -> str:
    """Opaque, self-certifying key id: agency, use and a hash of the public key."""
    digest = hashlib.sha256(use.value.encode() + b"\n" + public_bytes).hexdigest()[:16]
    return f"{agency}-{_KEY_ID_TAG[use]}-{digest}"


class DirectoryKey(StrictModel):
    key_id: KeyIdStr
    use: KeyUse
    suite: SuiteId | None = None  # sealing keys only
    public_key: B64Bytes
    not_before: AwareDatetime
    not_after: AwareDatetime
    status: KeyStatus = KeyStatus.ACTIVE
    revoked_at: AwareDatetime | None = None

    def usable_at(self, at: datetime) -> bool:
        if self.revoked_at is not None and at >= self.revoked_at:
            return False
        return self.not_before <= at < self.not_after


class AgencyEntry(StrictModel):
    agency: AgencyId
    nats_user: str | None = None  # the agency's NATS nkey (public), for server config
    keys: Annotated[tuple[DirectoryKey, ...], Field(max_length=32)]


class Directory(StrictModel):
    version: Literal[1] = 1
    serial: Annotated[int, Field(ge=1)]
    issued_at: AwareDatetime
    agencies: tuple[AgencyEntry, ...]

    def entry(self, agency: AgencyId) -> AgencyEntry:
        for e in self.agencies:
            if e.agency == agency:
                return e
        raise KeyLookupError("agency is not in the directory")

    def signing_key(self, agency: AgencyId, key_id: str, *, at: datetime) -> Ed25519PublicKey:
        """The sender's verification key, refused if unknown, revoked or not valid at ``at``."""
        for k in self.entry(agency).keys:
            if k.key_id != key_id or k.use is not KeyUse.SIGNING:
                continue
            if k.revoked_at is not None and at >= k.revoked_at:
                raise KeyLookupError("signing key is revoked", reason=ReasonCode.REVOKED_KEY)
            if not (k.not_before <= at < k.not_after):
                raise KeyLookupError(
                    "signing key is outside its validity period", reason=ReasonCode.KEY_NOT_VALID
                )
            return Ed25519PublicKey.from_public_bytes(k.public_key)
        raise KeyLookupError("unknown signing key for this agency")

    def key_by_use(self, agency: AgencyId, use: KeyUse, *, at: datetime) -> DirectoryKey:
        """The newest usable key of ``use``: during an overlap the new key wins."""
        usable = [k for k in self.entry(agency).keys if k.use is use and k.usable_at(at)]
        if not usable:
            raise KeyLookupError(f"no usable {use.value} key", reason=ReasonCode.KEY_NOT_VALID)
        return max(usable, key=lambda k: k.not_before)

    def sealing_key(self, agency: AgencyId, *, at: datetime) -> DirectoryKey:
        return self.key_by_use(agency, KeyUse.SEALING, at=at)

    def sealing_key_by_id(self, agency: AgencyId, key_id: str, *, at: datetime) -> DirectoryKey:
        for k in self.entry(agency).keys:
            if k.key_id == key_id and k.use is KeyUse.SEALING and k.usable_at(at):
                return k
        raise KeyLookupError(
            "sealing key unknown or not usable", reason=ReasonCode.SEAL_OPEN_FAILED
        )


class SignedDirectory(StrictModel):
    directory: Directory
    root_public_key: B64Bytes
    signature: B64Bytes


def sign_directory(directory: Directory, root_key: Ed25519PrivateKey) -> SignedDirectory:
    message = DIRECTORY_DOMAIN + canonical_json(directory)
    return SignedDirectory(
        directory=directory,
        root_public_key=root_key.public_key().public_bytes_raw(),
        signature=root_key.sign(message),
    )


def verify_directory(raw: bytes, trusted_root: bytes) -> Directory:
    """Parse and verify a signed directory against the pinned hub root key."""
    try:
        signed = SignedDirectory.model_validate_json(raw)
    except ValidationError as e:
        raise DirectoryError("directory file is malformed") from e
    if signed.root_public_key != trusted_root:
        raise DirectoryError("directory is signed by an untrusted root key")
    try:
        Ed25519PublicKey.from_public_bytes(trusted_root).verify(
            signed.signature, DIRECTORY_DOMAIN + canonical_json(signed.directory)
        )
    except InvalidSignature as e:
        raise DirectoryError("directory signature does not verify") from e
    return signed.directory
