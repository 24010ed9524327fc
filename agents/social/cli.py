"""The lead agency's commands (`sigbus social …`): cases, samtycke, invitations, meetings."""

# No ``from __future__ import annotations``: the commands' option help is built from
# the profile in closures, and typer must see those annotations evaluated.

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from sigbus.agents.cli_common import (
    DEFAULT_WAIT_S,
    CaseOpt,
    EvidenceOpt,
    KeysOpt,
    NatsOpt,
    PnrOpt,
    StatuteOpt,
    TimeoutOpt,
    ToOpt,
    WaitOpt,
    assertion,
    directory_agencies,
    read_personnummer,
    send,
)
from sigbus.agents.social.consent import consent_given, consent_withdrawn
from sigbus.protocol.codes import (
    AgendaItem,
    AssessmentInstrument,
    ClosureReason,
    ConsenterRole,
    PlaceCode,
)
from sigbus.protocol.ids import MessageType, new_opaque_id
from sigbus.protocol.messages import (
    AssessmentRef,
    CaseClosed,
    CaseInvitation,
    CaseOpened,
    CaseSelected,
    ConsentEvent,
    MeetingNotice,
)
from sigbus.protocol.profiles import AgencyProfile

PartiesOpt = Annotated[
    list[str] | None,
    typer.Option(help="agency, repeatable (default: every agency in the signed directory)"),
]
GuardianOpt = Annotated[
    str | None,
    typer.Option(
        "--guardian", help="guardian ref (vh-…) when a vårdnadshavare (guardian) consents"
    ),
]


#: The function that records samtycke in the shipped lead profile (profiles/social.toml).
RECORDED_BY = "social_case_worker"


def _when(text: str | None) -> datetime:
    return datetime.fromisoformat(text) if text else datetime.now(UTC)


def _role(young_person: bool, guardian: str | None) -> ConsenterRole:
    if young_person == (guardian is not None):
        raise typer.BadParameter("give exactly one of --young-person or --guardian")
    return ConsenterRole.YOUNG_PERSON if young_person else ConsenterRole.GUARDIAN


