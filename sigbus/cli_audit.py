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
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from sigbus.agents.witnessing import saved_fork_evidence
from sigbus.audit.checkpoint import (
    PublicKey,
    load_public_key,
    note_body,
    parse_checkpoint_body,
    verify_note,
)
from sigbus.audit.dirlog import check_directory_logged, parse_directory_log_proof
from sigbus.audit.entry import EntryOutcome, LogEntry
from sigbus.audit.entry_line import check_entry_line
from sigbus.audit.errors import AuditError, CheckpointError, ExportError
from sigbus.audit.export_format import read_entry_lines
from sigbus.audit.merkle import MerkleTree, hash_leaf, verify_consistency, verify_inclusion
from sigbus.audit.splitview import ForkVerdict, parse_fork_evidence, verify_fork_evidence
from sigbus.audit.state_check import check_state_against_log, parse_state_dump
from sigbus.audit.trust import TrustAnchors, TrustError, trust_from_directory, witness_name
from sigbus.audit.verify_report import VERIFIED, VerifyReport
from sigbus.parallel_verify import verify_export_file
from sigbus.policy.rules import default_rules
from sigbus.protocol.canonical import canonical_json
from sigbus.protocol.directory import DirectoryState, TrustedDirectory, parse_signed_directory
from sigbus.protocol.errors import DirectoryError, DirectoryRefused
from sigbus.protocol.ids import HUB
from sigbus.transport.errors import ConfigError
from sigbus.transport.files import read_file, write_private
from sigbus.transport.profiles import load_profiles

audit_app = typer.Typer(
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,
    help="Verify, prove and query an exported disclosure log offline.",
    no_args_is_help=True,
)
prove_app = typer.Typer(
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,
    help="Compute inclusion and consistency proofs from an export file.",
)
audit_app.add_typer(prove_app, name="prove")
fork_app = typer.Typer(
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,
    help="The evidence of a forked log that a witness saved.",
    no_args_is_help=True,
)
audit_app.add_typer(fork_app, name="fork-evidence")


def _load_public_key(value: str) -> PublicKey:
    """A base64 raw Ed25519 or hybrid key, given inline or as a path to a file holding it."""
    text = value
    path = Path(value)
    if path.is_file():
        text = path.read_text().strip()
    try:
        return load_public_key(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError) as e:
        raise typer.BadParameter(
            "not a base64 raw Ed25519 or hybrid public key (or a file holding one)"
        ) from e


def _fail(message: str) -> typer.Exit:
    typer.echo(f"FAIL / UNDERKÄND: {message}", err=True)
    return typer.Exit(code=EXIT_FAILED)


#: ``sigbus audit verify`` exit codes (docs/compliance.md, "Exit codes").
EXIT_VERIFIED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_SELF_CONSISTENT_ONLY = 3


#: Why a directory is not trusted, in Swedish, by :attr:`DirectoryRefused.kind`.
REFUSAL_SV = {
    "root_threshold_not_met": "för få av rotnyckelinnehavarna har signerat",
    "root_required_holder_missing": "en rotnyckelinnehavare som måste signera har inte gjort det",
    "root_version_gap": "en version saknas i kedjan av rotfiler",
    "root_rollback": "rotfilen är äldre än den senast betrodda",
    "root_equivocation": "två olika rotfiler har samma version",
    "root_expired": "rotfilen har gått ut",
    "unendorsed_key_change": "en myndighets nycklar ändrades utan myndighetens egen signatur",
    "directory_rollback": "katalogen är äldre än den senast betrodda",
    "directory_equivocation": "två olika kataloger har samma serienummer",
    "directory_expired": "katalogen har gått ut",
}


def _root_raw(value: str) -> bytes:
    """The pinned root: the path of the signed root file you pinned (``root.json``)."""
    try:
        return Path(value).read_bytes()
    except OSError as e:
        raise typer.BadParameter(f"cannot read the pinned root file: {e.strerror}") from e


