"""``sigbus audit``: offline tools for compliance officers (no server, no secret keys).

Mounted by ``sigbus.cli`` as ``sigbus audit``; the server-side ``export``
command lives there and calls :func:`audit.export_format.write_export`. Here
the export file is opened and its lines handed to the pure ``audit`` code
(:func:`sigbus.parallel_verify.verify_export_file`,
:func:`audit.export_format.read_entry_lines`).
"""

from __future__ import annotations

import base64
import binascii
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sigbus.audit.checkpoint import note_body, parse_checkpoint_body, verify_note
from sigbus.audit.entry_line import check_entry_line
from sigbus.audit.errors import AuditError, CheckpointError, ExportError
from sigbus.audit.export_format import read_entry_lines
from sigbus.audit.merkle import MerkleTree, hash_leaf, verify_consistency, verify_inclusion
from sigbus.audit.verify import VerifyReport
from sigbus.parallel_verify import verify_export_file

audit_app = typer.Typer(
    pretty_exceptions_show_locals=False,
    help="Verify, prove and query an exported disclosure log offline.",
    no_args_is_help=True,
)
prove_app = typer.Typer(
    pretty_exceptions_show_locals=False,
    help="Compute inclusion and consistency proofs from an export file.",
)
audit_app.add_typer(prove_app, name="prove")


def _load_public_key(value: str) -> Ed25519PublicKey:
    """A base64 raw Ed25519 key, given inline or as a path to a file holding it."""
    text = value
    path = Path(value)
    if path.is_file():
        text = path.read_text().strip()
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError) as e:
        raise typer.BadParameter(
            "not a base64 raw Ed25519 public key (or a file holding one)"
        ) from e


def _fail(message: str) -> typer.Exit:
    typer.echo(f"FAIL: {message}", err=True)
    return typer.Exit(code=1)


def _verify_file(
    file: Path,
    log_key: str | None,
    witness_keys: list[str] | None,
    earlier: list[Path] | None,
) -> VerifyReport:
    trusted_witnesses = {}
    for item in witness_keys or []:
        name, sep, key = item.partition("=")
        if not sep:
            raise typer.BadParameter("--witness-key takes NAME=BASE64_OR_PATH")
        trusted_witnesses[name] = _load_public_key(key)
    report = verify_export_file(
        file,
        trusted_log_key=_load_public_key(log_key) if log_key else None,
        trusted_witness_keys=trusted_witnesses,
        earlier_checkpoints=[path.read_text() for path in earlier or []],
    )
    return report


FileArg = Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Export file.")]


@audit_app.command()
def verify(
    file: FileArg,
    log_key: Annotated[
        str | None, typer.Option(help="Trusted log public key: base64 raw Ed25519 or a file.")
    ] = None,
    witness_key: Annotated[
        list[str] | None, typer.Option(help="Trusted witness key NAME=BASE64|PATH (repeatable).")
    ] = None,
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(help="An earlier signed checkpoint you hold; proves no fork (repeatable)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON object.")
    ] = False,
) -> None:
    """Recompute everything in FILE offline: exit 0 if intact, 1 naming the first bad entry."""
    try:
        report = _verify_file(file, log_key, witness_key, checkpoint)
    except AuditError as e:
        if as_json:
            index = e.entry_index if isinstance(e, ExportError) else None
            typer.echo(json.dumps({"ok": False, "error": str(e), "entry_index": index}))
            raise typer.Exit(code=1) from e
        raise _fail(str(e)) from e
    typer.echo(json.dumps(report.to_json()) if as_json else report.summary())


def _tree_from_export(file: Path) -> MerkleTree:
    """Verify the export first (a proof from a tampered file is worthless), then build its tree."""
    try:
        _verify_file(file, None, None, None)
    except AuditError as e:
        raise _fail(f"export does not verify, refusing to prove from it: {e}") from e
    with file.open("rb") as lines:
        return MerkleTree(hash_leaf(line) for line in read_entry_lines(lines))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@prove_app.command("inclusion")
