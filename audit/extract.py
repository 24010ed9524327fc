"""The disclosure extract for one person (GDPR art. 15, registerutdrag). Pure, no I/O.

:func:`build_extract` takes the signed checkpoint, the log's records up to it
and a predicate naming the person's entries (the hub computes it from the
person's pseudonyms, ``broker.pseudonym``); it lists every release and every
deny about the person with the entry itself, its RFC 9162 inclusion proof and
the checkpoint (with the witnesses' cosignatures) it was verified against.

:func:`verify_extract` checks an extract offline against trusted keys only:
the checkpoint's signature under a log key of the directory, the witness
quorum, and for every line that its entry is canonical, that its leaf hash is
the entry's and that its proof leads from that leaf to the checkpoint's root.
The readable fields of a line must be exactly the entry's (a line cannot say
more than what the log signed).

Format ``sigbus-extract/v1`` (RFC 8785 JSON): ``format``, ``origin``,
``checkpoint`` (the signed note), ``cosignatures`` (as in an export trailer),
``size``, ``lines``: each ``{"entry", "leaf_hash" (hex), "proof" (base64
nodes), "consenters"}``, and ``completeness``. ``consenters`` are the roles of
the consent events the release relied on, taken from the hub records
(``consent_event`` entries) of the same case in the log, so they are proven too.

Completeness: ``completeness`` is ``{"statement", "sig"}``, the hub's statement
``{"domain", "origin", "size", "root", "indexes"}`` (every log index, in
``[0, size)`` of the cosigned checkpoint, of a release or deny about the person)
signed with the hub's log key over ``<domain>\n`` + its RFC 8785 form.
:func:`verify_extract` requires the lines to be exactly those indexes and the
statement's size and root to be the checkpoint's: a line dropped (or added)
after the hub made the extract fails, and the hub cannot later deny which
entries it said were all of them (an auditor holding the pseudonym key who finds
another entry about the person holds the hub's signed statement to the contrary).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from sigbus.audit.checkpoint import DEFAULT_ORIGIN, PublicKey
from sigbus.audit.entry import EntryOutcome, LogEntry, leaf_hash
from sigbus.audit.errors import AuditError
from sigbus.audit.merkle import MerkleTree, verify_inclusion
from sigbus.audit.trust import TrustAnchors
from sigbus.audit.verify import quorum_cosigned, verify_checkpoint
from sigbus.protocol.signing import HybridPrivateKey

EXTRACT_FORMAT = "sigbus-extract/v1"
#: What an extract lists: the decisions to disclose, released or denied.
LISTED = frozenset({EntryOutcome.RELEASE, EntryOutcome.DENY})
COMPLETENESS_DOMAIN = "sigbus/v1/extract-completeness"
LogSigner = Ed25519PrivateKey | HybridPrivateKey


class ExtractError(AuditError):
    """An extract cannot be built (the log does not match its checkpoint) or does not verify."""


@dataclass(frozen=True)
class ExtractLine:
    entry: LogEntry
    leaf_hash: bytes
    proof: tuple[bytes, ...]
    #: Consenter roles of the consent events relied on (``young_person``, ``guardian``).
    consenters: tuple[str, ...]


@dataclass(frozen=True)
class Extract:
    origin: str
    checkpoint: str
    size: int
    cosignatures: tuple[Mapping[str, str], ...]
    lines: tuple[ExtractLine, ...]
    #: The hub's signed statement of which log indexes are all the person's.
    completeness: Mapping[str, Any]

    def to_json(self) -> bytes:
        document: dict[str, Any] = {
            "format": EXTRACT_FORMAT,
            "origin": self.origin,
            "checkpoint": self.checkpoint,
            "size": self.size,
            "cosignatures": [dict(c) for c in self.cosignatures],
            "lines": [
                {
                    "entry": line.entry.model_dump(mode="json"),
                    "leaf_hash": line.leaf_hash.hex(),
                    "proof": [base64.b64encode(p).decode() for p in line.proof],
                    "consenters": list(line.consenters),
                }
                for line in self.lines
            ],
            "completeness": dict(self.completeness),
        }
        encoded: bytes = rfc8785.dumps(document)
        return encoded


def _entry(leaf: bytes) -> LogEntry | None:
    """The entry a record holds, or None for a quarantined (non-canonical) record."""
    try:
        entry = LogEntry.model_validate_json(leaf)
    except ValidationError:
        return None
    return entry if entry.canonical_bytes() == leaf else None


def _consenters(entries: Sequence[LogEntry]) -> dict[tuple[str | None, str, int], str]:
    """(case, consent id, revision) -> the consenter role the hub record says."""
    roles: dict[tuple[str | None, str, int], str] = {}
    for e in entries:
        if e.outcome is EntryOutcome.RECORDED and e.consenter_role is not None:
            for ref in e.consent_refs:
                roles[(e.case_ref, ref.consent_id, ref.revision)] = e.consenter_role.value
    return roles


def _statement_bytes(statement: Mapping[str, Any]) -> bytes:
    encoded: bytes = rfc8785.dumps(dict(statement))
    return f"{COMPLETENESS_DOMAIN}\n".encode() + encoded


def completeness(
    origin: str, size: int, root: bytes, indexes: Sequence[int], signer: LogSigner
) -> dict[str, Any]:
    """The hub's signed statement that ``indexes`` are all the person's listed entries."""
    statement = {
        "domain": COMPLETENESS_DOMAIN,
        "origin": origin,
        "size": size,
        "root": base64.b64encode(root).decode(),
        "indexes": list(indexes),
    }
    sig = signer.sign(_statement_bytes(statement))
    return {"statement": statement, "sig": base64.b64encode(sig).decode()}


def build_extract(
    note: str,
    leaves: Sequence[bytes],
    cosignatures: Sequence[Mapping[str, str]],
    *,
    log_key: PublicKey,
    is_about: Callable[[LogEntry], bool],
    signer: LogSigner,
    origin: str = DEFAULT_ORIGIN,
) -> Extract:
    """Every release and deny ``is_about`` the person, each with its inclusion proof in the
    tree of ``note``. Raises :class:`ExtractError` if the note is not the log key's or the
    leaves are not the tree it signed (fail closed: no extract rather than an unproven one)."""
    try:
        checkpoint, _ = verify_checkpoint(note, origin, [(None, log_key)])
    except AuditError as e:
        raise ExtractError(f"the checkpoint is not the log key's: {e}") from e
    if len(leaves) < checkpoint.size:
        raise ExtractError(
            f"the log holds {len(leaves)} records, fewer than its checkpoint ({checkpoint.size})"
        )
    signed = leaves[: checkpoint.size]
    tree = MerkleTree(leaf_hash(b) for b in signed)
    if tree.root() != checkpoint.root:
        raise ExtractError("the log's records are not the tree its checkpoint signed")
    entries = [(i, _entry(b)) for i, b in enumerate(signed)]
    parsed = [e for _, e in entries if e is not None]
    roles = _consenters(parsed)
    lines: list[ExtractLine] = []
    for i, entry in entries:
        if entry is None or entry.outcome not in LISTED or not is_about(entry):
            continue
        consenters = tuple(
            roles.get((entry.case_ref, r.consent_id, r.revision), "unknown")
            for r in entry.consent_refs
        )
        proof = tuple(tree.inclusion_proof(i))
        lines.append(ExtractLine(entry, tree.leaf_hash(i), proof, consenters))
    if signer.public_key() != log_key:
        raise ExtractError("the extract's signer is not the log key that signed the checkpoint")
    indexes = [line.entry.index for line in lines]
    statement = completeness(origin, checkpoint.size, checkpoint.root, indexes, signer)
    return Extract(origin, note, checkpoint.size, tuple(cosignatures), tuple(lines), statement)


@dataclass(frozen=True)
class VerifiedExtract:
    size: int
    lines: int
    cosigned_by: tuple[str, ...]


def _decode(data: bytes) -> dict[str, Any]:
    try:
        document = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExtractError("the extract is not JSON") from e
    if not isinstance(document, dict) or document.get("format") != EXTRACT_FORMAT:
        raise ExtractError(f"not a {EXTRACT_FORMAT} file")
    return document


def _line(position: int, raw: Any, size: int, root: bytes) -> None:
    if not isinstance(raw, dict) or set(raw) != {"entry", "leaf_hash", "proof", "consenters"}:
        raise ExtractError(f"line {position} is malformed")
    try:
        leaf = rfc8785.dumps(raw["entry"])
        entry = LogEntry.model_validate_json(leaf)
        claimed = bytes.fromhex(raw["leaf_hash"])
        proof = [base64.b64decode(p, validate=True) for p in raw["proof"]]
    except (
        rfc8785.CanonicalizationError,
        ValidationError,
        ValueError,
        TypeError,
        binascii.Error,
    ) as e:
        raise ExtractError(f"line {position} is malformed") from e
    if entry.canonical_bytes() != leaf:
        raise ExtractError(f"line {position}: the entry is not in its canonical form")
    if leaf_hash(leaf) != claimed:
        raise ExtractError(f"line {position}: the leaf hash is not the entry's")
    try:
        verify_inclusion(claimed, entry.index, size, proof, root)
    except AuditError as e:
        raise ExtractError(f"line {position} (log index {entry.index}): {e}") from e


def verify_extract(data: bytes, trust: TrustAnchors) -> VerifiedExtract:
    """Check an extract against the trust anchors only; raises :class:`ExtractError`."""
    document = _decode(data)
    origin, note = document.get("origin"), document.get("checkpoint")
    lines, cosigs = document.get("lines"), document.get("cosignatures")
    if not (isinstance(origin, str) and isinstance(note, str)):
        raise ExtractError("the extract names no checkpoint")
    if not (isinstance(lines, list) and isinstance(cosigs, list)):
        raise ExtractError("the extract's lines or cosignatures are malformed")
    try:
        checkpoint, _ = verify_checkpoint(
            note, origin, [(k.key_id, k.public_key) for k in trust.log_keys]
        )
        checks = quorum_cosigned(checkpoint.body(), cosigs, trust)
    except AuditError as e:
        raise ExtractError(str(e)) from e
    if document.get("size") != checkpoint.size:
        raise ExtractError("the extract's size is not its checkpoint's")
    for position, raw in enumerate(lines):
        _line(position, raw, checkpoint.size, checkpoint.root)
    _complete(document, lines, origin, checkpoint.size, checkpoint.root, trust)
    return VerifiedExtract(
        checkpoint.size, len(lines), tuple(c.agency or c.witness for c in checks)
    )


def _complete(
    document: Mapping[str, Any],
    lines: Sequence[Any],
    origin: str,
    size: int,
    root: bytes,
    trust: TrustAnchors,
) -> None:
    """The lines are exactly the ones the hub's signed statement lists, for this checkpoint."""
    raw = document.get("completeness")
    if not isinstance(raw, dict) or set(raw) != {"statement", "sig"}:
        raise ExtractError("the extract carries no completeness statement")
    statement = raw["statement"]
    try:
        signature = base64.b64decode(str(raw["sig"]), validate=True)
        message = _statement_bytes(statement)
    except (binascii.Error, ValueError, TypeError, rfc8785.CanonicalizationError) as e:
        raise ExtractError("the completeness statement is malformed") from e
    signed = False
    for key in trust.log_keys:
        try:
            key.public_key.verify(signature, message)
        except InvalidSignature:
            continue
        signed = True
    if not signed:
        raise ExtractError("the completeness statement is not signed by a log key")
    expected = {
        "domain": COMPLETENESS_DOMAIN,
        "origin": origin,
        "size": size,
        "root": base64.b64encode(root).decode(),
    }
    if not isinstance(statement, dict) or {k: statement.get(k) for k in expected} != expected:
        raise ExtractError("the completeness statement is not for this checkpoint")
    listed = statement.get("indexes")
    shown = [line["entry"]["index"] for line in lines]
    if listed != shown:
        missing = sorted(set(listed or []) - set(shown))
        extra = sorted(set(shown) - set(listed or []))
        raise ExtractError(
            "the extract is not complete: the hub listed log indexes "
            f"{missing or '-'} that it lacks, and it holds {extra or '-'} the hub did not list"
        )