def load_trust(
    directory_file: Path,
    root: bytes,
    quorum: int | None,
    *,
    state: DirectoryState | None = None,
    now: datetime | None = None,
) -> TrustAnchors:
    """The trust anchors from a directory file verified against the pinned signed ``root``
    (``root.json``): a threshold of root key holders signed it, and, given the
    ``state`` the officer kept from last time, no rollback and no unendorsed key change.

    Raises :class:`DirectoryError` if the directory is not trusted,
    :class:`TrustError` if it cannot support the quorum.
    """
    trusted = TrustedDirectory(root, state)
    directory = trusted.update(read_file(directory_file), now or datetime.now(UTC))
    assert trusted.root is not None
    return trust_from_directory(
        directory,
        root_public=canonical_json(trusted.root),
        witness_name=witness_name,
        quorum=quorum,
    )


def _refusal(e: DirectoryError) -> str:
    sv = REFUSAL_SV.get(e.kind, "") if isinstance(e, DirectoryRefused) else ""
    return f"the directory is not trusted: {e}" + (
        f"\n  sv: katalogen är inte betrodd: {sv}" if sv else ""
    )


def _self_check(file: Path) -> VerifyReport:
    """The file against itself, before 'prove' and 'query' read from it (proves no authorship)."""
    return verify_export_file(file, trust=None)


FileArg = Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Export file.")]


def _usage(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=EXIT_USAGE)


def _trust_or_exit(
    directory: Path | None, root: str | None, quorum: int | None, state_file: Path | None = None
) -> TrustAnchors:
    if directory is None or root is None:
        raise _usage(
            "nothing to verify against: pass --directory DIR_FILE (the signed directory) and "
            "--root ROOT_JSON (the signed root you pinned), or --self-consistency-only"
        )
    try:
        root_raw = _root_raw(root)
        state = (
            None
            if state_file is None
            else DirectoryState.model_validate_json(state_file.read_bytes())
        )
    except typer.BadParameter as e:
        raise _usage(f"--root: {e}") from e
    except (OSError, ValidationError) as e:
        raise _usage(f"--directory-state: not a directory state file ({type(e).__name__})") from e
    try:
        return load_trust(directory, root_raw, quorum, state=state)
    except (TrustError, ConfigError) as e:
        raise _usage(str(e)) from e
    except DirectoryError as e:
        raise _fail(_refusal(e)) from e


def _logged_or_exit(directory_file: Path, proof_file: Path, trust: TrustAnchors) -> str:
    """The directory (already trusted against the root) must be in the directory log:
    included in a directory-log checkpoint its witness quorum cosigned (issue #10)."""
    try:
        directory = parse_signed_directory(read_file(directory_file)).directory
        proof = parse_directory_log_proof(read_file(proof_file))
        result = check_directory_logged(directory, proof, trust)
    except ConfigError as e:
        raise _usage(f"--directory-log: {e}") from e
    except AuditError as e:
        raise _fail(
            f"the directory is not in the cosigned directory log: {e}"
            "\n  sv: katalogen finns inte i den kontrasignerade kataloglogg som myndigheterna "
            "bevittnat"
        ) from e
    cosigners = ", ".join(result.witnesses)
    return (
        f"directory log: serial {directory.serial} is entry {proof.index} of the directory-log "
        f"checkpoint of size {result.checkpoint.size}, cosigned by {cosigners}\n"
        f"  sv: kataloglogg: serienummer {directory.serial} är post {proof.index} i "
        f"kataloglogg-kontrollpunkten med {result.checkpoint.size} poster, kontrasignerad av "
        f"{cosigners}"
    )


def _report_failure(error: AuditError, as_json: bool) -> typer.Exit:
    if as_json:
        index = error.entry_index if isinstance(error, ExportError) else None
        document = {"verdict": "failed", "ok": False, "error": str(error), "entry_index": index}
        typer.echo(json.dumps(document))
        return typer.Exit(code=EXIT_FAILED)
    return _fail(str(error))


