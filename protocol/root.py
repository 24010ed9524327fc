"""The k-of-n root of trust: who may sign the agency directory (TUF-style root metadata).

One root key held by the hub operator would let the hub alone add a signing key
for the police or a sealing key for the school. The root instead lists several
hybrid (Ed25519 + ML-DSA-65) keys held by different agencies, a threshold ``k``
of distinct holders that must sign, and the holders that must always be among
them (the hub). Every party pins one signed root out of band (``root.json``).

Rotation follows TUF (the update framework, root metadata §5.3.4): root version
``n + 1`` is trusted only if a threshold of version ``n``'s keys *and* a
threshold of its own keys signed it, versions are walked one by one (no gap),
never backwards (the party persists the newest version it trusted), and the
newest root must not be expired. Pure: bytes and time in.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Self

from cryptography.exceptions import InvalidSignature
from pydantic import AwareDatetime, Field, StringConstraints, model_validator

from sigbus.protocol.canonical import ROOT_DOMAIN, B64Bytes, canonical_json
from sigbus.protocol.errors import DirectoryRefused
from sigbus.protocol.ids import AgencyId
from sigbus.protocol.messages import StrictModel
from sigbus.protocol.signing import HybridPrivateKey, HybridPublicKey

RootKeyIdStr = Annotated[
    str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,30}-root-[0-9a-f]{16}$")
]


def root_key_id_for(holder: AgencyId, public_bytes: bytes) -> str:
    """Self-certifying: the holder and a hash of the public key."""
    digest = hashlib.sha256(b"root\n" + public_bytes).hexdigest()[:16]
    return f"{holder}-root-{digest}"


class RootKey(StrictModel):
    key_id: RootKeyIdStr
    holder: AgencyId
    public_key: B64Bytes  # hybrid Ed25519 || ML-DSA-65

    @model_validator(mode="after")
    def _self_certifying(self) -> Self:
        if self.key_id != root_key_id_for(self.holder, self.public_key):
            raise ValueError("root key id does not match its holder and public key")
        HybridPublicKey.from_public_bytes(self.public_key)  # ValueError if malformed
        return self


class Root(StrictModel):
    version: Annotated[int, Field(ge=1)]
    expires_at: AwareDatetime
    keys: Annotated[tuple[RootKey, ...], Field(min_length=1, max_length=16)]
    #: Distinct holders whose keys must sign (a holder with two keys counts once).
    threshold: Annotated[int, Field(ge=1)]
    #: Holders that must be among the signers whatever the threshold (e.g. the hub).
    required_holders: tuple[AgencyId, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        ids = [k.key_id for k in self.keys]
        if len(set(ids)) != len(ids):
            raise ValueError("a root key is listed twice")
        holders = {k.holder for k in self.keys}
        if self.threshold > len(holders):
            raise ValueError("the threshold is larger than the number of distinct holders")
        if not set(self.required_holders) <= holders:
            raise ValueError("a required holder holds no root key")
        return self

    def key(self, key_id: str) -> RootKey | None:
        for k in self.keys:
            if k.key_id == key_id:
                return k
        return None

    def expired_at(self, now: datetime) -> bool:
        return now >= self.expires_at


class RootSignature(StrictModel):
    key_id: RootKeyIdStr
    signature: B64Bytes


class SignedRoot(StrictModel):
    root: Root
    signatures: Annotated[tuple[RootSignature, ...], Field(max_length=32)] = ()


def root_message(root: Root) -> bytes:
    return ROOT_DOMAIN + canonical_json(root)


def sign_with(key: HybridPrivateKey, holder: AgencyId, message: bytes) -> RootSignature:
    public = key.public_key().public_bytes_raw()
    return RootSignature(key_id=root_key_id_for(holder, public), signature=key.sign(message))


def add_signatures(
    existing: Sequence[RootSignature], added: Sequence[RootSignature]
) -> tuple[RootSignature, ...]:
    """``existing`` plus ``added``, one signature per key id (a re-sign replaces)."""
    by_id = {s.key_id: s for s in existing}
    for s in added:
        by_id[s.key_id] = s
    return tuple(by_id.values())


def check_threshold(
    root: Root, message: bytes, signatures: Sequence[RootSignature], *, what: str
) -> frozenset[AgencyId]:
    """The distinct holders whose valid signatures over ``message`` meet ``root``'s
    threshold and include every required holder; else :class:`DirectoryRefused`.

    Unknown key ids and invalid signatures count for nothing; a key signing twice,
    or a holder signing with two keys, counts once."""
    holders: set[AgencyId] = set()
    seen: set[str] = set()
    for sig in signatures:
        key = root.key(sig.key_id)
        if key is None or sig.key_id in seen:
            continue
        try:
            HybridPublicKey.from_public_bytes(key.public_key).verify(sig.signature, message)
        except InvalidSignature:
            continue
        seen.add(sig.key_id)
        holders.add(key.holder)
    missing = sorted(set(root.required_holders) - holders)
    if missing:
        raise DirectoryRefused(
            f"{what} carries no valid signature of the required root key holder(s) "
            f"{', '.join(missing)}",
            kind="root_required_holder_missing",
            agencies=tuple(missing),
        )
    if len(holders) < root.threshold:
        raise DirectoryRefused(
            f"{what} carries valid signatures of {len(holders)} distinct root key holder(s) "
            f"of root version {root.version}; its threshold is {root.threshold}",
            kind="root_threshold_not_met",
        )
    return frozenset(holders)


def verify_root_step(trusted: Root, candidate: SignedRoot) -> Root:
    """``candidate`` as the successor of ``trusted``: version + 1, signed by a threshold of
    both the old and the new keys."""
    new = candidate.root
    if new.version != trusted.version + 1:
        raise DirectoryRefused(
            f"root version {new.version} does not follow the trusted version {trusted.version}",
            kind="root_version_gap",
        )
    message = root_message(new)
    check_threshold(trusted, message, candidate.signatures, what=f"root version {new.version}")
    check_threshold(new, message, candidate.signatures, what=f"root version {new.version}")
    return new


def walk_roots(
    pinned: SignedRoot, chain: Sequence[SignedRoot], now: datetime, *, min_version: int = 0
) -> Root:
    """From the pinned root through ``chain`` to the newest root, refusing a gap, a
    second root under a known version, a rollback below ``min_version`` (persisted by
    the party) and an expired newest root."""
    trusted = pinned.root
    check_threshold(trusted, root_message(trusted), pinned.signatures, what="the pinned root")
    for signed in sorted(chain, key=lambda s: s.root.version):
        if signed.root.version <= trusted.version:
            if signed.root.version == trusted.version and signed.root != trusted:
                raise DirectoryRefused(
                    f"two different roots carry version {trusted.version}",
                    kind="root_equivocation",
                )
            continue
        trusted = verify_root_step(trusted, signed)
    if trusted.version < min_version:
        raise DirectoryRefused(
            f"root rollback: version {trusted.version} is older than the trusted version "
            f"{min_version}",
            kind="root_rollback",
        )
    if trusted.expired_at(now):
        raise DirectoryRefused(
            f"root version {trusted.version} expired at {trusted.expires_at.isoformat()}: "
            "the root key holders must sign a new one (`sigbus keys rotate-root`)",
            kind="root_expired",
        )
    return trusted


def sign_root(
    root: Root,
    signers: Sequence[tuple[AgencyId, HybridPrivateKey]],
    *,
    onto: SignedRoot | None = None,
) -> SignedRoot:
    """``root`` signed by each (holder, key) of ``signers``, added to ``onto``'s signatures."""
    message = root_message(root)
    if onto is not None and onto.root != root:
        raise ValueError("the signatures to add to belong to another root")
    added = [sign_with(key, holder, message) for holder, key in signers]
    return SignedRoot(root=root, signatures=add_signatures(onto.signatures if onto else (), added))
