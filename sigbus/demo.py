"""`sigbus demo`: the whole SIG story on an embedded nats-server, checked as it runs.

Each party is its own adapter with its own connection and keys; the hub is a
real broker on the same JetStream. Every step states what must happen, and the
demo reads the evidence back (the disclosure log, each agency's received
messages, and for the case life cycle the hub's case state as
``policy/lifecycle.py`` derives it) to check it. Exit code 0 only when every
expectation held.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import tomllib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import structlog

from sigbus.agents.casesystem import MemoryCaseSystem
from sigbus.agents.notice_text import describe_notice
from sigbus.agents.runtime import Adapter
from sigbus.agents.setup import agency_setup
from sigbus.agents.social.consent import consent_given, consent_withdrawn
from sigbus.agents.witnessing import WitnessRunner, log_public_key, prove_release
from sigbus.audit.entry import EntryOutcome, LogEntry
from sigbus.audit.errors import AuditError
from sigbus.audit.extract import LISTED, verify_extract
from sigbus.audit.verify_report import VERIFIED
from sigbus.broker.service import Broker
from sigbus.broker.setup import hub_setup
from sigbus.broker.vault import VaultError
from sigbus.cli_audit import load_trust
from sigbus.cli_extract import extract_from
from sigbus.cli_metrics import hub_metrics_task, stop_metrics
from sigbus.console.source import NatsSource
from sigbus.export import export_log
from sigbus.fixtures import birth_date_for_age, fictitious_personnummer
from sigbus.parallel_verify import verify_export_file
from sigbus.policy.lifecycle import ConsentState, case_status, consent_collection
from sigbus.policy.retention import due, expires_at
from sigbus.protocol.codes import (
    ActionCode,
    AgendaItem,
    AssessmentInstrument,
    ClosureReason,
    ConsenterRole,
    PlaceCode,
    QuestionnaireAnswer,
    QuestionnaireOccasion,
    ReferralKind,
    ReferralReason,
    StatusCode,
)
from sigbus.protocol.errors import ProtocolError
from sigbus.protocol.ids import HUB, AgencyId, MessageType, agency_name, new_opaque_id
from sigbus.protocol.messages import (
    AssessmentRef,
    CaseClosed,
    CaseInvitation,
    CaseOpened,
    CaseSelected,
    CommitmentStatus,
    ConsentEvent,
    MeetingAttendance,
    MeetingMinutes,
    MeetingNotice,
    PlanCommitment,
    PlanRevision,
    Referral,
    StatutoryAssertion,
    YouthQuestionnaire,
)
from sigbus.protocol.notice import DecisionNotice
from sigbus.protocol.subjects import LOG_STREAM
from sigbus.transport.config import insecure_dev
from sigbus.transport.files import write_private
from sigbus.transport.keystore import (
    DIRECTORY_FILE,
    ROOT_FILE,
    join_dev_agency,
    load_directory,
)
from sigbus.transport.natsserver import EmbeddedNats
from sigbus.transport.profiles import load_profiles

log = structlog.get_logger("sigbus.demo")


@dataclass(frozen=True)
class Cast:
    """Who joins the demo's SIG by configuration only (``sigbus/demo_cast.toml``)."""

    joining_agency: AgencyId
    joining_role: str


def load_cast() -> Cast:
    doc = tomllib.loads(resources.files("sigbus").joinpath("demo_cast.toml").read_text())
    return Cast(joining_agency=agency_name(doc["joining_agency"]), joining_role=doc["joining_role"])


CAST = load_cast()

#: The consent states shown with the end of their validity period.
_DATED = (ConsentState.GIVEN, ConsentState.NOT_YET_VALID, ConsentState.EXPIRED)

CONSENT_CATEGORIES = (
    MessageType.CASE_INVITATION,
    MessageType.PLAN_COMMITMENT,
    MessageType.COMMITMENT_STATUS,
    MessageType.MEETING_NOTICE,
    MessageType.PLAN_REVISION,
    MessageType.MEETING_ATTENDANCE,
    MessageType.MEETING_MINUTES,
)


@dataclass
class Expectation:
    step: str
    #: The message the step sent (None: a step that only reads the hub's case state).
    message_id: str | None
    expected: dict[AgencyId, EntryOutcome]
    #: The hub's signed decision notice the sender got back (None: none in time).
    notice: DecisionNotice | None = None
    #: Print the notice as the sender's command would (the steps the story is about).
    show_notice: bool = False
    #: Recipients whose release a later withdrawal pulls back: logged, never received.
    pulled_back: tuple[AgencyId, ...] = ()
    #: A reason code every entry of the message must carry (e.g. ``case_closed``).
    reason: str | None = None
    #: The hub's case life cycle as it must stand after the step, and as it stood.
    state_expected: dict[str, str] = field(default_factory=dict)
    state_observed: dict[str, str] = field(default_factory=dict)
    #: The hub's own message (a reminder): no sender to notify. It must be logged
    #: exactly once: ``repeats`` counts what a second pass logged for it.
    hub_own: bool = False
    repeats: int = 0
    held: bool = False
    observed: dict[str, str] = field(default_factory=dict)


