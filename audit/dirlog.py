"""The key directory as a witnessed, append-only Merkle log (key transparency, issue #10).

Every directory version the hub publishes is one leaf of a second log, the
*directory log* (origin :data:`DIRECTORY_LOG_ORIGIN`), built from the same parts
as the disclosure log: RFC 9162 trees (:mod:`audit.merkle`), C2SP signed-note
checkpoints signed with the hub's ``log`` key (:mod:`audit.checkpoint`), and
agency witnesses that cosign a checkpoint only if it extends the last one they
cosigned (:class:`audit.witness.Witness`).

A leaf commits to the directory's serial and canonical digest
(:func:`sigbus.protocol.directory.directory_digest`), so adding a root signature
or an endorsement to the same directory is not a new version.

Rules kept here, pure (bytes, models and time in; no I/O):

- :class:`DirectoryWitness` cosigns a directory-log checkpoint only if it is
  append-only since its last cosignature *and* its newest leaf is the directory
  the agency itself trusts (or one at a later serial it has since verified);
- :func:`check_directory_logged` refuses a directory that is not included in a
  directory-log checkpoint carrying a witness quorum: a directory shown to one
  party only (a split view of the keys) cannot gather the other agencies'
  cosignatures;
- two directory-log checkpoints that cannot both be true are a fork:
  :func:`sigbus.audit.splitview.compare_views` and
  :class:`~sigbus.audit.splitview.ForkEvidence` apply unchanged under this origin.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sigbus.audit.checkpoint import Checkpoint, PrivateKey, PublicKey, make_checkpoint_body
from sigbus.audit.errors import AuditError, ProofError
from sigbus.audit.merkle import MerkleTree, hash_leaf, verify_inclusion
from sigbus.audit.splitview import QuorumResult, cosigned_by_quorum
from sigbus.audit.trust import TrustAnchors
from sigbus.audit.witness import Witness
from sigbus.protocol.directory import Directory, directory_digest

#: The C2SP origin (and log key name) of the directory log: distinct from the
#: disclosure log's, so a checkpoint of one can never be taken for the other.
DIRECTORY_LOG_ORIGIN = "sigbus.se/directory"
_LEAF_DOMAIN = b"sigbus/v1/directory-log-leaf\n"


class DirectoryNotLogged(AuditError):
    """A directory is not proven to be in a quorum-cosigned directory-log checkpoint."""


class DirectoryLeaf(BaseModel):
    """One directory version: its serial and canonical digest."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    serial: Annotated[int, Field(ge=1)]
    digest: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]

    @classmethod
    def of(cls, directory: Directory) -> DirectoryLeaf:
        return cls(serial=directory.serial, digest=directory_digest(directory))

    def data(self) -> bytes:
        return _LEAF_DOMAIN + f"{self.serial} {self.digest}\n".encode()

    def hash(self) -> bytes:
        return hash_leaf(self.data())


class DirectoryLogProof(BaseModel):
    """What travels beside ``directory.json`` (``directory-log.json``): the newest
    directory's leaf, its inclusion proof, and the cosigned checkpoint it is proven in."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    format: Literal["sigbus-directory-log-proof/v1"] = "sigbus-directory-log-proof/v1"
    leaf: DirectoryLeaf
    index: Annotated[int, Field(ge=0)]
    inclusion_proof: tuple[str, ...]  # base64 nodes, RFC 9162 §2.1.3
    checkpoint: str  # the signed note, with the witnesses' cosignature lines
    #: the previous tree size, and the proof that the checkpoint extends it (RFC 9162
    #: §2.1.4), for the witnesses that cosigned that size
    previous_size: Annotated[int, Field(ge=0)] = 0
    consistency_proof: tuple[str, ...] = ()

    def proof_nodes(self) -> tuple[bytes, ...]:
        return _nodes(self.inclusion_proof)

    def consistency_nodes(self) -> tuple[bytes, ...]:
        return _nodes(self.consistency_proof)


def _nodes(encoded: tuple[str, ...]) -> tuple[bytes, ...]:
    try:
        return tuple(base64.b64decode(n, validate=True) for n in encoded)
    except (binascii.Error, ValueError) as e:
        raise DirectoryNotLogged("directory log: a proof node is not base64") from e


def parse_directory_log_proof(text: str | bytes) -> DirectoryLogProof:
    try:
        return DirectoryLogProof.model_validate_json(text)
    except ValidationError as e:
        raise DirectoryNotLogged(
            "not a sigbus-directory-log-proof/v1 file "
            f"({e.error_count()} problem(s), first at {e.errors()[0]['loc']})"
        ) from e


class DirectoryLog:
    """The hub's side: the leaves so far, appended to only with a higher serial."""

    def __init__(self, leaves: Sequence[DirectoryLeaf] = ()) -> None:
        self.leaves: list[DirectoryLeaf] = []
        self.tree = MerkleTree()
        for leaf in leaves:
            self.append(leaf)

    def append(self, leaf: DirectoryLeaf) -> bool:
        """Add ``leaf``; False if it is already the newest (republishing the same directory)."""
        if self.leaves:
            last = self.leaves[-1]
            if leaf == last:
                return False
            if leaf.serial <= last.serial:
                raise AuditError(
                    f"directory log: serial {leaf.serial} does not follow the logged "
                    f"serial {last.serial}"
                )
        self.leaves.append(leaf)
        self.tree.append(leaf.hash())
        return True

    def checkpoint_body(self) -> str:
        return make_checkpoint_body(DIRECTORY_LOG_ORIGIN, self.tree.size, self.tree.root())

    def consistency_proof(self, size1: int) -> list[bytes]:
        return self.tree.consistency_proof(size1) if 0 < size1 < self.tree.size else []

    def proof(self, checkpoint_note: str) -> DirectoryLogProof:
        """The newest leaf's proof against ``checkpoint_note`` (a checkpoint of this tree)."""
        index = self.tree.size - 1
        nodes = self.tree.inclusion_proof(index)
        return DirectoryLogProof(
            leaf=self.leaves[index],
            index=index,
            inclusion_proof=tuple(base64.b64encode(n).decode("ascii") for n in nodes),
            checkpoint=checkpoint_note,
        )


