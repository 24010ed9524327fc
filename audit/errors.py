"""One error hierarchy for the disclosure log; every audit failure is an ``AuditError``.

Messages name *where* verification failed (an entry index, a proof step, a
signature line), never entry content: an export may be shown to people who
are not entitled to every field in it.
"""

from __future__ import annotations

from sigbus.protocol.errors import SigbusError


class AuditError(SigbusError):
    """Root of every error raised by :mod:`audit`."""


class ProofError(AuditError):
    """An RFC 9162 inclusion or consistency proof does not verify, or cannot be built."""


class CheckpointError(AuditError):
    """A C2SP ``tlog-checkpoint`` or ``signed-note`` is malformed."""


class SignatureError(AuditError):
    """A note signature or a ``tlog-cosignature`` does not verify."""


class ExportError(AuditError):
    """An export file is not intact. ``entry_index`` names the first bad entry, if any.

    ``entry_index`` is ``None`` when the failure is not attributable to one
    entry (header, checkpoint signature, cosignature, root mismatch).
    """

    def __init__(self, message: str, *, entry_index: int | None = None) -> None:
        super().__init__(message)
        self.entry_index = entry_index


class StaleCheckpoint(AuditError):
    """A witness was shown a checkpoint smaller than one it already cosigned.

    Not proof of misbehaviour on its own (a replayed stream delivers old
    checkpoints again), so it is refused without raising the fork alarm.
    """


class ForkDetected(AuditError):
    """Two checkpoints signed by the log cannot both describe one append-only log.

    ``previous`` and ``candidate`` are the complete signed notes: together
    (same size, different roots) or with the failed consistency proof they are
    the evidence to hand to the other agencies.
    """

    def __init__(
        self,
        message: str,
        *,
        previous: str,
        candidate: str,
        consistency_proof: tuple[bytes, ...] = (),
    ) -> None:
        super().__init__(message)
        self.previous = previous
        self.candidate = candidate
        self.consistency_proof = consistency_proof