@dataclass
class AuditOutcome:
    """The log's side of the story: witnessed, provable, exportable, verifiable."""

    cosigned_by: list[str]
    inclusion_proved: int
    export_path: str
    export_summary: str
    ok: bool


@dataclass
class ExtractOutcome:
    """The young person's disclosure extract (registerutdrag), made and verified offline."""

    path: str
    #: The log indexes the extract lists, and those the log says it must (every release
    #: and deny of the demo's messages, all of them about the one young person).
    listed: list[int]
    expected: list[int]
    releases: int
    denies: int
    verify_summary: str
    verified: bool

    @property
    def ok(self) -> bool:
        return self.verified and self.listed == self.expected


@dataclass
class RetentionOutcome:
    """A retention run long after the story (issue 13): the hub shreds the data keys whose
    period ended (crypto-shredding), can no longer open those messages and says so, still
    opens the rest, and the log, one entry per shredding longer, still verifies."""

    run_at: str
    #: Message ids shredded by the run, and those the rules' schedule says must be.
    shredded: list[str]
    expected: list[str]
    #: The reason the hub gave when asked to open each shredded message.
    refusals: list[str]
    #: A message still in its period opens.
    kept_opens: bool
    audit: AuditOutcome

    @property
    def ok(self) -> bool:
        return (
            bool(self.expected)
            and self.shredded == self.expected
            and self.refusals == ["content_shredded"] * len(self.expected)
            and self.kept_opens
            and self.audit.ok
        )


@dataclass
class DemoReport:
    ok: bool
    lines: list[str]
    expectations: list[Expectation]
    entries: list[LogEntry]
    received: dict[AgencyId, list[str]]
    audit: AuditOutcome
    extract: ExtractOutcome
    retention: RetentionOutcome

    def as_json(self) -> dict[str, Any]:
        releases = Counter(
            e.message_type.value
            for e in self.entries
            if e.outcome is EntryOutcome.RELEASE and e.message_type
        )
        denies = Counter(
            e.message_type.value if e.message_type else "unparsed"
            for e in self.entries
            if e.outcome is EntryOutcome.DENY
        )
        return {
            "ok": self.ok,
            "log_length": len(self.entries),
            "releases_by_type": dict(sorted(releases.items())),
            "denies_by_type": dict(sorted(denies.items())),
            "recorded": sum(1 for e in self.entries if e.outcome is EntryOutcome.RECORDED),
            "retractions": sum(1 for e in self.entries if e.outcome is EntryOutcome.RETRACTION),
            "received_by_agency": {a: len(ids) for a, ids in self.received.items()},
            "audit": {
                "cosigned_by": self.audit.cosigned_by,
                "inclusion_proofs_verified": self.audit.inclusion_proved,
                "export": self.audit.export_path,
                "verify": self.audit.export_summary,
                "ok": self.audit.ok,
            },
            "extract": {
                "path": self.extract.path,
                "lines": len(self.extract.listed),
                "releases": self.extract.releases,
                "denies": self.extract.denies,
                "exactly_the_logs": self.extract.listed == self.extract.expected,
                "verify": self.extract.verify_summary,
                "ok": self.extract.ok,
            },
            "retention": {
                "run_at": self.retention.run_at,
                "shredded": len(self.retention.shredded),
                "as_scheduled": self.retention.shredded == self.retention.expected,
                "refusals": self.retention.refusals,
                "kept_opens": self.retention.kept_opens,
                "verify": self.retention.audit.export_summary,
                "ok": self.retention.ok,
            },
            "expectations": [
                {
                    "step": x.step,
                    "held": x.held,
                    "observed": x.observed,
                    "notice": x.notice.model_dump(mode="json") if x.notice else None,
                    "case_state": (
                        {"expected": x.state_expected, "observed": x.state_observed}
                        if x.state_expected
                        else None
                    ),
                }
                for x in self.expectations
            ],
        }


