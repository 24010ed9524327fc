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

import structlog
import typer
from pydantic import TypeAdapter, ValidationError

from sigbus.agents.casesystem import (
    CaseSystem,
    DirectoryCaseSystem,
    JsonlCaseSystem,
    WebhookCaseSystem,
)
from sigbus.agents.errors import PublishFailed
from sigbus.agents.notice_text import describe_notice
from sigbus.agents.outbox import Outbox
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
from sigbus.protocol.ids import HUB, AgencyId, MessageIdStr, MessageType, new_opaque_id
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
from sigbus.transport.bus import Backoff
from sigbus.transport.errors import NatsUnreachable
from sigbus.transport.keystore import load_directory
from sigbus.transport.metrics import DEFAULT_HOST, serve_metrics

T = TypeVar("T")
log = structlog.get_logger("sigbus.adapter")

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
EXIT_NO_DECISION = 3  # sent (or kept in the outbox), but no decision notice within --timeout
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

_MESSAGE_ID: TypeAdapter[str] = TypeAdapter(MessageIdStr)


def check_message_id(value: str | None) -> str | None:
    """A caller-chosen message id, or one line and exit 2 (before anything is read or sent)."""
    if value is None:
        return None
    try:
        return _MESSAGE_ID.validate_python(value)
    except ValidationError as e:
        typer.echo(
            "error: --message-id takes msg- and 8-64 of A-Z a-z 0-9 _ -, with no run of six "
            "digits (an id is opaque, never a personnummer)",
            err=True,
        )
        raise typer.Exit(EXIT_ERROR) from e


MessageIdOpt = Annotated[
    str | None,
    typer.Option(
        "--message-id",
        callback=check_message_id,
        help="your own id for this message (msg-…), for an idempotent retry: the same id "
        "and content is sent once and a retry prints the first outcome (default: a new id)",
    ),
]


def derived_id(prefix: str, message_id: str | None, length: int) -> str:
    """An id the command would otherwise draw at random (case, consent, commitment),
    derived from ``--message-id`` if one is given, so a retry repeats the same content."""
    if message_id is None:
        return new_opaque_id(prefix, length)
    return f"{prefix}-{message_id.removeprefix('msg-')}"


