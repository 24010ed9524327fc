"""The agency command group, built from the agency's profile (`sigbus <agency> …`).

Every agency gets ``inbox`` and ``serve``; an agency whose profile sends
referrals gets ``refer``; one that sends plan messages gets ``commit`` and
``status``. The lead agency (social services) adds its own commands on top
(:mod:`sigbus.agents.social.cli`). Nothing here names an agency.

Every sending command waits for the hub's signed decision notice for its
message, prints it, and exits with one of the codes below (README, "Exit
codes"): a sender always learns whether its message went through.
"""

# No ``from __future__ import annotations``: the commands' option help is built from
# the profile in closures, and typer must see those annotations evaluated.

import asyncio
import getpass
import importlib
import sys
from collections.abc import Awaitable, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, NoReturn, Protocol, TypeVar

import typer
from pydantic import ValidationError

from sigbus.agents.casesystem import CaseSystem, JsonlCaseSystem
from sigbus.agents.notice_text import describe_notice
from sigbus.agents.runtime import Adapter, Delivered
from sigbus.agents.setup import agency_setup
from sigbus.agents.witnessing import WitnessRunner
from sigbus.protocol.codes import (
    ActionCode,
    NotDoneReason,
    ReferralKind,
    ReferralReason,
    StatusCode,
)
from sigbus.protocol.envelope import describe_invalid
from sigbus.protocol.errors import SigbusError
from sigbus.protocol.ids import HUB, AgencyId, MessageType, new_opaque_id
from sigbus.protocol.messages import (
    Body,
    CommitmentStatus,
    PlanCommitment,
    Referral,
    StatutoryAssertion,
)
from sigbus.protocol.notice import DecisionNotice
from sigbus.protocol.profiles import AgencyProfile, Profiles
from sigbus.transport import config
from sigbus.transport.keystore import load_directory

T = TypeVar("T")

NatsOpt = Annotated[str | None, typer.Option("--nats", help="NATS URL (default: `sigbus up`'s)")]
KeysOpt = Annotated[Path | None, typer.Option("--keys", help="keys directory (default keys/dev)")]
CaseOpt = Annotated[str, typer.Option("--case", help="case ref, e.g. case-abcd")]
ToOpt = Annotated[list[str], typer.Option("--to", help="recipient agency (repeatable)")]
PnrOpt = Annotated[
    str | None,
    typer.Option(
        "--personnummer",
        help="12 digits. Better left out: then read from stdin, or asked for (hidden) on a "
        "terminal, so it stays out of shell history and process lists",
    ),
]
StatuteOpt = Annotated[
    str | None,
    typer.Option(
        "--statute",
        help="assert a statutory basis (a rule id in the rules file, e.g. osl_10_18a); "
        "needs --evidence-id",
    ),
]
EvidenceOpt = Annotated[
    str | None,
    typer.Option(
        "--evidence-id",
        help="your own reference for the statute's evidence (e.g. ra-… for a risk "
        "assessment); opaque, never a personnummer",
    ),
]


#: Exit codes of a sending command.
EXIT_ALL_TAKEN = 0  # released to every recipient / hub record confirmed (or --no-wait)
EXIT_DENIED = 1  # denied to at least one recipient / hub record refused
EXIT_ERROR = 2  # bad input, or no connection: nothing was sent
EXIT_NO_DECISION = 3  # sent, but no decision notice within --timeout
DEFAULT_WAIT_S = 5.0

WaitOpt = Annotated[
    bool,
    typer.Option(
        "--wait/--no-wait",
        help="wait for the hub's decision notice and exit 1 on any deny (default), or not",
    ),
]
TimeoutOpt = Annotated[
    float,
    typer.Option("--timeout", min=0.1, help="seconds to wait for the decision notice"),
]


class Journal(Protocol):
    """Where a command keeps what it sent and received (the lead's case register)."""

    def sent(
        self,
        message_type: MessageType,
        body: Body,
        *,
        case_ref: str | None,
        message_id: str,
        sent_at: datetime,
        notice: DecisionNotice | None,
    ) -> None: ...

    def received(self, delivered: Delivered) -> None: ...

    def noticed(self, notice: DecisionNotice) -> None: ...


def fail(message: str) -> NoReturn:
    """An ordinary mistake: one line on stderr, exit 2, no traceback."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(EXIT_ERROR)


def parse_day(text: str, option: str) -> date:
    """``YYYY-MM-DD`` or a one-line error naming the option (never ``15/12/2026``)."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        fail(f"{option} {text!r} is not a date: write YYYY-MM-DD, e.g. 2026-12-15")