class Story:
    """The SIG story, step by step, against live adapters and a live broker."""

    def __init__(self, broker: Broker, adapters: dict[AgencyId, Adapter]) -> None:
        self.broker = broker
        self.profiles = broker.ctx.profiles
        self.adapters = adapters
        self.parties = tuple(adapters)
        self.inboxes = {a: MemoryCaseSystem() for a in adapters}
        self.expectations: list[Expectation] = []
        self.case_ref = new_opaque_id("case", 12)
        self.now = datetime.now(UTC)
        #: The young person the case is about (fictitious; held in memory, never printed).
        self.youth = fictitious_personnummer(birth_date_for_age(self.now.date(), 16), 981)

    async def send(
        self,
        step: str,
        sender: AgencyId,
        message_type: MessageType,
        body: Any,
        expected: dict[AgencyId, EntryOutcome],
        *,
        case_ref: str | None = None,
        assertion: StatutoryAssertion | None = None,
        show_notice: bool = False,
        fetch: bool = True,
        pulled_back: tuple[AgencyId, ...] = (),
        reason: str | None = None,
        state: dict[str, str] | None = None,
        to: tuple[AgencyId, ...] | None = None,
    ) -> str:
        """Send, let the hub decide, fetch at the recipients (unless ``fetch`` is off:
        their adapters are offline), and note what must hold."""
        # A retraction is the hub's, logged on the withdrawal: not a recipient of it.
        # ``to``: addressed to these, though the hub decides once for all (``expected``
        # then names the hub only, e.g. a case that is closed).
        recipients = to or tuple(
            a for a, o in expected.items() if a != HUB and o is not EntryOutcome.RETRACTION
        )
        adapter = self.adapters[sender]
        message_id = await adapter.send(
            message_type, body, case_ref=case_ref, recipients=recipients, assertion=assertion
        )
        await self.broker.drain_ingress(idle_timeout=0.3)
        # The recipients' adapters fetch at once, as a running adapter does: what
        # waits unfetched when a consent is withdrawn is pulled back (retraction).
        for agency in recipients if fetch else ():
            while await self.adapters[agency].receive(self.inboxes[agency].deliver, timeout=0.2):
                pass
        # The sender asks the hub for its decision, as every sending command does.
        notice = await adapter.await_notice(message_id, timeout=5.0)
        x = Expectation(
            step,
            message_id,
            expected,
            notice=notice,
            show_notice=show_notice,
            pulled_back=pulled_back,
            reason=reason,
        )
        if state is not None:
            x.state_expected, x.state_observed = state, self.case_state()
        self.expectations.append(x)
        return message_id

    def case_state(self) -> dict[str, str]:
        """The case's life cycle as the hub holds it (policy/lifecycle.py derives it):
        the status, the selection, the closure, and per required consenter its state."""
        record = self.broker.state.cases.get(self.case_ref)
        if record is None:  # the hub never recorded the opening: every state step fails
            return {"status": "unknown_case"}
        now = datetime.now(UTC)
        consenters = consent_collection(record.policy_state(), self.broker.ctx.rules, now=now)
        status = case_status(
            selected=record.selection is not None,
            closed=record.closure is not None,
            consenters=consenters,
        )
        out = {"status": status.value}
        if record.selection is not None:
            out["selection"] = (
                " ".join(
                    str(v)
                    for v in (record.selection.instrument, record.selection.assessment_id)
                    if v
                )
                or "no assessment named"
            )
        if record.closure is not None:
            out["closure"] = record.closure.reason.value
        if record.plan_version:
            held = sorted(c for c, r in record.commitments.items() if r.in_plan)
            out["plan"] = f"version {record.plan_version}: {', '.join(held)}"
        for c in consenters:
            end = c.valid_until if c.state in _DATED else None
            until = f" until {end.date().isoformat()}" if end is not None else ""
            out[c.consenter] = f"{c.state.value}{until}"
        missing = [c.consenter for c in consenters if c.state is not ConsentState.GIVEN]
        out["missing"] = ", ".join(missing) if missing else "none"
        return out

    async def remind(self, step: str, expected: dict[AgencyId, EntryOutcome]) -> None:
        """The hub's reminder pass, run now (an idle hub runs it on its own), then again:
        the first pass decides one reminder per overdue commitment, the second none."""
        first = await self.broker.reminder_pass()
        for agency in expected:
            while await self.adapters[agency].receive(self.inboxes[agency].deliver, timeout=0.2):
                pass
        again = await self.broker.reminder_pass()
        ids = {e.message_id for e in first}
        self.expectations.append(
            Expectation(
                step,
                next(iter(ids)) if len(ids) == 1 else None,
                expected,
                hub_own=True,
                repeats=len(again),
            )
        )

    def check_state(self, step: str, expected: dict[str, str]) -> None:
        """A step that sends nothing: the hub's case state must read ``expected``."""
        self.expectations.append(
            Expectation(step, None, {}, state_expected=expected, state_observed=self.case_state())
        )

    def consent(self, consent_id: str, role: ConsenterRole, guardian: str | None) -> ConsentEvent:
        return consent_given(
            consent_id,
            role,
            guardian,
            disclosers=self.parties,
            recipients=self.parties,
            categories=CONSENT_CATEGORIES,
            valid_from=self.now - timedelta(minutes=5),
            valid_until=self.now + timedelta(days=180),
            acted_at=self.now - timedelta(minutes=1),
            evidence_sha256=hashlib.sha256(
                f"signed consent form {consent_id}".encode()
            ).hexdigest(),
        )

    async def run(self) -> None:
        P, S, SO, J = "police", "school", "social", CAST.joining_agency
        joining = self.profiles[J]
        R, D, REC = EntryOutcome.RELEASE, EntryOutcome.DENY, EntryOutcome.RECORDED
        today = self.now.date()
        youth = self.youth
        case = self.case_ref

        await self.send(
            "1. Police notify social services of a 16-year-old (LUL 6 §); "
            "the school is not a lawful recipient",
            P,
            MessageType.REFERRAL,
            Referral(
                kind=ReferralKind.LUL_6_NOTIFICATION,
                personnummer=youth,
                reasons=(ReferralReason.SUSPECTED_OFFENCE, ReferralReason.CRIMINAL_NETWORK_CONTACT),
                observed_on=today - timedelta(days=2),
                contact_function="police_youth_unit",
            ),
            {SO: R, S: D},
            # The police's own reference for the suspicion: the evidence for LUL 6 §.
            assertion=StatutoryAssertion(basis="lul_6", evidence_id="dnr-polis-ab"),
        )
        await self.send(
            "2. Social services open SIG case (two guardians with custody)",
            SO,
            MessageType.CASE_OPENED,
            CaseOpened(
                personnummer=youth, guardians_with_custody=("vh-1", "vh-2"), parties=self.parties
            ),
            {HUB: REC},
            case_ref=case,
        )
        everyone = ("young_person", "guardian:vh-1", "guardian:vh-2")
        await self.send(
            "2b. Selection decision: the young person enters the SIG, on a SAVRY assessment "
            "(its id only); consent collection starts, nobody has consented yet",
            SO,
            MessageType.CASE_SELECTED,
            CaseSelected(
                assessment=AssessmentRef(
                    instrument=AssessmentInstrument.SAVRY, assessment_id="as-savry-k12"
                ),
                decided_by="social_sig_coordinator",
            ),
            {HUB: REC},
            case_ref=case,
            state={
                "status": "consent_collection",
                "selection": "savry as-savry-k12",
                **dict.fromkeys(everyone, "missing"),
                "missing": ", ".join(everyone),
            },
        )
        consents = (
            ("consent-youngperson", ConsenterRole.YOUNG_PERSON, None),
            ("consent-guardianone", ConsenterRole.GUARDIAN, "vh-1"),
            ("consent-guardiantwo", ConsenterRole.GUARDIAN, "vh-2"),
        )
        for cid, role, guardian in consents:
            await self.send(
                f"3. Samtycke recorded: {role.value}{' ' + guardian if guardian else ''}",
                SO,
                MessageType.CONSENT_EVENT,
                self.consent(cid, role, guardian),
                {HUB: REC},
                case_ref=case,
            )
        until = (self.now + timedelta(days=180)).date().isoformat()
        self.check_state(
            "3b. Consent collection complete: the young person and both guardians, "
            f"each until {until}; nobody missing -> active",
            {
                "status": "active",
                **dict.fromkeys(everyone, f"given until {until}"),
                "missing": "none",
            },
        )
        await self.send(
            f"4. Invitations to police, school and {J} ({CAST.joining_role})",
            SO,
            MessageType.CASE_INVITATION,
            CaseInvitation(
                personnummer=youth, parties=self.parties, coordinator="social_sig_coordinator"
            ),
            {P: R, S: R, J: R},
            case_ref=case,
        )
        await self.send(
            "5. Individual meeting called",
            SO,
            MessageType.MEETING_NOTICE,
            MeetingNotice(
                meeting_at=self.now + timedelta(days=7),
                place=PlaceCode.SOCIAL_SERVICES_OFFICE,
                agenda=(AgendaItem.PLAN_REVIEW, AgendaItem.NEW_ACTIONS),
            ),
            {P: R, S: R, J: R},
            case_ref=case,
        )
        held = self.now - timedelta(hours=1)
        await self.send(
            "5b. Today's start-up meeting, attendance: police, school, social and "
            f"{J}; the young person and guardian vh-1 came, vh-2 did not",
            SO,
            MessageType.MEETING_ATTENDANCE,
            MeetingAttendance(
                meeting_at=held,
                agencies_present=(P, S, SO, J),
                young_person_present=True,
                guardians_present=("vh-1",),
            ),
            {P: R, S: R, J: R},
            case_ref=case,
        )
        await self.send(
            "5c. Its minutes: plan_review, new_actions and one short note (screened for "
            "personnummer)",
            SO,
            MessageType.MEETING_MINUTES,
            MeetingMinutes(
                meeting_at=held,
                discussed=(AgendaItem.PLAN_REVIEW, AgendaItem.NEW_ACTIONS),
                note="Skolan tar fram en närvaroplan; polisen utser en kontaktperson.",
            ),
            {P: R, S: R, J: R},
            case_ref=case,
        )
        await self.send(
            "6. School commits to an attendance plan",
            S,
            MessageType.PLAN_COMMITMENT,
            PlanCommitment(
                commitment_id="cm-schoolattendance",
                responsible_agency=S,
                action=ActionCode.SCHOOL_ATTENDANCE_PLAN,
                owner_function="school_counsellor",
                due_on=today + timedelta(days=30),
            ),
            {SO: R, P: R, J: R},
            case_ref=case,
        )
        await self.send(
            "7. Police commit to a contact person",
            P,
            MessageType.PLAN_COMMITMENT,
            PlanCommitment(
                commitment_id="cm-policecontact",
                responsible_agency=P,
                action=ActionCode.POLICE_CONTACT_PERSON,
                owner_function="police_community_officer",
                due_on=today + timedelta(days=14),
            ),
            {SO: R, S: R},
            case_ref=case,
        )
        await self.send(
            f"7b. {J} commits to {joining.actions[0].value} for the move home",
            J,
            MessageType.PLAN_COMMITMENT,
            PlanCommitment(
                commitment_id="cm-movehome",
                responsible_agency=J,
                action=joining.actions[0],
                owner_function=joining.default_function(),
                due_on=today + timedelta(days=21),
            ),
            {SO: R, S: R, P: R},
            case_ref=case,
        )
        await self.send(
            "7c. Police commit to a mentor contact due yesterday: overdue from the start",
            P,
            MessageType.PLAN_COMMITMENT,
            PlanCommitment(
                commitment_id="cm-policementor",
                responsible_agency=P,
                action=ActionCode.POLICE_CONTACT_PERSON,
                owner_function="police_community_officer",
                due_on=today - timedelta(days=1),
            ),
            {SO: R, S: R},
            case_ref=case,
        )
        plan = ("cm-movehome", "cm-policecontact", "cm-policementor", "cm-schoolattendance")
        await self.send(
            "7d. Social services adopt the plan: version 1, with the four commitments",
            SO,
            MessageType.PLAN_REVISION,
            PlanRevision(plan_version=1, commitments=plan, revised_by="social_sig_coordinator"),
            {P: R, S: R, J: R},
            case_ref=case,
            state={"plan": f"version 1: {', '.join(plan)}"},
        )
        await self.send(
            "8. School reports status: in progress",
            S,
            MessageType.COMMITMENT_STATUS,
            CommitmentStatus(
                commitment_id="cm-schoolattendance", status=StatusCode.IN_PROGRESS, as_of=today
            ),
            {SO: R, P: R},
            case_ref=case,
        )
        await self.remind(
            "8a. The hub reminds the police, once, of the overdue commitment (released "
            "under the case's consent, logged); a second pass reminds nobody",
            {P: R},
        )
        await self.send(
            "8b. Social services move the meeting; the police adapter is offline and has "
            "not fetched it yet",
            SO,
            MessageType.MEETING_NOTICE,
            MeetingNotice(
                meeting_at=self.now + timedelta(days=8),
                place=PlaceCode.SOCIAL_SERVICES_OFFICE,
                agenda=(AgendaItem.PLAN_REVIEW, AgendaItem.NEW_ACTIONS),
            ),
            {P: R},
            case_ref=case,
            fetch=False,
            pulled_back=(P,),
        )
        mistyped = consent_withdrawn(
            "consent-guardiantwo", ConsenterRole.YOUNG_PERSON, None, acted_at=datetime.now(UTC)
        )
        await self.send(
            "9. Guardian vh-2's withdrawal, typed as the young person's: refused, and "
            "social services are told it was NOT applied",
            SO,
            MessageType.CONSENT_EVENT,
            mistyped,
            {HUB: D},
            case_ref=case,
            show_notice=True,
        )
        withdrawal = consent_withdrawn(
            "consent-guardiantwo", ConsenterRole.GUARDIAN, "vh-2", acted_at=datetime.now(UTC)
        )
        await self.send(
            "9b. Guardian vh-2 withdraws consent, recorded right: confirmed; the moved "
            "meeting (8b) the police had not fetched is pulled back -> paused",
            SO,
            MessageType.CONSENT_EVENT,
            withdrawal,
            {HUB: REC, P: EntryOutcome.RETRACTION},
            case_ref=case,
            show_notice=True,
            state={
                "status": "paused",
                "guardian:vh-2": "withdrawn",
                "missing": "guardian:vh-2",
            },
        )
        await self.send(
            "10. School reports status: done -> denied, nothing released",
            S,
            MessageType.COMMITMENT_STATUS,
            CommitmentStatus(
                commitment_id="cm-schoolattendance", status=StatusCode.DONE, as_of=today
            ),
            {SO: D, P: D, J: D},
            case_ref=case,
            show_notice=True,
        )
        await self.send(
            "10b. The young person answers the questionnaire at closure (codes only, a hub "
            "record for the steering group's figures): listened to yes, support helped partly",
            SO,
            MessageType.YOUTH_QUESTIONNAIRE,
            YouthQuestionnaire(
                occasion=QuestionnaireOccasion.CLOSURE,
                listened_to=QuestionnaireAnswer.YES,
                support_helped=QuestionnaireAnswer.PARTLY,
                knew_the_plan=QuestionnaireAnswer.YES,
                recorded_by="social_case_worker",
            ),
            {HUB: REC},
            case_ref=case,
        )
        await self.send(
            "11. Social services close the case: plan completed",
            SO,
            MessageType.CASE_CLOSED,
            CaseClosed(reason=ClosureReason.PLAN_COMPLETED, closed_by="social_sig_coordinator"),
            {HUB: REC},
            case_ref=case,
            show_notice=True,
            state={"status": "closed", "closure": "plan_completed"},
        )
        await self.send(
            "12. After the closure nothing about the case is shared: a meeting notice "
            "-> denied, case_closed",
            SO,
            MessageType.MEETING_NOTICE,
            MeetingNotice(
                meeting_at=self.now + timedelta(days=30),
                place=PlaceCode.SOCIAL_SERVICES_OFFICE,
                agenda=(AgendaItem.PLAN_REVIEW,),
            ),
            {HUB: D},
            case_ref=case,
            show_notice=True,
            reason="case_closed",
            to=(P, S, J),
        )
        for agency, adapter in self.adapters.items():
            while await adapter.receive(self.inboxes[agency].deliver, timeout=0.5):
                pass


