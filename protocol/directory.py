"""The agency key directory: who may sign as whom, and whom to seal to.

The directory is signed by a threshold of the root key holders
(:mod:`sigbus.protocol.root`: k of n, the hub among them) and every party
verifies it before use; a change that grants an agency's name a new key must
also carry that agency's endorsement (:func:`check_endorsements`), so the root
key holders together still cannot give themselves a police signing key.

Keys have ids and a validity period; a new key can be added
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
from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Literal

from cryptography.exceptions import InvalidSignature
from pydantic import AwareDatetime, Field, ValidationError

from sigbus.protocol.canonical import (
    DIRECTORY_DOMAIN,
    ENDORSEMENT_DOMAIN,
    B64Bytes,
    canonical_json,
)
from sigbus.protocol.errors import DirectoryError, DirectoryRefused, KeyLookupError
from sigbus.protocol.ids import AgencyId, KeyIdStr
from sigbus.protocol.messages import StrictModel
from sigbus.protocol.reasons import ReasonCode
from sigbus.protocol.root import (
    Root,
    RootSignature,
    SignedRoot,
    add_signatures,
    check_threshold,
    sign_with,
    walk_roots,
)
from sigbus.protocol.sealing import SuiteId
from sigbus.protocol.signing import HybridPrivateKey, HybridPublicKey


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


class Endorsement(StrictModel):
    """An agency's consent to its own new entry: a signature by its signing key of the
    *previous* directory over ``ENDORSEMENT_DOMAIN`` + the canonical new entry (``null``
    when the agency is removed). It is carried in later directories while the entry
    stays the same, so a party that skipped a serial can still check it."""

    agency: AgencyId
    key_id: KeyIdStr
    signature: B64Bytes


class SignedDirectory(StrictModel):
    directory: Directory
    #: The root chain from version 1 (or any version the parties pinned) to the
    #: root whose keys signed this directory, oldest first.
    roots: Annotated[tuple[SignedRoot, ...], Field(min_length=1, max_length=64)]
    signatures: Annotated[tuple[RootSignature, ...], Field(max_length=32)] = ()
    endorsements: Annotated[tuple[Endorsement, ...], Field(max_length=256)] = ()


def directory_message(directory: Directory) -> bytes:
    return DIRECTORY_DOMAIN + canonical_json(directory)


def endorsement_message(agency: AgencyId, entry: AgencyEntry | None) -> bytes:
    return ENDORSEMENT_DOMAIN + canonical_json(
        {"agency": agency, "entry": None if entry is None else entry.model_dump(mode="json")}
    )


def sign_directory(
    directory: Directory,
    roots: tuple[SignedRoot, ...],
    signers: Sequence[tuple[AgencyId, HybridPrivateKey]],
    *,
    onto: SignedDirectory | None = None,
) -> SignedDirectory:
    """``directory`` with a root signature by each (holder, key) of ``signers``, added to
    those ``onto`` already carries for the same content (its endorsements are kept)."""
    if onto is not None and onto.directory != directory:
        onto = None
    added = [sign_with(key, holder, directory_message(directory)) for holder, key in signers]
    return SignedDirectory(
        directory=directory,
        roots=roots,
        signatures=add_signatures(onto.signatures if onto else (), added),
        endorsements=onto.endorsements if onto else (),
    )


def endorse(
    signed: SignedDirectory, agency: AgencyId, key_id: str, key: HybridPrivateKey
) -> SignedDirectory:
    """``signed`` with ``agency``'s endorsement of its entry (replacing an older one)."""
    entry = next((e for e in signed.directory.agencies if e.agency == agency), None)
    endorsement = Endorsement(
        agency=agency, key_id=key_id, signature=key.sign(endorsement_message(agency, entry))
    )
    kept = tuple(e for e in signed.endorsements if e.agency != agency)
    return signed.model_copy(update={"endorsements": (*kept, endorsement)})


def carry_endorsements(previous: SignedDirectory | None, new: SignedDirectory) -> SignedDirectory:
    """``new`` with ``previous``'s endorsements of entries that are still the same."""
    if previous is None:
        return new
    entries = {e.agency: e for e in new.directory.agencies}
    have = {e.agency for e in new.endorsements}
    carried = [
        e
        for e in previous.endorsements
        if e.agency not in have
        and _entry_of(previous.directory, e.agency) == entries.get(e.agency)
        and e.agency in entries
    ]
    return new.model_copy(update={"endorsements": (*new.endorsements, *carried)})


def _entry_of(directory: Directory, agency: AgencyId) -> AgencyEntry | None:
    return next((e for e in directory.agencies if e.agency == agency), None)


def parse_signed_root(raw: bytes) -> SignedRoot:
    try:
        return SignedRoot.model_validate_json(raw)
    except ValidationError as e:
        raise DirectoryError("the pinned root (root.json) is malformed") from e


def parse_signed_directory(raw: bytes) -> SignedDirectory:
    try:
        return SignedDirectory.model_validate_json(raw)
    except ValidationError as e:
        raise DirectoryError("directory file is malformed") from e


