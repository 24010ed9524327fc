"""Split view: the hub showing different agencies different logs, and how it is caught.

Three pure pieces, used by the witnesses (:mod:`sigbus.agents.witnessing`) and
by the offline verifier (``sigbus audit verify-fork``):

- :func:`cosigned_by_quorum`: a recipient trusts a checkpoint for its
  inclusion proofs only if a quorum of distinct trusted witnesses (from the
  signed directory, :mod:`audit.trust`) cosigned it. An uncosigned checkpoint
  proves only what the hub chose to show this one recipient.
- :func:`compare_views`: gossip. Every witness publishes the checkpoints it
  cosigned; any other witness compares them with its own view. Two checkpoints
  signed by the log are a fork if they have the same size and different
  roots, or if no consistency proof links the smaller to the larger
  (RFC 9162 §2.1.4.2). The result is :class:`~audit.errors.ForkDetected`.
- :class:`ForkEvidence` and :func:`verify_fork_evidence`: what a witness saves,
  and the offline check that the two checkpoints are both by the log key and
  cannot both be true.

No I/O, no clock: the caller passes the time and the proofs.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from sigbus.audit.checkpoint import (
    Checkpoint,
    PublicKey,
    mldsa_key_name,
    parse_signed_note,
    verify_cosignature,
    verify_note,
)
from sigbus.audit.errors import AuditError, ForkDetected, ProofError, SignatureError
from sigbus.audit.merkle import verify_consistency
from sigbus.audit.trust import TrustAnchors

FORK_EVIDENCE_FORMAT: Final = "sigbus-fork-evidence/v1"


@dataclass(frozen=True)
class QuorumResult:
    """The checkpoint a quorum vouches for, or why it does not (``witnesses`` counted)."""

    checkpoint: Checkpoint
    witnesses: tuple[str, ...]  # the agencies whose cosignatures counted
    quorum: int

    @property
    def reached(self) -> bool:
        return len(self.witnesses) >= self.quorum


def cosigned_by_quorum(note: str, trust: TrustAnchors, *, log_key_name: str) -> QuorumResult:
    """Verify the log's signature on ``note`` and count its trusted cosignatures.

    A cosignature counts if it names a witness of the directory, verifies under
    one of that witness's unrevoked keys and was made within that key's
    validity; each witness counts once. Raises :class:`SignatureError` if no log
    key of ``trust`` signed the note.
    """
    checkpoint = _by_log(note, trust, log_key_name)
    signed = parse_signed_note(note)
    counted: dict[str, str] = {}
    for signature in signed.signatures:
        witness = trust.witnesses.get(signature.name)
        if witness is None or signature.name in counted:
            continue
        # A hybrid key's cosignature is its cosignature/v1 line and its ML-DSA-65 line.
        pq_lines = [s.line() for s in signed.signatures if s.name == mldsa_key_name(signature.name)]
        lines = [signature.line() + pq for pq in pq_lines] or [signature.line()]
        for key in witness.keys:
            at = _cosigned_at(signed.body, lines, signature.name, key.public_key)
            if at is not None and key.valid_at_unix(at):
                counted[signature.name] = witness.agency
                break
    return QuorumResult(checkpoint, tuple(sorted(counted.values())), trust.quorum)


def _cosigned_at(body: str, lines: list[str], name: str, key: PublicKey) -> int | None:
    """The timestamp of the first of ``lines`` that is a valid cosignature by ``key``."""
    for line in lines:
        try:
            return verify_cosignature(body, line, name, key)
        except AuditError:
            continue
    return None


def _by_log(note: str, trust: TrustAnchors, log_key_name: str) -> Checkpoint:
    error: AuditError = SignatureError("the directory names no log key")
    for key in trust.log_keys:
        try:
            return verify_note(note, log_key_name, key.public_key)
        except AuditError as e:
            error = e
    raise error


def proof_sizes(own: Checkpoint, other: Checkpoint) -> tuple[int, int] | None:
    """The (smaller, larger) sizes a consistency proof must link, or None if none is needed."""
    if own.size == other.size or min(own.size, other.size) == 0:
        return None
    return min(own.size, other.size), max(own.size, other.size)


def compare_views(
    own_note: str,
    other_note: str,
    consistency_proof: Sequence[bytes],
    *,
    log_key: PublicKey,
    log_key_name: str,
) -> None:
    """Raise :class:`ForkDetected` if two log-signed checkpoints cannot both be true.

    ``consistency_proof`` links the smaller to the larger (ignored for equal
    sizes). A note not signed by the log raises :class:`SignatureError`: it is
    no evidence of anything (a forged gossip message), not a fork.
    """
    own = verify_note(own_note, log_key_name, log_key)
    other = verify_note(other_note, log_key_name, log_key)
    if own.origin != other.origin:
        raise SignatureError("the two checkpoints are of different logs (origins differ)")
    if own.size == other.size:
        if own.root != other.root:
            raise ForkDetected(
                f"two checkpoints of size {own.size} with different roots",
                previous=own_note,
                candidate=other_note,
            )
        return
    sizes = proof_sizes(own, other)
    if sizes is None:
        return  # the empty tree is a prefix of every tree
    (small, small_note), (large, large_note) = sorted(
        ((own, own_note), (other, other_note)), key=lambda pair: pair[0].size
    )
    try:
        verify_consistency(small.size, large.size, consistency_proof, small.root, large.root)
    except ProofError as e:
        raise ForkDetected(
            f"checkpoint {large.size} is not proven consistent with {small.size}: {e}",
            previous=small_note,
            candidate=large_note,
            consistency_proof=tuple(consistency_proof),
        ) from e


class ForkEvidence(BaseModel):
    """What a witness saves on a fork: both signed checkpoints and the proof attempt."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    format: Literal["sigbus-fork-evidence/v1"] = FORK_EVIDENCE_FORMAT
    origin: str
    detected_by: str  # the witness name that saw it
    detected_at: str  # ISO 8601, the witness's time
    source: Literal["own_view", "gossip"]
    peer: str | None = None  # the agency whose gossip disagreed, if any
    first: str  # the smaller (or the witness's own) signed checkpoint note
    second: str
    consistency_proof: tuple[str, ...] = ()  # base64 nodes the hub served, if any

    @classmethod
    def of(
        cls,
        fork: ForkDetected,
        *,
        origin: str,
        detected_by: str,
        detected_at: str,
        source: Literal["own_view", "gossip"],
        peer: str | None = None,
    ) -> ForkEvidence:
        return cls(
            origin=origin,
            detected_by=detected_by,
            detected_at=detected_at,
            source=source,
            peer=peer,
            first=fork.previous,
            second=fork.candidate,
            consistency_proof=tuple(
                base64.b64encode(node).decode("ascii") for node in fork.consistency_proof
            ),
        )

    def proof_nodes(self) -> tuple[bytes, ...]:
        try:
            return tuple(base64.b64decode(node, validate=True) for node in self.consistency_proof)
        except (binascii.Error, ValueError) as e:
            raise AuditError("fork evidence: a consistency proof node is not base64") from e