async def read_log(broker: Broker) -> list[LogEntry]:
    entries = []
    for seq in range(1, broker.writer.size + 1):
        msg = await broker.js.get_msg(LOG_STREAM, seq)
        assert msg.data is not None
        entries.append(LogEntry.model_validate_json(msg.data))
    return entries


async def audit_story(story: Story, export_path: Path, keys_dir: Path) -> AuditOutcome:
    """Witness the final checkpoint, prove each delivery's inclusion, export, verify offline."""
    await story.broker.checkpointer.publish()
    cosigned = []
    for adapter in story.adapters.values():
        runner = WitnessRunner(adapter)
        if await runner.run_once() and not runner.alarms:
            cosigned.append(runner.witness.name)
    proved = 0
    for agency, inbox in story.inboxes.items():
        for delivered in inbox.received:
            await prove_release(story.adapters[agency], delivered)
            proved += 1
    log_key = log_public_key(next(iter(story.adapters.values())))
    await export_log(story.broker.js, export_path, log_key, witnesses=list(story.adapters))
    try:
        # The compliance officer's trusted form: the pinned root and the signed
        # directory, never the keys the export declares (docs/compliance.md).
        root = (keys_dir / ROOT_FILE).read_bytes()
        trust = load_trust(keys_dir / DIRECTORY_FILE, root, quorum=None)
        report = verify_export_file(export_path, trust=trust)
        summary, ok = report.one_line(), report.verdict == VERIFIED
    except (AuditError, ProtocolError) as e:
        summary, ok = str(e), False
    # The export leaves the hub: a person-stable pseudonym in it would link the
    # person's cases; entries name the subject by a per-case ref only.
    if ok and b'"subj-' in export_path.read_bytes():
        summary, ok = "FAIL: the export holds a person-level subject id (subj-)", False
    elif ok:
        summary += "; subjects named by per-case refs only"
    ok = ok and len(cosigned) == len(story.adapters)
    return AuditOutcome(
        cosigned_by=cosigned,
        inclusion_proved=proved,
        export_path=str(export_path),
        export_summary=summary,
        ok=ok,
    )