def prove_inclusion(
    file: FileArg,
    index: int,
    size: Annotated[int | None, typer.Option(help="Tree size (default: the whole export).")] = None,
) -> None:
    """Print the RFC 9162 inclusion proof of entry INDEX as JSON."""
    tree = _tree_from_export(file)
    size = tree.size if size is None else size
    try:
        proof = tree.inclusion_proof(index, size)
    except AuditError as e:
        raise _fail(str(e)) from e
    document = {
        "type": "inclusion",
        "index": index,
        "size": size,
        "leaf_hash": _b64(tree.leaf_hash(index)),
        "root": _b64(tree.root(size)),
        "proof": [_b64(node) for node in proof],
    }
    typer.echo(json.dumps(document))


@prove_app.command("consistency")
def prove_consistency(file: FileArg, size1: int, size2: int) -> None:
    """Print the RFC 9162 consistency proof between tree sizes SIZE1 and SIZE2 as JSON."""
    tree = _tree_from_export(file)
    try:
        proof = tree.consistency_proof(size1, size2)
        root1, root2 = tree.root(size1), tree.root(size2)
    except AuditError as e:
        raise _fail(str(e)) from e
    document = {
        "type": "consistency",
        "size1": size1,
        "size2": size2,
        "root1": _b64(root1),
        "root2": _b64(root2),
        "proof": [_b64(node) for node in proof],
    }
    typer.echo(json.dumps(document))


def _decode_proof_document(document: Any) -> list[tuple[int, bytes]]:
    """Verify the proof in ``document``; returns the (size, root) pairs it vouches for."""

    def b64(value: Any) -> bytes:
        if not isinstance(value, str):
            raise TypeError("hash is not a base64 string")
        return base64.b64decode(value, validate=True)

    if not isinstance(document, dict) or not isinstance(document.get("proof"), list):
        raise TypeError("not a proof document")
    proof = [b64(node) for node in document["proof"]]
    if document.get("type") == "inclusion":
        size, root = int(document["size"]), b64(document["root"])
        verify_inclusion(b64(document["leaf_hash"]), int(document["index"]), size, proof, root)
        return [(size, root)]
    if document.get("type") == "consistency":
        size1, size2 = int(document["size1"]), int(document["size2"])
        root1, root2 = b64(document["root1"]), b64(document["root2"])
        verify_consistency(size1, size2, proof, root1, root2)
        return [(size1, root1), (size2, root2)]
    raise ValueError("type must be 'inclusion' or 'consistency'")


def _check_against_checkpoint(
    vouched: list[tuple[int, bytes]], note: str, log_key: Ed25519PublicKey, origin: str | None
) -> str:
    """The signed checkpoint must be by the log and have the proof's root at its size.

    An inclusion proof must be for the checkpoint's tree; a consistency proof
    must have the checkpoint at one of its two ends (the older checkpoint you
    kept, or the newer one you were given). Raises :class:`AuditError`.
    """
    name = origin if origin is not None else parse_checkpoint_body(note_body(note)).origin
    checkpoint = verify_note(note, name, log_key)
    if checkpoint.origin != name:
        raise CheckpointError(f"checkpoint origin is not {name!r}")
    roots = dict(vouched)
    if checkpoint.size not in roots:
        sizes = " or ".join(str(size) for size, _ in vouched)
        raise CheckpointError(
            f"the checkpoint has size {checkpoint.size}, the proof is for size {sizes}"
        )
    if roots[checkpoint.size] != checkpoint.root:
        raise CheckpointError(
            f"the proof's root at size {checkpoint.size} differs from the signed checkpoint's "
            "(a different tree: fork or forgery)"
        )
    return f"; matches the checkpoint of size {checkpoint.size} signed by {name!r}"


