"""The lead agency's commands (`sigbus social …`): cases, samtycke, invitations, meetings."""

# No ``from __future__ import annotations``: the commands' option help is built from
# the profile in closures, and typer must see those annotations evaluated.

import hashlib
import json
from datetime import UTC, datetime
from datetime import date as date_type
from pathlib import Path
from typing import Annotated

import typer

from sigbus.agents.cli_common import (
    DEFAULT_WAIT_S,
    CaseOpt,
    EvidenceOpt,
    KeysOpt,
    MessageIdOpt,
    NatsOpt,
    PnrOpt,
    StatuteOpt,
    TimeoutOpt,
    ToOpt,
    WaitOpt,
    assertion,
    build,
    derived_id,
    directory_agencies,
    fail,
    parse_instant,
    read_personnummer,
    send,
)
from sigbus.agents.social.consent import consent_given, consent_withdrawn
from sigbus.agents.social.intake import referral_queue
from sigbus.agents.social.register import CaseRegister, CaseView, case_views
from sigbus.policy import default_rules
from sigbus.protocol.codes import (
    AgendaItem,
    AssessmentInstrument,
    ClosureReason,
    ConsenterRole,
    PlaceCode,
    QuestionnaireAnswer,
    QuestionnaireOccasion,
)
from sigbus.protocol.errors import SigbusError
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import (
    AssessmentRef,
    CaseClosed,
    CaseInvitation,
    CaseOpened,
    CaseSelected,
    ConsentEvent,
    MeetingAttendance,
    MeetingMinutes,
    MeetingNotice,
    PlanRevision,
    ReferralLink,
    YouthQuestionnaire,
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


def _when(text: str | None, option: str) -> datetime:
    return parse_instant(text, option) if text else datetime.now(UTC)


def _evidence_digest(path: Path) -> str:
    """SHA-256 of the signed consent form; a missing or unreadable file is one line."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as e:
        fail(f"--evidence {str(path)!r} cannot be read ({e.strerror or type(e).__name__})")


def _role(young_person: bool, guardian: str | None) -> ConsenterRole:
    if young_person == (guardian is not None):
        raise typer.BadParameter("give exactly one of --young-person or --guardian")
    return ConsenterRole.YOUNG_PERSON if young_person else ConsenterRole.GUARDIAN


def add_lead_commands(
    app: typer.Typer, profile: AgencyProfile, register: CaseRegister | None = None
) -> None:
    """Attach the lead agency's commands to its group (``profile`` is the lead's); what
    they send, and the hub's decisions, go into ``register`` (the case register)."""
    agency = profile.name
    agency_name_of_lead = agency  # the name ``agency`` is an option of ``attendance``
    journal = register if register is not None else CaseRegister()
    case_app = typer.Typer(
        rich_markup_mode="markdown",
        pretty_exceptions_show_locals=False,
        help="SIG cases.",
        no_args_is_help=True,
    )
    consent_app = typer.Typer(
        rich_markup_mode="markdown",
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
        message_id: str | None = None,
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
            message_id=message_id,
            journal=journal,
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
        message_id: MessageIdOpt = None,
        referral: Annotated[
            str | None,
            typer.Option(
                "--referral",
                help="the message id of the referral the case is opened for "
                "(`sigbus social referrals` lists them)",
            ),
        ] = None,
    ) -> None:
        """Open a SIG case at the hub. Prints the case ref to use from now on."""
        case_ref = case or derived_id("case", message_id, 12)
        link = referral_link(journal, referral) if referral is not None else None
        pnr = read_personnummer(personnummer)
        parties = tuple(party or directory_agencies(keys))
        body = build(
            lambda: CaseOpened(
                personnummer=pnr,
                guardians_with_custody=tuple(guardian),
                parties=parties,
                referral=link,
            )
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
            message_id=message_id,
            journal=journal,
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
        message_id: MessageIdOpt = None,
    ) -> None:
        """Record the selection decision: the young person enters the SIG."""
        if (instrument is None) != (assessment_id is None):
            raise typer.BadParameter("--instrument and --assessment-id go together")
        body = build(
            lambda: CaseSelected(
                assessment=(
                    AssessmentRef(instrument=instrument, assessment_id=assessment_id)
                    if instrument is not None and assessment_id is not None
                    else None
                ),
                decided_by=decided_by,
            )
        )
        send(
            agency, nats, keys, MessageType.CASE_SELECTED, body,
            case_ref=case, to=[], wait=wait, timeout=timeout, journal=journal,
            message_id=message_id,
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
        message_id: MessageIdOpt = None,
    ) -> None:
        """Close the case. From then on the hub denies every message about it (case_closed)."""
        body = build(lambda: CaseClosed(reason=reason, closed_by=closed_by))
        send(
            agency, nats, keys, MessageType.CASE_CLOSED, body,
            case_ref=case, to=[], wait=wait, timeout=timeout, journal=journal,
            message_id=message_id,
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
        message_id: MessageIdOpt = None,
    ) -> None:
        """Record a written, scoped samtycke given by the young person or a guardian."""
        role = _role(young_person, guardian)
        cid = consent_id or derived_id("consent", message_id, 16)
        start, end = _when(valid_from, "--from"), parse_instant(until, "--until")
        digest = _evidence_digest(evidence)
        listed = None if discloser and recipient else directory_agencies(keys)
        body = build(
            lambda: consent_given(
                cid,
                role,
                guardian,
                disclosers=tuple(discloser or listed or ()),
                recipients=tuple(recipient or listed or ()),
                categories=tuple(category),
                valid_from=start,
                valid_until=end,
                acted_at=datetime.now(UTC),
                evidence_sha256=digest,
                recorded_by=recorded_by,
            )
        )
        record_consent(body, case, nats, keys, wait=wait, timeout=timeout, message_id=message_id)
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
        message_id: MessageIdOpt = None,
    ) -> None:
        """Record that the consenter withdrew samtycke. Sharing stops at once; if the hub
        refuses the withdrawal (exit 1), it is NOT applied and sharing continues."""
        role = _role(young_person, guardian)
        body = build(
            lambda: consent_withdrawn(
                consent_id, role, guardian, acted_at=datetime.now(UTC), recorded_by=recorded_by
            )
        )
        record_consent(
            body,
            case,
            nats,
            keys,
            wait=wait,
            timeout=timeout,
            withdrawal=True,
            message_id=message_id,
        )

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
        message_id: MessageIdOpt = None,
    ) -> None:
        """Invite parties to the case (released only with consent, or a statute you assert)."""
        pnr = read_personnummer(personnummer)
        parties = tuple(party or directory_agencies(keys))
        body = build(
            lambda: CaseInvitation(personnummer=pnr, parties=parties, coordinator=coordinator)
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
            message_id=message_id,
            journal=journal,
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
        message_id: MessageIdOpt = None,
    ) -> None:
        """Call an individual meeting (agenda as codes)."""
        meeting_at = parse_instant(at, "--at")
        body = build(
            lambda: MeetingNotice(meeting_at=meeting_at, place=place, agenda=tuple(agenda))
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
            message_id=message_id,
            journal=journal,
        )

    @app.command()
    def attendance(
        case: CaseOpt,
        at: Annotated[str, typer.Option(help="when the meeting was held (ISO 8601 with zone)")],
        to: ToOpt,
        agency: Annotated[list[str], typer.Option(help="an agency that came (repeatable)")] = [],  # noqa: B006
        young_person: Annotated[
            bool, typer.Option("--young-person/--no-young-person", help="the young person came")
        ] = False,
        guardian: Annotated[
            list[str], typer.Option(help="ref of a guardian who came, e.g. vh-1 (repeatable)")
        ] = [],  # noqa: B006
        nats: NatsOpt = None,
        keys: KeysOpt = None,
        wait: WaitOpt = True,
        timeout: TimeoutOpt = DEFAULT_WAIT_S,
        statute: StatuteOpt = None,
        evidence_id: EvidenceOpt = None,
        message_id: MessageIdOpt = None,
    ) -> None:
        """Record who came to an individual meeting: agencies, the young person, guardians."""
        meeting_at = parse_instant(at, "--at")
        body = build(
            lambda: MeetingAttendance(
                meeting_at=meeting_at,
                agencies_present=tuple(agency),
                young_person_present=young_person,
                guardians_present=tuple(guardian),
            )
        )
        asserted = assertion(statute, evidence_id)
        send(
            agency_name_of_lead, nats, keys, MessageType.MEETING_ATTENDANCE, body,
            case_ref=case, to=to, asserted=asserted, wait=wait, timeout=timeout,
            message_id=message_id, journal=journal,
        )  # fmt: skip

    @app.command()
    def minutes(
        case: CaseOpt,
        at: Annotated[str, typer.Option(help="when the meeting was held (ISO 8601 with zone)")],
        discussed: Annotated[list[AgendaItem], typer.Option(help="agenda item dealt with")],
        to: ToOpt,
        text: Annotated[
            str | None,
            typer.Option(help="one short note (≤ 300 characters); never a personnummer"),
        ] = None,
        nats: NatsOpt = None,
        keys: KeysOpt = None,
        wait: WaitOpt = True,
        timeout: TimeoutOpt = DEFAULT_WAIT_S,
        statute: StatuteOpt = None,
        evidence_id: EvidenceOpt = None,
        message_id: MessageIdOpt = None,
    ) -> None:
        """Send the minutes of an individual meeting: agenda codes and one screened note."""
        meeting_at = parse_instant(at, "--at")
        body = build(
            lambda: MeetingMinutes(meeting_at=meeting_at, discussed=tuple(discussed), note=text)
        )
        asserted = assertion(statute, evidence_id)
        send(
            agency_name_of_lead, nats, keys, MessageType.MEETING_MINUTES, body,
            case_ref=case, to=to, asserted=asserted, wait=wait, timeout=timeout,
            message_id=message_id, journal=journal,
        )  # fmt: skip

    @app.command()
    def questionnaire(
        case: CaseOpt,
        occasion: Annotated[QuestionnaireOccasion, typer.Option(help="a review, or closure")],
        listened_to: Annotated[
            QuestionnaireAnswer, typer.Option(help="I was listened to")
        ] = QuestionnaireAnswer.NO_ANSWER,
        support_helped: Annotated[
            QuestionnaireAnswer, typer.Option(help="the support helped me")
        ] = QuestionnaireAnswer.NO_ANSWER,
        knew_the_plan: Annotated[
            QuestionnaireAnswer, typer.Option(help="I knew what was planned for me")
        ] = QuestionnaireAnswer.NO_ANSWER,
        recorded_by: Annotated[str, typer.Option(help=f"one of: {functions}")] = recorder,
        nats: NatsOpt = None,
        keys: KeysOpt = None,
        wait: WaitOpt = True,
        timeout: TimeoutOpt = DEFAULT_WAIT_S,
        message_id: MessageIdOpt = None,
    ) -> None:
        """Record the young person's answers on how the support was experienced (codes
        only; a hub record, counted in `sigbus social report` with small counts hidden)."""
        body = build(
            lambda: YouthQuestionnaire(
                occasion=occasion,
                listened_to=listened_to,
                support_helped=support_helped,
                knew_the_plan=knew_the_plan,
                recorded_by=recorded_by,
            )
        )
        send(
            agency, nats, keys, MessageType.YOUTH_QUESTIONNAIRE, body,
            case_ref=case, to=[], wait=wait, timeout=timeout, journal=journal,
            message_id=message_id,
        )  # fmt: skip

    @app.command()
    def plan(
        case: CaseOpt,
        version: Annotated[
            int, typer.Option("--version", help="the plan's next version (1 for the first)")
        ],
        to: ToOpt,
        commitment: Annotated[
            list[str],
            typer.Option(help="id of a commitment the plan holds, e.g. cm-attendance (repeatable)"),
        ] = [],  # noqa: B006
        revised_by: Annotated[str, typer.Option(help=f"one of: {functions}")] = (
            profile.default_function()
        ),
        nats: NatsOpt = None,
        keys: KeysOpt = None,
        wait: WaitOpt = True,
        timeout: TimeoutOpt = DEFAULT_WAIT_S,
        statute: StatuteOpt = None,
        evidence_id: EvidenceOpt = None,
        message_id: MessageIdOpt = None,
    ) -> None:
        """Revise the action plan: its next version and the commitments it holds, released
        to the parties under consent. A commitment left out is no longer followed up."""
        body = build(
            lambda: PlanRevision(
                plan_version=version, commitments=tuple(commitment), revised_by=revised_by
            )
        )
        asserted = assertion(statute, evidence_id)
        send(
            agency, nats, keys, MessageType.PLAN_REVISION, body,
            case_ref=case, to=to, asserted=asserted, wait=wait, timeout=timeout,
            message_id=message_id, journal=journal,
        )  # fmt: skip

    JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]

    def views() -> dict[str, CaseView]:
        try:
            return case_views(journal.lines(), default_rules(), now=datetime.now(UTC))
        except SigbusError as e:
            fail(str(e))

    @app.command("referrals")
    def list_referrals(as_json: JsonOpt = False) -> None:
        """The referrals received (fetched by `sigbus social inbox`): basis, sender, when,
        and the case opened for each. No personnummer, no content."""
        try:
            queue = referral_queue(journal.lines())
        except SigbusError as e:
            fail(str(e))
        if as_json:
            typer.echo(json.dumps([q.to_json() for q in queue], indent=2))
            return
        if not queue:
            typer.echo(f"no referrals in the case register ({journal.path})")
        for queued in queue:
            typer.echo(queued.line())

    @app.command("cases")
    def list_cases(as_json: JsonOpt = False) -> None:
        """List the cases in this adapter's case register, one line each."""
        today = datetime.now(UTC).date()
        known = views()
        if as_json:
            typer.echo(json.dumps([v.to_json(today) for v in known.values()], indent=2))
            return
        if not known:
            typer.echo(f"no cases in the case register ({journal.path})")
        for view in known.values():
            typer.echo(case_line(view, today))

    @case_app.command("show")
    def show_case(
        case: Annotated[str, typer.Argument(help="case ref, e.g. case-abcd")],
        as_json: JsonOpt = False,
    ) -> None:
        """The whole picture of one case: parties, consent per consenter, status, plan,
        next meeting, recent decisions (from this adapter's case register)."""
        today = datetime.now(UTC).date()
        view = views().get(case)
        if view is None:
            fail(
                f"unknown case {case!r}: the case register ({journal.path}) has no case "
                "opened and confirmed under that ref; `sigbus social cases` lists them"
            )
        if as_json:
            typer.echo(json.dumps(view.to_json(today), indent=2))
            return
        for line in case_screen(view, today):
            typer.echo(line)