def outbox_path(agency: AgencyId) -> Path:
    """The agency's durable outbox and processed-release store, in the data directory
    (``SIGBUS_DATA_DIR``); a sending command and ``serve`` share it."""
    return config.data_dir(None) / f"outbox-{agency}.sqlite"


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
    agency: AgencyId,
    nats: str | None,
    keys: Path | None,
    action: Callable[[Adapter], Awaitable[T]],
    *,
    outbox: bool = False,
    wait_for_nats: bool = False,
) -> T:
    """Connect as ``agency`` (with its durable outbox if ``outbox``; retrying an
    unreachable NATS with bounded backoff, forever, if ``wait_for_nats``), run
    ``action``, close; errors become a clear exit 2."""

    async def main() -> T:
        setup = agency_setup(agency, config.keys_dir(keys))
        url = config.nats_url(nats)
        backoff = Backoff()
        while True:
            try:
                adapter = await setup.connect(url)
                break
            except NatsUnreachable:
                if not wait_for_nats:
                    raise
                delay = backoff.next()
                log.warning("nats_unreachable", agency=agency, retry_in_s=delay)
                await asyncio.sleep(delay)
        try:
            if outbox:
                adapter.outbox = Outbox(outbox_path(agency))
            return await action(adapter)
        finally:
            if adapter.outbox is not None:
                adapter.outbox.close()
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
    message_id: str | None = None,
    journal: Journal | None = None,
) -> None:
    """Send through the agency's outbox, then (unless ``wait`` is off) print the hub's
    decision and exit non-zero on any deny (:data:`EXIT_DENIED`) or on no decision in
    time (:data:`EXIT_NO_DECISION`). A ``message_id`` sent before with the same content
    is not sent again: the command prints the earlier outcome."""

    chosen_id = message_id or new_opaque_id("msg")

    async def action(adapter: Adapter) -> tuple[str, DecisionNotice | None]:
        assert adapter.outbox is not None
        earlier = adapter.outbox.get(chosen_id)
        try:
            sent_id = await adapter.send(
                message_type,
                body,
                case_ref=case_ref,
                recipients=tuple(to),
                assertion=asserted,
                message_id=chosen_id,
            )
        except PublishFailed as e:
            # On disk in the outbox: a retry under a new id would send it twice.
            typer.echo(
                f"error: {e}. It is kept in the outbox as {chosen_id}: `sigbus {agency} "
                f"serve` delivers it when the bus takes it, or retry with --message-id "
                f"{chosen_id}, never under a new id",
                err=True,
            )
            raise typer.Exit(EXIT_NO_DECISION) from e
        if earlier is not None and earlier.delivered:
            typer.echo(f"already sent {message_type.value} {sent_id}: a retry, not sent again")
        else:
            typer.echo(f"sent {message_type.value} {sent_id}")
        notice = await adapter.await_notice(sent_id, timeout=timeout) if wait else None
        return sent_id, notice

    sent_at = datetime.now().astimezone()
    message_id, notice = run_with_adapter(agency, nats, keys, action, outbox=True)
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
        raise typer.BadParameter("--sink takes module:Class")
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
        rich_markup_mode="markdown",
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
            typer.Option(
                help="directory drop: one 0600 JSON file per release, named by its release id"
            ),
        ] = None,
        webhook: Annotated[
            str | None,
            typer.Option(
                help="POST each release as JSON to this https:// URL (http:// on loopback "
                "only), retried with backoff, idempotent by the Idempotency-Key header"
            ),
        ] = None,
        sink_class: Annotated[
            str | None,
            typer.Option(
                "--sink",
                "--case-system",
                help="your CaseSystem implementation as module:Class (built with --out if "
                "given; docs/operations.md, Sinks)",
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
        metrics_port: Annotated[
            int | None,
            typer.Option(help="serve Prometheus metrics on this port (127.0.0.1); off if unset"),
        ] = None,
        metrics_host: Annotated[
            str, typer.Option(help="the metrics' address (0.0.0.0 inside a container)")
        ] = DEFAULT_HOST,
    ) -> None:
        """Run the adapter: deliver the outbox, receive into the case system (exactly
        once, through the processed-release store) and witness the hub's log. Rides out
        NATS outages and waits for the hub. Decision notices are logged as
        ``decision_notice`` events, never delivered."""
        if sum(x is not None for x in (webhook, sink_class)) > 1 or (
            webhook is not None and out is not None
        ):
            raise typer.BadParameter("give one of --out DIR, --webhook URL, --sink module:Class")
        sink: CaseSystem
        if sink_class is not None:
            sink = load_case_system(sink_class, out)
        elif webhook is not None:
            try:
                sink = WebhookCaseSystem(webhook)
            except SigbusError as e:
                typer.echo(f"error: {e}", err=True)
                raise typer.Exit(EXIT_ERROR) from e
        elif out is not None:
            sink = DirectoryCaseSystem(out)
        else:
            raise typer.BadParameter("give --out DIR, --webhook URL or --sink module:Class")
        default_state = (out.parent if out else config.data_dir(None)) / f"witness-{agency}.json"
        state = witness_state or default_state
        state.parent.mkdir(parents=True, exist_ok=True)

        async def action(adapter: Adapter) -> None:
            witness = WitnessRunner(adapter, state_path=state)
            metrics = (
                None
                if metrics_port is None
                else serve_metrics(adapter.metrics.registry, metrics_port, metrics_host)
            )

            async def also() -> None:
                adapter.metrics.outbox(adapter.outbox)  # on this thread: the outbox is SQLite
                await witness.run_once(timeout=0.2)

            try:
                await adapter.serve(sink.deliver, also=also)
            finally:
                if metrics is not None:
                    metrics.close()

        run_with_adapter(agency, nats, keys, action, outbox=True, wait_for_nats=True)


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
        message_id: MessageIdOpt = None,
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
            message_id=message_id,
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
        message_id: MessageIdOpt = None,
    ) -> None:
        """Commit to a plan action in the individuell åtgärdsplan (individual action plan)."""
        if action not in profile.actions:
            raise typer.BadParameter(
                f"this agency commits to: {', '.join(a.value for a in profile.actions)}"
            )
        due_on = parse_day(due, "--due")
        body = build(
            lambda: PlanCommitment(
                commitment_id=commitment_id or derived_id("cm", message_id, 16),
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
            message_id=message_id,
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
        message_id: MessageIdOpt = None,
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
            message_id=message_id,
            journal=journal,
        )
