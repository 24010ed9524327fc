"""CLI plumbing shared by the agency command groups (`sigbus police|school|social`)."""

from __future__ import annotations

import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from sigbus.agents.casesystem import JsonlCaseSystem
from sigbus.agents.runtime import Adapter, Delivered
from sigbus.agents.setup import agency_setup
from sigbus.agents.witnessing import WitnessRunner
from sigbus.protocol.codes import (
    ActionCode,
    ContactFunction,
    NotDoneReason,
    ReferralKind,
    ReferralReason,
    StatusCode,
)
from sigbus.protocol.errors import ProtocolError
from sigbus.protocol.ids import AgencyId, MessageType, new_opaque_id
from sigbus.protocol.messages import Body, CommitmentStatus, PlanCommitment, Referral
from sigbus.transport import config
from sigbus.transport.errors import SigbusError

T = TypeVar("T")

NatsOpt = Annotated[str | None, typer.Option("--nats", help="NATS URL (default: `sigbus up`'s)")]
KeysOpt = Annotated[Path | None, typer.Option("--keys", help="keys directory (default keys/dev)")]
CaseOpt = Annotated[str, typer.Option("--case", help="case ref, e.g. case-abcd")]
ToOpt = Annotated[list[AgencyId], typer.Option("--to", help="recipient agency (repeatable)")]
PnrOpt = Annotated[
    str | None,
    typer.Option(
        "--personnummer",
        help="12 digits. Better left out: then read from stdin, or asked for (hidden) on a "
        "terminal, so it stays out of shell history and process lists",
    ),
]


def read_personnummer(value: str | None) -> str:
    """The personnummer from the option, else stdin (piped) or a hidden prompt on stderr."""
    if value:
        return value
    if sys.stdin.isatty():
        return getpass.getpass("Personnummer: ", stream=sys.stderr)
    return sys.stdin.readline().strip()


def referral_body(
    kind: ReferralKind,
    personnummer: str | None,
    reasons: list[ReferralReason],
    observed: str | None,
    contact: ContactFunction,
) -> Referral:
    return Referral(
        kind=kind,
        personnummer=read_personnummer(personnummer),
        reasons=tuple(reasons),
        observed_on=date.fromisoformat(observed) if observed else date.today(),
        contact_function=contact,
    )


def run_with_adapter(
    agency: AgencyId, nats: str | None, keys: Path | None, action: Callable[[Adapter], Awaitable[T]]
) -> T:
    """Connect as ``agency``, run ``action``, close; errors become a clear exit 2."""

    async def main() -> T:
        setup = agency_setup(agency, config.keys_dir(keys))
        adapter = await setup.connect(config.nats_url(nats))
        try:
            return await action(adapter)
        finally:
            await adapter.close()

    try:
        return asyncio.run(main())
    except (SigbusError, ProtocolError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e


def send(
    agency: AgencyId,
    nats: str | None,
    keys: Path | None,
    message_type: MessageType,
    body: Body,
    *,
    case_ref: str | None,
    to: list[AgencyId],
) -> None:
    async def action(adapter: Adapter) -> str:
        return await adapter.send(message_type, body, case_ref=case_ref, recipients=tuple(to))

    message_id = run_with_adapter(agency, nats, keys, action)
    typer.echo(f"sent {message_type.value} {message_id}")


def describe(d: Delivered) -> str:
    """One line per received message: ids and codes, no personal data."""
    r = d.record
    basis = f"{r.legal_basis}{' [statutory]' if r.statutory else ''}"
    return (
        f"{d.header.message_id} {d.header.type.value:<18} from {d.header.sender.value:<7} "
        f"case={d.header.case_ref or '-'} basis={basis} log#{r.log_index}"
    )


def add_common_commands(app: typer.Typer, agency: AgencyId) -> None:
    @app.command()
    def inbox(
        nats: NatsOpt = None,
        keys: KeysOpt = None,
        out: Annotated[
            Path | None,
            typer.Option(help="append full messages (with personal data) to this 0600 JSONL file"),
        ] = None,
    ) -> None:
        """Fetch, verify and open what has been released to this agency."""
        sink = JsonlCaseSystem(out) if out else None

        async def action(adapter: Adapter) -> int:
            async def handle(d: Delivered) -> None:
                if sink is not None:
                    await sink.deliver(d)
                typer.echo(describe(d))

            total = 0
            while n := await adapter.receive(handle, timeout=1.0):
                total += n
            return total

        count = run_with_adapter(agency, nats, keys, action)
        typer.echo(f"{count} message(s) received")

    @app.command()
    def serve(
        out: Annotated[Path, typer.Option(help="0600 JSONL file standing in for the case system")],
        nats: NatsOpt = None,
        keys: KeysOpt = None,
        witness_state: Annotated[
            Path | None,
            typer.Option(
                help="where this agency keeps the last checkpoint it cosigned "
                "(default: witness-<agency>.json next to --out)"
            ),
        ] = None,
    ) -> None:
        """Run the adapter: receive into the case system and witness the hub's log."""
        sink = JsonlCaseSystem(out)
        state = witness_state or out.with_name(f"witness-{agency.value}.json")

        async def action(adapter: Adapter) -> None:
            witness = WitnessRunner(adapter, state_path=state)
            while True:
                await adapter.receive(sink.deliver, timeout=5.0)
                await witness.run_once(timeout=0.2)

        run_with_adapter(agency, nats, keys, action)


def add_plan_commands(app: typer.Typer, agency: AgencyId) -> None:
    @app.command()
    def commit(
        case: CaseOpt,
        action: ActionCode,
        owner: ContactFunction,
        due: Annotated[str, typer.Option(help="due date YYYY-MM-DD")],
        to: ToOpt,
        nats: NatsOpt = None,
        keys: KeysOpt = None,
        commitment_id: Annotated[str | None, typer.Option()] = None,
    ) -> None:
        """Commit to a plan action in the individuell åtgärdsplan."""
        body = PlanCommitment(
            commitment_id=commitment_id or new_opaque_id("cm", 16),
            responsible_agency=agency,
            action=action,
            owner_function=owner,
            due_on=date.fromisoformat(due),
        )
        send(agency, nats, keys, MessageType.PLAN_COMMITMENT, body, case_ref=case, to=to)

    @app.command()
    def status(
        case: CaseOpt,
        commitment_id: Annotated[str, typer.Option("--commitment")],
        state: StatusCode,
        to: ToOpt,
        reason: Annotated[NotDoneReason | None, typer.Option()] = None,
        nats: NatsOpt = None,
        keys: KeysOpt = None,
    ) -> None:
        """Report the status of a commitment (done / in_progress / not_done + reason)."""
        body = CommitmentStatus(
            commitment_id=commitment_id, status=state, not_done_reason=reason, as_of=date.today()
        )
        send(agency, nats, keys, MessageType.COMMITMENT_STATUS, body, case_ref=case, to=to)