def add_lead_commands(app: typer.Typer, profile: AgencyProfile) -> None:
    """Attach the lead agency's commands to its group (``profile`` is the lead's)."""
    agency = profile.name
    case_app = typer.Typer(
        pretty_exceptions_show_locals=False, help="SIG cases.", no_args_is_help=True
    )
    consent_app = typer.Typer(
        pretty_exceptions_show_locals=False,
        help="Samtycke: record consent given or withdrawn.",
        no_args_is_help=True,
    )
    app.add_typer(case_app, name="case")
    app.add_typer(consent_app, name="consent")
    functions = ", ".join(profile.functions)
    # Samtycke is recorded by a case worker where the profile has one, else its first function.
    recorder = RECORDED_BY if RECORDED_BY in profile.functions else profile.default_function()

    def record_consent(
        body: ConsentEvent,
        case: str,
        nats: str | None,
        keys: Path | None,
        *,
        wait: bool,
        timeout: float,
        withdrawal: bool = False,
    ) -> None:
        send(
            agency,
            nats,
            keys,
            MessageType.CONSENT_EVENT,
            body,
            case_ref=case,
            to=[],
            wait=wait,
            timeout=timeout,
            withdrawal=withdrawal,
        )

    @case_app.command("open")
    def open_case(
        personnummer: PnrOpt = None,
        guardian: Annotated[
            list[str],
            typer.Option(help="ref of each guardian with custody, e.g. vh-1 (repeatable)"),
        ] = [],  # noqa: B006
        party: PartiesOpt = None,
        case: Annotated[str | None, typer.Option("--case")] = None,
        nats: NatsOpt = None,
        keys: KeysOpt = None,
        wait: WaitOpt = True,
        timeout: TimeoutOpt = DEFAULT_WAIT_S,
    ) -> None:
        """Open a SIG case at the hub. Prints the case ref to use from now on."""
        case_ref = case or new_opaque_id("case", 12)
        body = CaseOpened(
            personnummer=read_personnummer(personnummer),
            guardians_with_custody=tuple(guardian),
            parties=tuple(party or directory_agencies(keys)),
        )
        send(
            agency,
            nats,
            keys,
            MessageType.CASE_OPENED,
            body,
            case_ref=case_ref,
            to=[],
            wait=wait,
            timeout=timeout,
        )
        typer.echo(f"case {case_ref}")

    @case_app.command("select")
    def select_case(
        case: CaseOpt,
        instrument: Annotated[
            AssessmentInstrument | None,
            typer.Option(help="the structured assessment the decision rests on"),
        ] = None,
        assessment_id: Annotated[
            str | None,
            typer.Option(
                "--assessment-id",
                help="your case system's opaque id of that assessment (e.g. as-k12); "
                "never its content",
            ),
        ] = None,
        decided_by: Annotated[str, typer.Option(help=f"one of: {functions}")] = (
            profile.default_function()
        ),
        nats: NatsOpt = None,
        keys: KeysOpt = None,
        wait: WaitOpt = True,
        timeout: TimeoutOpt = DEFAULT_WAIT_S,
    ) -> None:
        """Record the selection decision: the young person enters the SIG."""
        if (instrument is None) != (assessment_id is None):
            raise typer.BadParameter("--instrument and --assessment-id go together")
        assessment = (
            AssessmentRef(instrument=instrument, assessment_id=assessment_id)
            if instrument is not None and assessment_id is not None
            else None
        )
        body = CaseSelected(assessment=assessment, decided_by=decided_by)
        send(
            agency, nats, keys, MessageType.CASE_SELECTED, body,
            case_ref=case, to=[], wait=wait, timeout=timeout,
        )  # fmt: skip

    @case_app.command("close")
    def close_case(
        case: CaseOpt,
        reason: Annotated[ClosureReason, typer.Option(help="why the case ends")],
        closed_by: Annotated[str, typer.Option(help=f"one of: {functions}")] = (
            profile.default_function()
        ),
        nats: NatsOpt = None,
        keys: KeysOpt = None,
        wait: WaitOpt = True,
        timeout: TimeoutOpt = DEFAULT_WAIT_S,
    ) -> None:
        """Close the case. From then on the hub denies every message about it (case_closed)."""
        body = CaseClosed(reason=reason, closed_by=closed_by)
        send(
            agency, nats, keys, MessageType.CASE_CLOSED, body,
            case_ref=case, to=[], wait=wait, timeout=timeout,
        )  # fmt: skip

    @consent_app.command("give")
    def consent_give(
        case: CaseOpt,
        evidence: Annotated[
            Path, typer.Option(help="the signed consent form; only its SHA-256 is sent")
        ],
        until: Annotated[str, typer.Option(help="valid until (ISO 8601, with zone)")],
        category: Annotated[list[MessageType], typer.Option(help="repeatable")],
        young_person: Annotated[bool, typer.Option("--young-person")] = False,
        guardian: GuardianOpt = None,
        discloser: PartiesOpt = None,
        recipient: PartiesOpt = None,
        valid_from: Annotated[str | None, typer.Option("--from")] = None,
        consent_id: Annotated[str | None, typer.Option("--consent-id")] = None,
        recorded_by: Annotated[str, typer.Option(help=f"one of: {functions}")] = recorder,
        nats: NatsOpt = None,
        keys: KeysOpt = None,
        wait: WaitOpt = True,
        timeout: TimeoutOpt = DEFAULT_WAIT_S,
    ) -> None:
        """Record a written, scoped samtycke given by the young person or a guardian."""
        role = _role(young_person, guardian)
        cid = consent_id or new_opaque_id("consent", 16)
        listed = None if discloser and recipient else directory_agencies(keys)
        body = consent_given(
            cid,
            role,
            guardian,
            disclosers=tuple(discloser or listed or ()),
            recipients=tuple(recipient or listed or ()),
            categories=tuple(category),
            valid_from=_when(valid_from),
            valid_until=datetime.fromisoformat(until),
            acted_at=datetime.now(UTC),
            evidence_sha256=hashlib.sha256(evidence.read_bytes()).hexdigest(),
            recorded_by=recorded_by,
        )
        record_consent(body, case, nats, keys, wait=wait, timeout=timeout)
        typer.echo(f"consent {cid}")

    @consent_app.command("withdraw")
    def consent_withdraw(
        case: CaseOpt,
        consent_id: Annotated[str, typer.Option("--consent-id")],
        young_person: Annotated[bool, typer.Option("--young-person")] = False,
        guardian: GuardianOpt = None,
        recorded_by: Annotated[str, typer.Option(help=f"one of: {functions}")] = recorder,
        nats: NatsOpt = None,
        keys: KeysOpt = None,
        wait: WaitOpt = True,
        timeout: TimeoutOpt = DEFAULT_WAIT_S,
    ) -> None:
        """Record that the consenter withdrew samtycke. Sharing stops at once; if the hub
        refuses the withdrawal (exit 1), it is NOT applied and sharing continues."""
        body = consent_withdrawn(
            consent_id,
            _role(young_person, guardian),
            guardian,
            acted_at=datetime.now(UTC),
            recorded_by=recorded_by,
        )
        record_consent(body, case, nats, keys, wait=wait, timeout=timeout, withdrawal=True)

    @app.command()
    def invite(
        case: CaseOpt,
        to: ToOpt,
        personnummer: PnrOpt = None,
        party: PartiesOpt = None,
        coordinator: Annotated[
            str, typer.Option(help=f"one of: {functions}")
        ] = profile.default_function(),
        nats: NatsOpt = None,
        keys: KeysOpt = None,
        wait: WaitOpt = True,
        timeout: TimeoutOpt = DEFAULT_WAIT_S,
        statute: StatuteOpt = None,
        evidence_id: EvidenceOpt = None,
    ) -> None:
        """Invite parties to the case (released only with consent, or a statute you assert)."""
        body = CaseInvitation(
            personnummer=read_personnummer(personnummer),
            parties=tuple(party or directory_agencies(keys)),
            coordinator=coordinator,
        )
        asserted = assertion(statute, evidence_id)
        send(
            agency,
            nats,
            keys,
            MessageType.CASE_INVITATION,
            body,
            case_ref=case,
            to=to,
            asserted=asserted,
            wait=wait,
            timeout=timeout,
        )

    @app.command()
    def meeting(
        case: CaseOpt,
        at: Annotated[str, typer.Option(help="ISO 8601 with zone")],
        place: PlaceCode,
        agenda: Annotated[list[AgendaItem], typer.Option()],
        to: ToOpt,
        nats: NatsOpt = None,
        keys: KeysOpt = None,
        wait: WaitOpt = True,
        timeout: TimeoutOpt = DEFAULT_WAIT_S,
        statute: StatuteOpt = None,
        evidence_id: EvidenceOpt = None,
    ) -> None:
        """Call an individual meeting (agenda as codes)."""
        body = MeetingNotice(
            meeting_at=datetime.fromisoformat(at), place=place, agenda=tuple(agenda)
        )
        asserted = assertion(statute, evidence_id)
        send(
            agency,
            nats,
            keys,
            MessageType.MEETING_NOTICE,
            body,
            case_ref=case,
            to=to,
            asserted=asserted,
            wait=wait,
            timeout=timeout,
        )