async def extract_story(
    story: Story, nats_url: str, keys_dir: Path, path: Path, entries: list[LogEntry]
) -> ExtractOutcome:
    """The young person's extract as `sigbus audit extract` makes it (from the hub's log up
    to the cosigned checkpoint), then `audit verify-extract`'s check with the trusted form:
    the pinned root, the directory it signed, every witness in the quorum."""
    # As for a real request: the person is found from the personnummer through the hub's
    # pseudonym key (their per-case refs) and the hub's case records, never by the case ref.
    extract = await extract_from(NatsSource(nats_url, keys_dir), story.youth)
    write_private(path, extract.to_json())
    # What the extract must list, from the log: every release and deny of the demo's
    # messages (each about the one young person: the referral and the case).
    sent = {x.message_id for x in story.expectations if x.message_id}
    expected = [e.index for e in entries if e.outcome in LISTED and e.message_id in sent]
    listed = [line.entry.index for line in extract.lines]
    try:
        root = (keys_dir / ROOT_FILE).read_bytes()
        trust = load_trust(keys_dir / DIRECTORY_FILE, root, quorum=None)
        report = verify_extract(path.read_bytes(), trust)
        summary, verified = (
            f"VERIFIED: {report.lines} lines in the log of size {report.size}, witness "
            f"quorum {trust.quorum} of {len(trust.witnesses)} "
            f"({', '.join(report.cosigned_by)})",
            True,
        )
    except (AuditError, ProtocolError) as e:
        summary, verified = f"FAIL: {e}", False
    outcomes = Counter(line.entry.outcome for line in extract.lines)
    log.info("demo_extract", lines=len(listed), expected=len(expected), verified=verified)
    return ExtractOutcome(
        path=str(path),
        listed=listed,
        expected=expected,
        releases=outcomes[EntryOutcome.RELEASE],
        denies=outcomes[EntryOutcome.DENY],
        verify_summary=summary,
        verified=verified,
    )