def parse_fork_evidence(text: str | bytes) -> ForkEvidence:
    try:
        return ForkEvidence.model_validate_json(text)
    except ValidationError as e:
        raise AuditError(f"not {FORK_EVIDENCE_FORMAT} JSON") from e


class ForkVerdict(StrEnum):
    #: Same size, different roots, both signed by the log: no honest log signs both.
    PROVEN = "fork-proven"
    #: Different sizes and the proof served does not link them. It shows the log
    #: signed both and the proof given fails; a proof can be withheld or garbled
    #: by whoever made the file, so this alone proves nothing offline.
    INCONSISTENT_PROOF = "unproven-different-sizes"
    #: The two are consistent (identical, or the proof links them).
    NOT_A_FORK = "not-a-fork"


@dataclass(frozen=True)
class ForkCheck:
    verdict: ForkVerdict
    first: Checkpoint
    second: Checkpoint
    log_key_id: str


def verify_fork_evidence(evidence: ForkEvidence, trust: TrustAnchors) -> ForkCheck:
    """Check ``evidence`` against the directory's log keys (signed under the origin).

    Raises :class:`SignatureError` when either checkpoint is not by a trusted log key.
    """
    signed: list[tuple[Checkpoint, str]] = []
    for label, note in (("first", evidence.first), ("second", evidence.second)):
        found = _signed_by_any(note, trust, evidence.origin)
        if found is None:
            raise SignatureError(
                f"the {label} checkpoint is not signed by a log key of the directory "
                f"under {evidence.origin!r}"
            )
        signed.append(found)
    (first, first_key), (second, _) = signed
    if first.origin != evidence.origin or second.origin != evidence.origin:
        raise SignatureError(f"a checkpoint's origin is not {evidence.origin!r}")
    if first.size == second.size:
        verdict = ForkVerdict.PROVEN if first.root != second.root else ForkVerdict.NOT_A_FORK
        return ForkCheck(verdict, first, second, first_key)
    small, large = sorted((first, second), key=lambda c: c.size)
    try:
        verify_consistency(small.size, large.size, evidence.proof_nodes(), small.root, large.root)
    except ProofError:
        return ForkCheck(ForkVerdict.INCONSISTENT_PROOF, first, second, first_key)
    return ForkCheck(ForkVerdict.NOT_A_FORK, first, second, first_key)


def _signed_by_any(note: str, trust: TrustAnchors, name: str) -> tuple[Checkpoint, str] | None:
    for key in trust.log_keys:
        try:
            return verify_note(note, name, key.public_key), key.key_id
        except AuditError:
            continue
    return None