def verify_signed_directory(
    signed: SignedDirectory, pinned: SignedRoot, now: datetime, *, min_root_version: int = 0
) -> Root:
    """The root (walked from ``pinned`` through ``signed.roots``) whose threshold signed
    ``signed.directory``; else :class:`DirectoryRefused`."""
    root = walk_roots(pinned, signed.roots, now, min_version=min_root_version)
    check_threshold(
        root,
        directory_message(signed.directory),
        signed.signatures,
        what=f"directory serial {signed.directory.serial}",
    )
    return root


def verify_directory(raw: bytes, pinned_root: bytes, now: datetime) -> Directory:
    """Parse and verify a signed directory against the pinned root (``root.json``):
    a threshold of the current root's keys signed it (endorsements are checked by
    :class:`TrustedDirectory`, which knows the previous directory)."""
    signed = parse_signed_directory(raw)
    verify_signed_directory(signed, parse_signed_root(pinned_root), now)
    return signed.directory


def _grants(before: AgencyEntry, after: AgencyEntry) -> bool:
    """Whether ``after`` gives the agency's name any power ``before`` did not: a new key,
    a longer validity, an undone revocation, another NATS user. Revoking, shortening or
    dropping keys only takes power away, and needs no endorsement."""
    if after.nats_user != before.nats_user:
        return True
    old = {k.key_id: k for k in before.keys}
    for k in after.keys:
        was = old.get(k.key_id)
        if was is None or (k.use, k.suite, k.public_key) != (was.use, was.suite, was.public_key):
            return True
        if k.not_before < was.not_before or k.not_after > was.not_after:
            return True
        if was.revoked_at is not None and (k.revoked_at is None or k.revoked_at > was.revoked_at):
            return True
        if was.status is KeyStatus.REVOKED and k.status is not KeyStatus.REVOKED:
            return True
    return False


def check_endorsements(previous: Directory, new: SignedDirectory, now: datetime) -> None:
    """Every agency whose own keys in ``new`` grant more than in ``previous`` (or that
    ``new`` removes) endorsed it with a signing key usable in ``previous`` now; a new
    agency needs none (the root threshold admits it). Else ``unendorsed_key_change``."""
    unendorsed: list[str] = []
    for before in previous.agencies:
        after = _entry_of(new.directory, before.agency)
        if after is not None and not _grants(before, after):
            continue
        message = endorsement_message(before.agency, after)
        if not any(
            _endorsed_by(previous, e, message, now)
            for e in new.endorsements
            if e.agency == before.agency
        ):
            unendorsed.append(before.agency)
    if unendorsed:
        raise DirectoryRefused(
            f"directory serial {new.directory.serial} changes the keys of "
            f"{', '.join(unendorsed)} without that agency's endorsement",
            kind="unendorsed_key_change",
            agencies=tuple(unendorsed),
        )


def _endorsed_by(previous: Directory, e: Endorsement, message: bytes, now: datetime) -> bool:
    try:
        previous.signing_key(e.agency, e.key_id, at=now).verify(e.signature, message)
    except (KeyLookupError, InvalidSignature):
        return False
    return True


def directory_digest(directory: Directory) -> str:
    """What a party remembers of the directory it trusts: its canonical content (so
    adding a root signature or an endorsement to the same directory changes nothing)."""
    return hashlib.sha256(directory_message(directory)).hexdigest()


class DirectoryState(StrictModel):
    """The last directory a party trusted: persisted, so a restart cannot roll it back
    (nor forget the keys an unendorsed change is checked against)."""

    serial: Annotated[int, Field(ge=1)]
    digest: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    root_version: Annotated[int, Field(ge=1)] = 1
    directory: Directory | None = None


class TrustedDirectory:
    """The directory a party trusts, and the rules for replacing it. Pure: bytes and time in.

    ``pinned_root``: the signed root the party pinned (``root.json``); ``state``: what
    the party persisted last (``None`` on its first start).
    """

    def __init__(self, pinned_root: bytes, state: DirectoryState | None = None) -> None:
        self._pinned = parse_signed_root(pinned_root)
        self.state = state
        self.directory: Directory | None = None
        self.root: Root | None = None

    def update(self, raw: bytes, now: datetime) -> Directory:
        """Verify ``raw`` and make it the trusted directory, or raise :class:`DirectoryError`
        and keep the one trusted before."""
        signed = parse_signed_directory(raw)
        min_root = self.state.root_version if self.state is not None else 0
        root = verify_signed_directory(signed, self._pinned, now, min_root_version=min_root)
        directory = signed.directory
        digest = directory_digest(directory)
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
        previous = self.directory or (self.state.directory if self.state else None)
        if previous is not None and digest != directory_digest(previous):
            check_endorsements(previous, signed, now)
        self.directory = directory
        self.root = root
        self.state = DirectoryState(
            serial=directory.serial, digest=digest, root_version=root.version, directory=directory
        )
        return directory