async def retention_story(story: Story, export_path: Path, keys_dir: Path) -> RetentionOutcome:
    """The hub's retention pass run one day after the referral's period ended (the time is
    the pass's argument, as `sigbus retention run` would see it then): what the schedule
    says is due is shredded, the hub refuses to open it, the rest opens, the log verifies."""
    vault = story.broker.vault
    assert vault is not None
    held = await vault.held()
    rules = story.broker.ctx.rules
    referral = min(
        (h for h in held if h.category is MessageType.REFERRAL), key=lambda h: h.decided_at
    )
    run_at = expires_at(rules, referral.category, referral.decided_at) + timedelta(days=1)
    expected = sorted(h.message_id for h in due(rules, held, run_at))
    shredded = sorted(e.message_id for e in await story.broker.retention_pass(run_at))
    refusals = []
    for message_id in shredded:
        try:
            await vault.open(message_id)
            refusals.append("opened")
        except VaultError as e:
            refusals.append(e.reason.value)
    kept = next((h for h in held if h.message_id not in expected), None)
    kept_opens = kept is not None and bool(await vault.open(kept.message_id))
    audit = await audit_story(story, export_path, keys_dir)
    return RetentionOutcome(
        run_at=run_at.date().isoformat(),
        shredded=shredded,
        expected=expected,
        refusals=refusals,
        kept_opens=kept_opens,
        audit=audit,
    )