class DirectoryWitness:
    """An agency's witness of the directory log: :class:`Witness` (append-only, fork on
    a contradiction) plus the rule that the newest leaf is a directory it trusts."""

    def __init__(
        self,
        name: str,
        private_key: PrivateKey,
        log_public_key: PublicKey,
        *,
        last_checkpoint: str | None = None,
    ) -> None:
        self.witness = Witness(
            name, private_key, log_public_key, DIRECTORY_LOG_ORIGIN, last_checkpoint=last_checkpoint
        )

    def observe(
        self,
        signed_checkpoint: str,
        consistency_proof: Sequence[bytes],
        proof: DirectoryLogProof,
        trusted: Directory,
        *,
        now: datetime,
    ) -> str:
        """Our cosignature line for ``signed_checkpoint``, or raise (nothing cosigned).

        ``proof`` proves its newest leaf; that leaf must be ``trusted`` (the directory
        this agency verified and holds), or a later serial (it verified a newer one
        since). :class:`~sigbus.audit.errors.ForkDetected` for a rewritten log."""
        checkpoint = self._checkpoint_of(signed_checkpoint)
        if proof.index != checkpoint.size - 1:
            raise DirectoryNotLogged(
                f"directory log: the proof is for leaf {proof.index}, not the newest "
                f"({checkpoint.size - 1})"
            )
        _check_inclusion(proof, checkpoint)
        held = DirectoryLeaf.of(trusted)
        if proof.leaf.serial < held.serial or (
            proof.leaf.serial == held.serial and proof.leaf.digest != held.digest
        ):
            raise DirectoryNotLogged(
                f"directory log: the newest leaf (serial {proof.leaf.serial}) is not the "
                f"directory this agency trusts (serial {held.serial})"
            )
        return self.witness.observe(signed_checkpoint, consistency_proof, now=now)

    def _checkpoint_of(self, note: str) -> Checkpoint:
        return self.witness.verified(note)


def _check_inclusion(proof: DirectoryLogProof, checkpoint: Checkpoint) -> None:
    try:
        verify_inclusion(
            proof.leaf.hash(), proof.index, checkpoint.size, proof.proof_nodes(), checkpoint.root
        )
    except ProofError as e:
        raise DirectoryNotLogged(
            f"directory log: serial {proof.leaf.serial} is not included in the checkpoint "
            f"of size {checkpoint.size}: {e}"
        ) from e


def check_directory_logged(
    directory: Directory, proof: DirectoryLogProof, trust: TrustAnchors
) -> QuorumResult:
    """Refuse ``directory`` unless ``proof`` includes it in a directory-log checkpoint
    signed by a hub log key of ``trust`` and cosigned by its witness quorum.

    ``trust`` comes from the directory in force (or ``directory`` itself, once its
    root signatures verified): the witnesses are the agencies, by name."""
    leaf = DirectoryLeaf.of(directory)
    if proof.leaf != leaf:
        raise DirectoryNotLogged(
            f"directory log: the proof is for serial {proof.leaf.serial}, not for this "
            f"directory (serial {leaf.serial}, digest {leaf.digest[:16]})"
        )
    try:
        result = cosigned_by_quorum(proof.checkpoint, trust, log_key_name=DIRECTORY_LOG_ORIGIN)
    except AuditError as e:
        raise DirectoryNotLogged(f"directory log: checkpoint not signed by the hub: {e}") from e
    if result.checkpoint.origin != DIRECTORY_LOG_ORIGIN:
        raise DirectoryNotLogged(
            f"directory log: checkpoint origin is not {DIRECTORY_LOG_ORIGIN!r}"
        )
    _check_inclusion(proof, result.checkpoint)
    if not result.reached:
        raise DirectoryNotLogged(
            f"directory log: witness quorum not met: {len(result.witnesses)} of the "
            f"{result.quorum} required agencies cosigned the checkpoint of size "
            f"{result.checkpoint.size} (cosigned: {', '.join(result.witnesses) or 'none'})"
        )
    return result
