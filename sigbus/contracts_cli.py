"""``sigbus contracts``: write, or check, the published JSON Schemas and AsyncAPI document.

Exit codes: 0 up to date (or written), 1 ``--check`` found files that differ, 2 an error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from sigbus.contracts import REGENERATE, stale, write
from sigbus.protocol.contracts import ContractError


def contracts_command(
    root: Annotated[
        Path, typer.Option(help="The repository root: files go to docs/ under it.")
    ] = Path(),
    check: Annotated[
        bool, typer.Option("--check", help="Change nothing; exit 1 if a file differs.")
    ] = False,
) -> None:
    """Generate docs/schemas/*.schema.json and docs/asyncapi.yaml from the models."""
    try:
        changed = stale(root) if check else write(root)
    except (ContractError, OSError) as e:
        typer.echo(f"error: contracts: {e}", err=True)
        raise typer.Exit(2) from e
    for path in changed:
        typer.echo(f"{'differs' if check else 'written'}: {path}")
    if check and changed:
        typer.echo(f"contracts are stale: run `{REGENERATE}`", err=True)
        raise typer.Exit(1)
    if not changed:
        typer.echo("contracts up to date")
