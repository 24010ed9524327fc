"""``sigbus audit extract`` and ``sigbus audit verify-extract``: the disclosure extract.

``extract`` runs on the hub host as the hub (it needs the pseudonym key and the
log); the personnummer is read from a file (first line), never an argument, so
it is in no shell history or process list, and it is never written or logged.
``verify-extract`` is offline: it trusts only the pinned root and the directory
it signed, as ``audit verify`` does.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import structlog
import typer

from sigbus.audit.errors import AuditError
from sigbus.audit.extract import Extract, ExtractError, build_extract, verify_extract
from sigbus.cli_audit import EXIT_FAILED, EXIT_USAGE, _trust_or_exit, audit_app
from sigbus.console.extract import about_person, extract_pdf
from sigbus.console.source import NatsSource
from sigbus.policy.rules import default_rules
from sigbus.protocol.errors import ProtocolError, SigbusError
from sigbus.protocol.personnummer import PersonnummerError
from sigbus.transport import config
from sigbus.transport.files import write_private

log = structlog.get_logger("sigbus.audit.extract")


def _usage(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code=EXIT_USAGE)


def _read_personnummer(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise _usage(f"--personnummer-file: cannot read {path} ({type(e).__name__})") from e
    lines = text.splitlines()
    return lines[0].strip() if lines else ""


async def extract_from(source: NatsSource, personnummer: str) -> Extract:
    """The person's extract of a running hub's log up to its latest signed checkpoint,
    with the witnesses' cosignatures (the command's, and the demo's last step). Raises
    ``PersonnummerError``; the personnummer stays in memory."""
    snap = await source.snapshot()
    if snap.note is None or snap.log_key is None:
        raise ExtractError("the log has no signed checkpoint yet")
    return build_extract(
        snap.note,
        snap.leaves,
        snap.cosignatures,
        log_key=snap.log_key,
        is_about=about_person(personnummer, source.pseudonym_key, snap.cases),
        signer=source.log_signer,
    )


@audit_app.command("extract")
def audit_extract(
    personnummer_file: Annotated[
        Path,
        typer.Option(
            "--personnummer-file", help="a file whose first line is the personnummer (0600)"
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="the extract to write (mode 0600)")],
    fmt: Annotated[str, typer.Option("--format", help="json (verifiable) or pdf")] = "json",
    lang: Annotated[str, typer.Option("--lang", help="sv or en (pdf)")] = "sv",
    nats: Annotated[str | None, typer.Option("--nats")] = None,
    data_dir: Annotated[Path | None, typer.Option("--data-dir")] = None,
    keys: Annotated[Path | None, typer.Option("--keys", help="default keys/dev")] = None,
) -> None:
    """The disclosure extract (GDPR art. 15) for one person, as the hub: every release and
    deny about them, each with its inclusion proof and the checkpoint."""
    if fmt not in ("json", "pdf") or lang not in ("sv", "en"):
        raise _usage("--format is json or pdf, --lang is sv or en")
    source = NatsSource(config.nats_url(nats, data_dir), config.keys_dir(keys))
    personnummer = _read_personnummer(personnummer_file)
    try:
        about_person(personnummer, source.pseudonym_key)  # refused before the hub is asked
    except PersonnummerError as e:
        raise _usage("--personnummer-file holds no valid 12-digit personnummer") from e

    try:
        extract = asyncio.run(extract_from(source, personnummer))
    except (SigbusError, ProtocolError, AuditError) as e:
        typer.echo(f"FAIL / UNDERKÄND: no extract: {e}", err=True)
        raise typer.Exit(code=EXIT_FAILED) from e
    now = datetime.now(UTC)
    data = extract.to_json() if fmt == "json" else extract_pdf(extract, default_rules(), lang, now)
    write_private(out, data)
    log.info("audit_extract", lines=len(extract.lines), size=extract.size, format=fmt)
    typer.echo(f"wrote {len(extract.lines)} lines (checkpoint size {extract.size}) to {out}")


@audit_app.command("verify-extract")
def audit_verify_extract(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="extract (JSON)")],
    directory: Annotated[Path | None, typer.Option("--directory")] = None,
    root: Annotated[str | None, typer.Option("--root")] = None,
    quorum: Annotated[int | None, typer.Option("--quorum")] = None,
) -> None:
    """Verify an extract offline: the checkpoint under a log key of the directory signed by
    the pinned root, the witness quorum, and every line's entry, leaf hash and proof."""
    trust = _trust_or_exit(directory, root, quorum)
    try:
        report = verify_extract(file.read_bytes(), trust)
    except ExtractError as e:
        typer.echo(f"FAIL / UNDERKÄND: {e}", err=True)
        raise typer.Exit(code=EXIT_FAILED) from e
    typer.echo(
        f"VERIFIED / GODKÄND: {report.lines} lines in the log of size {report.size}, "
        f"cosigned by {', '.join(report.cosigned_by)}"
    )
