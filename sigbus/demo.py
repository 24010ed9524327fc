"""`sigbus demo`: the whole SIG story on an embedded nats-server, checked as it runs.

Each party is its own adapter with its own connection and keys; the hub is a
real broker on the same JetStream. Every step states what must happen, and the
demo reads the evidence back (the disclosure log and each agency's received
messages) to check it. Exit code 0 only when every expectation held.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from sigbus.agents.casesystem import MemoryCaseSystem
from sigbus.agents.runtime import Adapter
from sigbus.agents.setup import agency_setup
from sigbus.agents.social.consent import consent_given, consent_withdrawn
from sigbus.agents.witnessing import WitnessRunner, log_public_key, prove_release
from sigbus.audit.entry import LogEntry, Outcome
from sigbus.audit.errors import AuditError
from sigbus.audit.export import verify_export
from sigbus.broker.service import Broker
from sigbus.broker.setup import hub_setup
from sigbus.export import export_log
from sigbus.fixtures import birth_date_for_age, fictitious_personnummer
from sigbus.protocol.codes import (
    ActionCode,
    AgendaItem,
    ConsenterRole,
    ContactFunction,
    PlaceCode,
    ReferralKind,
    ReferralReason,
    StatusCode,
)
from sigbus.protocol.ids import PARTY_AGENCIES, AgencyId, MessageType, new_opaque_id
from sigbus.protocol.messages import (
    CaseInvitation,
    CaseOpened,
    CommitmentStatus,
    ConsentEvent,
    MeetingNotice,
    PlanCommitment,
    Referral,
)
from sigbus.protocol.subjects import LOG_STREAM
from sigbus.transport.config import insecure_dev
from sigbus.transport.natsserver import EmbeddedNats

log = structlog.get_logger("sigbus.demo")

CONSENT_CATEGORIES = (
    MessageType.CASE_INVITATION,
    MessageType.PLAN_COMMITMENT,
    MessageType.COMMITMENT_STATUS,
    MessageType.MEETING_NOTICE,
)


@dataclass
class Expectation:
    step: str
    message_id: str
    expected: dict[AgencyId, Outcome]
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
class DemoReport:
    ok: bool
    lines: list[str]
    expectations: list[Expectation]
    entries: list[LogEntry]
    received: dict[AgencyId, list[str]]
    audit: AuditOutcome

    def as_json(self) -> dict[str, Any]:
        releases = Counter(
            e.message_type.value
            for e in self.entries
            if e.outcome is Outcome.RELEASE and e.message_type
        )
        denies = Counter(
            e.message_type.value if e.message_type else "unparsed"
            for e in self.entries
            if e.outcome is Outcome.DENY
        )
        return {
            "ok": self.ok,
            "log_length": len(self.entries),
            "releases_by_type": dict(sorted(releases.items())),
            "denies_by_type": dict(sorted(denies.items())),
            "recorded": sum(1 for e in self.entries if e.outcome is Outcome.RECORDED),
            "received_by_agency": {a.value: len(ids) for a, ids in self.received.items()},
            "audit": {
                "cosigned_by": self.audit.cosigned_by,
                "inclusion_proofs_verified": self.audit.inclusion_proved,
                "export": self.audit.export_path,
                "verify": self.audit.export_summary,
                "ok": self.audit.ok,
            },
            "expectations": [
                {"step": x.step, "held": x.held, "observed": x.observed} for x in self.expectations
            ],
        }


class Story:
    """The SIG story, step by step, against live adapters and a live broker."""

    def __init__(self, broker: Broker, adapters: dict[AgencyId, Adapter]) -> None:
        self.broker = broker
        self.adapters = adapters
        self.inboxes = {a: MemoryCaseSystem() for a in adapters}
        self.expectations: list[Expectation] = []
        self.case_ref = new_opaque_id("case", 12)
        self.now = datetime.now(UTC)

    async def send(
        self,
        step: str,
        sender: AgencyId,
        message_type: MessageType,
        body: Any,
        expected: dict[AgencyId, Outcome],
        *,
        case_ref: str | None = None,
    ) -> str:
        recipients = tuple(a for a in expected if a is not AgencyId.HUB)
        message_id = await self.adapters[sender].send(
            message_type, body, case_ref=case_ref, recipients=recipients
        )
        await self.broker.drain_ingress(idle_timeout=0.3)
        self.expectations.append(Expectation(step, message_id, expected))
        return message_id

    def consent(self, consent_id: str, role: ConsenterRole, guardian: str | None) -> ConsentEvent:
        return consent_given(
            consent_id,
            role,
            guardian,
            disclosers=PARTY_AGENCIES,
            recipients=PARTY_AGENCIES,
            categories=CONSENT_CATEGORIES,
            valid_from=self.now - timedelta(minutes=5),
            valid_until=self.now + timedelta(days=180),
            acted_at=self.now - timedelta(minutes=1),
            evidence_sha256=hashlib.sha256(
                f"signed consent form {consent_id}".encode()
            ).hexdigest(),
        )

    async def run(self) -> None:
        P, S, SO, HUB = AgencyId.POLICE, AgencyId.SCHOOL, AgencyId.SOCIAL, AgencyId.HUB
        R, D, REC = Outcome.RELEASE, Outcome.DENY, Outcome.RECORDED
        today = self.now.date()
        youth = fictitious_personnummer(birth_date_for_age(today, 16), 981)
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
                contact_function=ContactFunction.POLICE_YOUTH_UNIT,
            ),
            {SO: R, S: D},
        )
        await self.send(
            "2. Social services open SIG case (two guardians with custody)",
            SO,
            MessageType.CASE_OPENED,
            CaseOpened(
                personnummer=youth, guardians_with_custody=("vh-1", "vh-2"), parties=PARTY_AGENCIES
            ),
            {HUB: REC},
            case_ref=case,
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
        await self.send(
            "4. Invitations to police and school",
            SO,
            MessageType.CASE_INVITATION,
            CaseInvitation(
                personnummer=youth,
                parties=PARTY_AGENCIES,
                coordinator=ContactFunction.SOCIAL_SIG_COORDINATOR,
            ),
            {P: R, S: R},
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
            {P: R, S: R},
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
                owner_function=ContactFunction.SCHOOL_COUNSELLOR,
                due_on=today + timedelta(days=30),
            ),
            {SO: R, P: R},
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
                owner_function=ContactFunction.POLICE_COMMUNITY_OFFICER,
                due_on=today + timedelta(days=14),
            ),
            {SO: R, S: R},
            case_ref=case,
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
        withdrawal = consent_withdrawn(
            "consent-guardiantwo", ConsenterRole.GUARDIAN, "vh-2", acted_at=datetime.now(UTC)
        )
        await self.send(
            "9. Guardian vh-2 withdraws consent",
            SO,
            MessageType.CONSENT_EVENT,
            withdrawal,
            {HUB: REC},
            case_ref=case,
        )
        await self.send(
            "10. School reports status: done -> denied, nothing released",
            S,
            MessageType.COMMITMENT_STATUS,
            CommitmentStatus(
                commitment_id="cm-schoolattendance", status=StatusCode.DONE, as_of=today
            ),
            {SO: D, P: D},
            case_ref=case,
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


async def audit_story(story: Story, export_path: Path) -> AuditOutcome:
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
    log_key = log_public_key(story.adapters[AgencyId.SOCIAL])
    await export_log(story.broker.js, export_path, log_key)
    try:
        report = verify_export(
            export_path.read_bytes().splitlines(keepends=True), trusted_log_key=log_key
        )
        summary, ok = report.summary(), True
    except AuditError as e:
        summary, ok = str(e), False
    ok = ok and len(cosigned) == len(story.adapters)
    return AuditOutcome(
        cosigned_by=cosigned,
        inclusion_proved=proved,
        export_path=str(export_path),
        export_summary=summary,
        ok=ok,
    )


def check(story: Story, entries: list[LogEntry], audit: AuditOutcome) -> DemoReport:
    by_message: dict[str, list[LogEntry]] = {}
    for e in entries:
        by_message.setdefault(e.message_id, []).append(e)
    received = {
        a: [d.header.message_id for d in inbox.received] for a, inbox in story.inboxes.items()
    }
    lines: list[str] = []
    for x in story.expectations:
        logged = by_message.get(x.message_id, [])
        observed = {(e.recipient.value if e.recipient else "hub"): e.outcome.value for e in logged}
        x.observed = observed
        delivered_ok = all(
            (x.message_id in received.get(r, [])) == (o is Outcome.RELEASE)
            for r, o in x.expected.items()
            if r is not AgencyId.HUB
        )
        x.held = observed == {r.value: o.value for r, o in x.expected.items()} and delivered_ok
        lines.append(f"{'ok ' if x.held else 'FAIL'} {x.step}")
        for e in logged:
            why = e.legal_basis or ",".join(e.reasons) or "-"
            extra = " [statutory]" if e.statutory else ""
            consents = ",".join(f"{c.consent_id}@r{c.revision}" for c in e.consent_refs)
            lines.append(
                f"       log #{e.index:<3} {e.sender.value if e.sender else '?':>6} -> "
                f"{e.recipient.value if e.recipient else 'hub':<6} "
                f"{e.outcome.value.upper():<8} {why}{extra}"
                f"{' consents=' + consents if consents and e.outcome is Outcome.RELEASE else ''}"
            )
    lines.append(
        f"{'ok ' if audit.ok else 'FAIL'} 11. Every agency witnessed the log: "
        f"{', '.join(audit.cosigned_by)}; {audit.inclusion_proved} deliveries proved "
        "included in the signed log"
    )
    lines.append(
        f"{'ok ' if audit.ok else 'FAIL'} 12. Log exported to {audit.export_path} "
        f"and verified offline: {audit.export_summary}"
    )
    ok = all(x.held for x in story.expectations) and audit.ok
    return DemoReport(
        ok=ok,
        lines=lines,
        expectations=story.expectations,
        entries=entries,
        received=received,
        audit=audit,
    )


async def run_demo(*, data_dir: Path | None, keys_dir: Path) -> DemoReport:
    base = data_dir or Path(tempfile.mkdtemp(prefix="sigbus-demo-"))
    hub = hub_setup(keys_dir)
    secured_by = None if insecure_dev() else keys_dir
    with EmbeddedNats(base / "nats", keys_dir=secured_by) as server:
        broker = hub.broker(server.url)
        await broker.start()
        adapters: dict[AgencyId, Adapter] = {}
        try:
            for agency in PARTY_AGENCIES:
                setup = agency_setup(agency, keys_dir)
                adapters[agency] = await setup.connect(server.url)
            story = Story(broker, adapters)
            await story.run()
            audit = await audit_story(story, base / "disclosure-log.sigbus-export.jsonl")
            entries = await read_log(broker)
        finally:
            for adapter in adapters.values():
                await adapter.close()
            await broker.stop()
    report = check(story, entries, audit)
    log.info("demo_finished", ok=report.ok, log_size=len(entries))
    return report