def referral_link(journal: CaseRegister, message_id: str) -> ReferralLink:
    """The referral as the case register knows it; an unknown one is a one-line error."""
    try:
        queue = {q.message_id: q for q in referral_queue(journal.lines())}
    except SigbusError as e:
        fail(str(e))
    queued = queue.get(message_id)
    if queued is None:
        fail(
            f"unknown referral {message_id!r}: the case register ({journal.path}) has not "
            "received it; `sigbus social inbox` fetches referrals, `sigbus social referrals` "
            "lists them"
        )
    if queued.case_ref is not None:
        fail(f"referral {message_id} already has case {queued.case_ref}")
    return queued.link()


def _day(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if value else "-"


def case_line(view: CaseView, today: date_type) -> str:
    given = sum(1 for c in view.consenters if c.state.value == "given")
    overdue = len(view.overdue(today))
    meeting = _day(view.next_meeting.at) if view.next_meeting else "-"
    return (
        f"{view.case_ref}  {view.status.value:<18} consent {given}/{len(view.consenters)}  "
        f"overdue {overdue}  next meeting {meeting}"
    )


def case_screen(view: CaseView, today: date_type) -> list[str]:
    """One screen: ids, codes, dates and agencies only (no personnummer, no birth date)."""
    who = (
        "minor: the young person and every vårdnadshavare must consent"
        if view.minor
        else ("adult: the young person's own consent")
    )
    lines = [f"case {view.case_ref}: {view.status.value}", f"  young person: {who}"]
    lines.append(f"  parties: {', '.join(view.parties)}")
    if view.selected_at:
        ref = f" on {view.assessment[0]} {view.assessment[1]}" if view.assessment else ""
        lines.append(f"  selected {_day(view.selected_at)}{ref}")
    if view.closed_at:
        lines.append(f"  closed {_day(view.closed_at)}: {view.closure_reason}")
    lines.append("consent:")
    for c in view.consenters:
        until = f" until {_day(c.valid_until)}" if c.valid_until else ""
        cid = f" {c.consent_id}" if c.consent_id else ""
        lines.append(f"  {c.consenter:<18} {c.state.value}{cid}{until}")
    version = f"version {view.plan_version}" if view.plan_version else "no revision yet"
    lines.append(
        f"plan ({version}):" if view.commitments else f"plan ({version}): no commitments known"
    )
    for cm in view.commitments:
        flag = "  OVERDUE" if cm.overdue(today) else ""
        flag += ", reminded" if cm.reminded else ""
        flag += "  (not in the plan)" if not cm.in_plan else ""
        state = cm.status.value if cm.status else "no status yet"
        lines.append(
            f"  {cm.commitment_id} {cm.agency} {cm.action} ({cm.owner}) due "
            f"{cm.due_on.isoformat()}: {state}{flag}"
        )
        if len(cm.history) > 1:
            steps = ", ".join(f"{s.value} {d.isoformat()}" for s, d in cm.history)
            lines.append(f"    history: {steps}")
    meeting = view.next_meeting
    lines.append(
        f"next meeting: {_day(meeting.at)} at {meeting.place}: {', '.join(meeting.agenda)}"
        if meeting
        else "next meeting: none called"
    )
    for held in view.meetings_held:
        came = ", ".join(held.agencies) or "no agency recorded"
        young = {True: "young person came", False: "young person did not come", None: ""}
        parts = [came, young[held.young_person]]
        if held.guardians:
            parts.append(f"guardians {', '.join(held.guardians)}")
        if held.discussed:
            parts.append(f"discussed {', '.join(held.discussed)}")
        lines.append(f"meeting held {_day(held.at)}: {'; '.join(p for p in parts if p)}")
    lines.append("recent decisions:" if view.decisions else "recent decisions: none")
    for d in reversed(view.decisions):
        why = f": {', '.join(d.reasons)}" if d.reasons else ""
        logs = ", ".join(str(i) for i in d.log_indexes)
        lines.append(
            f"  {_day(d.at)} {d.message_type.value} {d.message_id} {d.summary}{why} (log {logs})"
        )
    for message_id in view.undecided:
        lines.append(f"  {message_id}: no decision yet (`sigbus social inbox` fetches it)")
    return lines