def judge(x: Expectation, logged: list[LogEntry], received: dict[AgencyId, list[str]]) -> bool:
    """Whether one step held, from the log's entries of its message and what each agency
    received. Fills ``x.observed`` (recipient -> outcome as logged)."""
    state_ok = all(x.state_observed.get(k) == v for k, v in x.state_expected.items())
    if x.message_id is None:  # a step that only reads the hub's case state
        return bool(x.state_expected) and state_ok
    x.observed = {(e.recipient if e.recipient else "hub"): e.outcome.value for e in logged}
    # Received by exactly the agencies it was released to, less those it was pulled back from.
    delivered_ok = all(
        (x.message_id in ids)
        == (x.expected.get(a) is EntryOutcome.RELEASE and a not in x.pulled_back)
        for a, ids in received.items()
    )
    # The sender's notice names the very entries the log holds, index for index
    # (a retraction is the hub's own entry on a withdrawal: not in its notice).
    decided = [e for e in logged if e.outcome is not EntryOutcome.RETRACTION]
    if x.hub_own:  # the hub's own message: decided once, nobody's notice
        noticed = x.notice is None and x.repeats == 0 and len(decided) == len(x.expected)
    else:
        noticed = x.notice is not None and sorted(i.log_index for i in x.notice.items) == sorted(
            e.index for e in decided
        )
    reasoned = x.reason is None or all(x.reason in e.reasons for e in logged)
    return (
        x.observed == {r: o.value for r, o in x.expected.items()}
        and delivered_ok
        and noticed
        and reasoned
        and state_ok
    )


def check(
    story: Story,
    entries: list[LogEntry],
    audit: AuditOutcome,
    extract: ExtractOutcome,
    retention: RetentionOutcome,
) -> DemoReport:
    by_message: dict[str, list[LogEntry]] = {}
    for e in entries:
        by_message.setdefault(e.message_id, []).append(e)
    received = {
        a: [d.header.message_id for d in inbox.received] for a, inbox in story.inboxes.items()
    }
    lines: list[str] = []
    for x in story.expectations:
        x.held = judge(x, by_message.get(x.message_id or "", []), received)
        if x.message_id is None:  # a step that only reads the hub's case state
            lines.append(f"{'ok ' if x.held else 'FAIL'} {x.step}")
            lines += [f"       case {k:<14} {v}" for k, v in x.state_observed.items()]
            continue
        logged = by_message.get(x.message_id, [])
        lines.append(f"{'ok ' if x.held else 'FAIL'} {x.step}")
        for e in logged:
            why = e.legal_basis or ",".join(e.reasons) or "-"
            if e.outcome is EntryOutcome.RETRACTION:
                why = f"{','.join(e.reasons)} (release {e.release_id}, never fetched)"
            elif e.recipient in x.pulled_back:
                why += " (not fetched)"
            extra = " [statutory]" if e.statutory else ""
            consents = ",".join(f"{c.consent_id}@r{c.revision}" for c in e.consent_refs)
            released = consents and e.outcome is EntryOutcome.RELEASE
            lines.append(
                f"       log #{e.index:<3} {e.sender if e.sender else '?':>6} -> "
                f"{e.recipient if e.recipient else 'hub':<6} "
                f"{e.outcome.value.upper():<8} {why}{extra}"
                f"{' consents=' + consents if released else ''}"
            )
        if x.show_notice and x.notice is not None:
            head, *items = describe_notice(x.notice)
            lines.append(f"       notice to {x.notice.sender}: {head}")
            lines += [f"       {item}" for item in items]
        if x.state_expected:
            lines += [f"       case {k:<14} {v}" for k, v in x.state_observed.items()]
    lines.append(
        f"{'ok ' if audit.ok else 'FAIL'} 13. Every agency witnessed the log: "
        f"{', '.join(audit.cosigned_by)}; {audit.inclusion_proved} deliveries proved "
        "included in the signed log"
    )
    lines.append(
        f"{'ok ' if audit.ok else 'FAIL'} 14. Log exported to {audit.export_path} "
        f"and verified offline: {audit.export_summary}"
    )
    exactly = (
        "exactly the log's"
        if extract.listed == extract.expected
        else f"NOT the log's {len(extract.expected)}"
    )
    lines.append(
        f"{'ok ' if extract.ok else 'FAIL'} 15. The young person's disclosure extract "
        f"(registerutdrag, GDPR art. 15) written to {extract.path}: {len(extract.listed)} "
        f"lines, {exactly} releases ({extract.releases}) and denies ({extract.denies}) "
        f"about them; verified offline: {extract.verify_summary}"
    )
    lines.append(
        f"{'ok ' if retention.ok else 'FAIL'} 16. Retention run on {retention.run_at}, a day "
        f"after the referral's period ended: {len(retention.shredded)} data key(s) shredded "
        f"as the rules' schedule says ({len(retention.expected)} due), each logged; opening "
        f"it the hub now says {', '.join(retention.refusals) or '-'}; a message still in its "
        f"period opens: {'yes' if retention.kept_opens else 'NO'}; the log re-exported and "
        f"verified: {retention.audit.export_summary}"
    )
    ok = all(x.held for x in story.expectations) and audit.ok and extract.ok and retention.ok
    return DemoReport(
        ok=ok,
        lines=lines,
        expectations=story.expectations,
        entries=entries,
        received=received,
        audit=audit,
        extract=extract,
        retention=retention,
    )


