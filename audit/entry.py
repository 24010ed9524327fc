"""One disclosure-log entry per decision: ids and codes, never content.

The leaf of the Merkle tree is the RFC 8785 canonical JSON encoding of an
entry, so anyone holding an export can recompute every leaf hash. Entries also
chain: ``prev_leaf_hash`` is the RFC 9162 leaf hash of the entry before, which
lets an offline verifier name the *first* altered entry instead of only
reporting a root mismatch.
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Annotated, Literal

import rfc8785
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from sigbus.protocol.codes import ConsentAction, ConsenterRole
from sigbus.protocol.ids import AgencyId, MessageType
from sigbus.protocol.messages import ConsentRef

#: 2: ``subject_ref`` (a per-case pseudonym) replaced ``subject_id`` (one per person).
#: 3: hub records commit to the encrypted state record (``state_sha256``) and say
#: which consent action, by which consenter role, they recorded.
LOG_ENTRY_VERSION: Literal[3] = 3
GENESIS_PREV_HASH = "0" * 64


class EntryOutcome(StrEnum):
    """What the hub did with one decision (the policy's answer is ``policy.Verdict``)."""

    RELEASE = "release"  # released to ``recipient``
    DENY = "deny"  # not released; ``reasons`` say why
    RECORDED = "recorded"  # hub record (case opened, consent event) accepted
    RETRACTION = "retraction"
    #: The hub destroyed its data key for the message when its retention period
    #: ended (reason ``retention_expired``): its ciphertext stays, its content is gone.
    SHREDDED = "shredded"


class LogEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    version: Literal[3] = LOG_ENTRY_VERSION
    index: Annotated[int, Field(ge=0)]
    prev_leaf_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    decision_id: str
    decided_at: AwareDatetime
    ingress_seq: Annotated[int, Field(ge=0)]
    message_id: str
    message_type: MessageType | None
    sender: AgencyId | None
    recipient: AgencyId | None
    #: The subject's pseudonym within this case (``broker.pseudonym.subject_ref_for``),
    #: never one that is the same across a person's cases: entries leave the hub.
    subject_ref: str | None
    case_ref: str | None
    legal_basis: str | None
    statutory: bool = False
    consent_refs: tuple[ConsentRef, ...] = ()
    rule_ids: tuple[str, ...] = ()
    rules_hash: str | None
    ciphertext_sha256: str | None
    outcome: EntryOutcome
    reasons: tuple[str, ...] = ()
    release_id: str | None = None
    #: A consent event's action (given, amended, withdrawn, expired) and the
    #: consenter's role (young person or guardian): codes, never who.
    consent_action: ConsentAction | None = None
    consenter_role: ConsenterRole | None = None
    #: SHA-256 of the encrypted hub-state record this hub record made (as stored on
    #: the state stream): the log commits to the hub state, so a dropped or edited
    #: state record (a withdrawal made to vanish) is found against the log
    #: (``audit.state_check``).
    state_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None

    def canonical_bytes(self) -> bytes:
        """RFC 8785 encoding: the exact bytes that are the Merkle leaf."""
        encoded: bytes = rfc8785.dumps(self.model_dump(mode="json"))
        return encoded


def leaf_hash(leaf: bytes) -> bytes:
    """RFC 9162 §2.1.1: MTH({d0}) = SHA-256(0x00 || d0)."""
    return hashlib.sha256(b"\x00" + leaf).digest()