@audit_app.command("verify-proof")
def verify_proof(
    proof_file: Annotated[str, typer.Argument(help="JSON printed by 'prove' ('-' for stdin).")],
    checkpoint: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="A signed checkpoint note; the proof must be for its size and root.",
        ),
    ] = None,
    log_key: Annotated[
        str | None,
        typer.Option(help="The log's public key: base64 raw Ed25519 or a file."),
    ] = None,
    origin: Annotated[
        str | None,
        typer.Option(help="Expected checkpoint origin (default: the one the checkpoint names)."),
    ] = None,
) -> None:
    """Verify a proof printed by 'sigbus audit prove' (exit 0 valid, 1 invalid).

    Without --checkpoint this only shows the proof is consistent with the
    roots it carries itself; with --checkpoint and --log-key it also shows
    those roots are the log's, as signed.
    """
    if checkpoint is not None and log_key is None:
        raise typer.BadParameter("--checkpoint needs --log-key (the log's public key)")
    if checkpoint is None and (log_key is not None or origin is not None):
        raise typer.BadParameter("--log-key and --origin are used only with --checkpoint")
    text = sys.stdin.read() if proof_file == "-" else Path(proof_file).read_text()
    try:
        document = json.loads(text)
        vouched = _decode_proof_document(document)
    except (ValueError, KeyError, TypeError, binascii.Error) as e:
        raise _fail(f"malformed proof document: {e}") from e
    except AuditError as e:
        raise _fail(f"proof does not verify: {e}") from e
    anchored = " (against its own roots only: give --checkpoint to anchor it)"
    if checkpoint is not None and log_key is not None:
        key = _load_public_key(log_key)
        try:
            anchored = _check_against_checkpoint(vouched, checkpoint.read_text(), key, origin)
        except AuditError as e:
            raise _fail(f"proof does not match the checkpoint: {e}") from e
    typer.echo(f"OK: {document['type']} proof verifies{anchored}")


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise typer.BadParameter("give a timezone, e.g. 2026-11-23T00:00:00+01:00")
    return parsed


@audit_app.command()
def query(
    file: FileArg,
    case: Annotated[str | None, typer.Option(help="Case ref, e.g. case-0001.")] = None,
    agency: Annotated[str | None, typer.Option(help="Sender or recipient agency.")] = None,
    legal_basis: Annotated[str | None, typer.Option()] = None,
    outcome: Annotated[
        str | None, typer.Option(help="release, deny, recorded, retraction.")
    ] = None,
    since: Annotated[str | None, typer.Option(help="ISO time with zone, inclusive.")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time with zone, exclusive.")] = None,
    subject_ref: Annotated[
        str | None,
        typer.Option(
            help=(
                "Per-case subject ref (sref-...), as in the entries' subject_ref; never a "
                "personnummer. A person has one ref per case, and one per referral outside "
                "a case, so an export cannot link their cases. Only the hub can list one "
                "person's refs (its pseudonym key, and its encrypted state that maps a "
                "person to their cases); no sigbus command does it yet: see "
                "docs/audit-log.md, 'Finding one person's entries'."
            )
        ),
    ] = None,
    verify_first: Annotated[bool, typer.Option("--verify/--no-verify")] = True,
) -> None:
    """Print the entries of FILE (JSON Lines) that match every given filter."""
    if verify_first:
        try:
            _verify_file(file, None, None, None)
        except AuditError as e:
            raise _fail(f"export does not verify: {e}") from e
    start, end = _parse_time(since), _parse_time(until)
    wanted = {
        "case_ref": case,
        "legal_basis": legal_basis,
        "outcome": outcome,
        "subject_ref": subject_ref,
    }
    with file.open("rb") as lines:
        for line in read_entry_lines(lines):
            if check_entry_line(line) is None:
                continue  # a quarantined record: no entry, and its bytes are not shown
            entry = json.loads(line)
            if any(value is not None and entry.get(key) != value for key, value in wanted.items()):
                continue
            if agency is not None and agency not in (entry.get("sender"), entry.get("recipient")):
                continue
            decided_at = datetime.fromisoformat(entry["decided_at"])
            if (start and decided_at < start) or (end and decided_at >= end):
                continue
            typer.echo(line.decode())
