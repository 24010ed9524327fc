"""What a verifier trusts, taken from a signed directory and never from the file it checks.

A compliance officer pins the root public key out of band; the directory is
verified against it (:func:`sigbus.protocol.directory.verify_directory`) by the
caller, and this module picks out of it, *by name*:

- the log keys: the hub's keys of use ``log`` (the checkpoint signer);
- the witnesses: every party agency (every agency but the hub), under its
  C2SP witness name, with its ``witness`` keys (an agency cosigns with a key of
  its own use, never its envelope signing key, :mod:`sigbus.agents.witnessing`).

A key that was ever revoked does not vouch for anything here: a revocation
says the key may be in other hands, and a checkpoint signature carries no
time, a cosignature only the time its signer chose (RFC 9162 §8.1 leaves key
compromise to the operator; we fail closed).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sigbus.audit.checkpoint import PublicKey, load_public_key
from sigbus.audit.errors import AuditError
from sigbus.protocol.directory import Directory, DirectoryKey, KeyUse
from sigbus.protocol.ids import HUB, AgencyId


class TrustError(AuditError):
    """The trusted inputs cannot support a verification (e.g. a quorum out of range)."""


@dataclass(frozen=True)
class TrustedKey:
    """One key of the directory: its id, public key and validity."""

    key_id: str
    public_key: PublicKey
    not_before: datetime
    not_after: datetime

    def valid_at_unix(self, seconds: int) -> bool:
        at = datetime.fromtimestamp(seconds, UTC)
        return self.not_before <= at < self.not_after


@dataclass(frozen=True)
class TrustedWitness:
    agency: AgencyId
    keys: tuple[TrustedKey, ...]


@dataclass(frozen=True)
class TrustAnchors:
    """The keys a verification is proven against, and how many witnesses it needs."""

    root_key_id: str
    directory_serial: int
    directory_issued_at: datetime
    log_keys: tuple[TrustedKey, ...]
    #: C2SP witness (key) name -> the agency and its keys
    witnesses: Mapping[str, TrustedWitness]
    quorum: int


def witness_name(agency: AgencyId) -> str:
    """An agency's C2SP witness (key) name, for both logs it witnesses."""
    return f"sigbus/witness/{agency}"


def root_key_id(root_public: bytes) -> str:
    """A short, stable name for the pinned root key: ``root-`` + SHA-256(key)[:16] hex."""
    return "root-" + hashlib.sha256(root_public).hexdigest()[:16]


def _unrevoked(keys: tuple[DirectoryKey, ...], use: KeyUse) -> tuple[TrustedKey, ...]:
    return tuple(
        TrustedKey(
            key_id=k.key_id,
            public_key=load_public_key(k.public_key),
            not_before=k.not_before,
            not_after=k.not_after,
        )
        for k in keys
        if k.use is use and k.revoked_at is None
    )


def trust_from_directory(
    directory: Directory,
    *,
    root_public: bytes,
    witness_name: Callable[[AgencyId], str],
    quorum: int | None = None,
) -> TrustAnchors:
    """The trust anchors of an already verified ``directory``.

    ``quorum`` defaults to every party agency; it must be between 1 and their
    number (zero cosignatures never prove anything).
    """
    log_keys = _unrevoked(directory.entry(HUB).keys, KeyUse.LOG)
    if not log_keys:
        raise TrustError("the directory names no unrevoked log key for the hub")
    witnesses = {
        witness_name(entry.agency): TrustedWitness(
            entry.agency, _unrevoked(entry.keys, KeyUse.WITNESS)
        )
        for entry in directory.agencies
        if entry.agency != HUB
    }
    needed = len(witnesses) if quorum is None else quorum
    if not 1 <= needed <= len(witnesses):
        raise TrustError(
            f"quorum {needed} is out of range: the directory has {len(witnesses)} witnesses"
        )
    return TrustAnchors(
        root_key_id=root_key_id(root_public),
        directory_serial=directory.serial,
        directory_issued_at=directory.issued_at,
        log_keys=log_keys,
        witnesses=witnesses,
        quorum=needed,
    )