@audit_app.command()
def verify(
    file: FileArg,
    directory: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="The signed agency directory (directory.json)."
        ),
    ] = None,
    root: Annotated[
        str | None,
        typer.Option(help="The signed root you pinned (root.json)."),
    ] = None,
    directory_state: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="The directory state you kept from the last verification "
            "(directory-state.json): refuses a rollback or an unendorsed key change.",
        ),
    ] = None,
    directory_log: Annotated[
        Path | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="The directory-log proof beside the directory (directory-log.json): "
            "refuses a directory the agencies' witness quorum did not cosign.",
        ),
    ] = None,
    quorum: Annotated[
        int | None,
        typer.Option(help="Distinct trusted witnesses required (default: every party agency)."),
    ] = None,
    checkpoint: Annotated[
        list[Path] | None,
        typer.Option(
            exists=True,
            dir_okay=False,
            help="An earlier checkpoint you hold; must be consistent (repeatable).",
        ),
    ] = None,
    save_checkpoint: Annotated[
        Path | None,
        typer.Option(help="Write the checkpoint this run proved, to pass as --checkpoint later."),
    ] = None,
    self_consistency_only: Annotated[
        bool,
        typer.Option(
            "--self-consistency-only",
            help="Check FILE only against the keys inside it; proves nothing, exits 3.",
        ),
    ] = False,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON object.")
    ] = False,
) -> None:
    """Verify FILE against the pinned root and the signed directory.

    Exit 0 verified; 1 failed (naming the first bad entry or the missing
    witnesses); 2 nothing trusted to verify against, or bad options; 3
    self-consistency only (--self-consistency-only: nothing proven).
    """
    if self_consistency_only:
        given = (directory, root, quorum, save_checkpoint, directory_state, directory_log)
        if checkpoint or any(option is not None for option in given):
            raise _usage("--self-consistency-only takes no trusted inputs; drop them to use it")
        trust = None
    else:
        trust = _trust_or_exit(directory, root, quorum, directory_state)
    logged = (
        None
        if directory_log is None or directory is None or trust is None
        else _logged_or_exit(directory, directory_log, trust)
    )
    try:
        earlier = [path.read_text() for path in checkpoint or []]
    except (OSError, UnicodeDecodeError) as e:
        raise _usage(f"an earlier checkpoint file cannot be read: {type(e).__name__}") from e
    try:
        report = verify_export_file(file, trust=trust, earlier_checkpoints=earlier)
    except AuditError as e:
        raise _report_failure(e, as_json) from e
    if save_checkpoint is not None:
        _save(save_checkpoint, report.cosigned_checkpoint())
    if logged is not None and not as_json:
        typer.echo(logged)
    typer.echo(json.dumps(report.to_json()) if as_json else report.summary())
    if report.verdict != VERIFIED:
        raise typer.Exit(code=EXIT_SELF_CONSISTENT_ONLY)


def _save(path: Path, note: str) -> None:
    """Write through a temporary file and a rename: never a half-written checkpoint."""
    tmp = path.with_name(path.name + ".partial")
    try:
        tmp.write_text(note)
        os.replace(tmp, path)
    except OSError as e:
        raise _usage(f"cannot write --save-checkpoint file: {type(e).__name__}") from e


def _tree_from_export(file: Path) -> MerkleTree:
    """Verify the export first (a proof from a tampered file is worthless), then build its tree."""
    try:
        _self_check(file)
    except AuditError as e:
        raise _fail(f"export is not even self-consistent, refusing to prove from it: {e}") from e
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
    vouched: list[tuple[int, bytes]], note: str, log_key: PublicKey, origin: str | None
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


