"""The log's verification status for the console (pure: the caller reads the bus)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sigbus.audit.checkpoint import (
    DEFAULT_ORIGIN,
    PublicKey,
    load_public_key,
    verify_cosignature,
    verify_note,
)
from sigbus.audit.entry import leaf_hash
from sigbus.audit.errors import AuditError
from sigbus.audit.merkle import root_from_leaf_hashes
from sigbus.protocol.proofs import Cosignature


@dataclass(frozen=True)
class LogStatus:
    size: int | None  # None: no checkpoint yet
    signature_ok: bool
    root_ok: bool
    cosigned_by: tuple[str, ...]
    witnesses: tuple[str, ...]
    quorum: int

    @property
    def quorum_met(self) -> bool:
        return self.signature_ok and self.root_ok and len(self.cosigned_by) >= self.quorum


def log_status(
    note: str | None,
    leaves: Sequence[bytes],
    cosignatures: Sequence[Cosignature],
    *,
    log_key: PublicKey,
    witnesses: Sequence[str],
    quorum: int | None = None,
) -> LogStatus:
    """Check the hub's signature on the checkpoint, the entries' Merkle root against it,
    and each witness's cosignature of exactly that checkpoint (``audit verify``'s checks
    on the live log; ``quorum`` defaults to every witness, as there)."""
    needed = len(witnesses) if quorum is None else quorum
    if note is None:
        return LogStatus(None, False, False, (), tuple(witnesses), needed)
    try:
        checkpoint = verify_note(note, DEFAULT_ORIGIN, log_key)
    except AuditError:
        return LogStatus(None, False, False, (), tuple(witnesses), needed)
    root_ok = len(leaves) == checkpoint.size and (
        root_from_leaf_hashes(leaf_hash(b) for b in leaves) == checkpoint.root
    )
    cosigned = []
    for c in cosignatures:
        if c.witness not in witnesses or c.checkpoint_size != checkpoint.size:
            continue
        try:
            verify_cosignature(
                checkpoint.body(),
                c.line,
                c.witness,
                load_public_key(c.public_key),
            )
        except (AuditError, ValueError):
            continue
        cosigned.append(c.witness)
    return LogStatus(checkpoint.size, True, root_ok, tuple(cosigned), tuple(witnesses), needed)
