"""A witness: cosigns a log checkpoint only if the log has stayed append-only since the last one.

Each agency adapter runs one. The state machine is pure: the caller feeds it
signed checkpoints and consistency proofs (from NATS) and the current time,
persists :meth:`Witness.to_json` after every accepted checkpoint, and raises
the alarm when :class:`~audit.errors.ForkDetected` comes out.

Rules (after C2SP tlog-witness, which this follows without its HTTP API):

1. the checkpoint must carry a valid signature of the log key, for our origin;
2. the first checkpoint ever seen is trusted on first use;
3. a smaller size than the last cosigned one is refused as stale
   (:class:`~audit.errors.StaleCheckpoint`, no alarm: a replayed stream
   shows old checkpoints again);
4. the same size with another root is a fork: two signed, contradictory
   views of the log (:class:`~audit.errors.ForkDetected`);
5. a larger size needs a consistency proof from the last cosigned checkpoint
   (RFC 9162 §2.1.4.2); if it fails, the log has rewritten history or served
   a bad proof, and either way the witness must not cosign: ForkDetected.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from sigbus.audit.checkpoint import (
    Checkpoint,
    PrivateKey,
    PublicKey,
    cosign,
    note_body,
    public_key_bytes,
    verify_note,
)
from sigbus.audit.errors import (
    AuditError,
    CheckpointError,
    ForkDetected,
    ProofError,
    StaleCheckpoint,
)
from sigbus.audit.merkle import verify_consistency


class WitnessState(BaseModel):
    """What a witness must remember across restarts (JSON, written by the caller)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    format: Literal["sigbus-witness-state/v1"] = "sigbus-witness-state/v1"
    name: str
    origin: str
    log_public_key: str  # base64 raw (Ed25519 or hybrid), so a key change cannot go unnoticed
    last_checkpoint: str | None = None  # the full signed note last cosigned


class Witness:
    """Verifies and cosigns checkpoints of one log (see module docstring for the rules)."""

    def __init__(
        self,
        name: str,
        private_key: PrivateKey,
        log_public_key: PublicKey,
        origin: str,
        *,
        log_key_name: str | None = None,
        last_checkpoint: str | None = None,
    ) -> None:
        self.name = name
        self.origin = origin
        # C2SP checkpoints are conventionally signed under the origin as key name.
        self.log_key_name = origin if log_key_name is None else log_key_name
        self._private_key = private_key
        self._log_public_key = log_public_key
        self._last_note = last_checkpoint
        self._last: Checkpoint | None = None
        if last_checkpoint is not None:
            self._last = self._verified(last_checkpoint)

    @property
    def last_checkpoint(self) -> Checkpoint | None:
        return self._last

    @property
    def last_note(self) -> str | None:
        """The signed note last cosigned (what this witness gossips)."""
        return self._last_note

    def verified(self, signed_checkpoint: str) -> Checkpoint:
        """``signed_checkpoint`` checked as :meth:`observe` checks it, cosigning nothing."""
        return self._verified(signed_checkpoint)

    def _verified(self, signed_checkpoint: str) -> Checkpoint:
        checkpoint = verify_note(signed_checkpoint, self.log_key_name, self._log_public_key)
        if checkpoint.origin != self.origin:
            raise CheckpointError(f"checkpoint origin is not {self.origin!r}")
        return checkpoint

    def observe(
        self,
        signed_checkpoint: str,
        consistency_proof: Sequence[bytes],
        *,
        now: datetime,
    ) -> str:
        """Verify ``signed_checkpoint`` against the last one; return our cosignature line.

        ``consistency_proof`` proves the last cosigned checkpoint is a prefix of
        this one (ignored for the first checkpoint and for an unchanged one).
        """
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        candidate = self._verified(signed_checkpoint)
        previous, previous_note = self._last, self._last_note
        if previous is not None and previous_note is not None:
            self._check_extends(
                previous, previous_note, candidate, signed_checkpoint, consistency_proof
            )
        body = note_body(signed_checkpoint)
        line = cosign(body, self.name, self._private_key, timestamp=int(now.timestamp()))
        self._last, self._last_note = candidate, signed_checkpoint
        return line

    @staticmethod
    def _check_extends(
        previous: Checkpoint,
        previous_note: str,
        candidate: Checkpoint,
        candidate_note: str,
        proof: Sequence[bytes],
    ) -> None:
        if candidate.size < previous.size:
            raise StaleCheckpoint(
                f"checkpoint size {candidate.size} is below the cosigned size {previous.size}"
            )
        if candidate.size == previous.size:
            if candidate.root != previous.root:
                raise ForkDetected(
                    f"two checkpoints of size {candidate.size} with different roots",
                    previous=previous_note,
                    candidate=candidate_note,
                )
            return
        try:
            verify_consistency(previous.size, candidate.size, proof, previous.root, candidate.root)
        except ProofError as e:
            raise ForkDetected(
                f"checkpoint {candidate.size} is not proven consistent with {previous.size}: {e}",
                previous=previous_note,
                candidate=candidate_note,
                consistency_proof=tuple(proof),
            ) from e

    def to_json(self) -> str:
        state = WitnessState(
            name=self.name,
            origin=self.origin,
            log_public_key=base64.b64encode(public_key_bytes(self._log_public_key)).decode(),
            last_checkpoint=self._last_note,
        )
        return state.model_dump_json()

    @classmethod
    def from_json(
        cls,
        text: str | bytes,
        private_key: PrivateKey,
        log_public_key: PublicKey,
        *,
        log_key_name: str | None = None,
    ) -> Witness:
        """Restore a witness; refuses state recorded under another log key."""
        try:
            state = WitnessState.model_validate_json(text)
        except ValidationError as e:
            raise AuditError("witness state is not valid sigbus-witness-state/v1 JSON") from e
        stored_key = base64.b64encode(public_key_bytes(log_public_key)).decode()
        if state.log_public_key != stored_key:
            raise AuditError("witness state was recorded for a different log key")
        return cls(
            state.name,
            private_key,
            log_public_key,
            state.origin,
            log_key_name=log_key_name,
            last_checkpoint=state.last_checkpoint,
        )
