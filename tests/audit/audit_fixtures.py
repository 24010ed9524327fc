"""Deterministic disclosure-log fixtures: opaque ids only, never personal data."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from sigbus.agents.witnessing import witness_name
from sigbus.audit.checkpoint import DEFAULT_ORIGIN, cosign, make_checkpoint_body, sign_note
from sigbus.audit.entry import GENESIS_PREV_HASH, ConsentRef, EntryOutcome, LogEntry, leaf_hash
from sigbus.audit.export_format import CosignatureRecord, write_export
from sigbus.audit.merkle import MerkleTree
from sigbus.audit.trust import TrustAnchors, trust_from_directory
from sigbus.protocol.canonical import b64encode
from sigbus.protocol.directory import (
    AgencyEntry,
    Directory,
    DirectoryKey,
    KeyUse,
    key_id_for,
    sign_directory,
)
from sigbus.protocol.ids import HUB, MessageType
from sigbus.protocol.root import Root, RootKey, SignedRoot, root_key_id_for, sign_root
from sigbus.protocol.signing import HybridPrivateKey

START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
WITNESS_TIME = 1_795_000_000


def key_from_seed(seed: int) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)


LOG_KEY = key_from_seed(1)
POLICE_KEY = key_from_seed(2)
SCHOOL_KEY = key_from_seed(3)


def hybrid_from_seed(seed: int) -> HybridPrivateKey:
    return HybridPrivateKey.from_private_bytes(bytes([seed]) * 64)


#: The fixture root: hub, police and social hold a key each, any two with the hub.
ROOT_SIGNERS: list[tuple[str, HybridPrivateKey]] = [
    ("hub", hybrid_from_seed(7)),
    ("police", hybrid_from_seed(8)),
    ("social", hybrid_from_seed(9)),
]
ROOT_KEY = ROOT_SIGNERS[0][1]


def fixture_root(signers: Sequence[tuple[str, HybridPrivateKey]] = ROOT_SIGNERS) -> Root:
    return Root(
        version=1,
        expires_at=START + timedelta(days=3650),
        keys=tuple(
            RootKey(
                key_id=root_key_id_for(holder, key.public_key().public_bytes_raw()),
                holder=holder,
                public_key=key.public_key().public_bytes_raw(),
            )
            for holder, key in signers
        ),
        threshold=2,
        required_holders=("hub",),
    )


SIGNED_ROOT = sign_root(fixture_root(), ROOT_SIGNERS)
POLICE_WITNESS = "sigbus/witness/police"
SCHOOL_WITNESS = "sigbus/witness/school"
WITNESS_KEYS = {"police": POLICE_KEY, "school": SCHOOL_KEY}


def _directory_key(agency: str, use: KeyUse, key: Ed25519PrivateKey) -> DirectoryKey:
    public = key.public_key().public_bytes_raw()
    return DirectoryKey(
        key_id=key_id_for(agency, use, public),
        use=use,
        public_key=public,
        not_before=START - timedelta(days=365),
        not_after=START + timedelta(days=3650),
    )


def fixture_directory(witnesses: dict[str, Ed25519PrivateKey] | None = None) -> Directory:
    """The hub (log key :data:`LOG_KEY`) and each witness agency with its signing key."""
    chosen = WITNESS_KEYS if witnesses is None else witnesses
    hub = AgencyEntry(agency=HUB, keys=(_directory_key(HUB, KeyUse.LOG, LOG_KEY),))
    parties = tuple(
        AgencyEntry(agency=agency, keys=(_directory_key(agency, KeyUse.SIGNING, key),))
        for agency, key in chosen.items()
    )
    return Directory(
        serial=1, issued_at=START, expires_at=START + timedelta(days=3650), agencies=(hub, *parties)
    )


def fixture_trust(
    quorum: int | None = None, witnesses: dict[str, Ed25519PrivateKey] | None = None
) -> TrustAnchors:
    """Trust anchors from :func:`fixture_directory`, signed by :data:`ROOT_KEY`."""
    return trust_from_directory(
        fixture_directory(witnesses),
        root_public=ROOT_KEY.public_key().public_bytes_raw(),
        witness_name=witness_name,
        quorum=quorum,
    )


def signed_directory_json(
    directory: Directory | None = None,
    root: Sequence[tuple[str, HybridPrivateKey]] = ROOT_SIGNERS[:2],
    roots: tuple[SignedRoot, ...] = (SIGNED_ROOT,),
) -> str:
    """The directory signed by ``root`` (default: hub and police, the threshold)."""
    signed = sign_directory(fixture_directory() if directory is None else directory, roots, root)
    return signed.model_dump_json(indent=2) + "\n"


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
    return Log(entries, tree, note, cosignature_records(note, witnesses))


def cosignature_records(
    note: str, witnesses: Sequence[tuple[str, Ed25519PrivateKey]]
) -> list[CosignatureRecord]:
    """Each witness's C2SP cosignature of the checkpoint in ``note``."""
    body = note[: note.rindex("\n\n") + 1]
    return [
        CosignatureRecord(
            witness=name,
            public_key=key.public_key(),
            line=cosign(body, name, key, timestamp=WITNESS_TIME),
        )
        for name, key in witnesses
    ]


#: Both fixture witnesses, as the directory of :func:`fixture_trust` names them.
ALL_WITNESSES = [(witness_name(agency), key) for agency, key in WITNESS_KEYS.items()]


def trust_args(folder: Path, directory: Directory | None = None) -> list[str]:
    """``--directory DIR --root ROOT`` for ``sigbus audit verify``, written into ``folder``."""
    directory_file, root_file = folder / "directory.json", folder / "root.json"
    directory_file.write_text(signed_directory_json(directory))
    root_file.write_text(SIGNED_ROOT.model_dump_json())
    return ["--directory", str(directory_file), "--root", str(root_file)]


def rechained(entries: Sequence[bytes]) -> list[bytes]:
    """The entries renumbered and with their hash chain recomputed, as a rewriting hub would."""
    out: list[bytes] = []
    prev = GENESIS_PREV_HASH
    for index, line in enumerate(entries):
        entry = LogEntry.model_validate_json(line).model_copy(
            update={"prev_leaf_hash": prev, "index": index}
        )
        out.append(entry.canonical_bytes())
        prev = leaf_hash(out[-1]).hex()
    return out


def hand_written_export(
    entries: Sequence[bytes],
    note: str,
    cosignatures: Sequence[CosignatureRecord],
    log_public_key: Ed25519PublicKey,
) -> bytes:
    """An export with any cosignature records, as a forger writes it: the project's
    writer refuses cosignatures that do not verify."""
    lines = list(
        write_export(entries, note, [], log_public_key=log_public_key, origin=DEFAULT_ORIGIN)
    )
    trailer = {
        "checkpoint": note,
        "cosignatures": [
            {
                "line": r.line,
                "public_key": b64encode(r.public_key.public_bytes_raw()),
                "witness": r.witness,
            }
            for r in cosignatures
        ],
    }
    return b"".join([*lines[:-1], rfc8785.dumps(trailer) + b"\n"])