@audit_app.command("check-state")
def check_state(
    file: FileArg,
    state: Annotated[
        Path, typer.Option("--state", help="state dump from `sigbus audit export-state`")
    ],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Check the hub state against the log: a dropped, altered, reordered or injected
    state record (a withdrawal made to vanish) exits 1 naming it. Verify the export
    against the trusted inputs first (`audit verify`): this check trusts its entries."""
    try:
        _self_check(file)
        with state.open("rb") as lines:
            records = parse_state_dump(lines)
    except OSError as e:
        raise _usage(f"cannot read --state file: {type(e).__name__}") from e
    except AuditError as e:
        raise _fail(f"refusing to check state: {e}") from e
    entries = [LogEntry.model_validate_json(line) for _, line in _query_entries(file)]
    findings = check_state_against_log(entries, records, pending_ingress_from=None)
    bound = sum(1 for e in entries if e.state_sha256 is not None)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": not findings,
                    "bound_entries": bound,
                    "state_records": len(records),
                    "findings": [
                        {
                            "fault": f.fault.value,
                            "message_id": f.message_id,
                            "log_index": f.log_index,
                            "state_seq": f.state_seq,
                        }
                        for f in findings
                    ],
                }
            )
        )
    else:
        for f in findings:
            typer.echo(f"MISMATCH {f.describe()} (message {f.message_id})")
        typer.echo(
            f"{'MISMATCH' if findings else 'MATCH'}: {len(records)} state records against "
            f"{bound} hub record entries, {len(findings)} finding(s)"
        )
    if findings:
        raise typer.Exit(code=1)


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
            _self_check(file)
        except AuditError as e:
            raise _fail(f"export is not even self-consistent: {e}") from e
    start, end = _parse_time(since), _parse_time(until)
    entries = _query_entries(file)
    # A misspelt filter must not read as "no disclosures": every value is checked
    # against what the export, the profiles and the rules can hold (exit 2).
    _require_known("outcome", outcome, {o.value for o in EntryOutcome})
    parties = {e.get(k) for e, _ in entries for k in ("sender", "recipient")} - {None}
    _require_known("agency", agency, {*load_profiles(), HUB, *parties})
    rules = default_rules()
    bases = {rules.consent.id, *rules.statutes_by_id, *(e.get("legal_basis") for e, _ in entries)}
    _require_known("legal-basis", legal_basis, bases - {None})
    wanted = {
        "case_ref": case,
        "legal_basis": legal_basis,
        "outcome": outcome,
        "subject_ref": subject_ref,
    }
    matched = 0
    for entry, line in entries:
        if any(value is not None and entry.get(key) != value for key, value in wanted.items()):
            continue
        if agency is not None and agency not in (entry.get("sender"), entry.get("recipient")):
            continue
        decided_at = datetime.fromisoformat(entry["decided_at"])
        if (start and decided_at < start) or (end and decided_at >= end):
            continue
        matched += 1
        typer.echo(line)
    # On stderr, so stdout stays JSON Lines for jq.
    total = len(entries)
    typer.echo(
        f"{matched} of {total} entries matched / {matched} av {total} poster matchade", err=True
    )


def _query_entries(file: Path) -> list[tuple[dict[str, Any], str]]:
    """The export's entries, each with its line; quarantined records are left out."""
    found: list[tuple[dict[str, Any], str]] = []
    with file.open("rb") as lines:
        for line in read_entry_lines(lines):
            if check_entry_line(line) is None:
                continue  # a quarantined record: no entry, and its bytes are not shown
            found.append((json.loads(line), line.decode()))
    return found


def _require_known(option: str, value: str | None, valid: set[Any]) -> None:
    if value is not None and value not in valid:
        listed = ", ".join(sorted(str(v) for v in valid))
        raise _usage(f"--{option} {value!r} is not a known value; valid: {listed}")


@fork_app.command("export")
def fork_evidence_export(
    witness_state: Annotated[
        Path,
        typer.Option(
            dir_okay=False,
            help="The witness state file of the adapter (witness-<agency>.json); its "
            "evidence files lie next to it.",
        ),
    ],
    number: Annotated[
        int | None,
        typer.Option("--number", help="Which evidence (1 = first; default: the latest)."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Write it here (0600) instead of stdout.")
    ] = None,
) -> None:
    """Export fork evidence a witness saved: both signed checkpoints and the proof attempt.

    Hand the file to the other agencies, IVO or a court; they check it with
    'sigbus audit verify-fork FILE --root ... --directory ...'.
    """
    saved = saved_fork_evidence(witness_state)
    if not saved:
        raise _usage(f"no fork evidence next to {witness_state} / inga forkbevis finns")
    chosen = len(saved) if number is None else number
    if not 1 <= chosen <= len(saved):
        raise _usage(f"--number must be between 1 and {len(saved)}")
    try:
        text = saved[chosen - 1].read_text()
        parse_fork_evidence(text)
    except (OSError, UnicodeDecodeError) as e:
        raise _fail(f"the evidence file cannot be read: {type(e).__name__}") from e
    except AuditError as e:
        raise _fail(f"the saved evidence is not valid: {e}") from e
    if out is None:
        typer.echo(text)
        return
    write_private(out, text.encode())
    typer.echo(f"wrote {out} ({chosen} of {len(saved)}) / skrev {out}", err=True)


#: ``sigbus audit verify-fork`` exit codes: 0 fork proven; 1 not a fork or invalid
#: evidence; 2 bad options or untrusted inputs; 3 inconsistent by the proof given,
#: which does not prove a fork offline (different sizes).
EXIT_FORK_UNPROVEN = 3

_FORK_TEXT = {
    ForkVerdict.PROVEN: (
        "fork proven: the log key signed two checkpoints of size {first} with different "
        "roots; no append-only log has both",
        "forken bevisad: loggnyckeln har signerat två kontrollpunkter av storlek {first} "
        "med olika rothashar; ingen logg som bara växer kan ha båda",
    ),
    ForkVerdict.INCONSISTENT_PROOF: (
        "not proven offline: the log key signed checkpoints of sizes {first} and {second} "
        "and the consistency proof given does not link them; a missing or bad proof "
        "alone proves no fork (ask the hub for one and check it with verify-proof)",
        "inte bevisad offline: loggnyckeln har signerat kontrollpunkter av storlek {first} "
        "och {second} och det bifogade konsistensbeviset binder inte ihop dem; ett "
        "saknat eller felaktigt bevis bevisar ensamt ingen fork",
    ),
    ForkVerdict.NOT_A_FORK: (
        "no fork: the two checkpoints (sizes {first} and {second}) are consistent",
        "ingen fork: de två kontrollpunkterna (storlek {first} och {second}) är förenliga",
    ),
}


@audit_app.command("verify-fork")
def verify_fork(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Fork evidence.")],
    directory: Annotated[
        Path | None,
        typer.Option(
            exists=True, dir_okay=False, help="The signed agency directory (directory.json)."
        ),
    ] = None,
    root: Annotated[
        str | None,
        typer.Option(help="The signed root you pinned (root.json)."),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the result as one JSON object.")
    ] = False,
) -> None:
    """Check fork evidence offline against the log keys of the signed directory.

    Exit 0 fork proven (two checkpoints of one size, different roots, both
    signed by the log key); 1 no fork, or a checkpoint not signed by the log
    key; 2 bad options or no trusted inputs; 3 different sizes with a proof that
    does not link them (inconsistent, but not provable offline).
    """
    trust = _trust_or_exit(directory, root, None)
    try:
        evidence = parse_fork_evidence(file.read_bytes())
        check = verify_fork_evidence(evidence, trust)
    except OSError as e:
        raise _usage(f"cannot read {file}: {type(e).__name__}") from e
    except AuditError as e:
        if as_json:
            typer.echo(json.dumps({"verdict": "invalid", "fork_proven": False, "error": str(e)}))
            raise typer.Exit(code=EXIT_FAILED) from e
        raise _fail(f"not valid fork evidence: {e}") from e
    sizes = {"first": check.first.size, "second": check.second.size}
    english, swedish = (text.format(**sizes) for text in _FORK_TEXT[check.verdict])
    code = {
        ForkVerdict.PROVEN: EXIT_VERIFIED,
        ForkVerdict.INCONSISTENT_PROOF: EXIT_FORK_UNPROVEN,
        ForkVerdict.NOT_A_FORK: EXIT_FAILED,
    }[check.verdict]
    if as_json:
        document = {
            "verdict": check.verdict.value,
            "fork_proven": check.verdict is ForkVerdict.PROVEN,
            "origin": evidence.origin,
            "sizes": [check.first.size, check.second.size],
            "log_key_id": check.log_key_id,
            "root_key_id": trust.root_key_id,
            "directory_serial": trust.directory_serial,
            "detected_by": evidence.detected_by,
            "detected_at": evidence.detected_at,
        }
        typer.echo(json.dumps(document))
    else:
        against = (
            f"against log key {check.log_key_id} of directory serial {trust.directory_serial} "
            f"(root {trust.root_key_id}) / mot loggnyckel {check.log_key_id} i katalog nr "
            f"{trust.directory_serial} (rot {trust.root_key_id})"
        )
        if code == EXIT_VERIFIED:
            typer.echo(f"{english}\n{swedish}\n{against}")
        else:
            typer.echo(f"FAIL / UNDERKÄND: {english}\n{swedish}\n{against}", err=True)
    raise typer.Exit(code=code)