def join(keys_dir: Path, agency: AgencyId) -> tuple[bool, str]:
    """The joining agency: keys made and added to the signed directory, profile shipped."""
    join_dev_agency(keys_dir, agency, now=datetime.now(UTC))
    listed = any(e.agency == agency for e in load_directory(keys_dir).agencies)
    profile = load_profiles(keys_dir).get(agency)
    ok = listed and profile is not None
    name = profile.display_name.en if profile else "no profile"
    return ok, (
        f"{'ok ' if ok else 'FAIL'} 0. {agency} ({name}) joins by configuration only: "
        "keys generated at the agency, added to the signed directory at the hub, "
        f"profile profiles/{agency}.toml"
    )


async def run_demo(
    *,
    data_dir: Path | None,
    keys_dir: Path,
    metrics_port: int | None = None,
    hold: Callable[[], Awaitable[None]] | None = None,
) -> DemoReport:
    """The story, its audit and the extract. ``metrics_port``: the hub's Prometheus
    endpoint on 127.0.0.1 while the demo runs; ``hold``: awaited once every step is done,
    before anything stops (a scrape then sees the demo's final counts)."""
    base = data_dir or Path(tempfile.mkdtemp(prefix="sigbus-demo-"))
    # The demo's deployment: the development keys plus one agency that joins now.
    keys_dir = _copy_keys(keys_dir, base / "keys")
    # A kept --data-dir holds the last run's log: each run is one story, its figures
    # (log length, the young person's extract) its own.
    shutil.rmtree(base / "nats", ignore_errors=True)
    joined_ok, joined = join(keys_dir, CAST.joining_agency)
    hub = hub_setup(keys_dir)
    secured_by = None if insecure_dev() else keys_dir
    with EmbeddedNats(base / "nats", keys_dir=secured_by) as server:
        broker = hub.broker(server.url)
        await broker.start()
        metrics = hub_metrics_task(broker, metrics_port)
        adapters: dict[AgencyId, Adapter] = {}
        try:
            for agency in [e.agency for e in hub.ctx.directory.agencies if e.agency != HUB]:
                setup = agency_setup(agency, keys_dir)
                adapters[agency] = await setup.connect(server.url)
            story = Story(broker, adapters)
            await story.run()
            audit = await audit_story(story, base / "disclosure-log.sigbus-export.jsonl", keys_dir)
            entries = await read_log(broker)
            extract = await extract_story(
                story, server.url, keys_dir, base / "extract-young-person.json", entries
            )
            # Last: the extract and the first export show the story as it happened.
            retention = await retention_story(
                story, base / "disclosure-log-after-retention.sigbus-export.jsonl", keys_dir
            )
            if hold is not None:
                await hold()
        finally:
            await stop_metrics(metrics)
            for adapter in adapters.values():
                await adapter.close()
            await broker.stop()
    report = check(story, entries, audit, extract, retention)
    report.lines.insert(0, joined)
    report.ok = report.ok and joined_ok
    log.info("demo_finished", ok=report.ok, log_size=len(entries))
    return report


def _copy_keys(source: Path, target: Path) -> Path:
    shutil.rmtree(target, ignore_errors=True)  # a kept --data-dir: start the deployment afresh
    shutil.copytree(source, target, ignore=shutil.ignore_patterns("README*", "*.tmp"))
    return target
