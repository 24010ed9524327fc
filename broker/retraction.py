"""Releases that a withdrawal can still pull back from an inbox (issue 11).

A release waits in its recipient's inbox stream until the recipient's adapter
fetches it. If the samtycke (consent) it was released under is withdrawn or
expires before that, the hub deletes it there and logs a ``retraction`` entry:
the withdrawal then stops what is already on its way, not only what comes after
it (OSL 12 kap. 2 §: without the consent there is no ground to disclose).

The index lives in the hub's memory, filled from the inbox's publish acks: a
hub that restarted cannot pull back what it released before the restart (see
docs/performance.md, "The withdrawal fast lane"). It is bounded: the oldest
releases, long fetched in any working deployment, are forgotten first.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

import structlog

from sigbus.audit.entry import EntryOutcome, LogEntry
from sigbus.broker.pipeline import EntryDraft
from sigbus.protocol.reasons import HubReason, ReasonCode

log = structlog.get_logger("sigbus.broker.retraction")

#: Releases remembered at most (about 200 bytes each).
MAX_REMEMBERED = 200_000


@dataclass(frozen=True, slots=True)
class SentRelease:
    """A release as logged, and where it sits in the inbox stream."""

    entry: LogEntry
    seq: int


class RetractionIndex:
    """Recent consent-based releases by the consent ids they relied on."""

    def __init__(self, limit: int = MAX_REMEMBERED) -> None:
        self._limit = limit
        self._sent: OrderedDict[int, SentRelease] = OrderedDict()
        self._by_consent: dict[str, set[int]] = {}

    def __len__(self) -> int:
        return len(self._sent)

    def released(self, entry: LogEntry, seq: int) -> None:
        """Remember a release stored at inbox sequence ``seq`` (statutory ones need no consent)."""
        if entry.statutory or not entry.consent_refs:
            return
        self._sent[seq] = SentRelease(entry, seq)
        for ref in entry.consent_refs:
            self._by_consent.setdefault(ref.consent_id, set()).add(seq)
        while len(self._sent) > self._limit:
            _, oldest = self._sent.popitem(last=False)
            self._unlink(oldest)

    def under(self, consent_id: str) -> list[SentRelease]:
        """The remembered releases that relied on ``consent_id``, oldest first."""
        seqs = sorted(self._by_consent.get(consent_id, ()))
        return [self._sent[s] for s in seqs if s in self._sent]

    def recipients(self) -> set[str]:
        return {s.entry.recipient for s in self._sent.values() if s.entry.recipient}

    def fetched(self, recipient: str, delivered: int) -> int:
        """Forget what ``recipient`` has fetched (inbox sequence <= ``delivered``):
        it cannot be pulled back. Keeps the index at what still waits. Counts them."""
        gone = [
            s for s in self._sent.values() if s.entry.recipient == recipient and s.seq <= delivered
        ]
        for sent in gone:
            del self._sent[sent.seq]
            self._unlink(sent)
        return len(gone)

    def forget(self, consent_id: str) -> None:
        """A consent withdrawn is withdrawn for good: nothing more to pull back under it."""
        for seq in self._by_consent.pop(consent_id, set()):
            sent = self._sent.pop(seq, None)
            if sent is not None:
                self._unlink(sent)

    def _unlink(self, sent: SentRelease) -> None:
        for ref in sent.entry.consent_refs:
            seqs = self._by_consent.get(ref.consent_id)
            if seqs is not None:
                seqs.discard(sent.seq)
                if not seqs:
                    del self._by_consent[ref.consent_id]


def retraction_draft(
    release: LogEntry, ingress_seq: int, withdrawal_message_id: str, now: datetime
) -> EntryDraft:
    """The log entry of one pulled-back release, a decision taken on the withdrawal.

    It names the release (``release_id``, recipient, case, the consents it relied
    on) and carries the withdrawal's message id and ingress sequence."""
    assert release.release_id is not None
    digest = hashlib.sha256(f"retraction\n{release.release_id}".encode()).hexdigest()[:32]
    return EntryDraft(
        decision_id=f"dec-{digest}",
        decided_at=now,
        ingress_seq=ingress_seq,
        message_id=withdrawal_message_id,
        message_type=release.message_type,
        sender=release.sender,
        case_ref=release.case_ref,
        rules_hash=release.rules_hash or "",
        ciphertext_sha256=release.ciphertext_sha256,
        outcome=EntryOutcome.RETRACTION,
        recipient=release.recipient,
        subject_ref=release.subject_ref,
        legal_basis=release.legal_basis,
        consent_refs=release.consent_refs,
        reasons=(HubReason(ReasonCode.RETRACTED_AFTER_WITHDRAWAL),),
        release_id=release.release_id,
    )
