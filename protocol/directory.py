"""The agency key directory: who may sign as whom, and whom to seal to.

The directory is signed by the hub's root key and every party verifies it
before use. Keys have ids and a validity period; a new key can be added
before the old one expires (overlap), and a revoked key is refused from its
revocation time on: signatures made with it are not accepted, and nothing is
sealed to it any more.

Every party keeps a :class:`TrustedDirectory` (python-tuf's
``TrustedMetadataSet`` is the model): it accepts a new signed directory only if
its serial goes up (rollback refused), an equal serial only with identical
content (two different directories under one serial are an equivocation), and
only before the directory expires (a withheld revocation cannot be frozen in
forever). The party persists the last serial and digest, so this holds across
restarts.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import AwareDatetime, Field, ValidationError

from sigbus.protocol.canonical import DIRECTORY_DOMAIN, B64Bytes, canonical_json
from sigbus.protocol.errors import DirectoryError, DirectoryRefused, KeyLookupError
from sigbus.protocol.ids import AgencyId, KeyIdStr
from sigbus.protocol.messages import StrictModel
from sigbus.protocol.reasons import ReasonCode
from sigbus.protocol.sealing import SuiteId
from sigbus.protocol.signing import HybridPublicKey


class KeyUse(StrEnum):
    SIGNING = "signing"  # hybrid Ed25519+ML-DSA-65: envelopes, releases, notices
    SEALING = "sealing"  # HPKE recipient key
    LOG = "log"  # hybrid Ed25519+ML-DSA-65 checkpoint signatures (hub only)
    WITNESS = "witness"  # hybrid: a party agency's checkpoint cosignatures, nothing else


class KeyStatus(StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


_KEY_ID_TAG = {
    KeyUse.SIGNING: "sig",
    KeyUse.SEALING: "seal",
    KeyUse.LOG: "sig",
    KeyUse.WITNESS: "sig",
}


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

    def revoked_by(self, at: datetime) -> bool:
        """Revoked at ``at``: from ``revoked_at`` on, or always if marked revoked without a time."""
        if self.revoked_at is not None:
            return at >= self.revoked_at
        return self.status is KeyStatus.REVOKED

    def usable_at(self, at: datetime) -> bool:
        if self.revoked_by(at):
            return False
        return self.not_before <= at < self.not_after


class AgencyEntry(StrictModel):
    agency: AgencyId
    nats_user: str | None = None  # the agency's NATS nkey (public), for server config
    keys: Annotated[tuple[DirectoryKey, ...], Field(max_length=32)]


#: How long a newly signed directory is in force: the hub operator signs a fresh
#: one (`sigbus keys renew`) before then, so a withheld one is noticed in time.
DIRECTORY_VALIDITY = timedelta(days=30)


class Directory(StrictModel):
    version: Literal[1] = 1
    serial: Annotated[int, Field(ge=1)]
    issued_at: AwareDatetime
    #: After this no party uses the directory (fail closed: a frozen directory).
    expires_at: AwareDatetime
    agencies: tuple[AgencyEntry, ...]

    def expired_at(self, now: datetime) -> bool:
        return now >= self.expires_at

    def entry(self, agency: AgencyId) -> AgencyEntry:
        for e in self.agencies:
            if e.agency == agency:
                return e
        raise KeyLookupError("agency is not in the directory")

    def signing_key(self, agency: AgencyId, key_id: str, *, at: datetime) -> HybridPublicKey:
        """The sender's verification key, refused if unknown, revoked or not valid at ``at``."""
        for k in self.entry(agency).keys:
            if k.key_id != key_id or k.use is not KeyUse.SIGNING:
                continue
            if k.revoked_by(at):
                raise KeyLookupError("signing key is revoked", reason=ReasonCode.REVOKED_KEY)
            if not (k.not_before <= at < k.not_after):
                raise KeyLookupError(
                    "signing key is outside its validity period", reason=ReasonCode.KEY_NOT_VALID
                )
            try:
                return HybridPublicKey.from_public_bytes(k.public_key)
            except ValueError as e:
                raise KeyLookupError("signing key is not a hybrid public key") from e
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


def directory_digest(raw: bytes) -> str:
    """What a party remembers of the signed directory it trusts."""
    return hashlib.sha256(raw).hexdigest()


class DirectoryState(StrictModel):
    """The last directory a party trusted: persisted, so a restart cannot roll it back."""

    serial: Annotated[int, Field(ge=1)]
    digest: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class TrustedDirectory:
    """The directory a party trusts, and the rules for replacing it. Pure: bytes and time in.

    ``state``: what the party persisted last (``None`` on its first start).
    """

    def __init__(self, trusted_root: bytes, state: DirectoryState | None = None) -> None:
        self._root = trusted_root
        self.state = state
        self.directory: Directory | None = None

    def update(self, raw: bytes, now: datetime) -> Directory:
        """Verify ``raw`` and make it the trusted directory, or raise :class:`DirectoryError`
        and keep the one trusted before."""
        directory = verify_directory(raw, self._root)
        digest = directory_digest(raw)
        if self.state is not None:
            if directory.serial < self.state.serial:
                raise DirectoryRefused(
                    f"directory rollback: serial {directory.serial} is older than the "
                    f"trusted serial {self.state.serial}",
                    kind="directory_rollback",
                )
            if directory.serial == self.state.serial and digest != self.state.digest:
                raise DirectoryRefused(
                    f"two different directories carry serial {directory.serial}",
                    kind="directory_equivocation",
                )
        if directory.expired_at(now):
            raise DirectoryRefused(
                f"directory serial {directory.serial} expired at "
                f"{directory.expires_at.isoformat()}: the hub must sign a fresh one "
                "(`sigbus keys renew`)",
                kind="directory_expired",
            )
        self.directory = directory
        self.state = DirectoryState(serial=directory.serial, digest=digest)
        return directory
