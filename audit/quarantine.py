"""Quarantine: how the hub and the verifier name a stored log record that is not a sound entry.

``SIGBUS_LOG`` denies delete and purge, so a bad record (a hub bug, an operator
publishing with the hub's credentials) stays in the stream for good. Refusing
to start on it would stop the hub forever; skipping it would make the tree
commit to something other than what the stream holds. Instead:

- the bad record keeps its stream sequence, hence its tree index, and its
  leaf is its raw bytes (RFC 9162 leaf data), so the Merkle tree commits to
  exactly what the stream holds and consistency proofs stay valid;
- the next entry chains to its leaf hash, like to any other leaf;
- the hub appends a *quarantine entry*: an ordinary ``recorded`` hub entry
  whose single reason is ``quarantined_record:<index>:<fault>``, so the signed
  log itself states which index is bad and why;
- an offline verifier accepts a bad record only when a later quarantine entry
  names its index with the same fault, and reports it; otherwise it fails as
  for any altered entry.

A record is classified by :func:`classify` (both sides use it, so they agree):
not the canonical encoding of a ``LogEntry`` (``not_an_entry``); an entry
whose ``index`` is not its position (``wrong_index``); an entry whose
``prev_leaf_hash`` is not the leaf hash of the record before
(``chain_break``). The content of a quarantined record is never trusted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from enum import StrEnum
from typing import Final

from sigbus.audit.entry import EntryOutcome, LogEntry
from sigbus.audit.entry_line import check_entry_line
from sigbus.protocol.ids import HUB
from sigbus.protocol.reasons import ReasonCode

QUARANTINE_CODE: Final = ReasonCode.QUARANTINED_RECORD.value


class Fault(StrEnum):
    """Why a stored record is not a sound entry at its position."""

    NOT_AN_ENTRY = "not_an_entry"
    WRONG_INDEX = "wrong_index"
    CHAIN_BREAK = "chain_break"


_NAMED = re.compile(
    rf"{QUARANTINE_CODE}:(0|[1-9][0-9]{{0,15}}):({'|'.join(f.value for f in Fault)})"
)


def classify(record: bytes, index: int, prev_leaf_hash: str) -> Fault | None:
    """None if ``record`` is the canonical entry at ``index`` chaining to ``prev_leaf_hash``."""
    match = check_entry_line(record)
    if match is None:
        return Fault.NOT_AN_ENTRY
    _, index_text, claimed = match.groups()
    if index_text != b"%d" % index:
        return Fault.WRONG_INDEX
    if claimed != prev_leaf_hash.encode():
        return Fault.CHAIN_BREAK
    return None


def quarantine_reason(index: int, fault: Fault) -> str:
    """The reason a quarantine entry carries: ``quarantined_record:<index>:<fault>``."""
    return f"{QUARANTINE_CODE}:{index}:{fault.value}"


def quarantine_entry(
    *, index: int, prev_leaf_hash: str, decided_at: datetime, quarantined: int, fault: Fault
) -> LogEntry:
    """The hub's entry at ``index`` that names record ``quarantined`` and its fault."""
    return LogEntry(
        index=index,
        prev_leaf_hash=prev_leaf_hash,
        decision_id=f"dec-quarantine-{quarantined}",
        decided_at=decided_at,
        # 0 is never a JetStream sequence: no ingress message is this entry's.
        ingress_seq=0,
        message_id=f"log-quarantine-{quarantined}",
        message_type=None,
        sender=HUB,
        recipient=HUB,
        subject_ref=None,
        case_ref=None,
        legal_basis=None,
        rules_hash=None,
        ciphertext_sha256=None,
        outcome=EntryOutcome.RECORDED,
        reasons=(quarantine_reason(quarantined, fault),),
    )


def named_quarantine(
    *, outcome: str, sender: str | None, recipient: str | None, reasons: Sequence[str]
) -> tuple[int, Fault] | None:
    """(index, fault) if these fields are those of a quarantine entry, else None.

    Only a hub record (sender and recipient ``hub``, outcome ``recorded``) with
    exactly one quarantine reason counts: an agency's message can never carry it,
    since agencies do not choose the reasons the hub logs.
    """
    if outcome != EntryOutcome.RECORDED or sender != HUB or recipient != HUB or len(reasons) != 1:
        return None
    match = _NAMED.fullmatch(reasons[0])
    if match is None:
        return None
    return int(match[1]), Fault(match[2])
