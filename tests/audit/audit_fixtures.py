"""Deterministic disclosure-log fixtures: opaque ids only, never personal data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sigbus.audit.checkpoint import DEFAULT_ORIGIN, cosign, make_checkpoint_body, sign_note
from sigbus.audit.entry import GENESIS_PREV_HASH, ConsentRef, EntryOutcome, LogEntry, leaf_hash
from sigbus.audit.export_format import CosignatureRecord, write_export
from sigbus.audit.merkle import MerkleTree
from sigbus.protocol.ids import MessageType

START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
WITNESS_TIME = 1_795_000_000


def key_from_seed(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


LOG_KEY = key_from_seed(1)
POLICE_KEY = key_from_seed(2)
SCHOOL_KEY = key_from_seed(3)
POLICE_WITNESS = "sigbus/witness/police"
SCHOOL_WITNESS = "sigbus/witness/school"


def make_entries(count: int, *, start: int = 0, prev: str = GENESIS_PREV_HASH) -> list[bytes]:
    """``count`` chained canonical entries, varied enough to exercise every field kind."""
    lines: list[bytes] = []
    for index in range(start, start + count):
        release = index % 3 != 2
        entry = LogEntry(
            index=index,
            prev_leaf_hash=prev,
            decision_id=f"dec-{index:08d}",
            decided_at=START + timedelta(seconds=index, microseconds=index % 7),
            ingress_seq=index + 10,
            message_id=f"msg-{index:012d}",
            message_type=MessageType.REFERRAL if index % 2 else MessageType.PLAN_COMMITMENT,
            sender="police",
            recipient="social" if release else "school",
            subject_ref=f"sref-{index % 5:04d}",
            case_ref=f"case-{index % 4:04d}",
            legal_basis="consent" if release else None,
            consent_refs=(ConsentRef(consent_id=f"consent-{index % 4:04d}", revision=1),)
            if release
            else (),
            rule_ids=("rule-consent",),
            rules_hash="ab" * 32,
            ciphertext_sha256=f"{index:064x}",
            outcome=EntryOutcome.RELEASE if release else EntryOutcome.DENY,
            reasons=() if release else ("no_consent",),
            release_id=f"rel-{index:08d}" if release else None,
        )
        line = entry.canonical_bytes()
        lines.append(line)
        prev = leaf_hash(line).hex()
    return lines


@dataclass
class Log:
    entries: list[bytes]
    tree: MerkleTree
    note: str
    cosignatures: list[CosignatureRecord]

    def export_lines(self) -> list[bytes]:
        return list(
            write_export(
                self.entries,
                self.note,
                self.cosignatures,
                log_public_key=LOG_KEY.public_key(),
                origin=DEFAULT_ORIGIN,
            )
        )


def signed_checkpoint(tree: MerkleTree, size: int | None = None) -> str:
    size = tree.size if size is None else size
    body = make_checkpoint_body(DEFAULT_ORIGIN, size, tree.root(size))
    return sign_note(body, DEFAULT_ORIGIN, LOG_KEY)


def make_log(count: int, witnesses: Sequence[tuple[str, Ed25519PrivateKey]] = ()) -> Log:
    entries = make_entries(count)
    tree = MerkleTree(leaf_hash(line) for line in entries)
    note = signed_checkpoint(tree)
    body = note[: note.rindex("\n\n") + 1]
    records = [
        CosignatureRecord(
            witness=name,
            public_key=key.public_key(),
            line=cosign(body, name, key, timestamp=WITNESS_TIME),
        )
        for name, key in witnesses
    ]
    return Log(entries, tree, note, records)