def parse_instant(text: str, option: str) -> datetime:
    """An ISO 8601 date-time with its zone, or a one-line error naming the option."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        fail(f"{option} {text!r} is not a date-time: write e.g. 2026-12-15T14:00+01:00")
    if value.tzinfo is None:
        fail(f"{option} {text!r} has no time zone: add one, e.g. 2026-12-15T14:00+01:00")
    return value


def build(factory: Callable[[], T]) -> T:
    """A message body from the options, or a one-line error naming the field at fault
    (never the value: it may be a personnummer)."""
    try:
        return factory()
    except ValidationError as e:
        fail(f"invalid input at {describe_invalid(e)}")


def read_personnummer(value: str | None) -> str:
    """The personnummer from the option, else stdin (piped) or a hidden prompt on stderr."""
    if value:
        return value
    if sys.stdin.isatty():
        return getpass.getpass("Personnummer: ", stream=sys.stderr)
    return sys.stdin.readline().strip()


def directory_agencies(keys: Path | None) -> list[str]:
    """Every agency the signed directory lists (the hub aside): the default parties."""
    directory = load_directory(config.keys_dir(keys))
    return [entry.agency for entry in directory.agencies if entry.agency != HUB]


def assertion(statute: str | None, evidence_id: str | None) -> StatutoryAssertion | None:
    if (statute is None) != (evidence_id is None):
        raise typer.BadParameter("--statute and --evidence-id go together")
    if statute is None or evidence_id is None:
        return None
    return StatutoryAssertion(basis=statute, evidence_id=evidence_id)


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
    except ValidationError as e:
        typer.echo(f"error: invalid input at {describe_invalid(e)}", err=True)
        raise typer.Exit(2) from e
    except (SigbusError, ValueError) as e:
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
    to: list[str],
    asserted: StatutoryAssertion | None = None,
    wait: bool = True,
    timeout: float = DEFAULT_WAIT_S,
    withdrawal: bool = False,
    journal: Journal | None = None,
) -> None:
    """Send, then (unless ``wait`` is off) print the hub's decision and exit non-zero
    on any deny (:data:`EXIT_DENIED`) or on no decision in time (:data:`EXIT_NO_DECISION`)."""

    async def action(adapter: Adapter) -> tuple[str, DecisionNotice | None]:
        message_id = await adapter.send(
            message_type, body, case_ref=case_ref, recipients=tuple(to), assertion=asserted
        )
        typer.echo(f"sent {message_type.value} {message_id}")
        notice = await adapter.await_notice(message_id, timeout=timeout) if wait else None
        return message_id, notice

    sent_at = datetime.now().astimezone()
    message_id, notice = run_with_adapter(agency, nats, keys, action)
    if journal is not None:
        try:
            journal.sent(
                message_type, body, case_ref=case_ref, message_id=message_id,
                sent_at=sent_at, notice=notice,
            )  # fmt: skip
        except SigbusError as e:
            fail(f"sent as {message_id}, but {e}")
    if not wait:
        typer.echo(
            f"not waiting for the hub's decision (--no-wait); `sigbus {agency} inbox` shows it"
        )
        return
    if notice is None:
        typer.echo(
            f"no decision from the hub within {timeout:g}s: {message_id} is stored and will be "
            f"decided; `sigbus {agency} inbox` shows the decision notice when it comes"
            + ("; until then assume the withdrawal is NOT applied" if withdrawal else ""),
            err=True,
        )
        raise typer.Exit(EXIT_NO_DECISION)
    for line in describe_notice(notice):
        typer.echo(line)
    if not notice.all_taken:
        if withdrawal:
            typer.echo(
                "the withdrawal was NOT applied: the consent still holds and sharing under "
                "it continues; correct the command (consent id, --young-person/--guardian) "
                "and send it again",
                err=True,
            )
        raise typer.Exit(EXIT_DENIED)


def describe(d: Delivered) -> str:
    """One line per received message: ids and codes, no personal data."""
    r = d.record
    basis = f"{r.legal_basis}{' [statutory]' if r.statutory else ''}"
    return (
        f"{d.header.message_id} {d.header.type.value:<18} from {d.header.sender:<7} "
        f"case={d.header.case_ref or '-'} basis={basis} log#{r.log_index}"
    )


def load_case_system(spec: str, out: Path | None) -> CaseSystem:
    """``module:Class`` from the agency's own code, built with ``out`` if it takes a path.

    The class implements :class:`~sigbus.agents.casesystem.CaseSystem`; the
    adapter still verifies, witnesses and logs without personal data around it.
    """
    module_name, _, class_name = spec.partition(":")
    if not module_name or not class_name:
        raise typer.BadParameter("--case-system takes module:Class")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise typer.BadParameter(f"cannot load the case system {spec}") from e
    system = cls(out) if out is not None else cls()
    if not callable(getattr(system, "deliver", None)):
        raise typer.BadParameter(f"{spec} has no deliver(delivered) method")
    return system  # type: ignore[no-any-return]


def agency_app(
    profile: AgencyProfile, profiles: Profiles, journal: Journal | None = None
) -> typer.Typer:
    """The command group of one agency, from its profile; ``journal`` keeps what its
    commands send and receive (the lead's case register)."""
    app = typer.Typer(
        pretty_exceptions_show_locals=False,
        help=f"{profile.display_name.sv} ({profile.display_name.en}).",
        no_args_is_help=True,
    )
    add_common_commands(app, profile.name, journal)
    if MessageType.REFERRAL in profile.sends:
        add_refer_command(app, profile, profiles.lead)
    if MessageType.PLAN_COMMITMENT in profile.sends:
        add_plan_commands(app, profile, journal)
    return app


def add_common_commands(app: typer.Typer, agency: AgencyId, journal: Journal | None = None) -> None:
    @app.command()
    def inbox(
        nats: NatsOpt = None,
        keys: KeysOpt = None,
        out: Annotated[
            Path | None,
            typer.Option(help="append full messages (with personal data) to this 0600 JSONL file"),
        ] = None,
    ) -> None:
        """Fetch, verify and open what has been released to this agency, and show the
        hub's decision notices for this agency's own messages."""
        sink = JsonlCaseSystem(out) if out else None

        async def action(adapter: Adapter) -> int:
            received = 0

            async def handle(d: Delivered) -> None:
                nonlocal received
                if sink is not None:
                    await sink.deliver(d)
                if journal is not None:
                    journal.received(d)
                typer.echo(describe(d))
                received += 1

            async def show(notice: DecisionNotice) -> None:
                if journal is not None:
                    journal.noticed(notice)
                for line in describe_notice(notice):
                    typer.echo(line)

            while await adapter.receive(handle, on_notice=show, timeout=1.0):
                pass
            return received

        count = run_with_adapter(agency, nats, keys, action)
        typer.echo(f"{count} message(s) received")

    @app.command()
    def serve(
        out: Annotated[
            Path | None,
            typer.Option(help="0600 JSONL file standing in for the case system"),
        ] = None,
        case_system: Annotated[
            str | None,
            typer.Option(
                "--case-system",
                help="your CaseSystem implementation as module:Class (built with --out if given)",
            ),
        ] = None,
        nats: NatsOpt = None,
        keys: KeysOpt = None,
        witness_state: Annotated[
            Path | None,
            typer.Option(
                help="where this agency keeps the last checkpoint it cosigned "
                "(default: witness-<agency>.json next to --out, else in the data dir)"
            ),
        ] = None,
    ) -> None:
        """Run the adapter: receive into the case system and witness the hub's log.
        Decision notices are logged as ``decision_notice`` events, never delivered."""
        if case_system is None and out is None:
            raise typer.BadParameter("give --out FILE or --case-system module:Class")
        sink = load_case_system(case_system, out) if case_system else JsonlCaseSystem(out)  # type: ignore[arg-type]
        default_state = (out.parent if out else config.data_dir(None)) / f"witness-{agency}.json"
        state = witness_state or default_state
        state.parent.mkdir(parents=True, exist_ok=True)

        async def action(adapter: Adapter) -> None:
            witness = WitnessRunner(adapter, state_path=state)
            while True:
                await adapter.receive(sink.deliver, timeout=5.0)
                await witness.run_once(timeout=0.2)

        run_with_adapter(agency, nats, keys, action)


def add_refer_command(app: typer.Typer, profile: AgencyProfile, lead: AgencyId) -> None:
    kinds = list(profile.referrals)

    @app.command()
    def refer(
        reason: Annotated[list[ReferralReason], typer.Option(help="repeatable")],
        evidence_id: Annotated[
            str,
            typer.Option(
                "--evidence-id",
                help="your own reference for this referral (e.g. your case number as an "
                "opaque id like dnr-k1234): the evidence for the statute it asserts",
            ),
        ],
        personnummer: PnrOpt = None,
        kind: Annotated[ReferralKind, typer.Option(help=f"one of: {', '.join(kinds)}")] = kinds[0],
        observed: Annotated[str | None, typer.Option(help="YYYY-MM-DD (default today)")] = None,
        contact: Annotated[
            str, typer.Option(help=f"one of: {', '.join(profile.functions)}")
        ] = profile.default_function(),
        nats: NatsOpt = None,
        keys: KeysOpt = None,
        wait: WaitOpt = True,
        timeout: TimeoutOpt = DEFAULT_WAIT_S,
    ) -> None:
        """Refer a young person to social services (the statute the profile names for --kind)."""
        if kind not in profile.referrals:
            raise typer.BadParameter(f"this agency refers only as {', '.join(kinds)}")
        body = Referral(
            kind=kind,
            personnummer=read_personnummer(personnummer),
            reasons=tuple(reason),
            observed_on=parse_day(observed, "--observed") if observed else date.today(),
            contact_function=contact,
        )
        asserted = StatutoryAssertion(basis=profile.referrals[kind], evidence_id=evidence_id)
        send(
            profile.name,
            nats,
            keys,
            MessageType.REFERRAL,
            body,
            case_ref=None,
            to=[lead],
            asserted=asserted,
            wait=wait,
            timeout=timeout,
        )


def add_plan_commands(
    app: typer.Typer, profile: AgencyProfile, journal: Journal | None = None
) -> None:
    agency = profile.name

    @app.command()
    def commit(
        case: CaseOpt,
        action: Annotated[ActionCode, typer.Argument(help=f"one of: {', '.join(profile.actions)}")],
        to: ToOpt,
        due: Annotated[str, typer.Option(help="due date YYYY-MM-DD")],
        owner: Annotated[
            str, typer.Option(help=f"one of: {', '.join(profile.functions)}")
        ] = profile.default_function(),
        nats: NatsOpt = None,
        keys: KeysOpt = None,
        wait: WaitOpt = True,
        timeout: TimeoutOpt = DEFAULT_WAIT_S,
        commitment_id: Annotated[str | None, typer.Option()] = None,
        statute: StatuteOpt = None,
        evidence_id: EvidenceOpt = None,
    ) -> None:
        """Commit to a plan action in the individuell åtgärdsplan (individual action plan)."""
        if action not in profile.actions:
            raise typer.BadParameter(
                f"this agency commits to: {', '.join(a.value for a in profile.actions)}"
            )
        due_on = parse_day(due, "--due")
        body = build(
            lambda: PlanCommitment(
                commitment_id=commitment_id or new_opaque_id("cm", 16),
                responsible_agency=agency,
                action=action,
                owner_function=owner,
                due_on=due_on,
            )
        )
        asserted = assertion(statute, evidence_id)
        send(
            agency,
            nats,
            keys,
            MessageType.PLAN_COMMITMENT,
            body,
            case_ref=case,
            to=to,
            asserted=asserted,
            wait=wait,
            timeout=timeout,
            journal=journal,
        )

    @app.command()
    def status(
        case: CaseOpt,
        commitment_id: Annotated[str, typer.Option("--commitment")],
        state: StatusCode,
        to: ToOpt,
        reason: Annotated[NotDoneReason | None, typer.Option()] = None,
        nats: NatsOpt = None,
        keys: KeysOpt = None,
        wait: WaitOpt = True,
        timeout: TimeoutOpt = DEFAULT_WAIT_S,
        statute: StatuteOpt = None,
        evidence_id: EvidenceOpt = None,
    ) -> None:
        """Report the status of a commitment (done / in_progress / not_done + reason)."""
        body = build(
            lambda: CommitmentStatus(
                commitment_id=commitment_id,
                status=state,
                not_done_reason=reason,
                as_of=date.today(),
            )
        )
        asserted = assertion(statute, evidence_id)
        send(
            agency,
            nats,
            keys,
            MessageType.COMMITMENT_STATUS,
            body,
            case_ref=case,
            to=to,
            asserted=asserted,
            wait=wait,
            timeout=timeout,
            journal=journal,
        )
