"""A small signed log about two fictitious persons, for the disclosure extract's tests."""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from audit_fixtures import (
    ALL_WITNESSES,
    LOG_KEY,
    START,
    cosignature_records,
    signed_checkpoint,
)

from sigbus.audit.entry import GENESIS_PREV_HASH, ConsentRef, EntryOutcome, LogEntry, leaf_hash
from sigbus.audit.merkle import MerkleTree
from sigbus.broker.pseudonym import subject_id_for, subject_ref_for
from sigbus.protocol.codes import ConsentAction, ConsenterRole
from sigbus.protocol.ids import MessageType

PSEUDONYM_KEY = bytes(range(32))
#: Fictitious personnummer (serials 980-999, valid check digits).
PERSON_A = "20100315-9801"
PERSON_B = "20110607-9815"
SID_A = subject_id_for(PERSON_A, PSEUDONYM_KEY)
SID_B = subject_id_for(PERSON_B, PSEUDONYM_KEY)


def _ref(sid: str, scope: str) -> str:
    return subject_ref_for(sid, scope, PSEUDONYM_KEY)


#: (sid, case_ref or None, fields): the log in order.
_PLAN: list[tuple[str, str | None, dict[str, Any]]] = [
    (
        SID_A,
        "case-a",
        {
            "message_type": MessageType.CASE_OPENED,
            "outcome": EntryOutcome.RECORDED,
            "recipient": "hub",
        },
    ),
    (
        SID_A,
        "case-a",
        {
            "message_type": MessageType.CONSENT_EVENT,
            "outcome": EntryOutcome.RECORDED,
            "recipient": "hub",
            "consent_refs": (ConsentRef(consent_id="c-a", revision=1),),
            "consent_action": ConsentAction.GIVEN,
            "consenter_role": ConsenterRole.GUARDIAN,
        },
    ),
    (
        SID_A,
        "case-a",
        {
            "message_type": MessageType.CASE_INVITATION,
            "outcome": EntryOutcome.RELEASE,
            "legal_basis": "consent",
            "consent_refs": (ConsentRef(consent_id="c-a", revision=1),),
        },
    ),
    (
        SID_B,
        "case-b",
        {
            "message_type": MessageType.CASE_OPENED,
            "outcome": EntryOutcome.RECORDED,
            "recipient": "hub",
        },
    ),
    (
        SID_B,
        "case-b",
        {
            "message_type": MessageType.CASE_INVITATION,
            "outcome": EntryOutcome.RELEASE,
            "legal_basis": "osl_12_2",
        },
    ),
    (
        SID_A,
        "case-a",
        {
            "message_type": MessageType.PLAN_COMMITMENT,
            "outcome": EntryOutcome.DENY,
            "recipient": "police",
            "reasons": ("policy:consent_missing",),
        },
    ),
    (
        SID_A,
        None,
        {
            "message_type": MessageType.REFERRAL,
            "outcome": EntryOutcome.RELEASE,
            "sender": "police",
            "recipient": "social",
            "legal_basis": "lul_6",
            "statutory": True,
        },
    ),
    (
        SID_A,
        "case-c",
        {
            "message_type": MessageType.CASE_INVITATION,
            "outcome": EntryOutcome.RELEASE,
            "legal_basis": "osl_12_2",
        },
    ),
    (
        SID_B,
        None,
        {
            "message_type": MessageType.REFERRAL,
            "outcome": EntryOutcome.RELEASE,
            "sender": "police",
            "recipient": "social",
            "legal_basis": "lul_6",
            "statutory": True,
        },
    ),
]
#: The log indexes of each person's releases and denies.
LINES_A = [2, 5, 6, 7]
LINES_B = [4, 8]


def leaves() -> list[bytes]:
    out: list[bytes] = []
    prev = GENESIS_PREV_HASH
    for index, (sid, case, fields) in enumerate(_PLAN):
        message_id = f"msg-{index:04d}"
        base: dict[str, Any] = {
            "sender": "social",
            "recipient": "school",
            "legal_basis": None,
            "rules_hash": "ab" * 32,
            "ciphertext_sha256": f"{index:064x}",
        }
        base.update(fields)
        outcome = base["outcome"]
        entry = LogEntry(
            index=index,
            prev_leaf_hash=prev,
            decision_id=f"dec-{index:04d}",
            decided_at=START + timedelta(minutes=index),
            ingress_seq=index,
            message_id=message_id,
            subject_ref=_ref(sid, case or message_id),
            case_ref=case,
            release_id=f"rel-{index:04d}" if outcome is EntryOutcome.RELEASE else None,
            **base,
        )
        out.append(entry.canonical_bytes())
        prev = leaf_hash(out[-1]).hex()
    return out


def signed_log() -> tuple[list[bytes], str, list[dict[str, str]]]:
    """The leaves, the signed checkpoint over all of them, and both witnesses' cosignatures."""
    data = leaves()
    note = signed_checkpoint(MerkleTree(leaf_hash(b) for b in data))
    cosigs = [
        {
            "line": c.line,
            "public_key": base64.b64encode(c.public_key.public_bytes_raw()).decode(),
            "witness": c.witness,
        }
        for c in cosignature_records(note, ALL_WITNESSES)
    ]
    return data, note, cosigs


__all__ = ["LOG_KEY", "signed_log"]
