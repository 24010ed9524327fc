"""The social worker's case register: what social services' adapter knows of each case.

The hub's state is the hub's (encrypted, bound to the log); the lead agency's
commands cannot read it. What the adapter *can* know is what it sent, the hub's
signed decision notice for each of those messages, and what was released to it
(``sigbus social inbox``). Each of those is one line of a local JSON Lines file,
mode 0600, in the data directory (``SIGBUS_DATA_DIR``): :class:`CaseRegister`.
:func:`case_views` folds the lines into one :class:`CaseView` per case, with the
same life-cycle rules the hub applies (:mod:`sigbus.policy.lifecycle`).

What the file holds, and what is printed: case refs, agencies, guardian refs
(``vh-…``), consent ids and periods, codes, dates, log indexes; and, for each case,
the young person's date of birth, which decides who must consent (the hub keeps it
too). Never a personnummer: bodies are stored without it. The date of birth is
never printed; ``case show`` says only ``minor`` or ``adult``. Social services hold
all of this in their own case system already; the register is a working copy
inside their environment, like the ``--out`` file of ``inbox``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, Field, TypeAdapter, ValidationError

from sigbus.agents.errors import AdapterError
from sigbus.agents.notice_text import summary
from sigbus.agents.runtime import Delivered
from sigbus.policy import CaseState, ConsentRecordEvent, Rules, SubjectFacts, age_on
from sigbus.policy.engine import stockholm_date
from sigbus.policy.lifecycle import CaseStatus, ConsenterStatus, case_status, consent_collection
from sigbus.protocol.codes import StatusCode
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import (
    BODY_MODELS,
    Body,
    CaseClosed,
    CaseOpened,
    CaseSelected,
    CommitmentReminder,
    CommitmentStatus,
    ConsentEvent,
    MeetingAttendance,
    MeetingMinutes,
    MeetingNotice,
    PlanCommitment,
    PlanRevision,
    Referral,
    StrictModel,
)
from sigbus.protocol.notice import DecisionNotice
from sigbus.protocol.personnummer import birth_date
from sigbus.transport import config

#: The register's file name inside the data directory.
REGISTER_FILE = "social-case-register.jsonl"
#: How many recent decisions ``case show`` lists.
RECENT = 8


class RegisterError(AdapterError):
    """The case register cannot be read or written."""


class SentLine(StrictModel):
    """A message social services sent about a case, and the hub's decision if known."""

    kind: Literal["sent"] = "sent"
    message_id: str
    case_ref: str
    message_type: MessageType
    sent_at: AwareDatetime
    #: The body as sent, without any personnummer.
    facts: dict[str, Any]
    #: Only for ``case_opened``: decides who must consent; never printed.
    date_of_birth: date | None = None
    notice: DecisionNotice | None = None


class ReceivedLine(StrictModel):
    """A message released to social services about a case (``sigbus social inbox``)."""

    kind: Literal["received"] = "received"
    message_id: str
    case_ref: str
    message_type: MessageType
    sender: str
    log_index: int
    facts: dict[str, Any]


class ReferralLine(StrictModel):
    """A referral released to social services (``sigbus social inbox``): who sent it, on
    which statute, when; never its personnummer or its reasons (the intake queue)."""

    kind: Literal["referral"] = "referral"
    message_id: str
    sender: str
    referral_kind: str
    basis: str
    received_at: AwareDatetime
    log_index: int


class NoticeLine(StrictModel):
    """A decision notice that came later, through the inbox (``--no-wait``, a timeout)."""

    kind: Literal["notice"] = "notice"
    notice: DecisionNotice


AnyLine = SentLine | ReceivedLine | NoticeLine | ReferralLine
RegisterLine = Annotated[AnyLine, Field(discriminator="kind")]
_LINE: TypeAdapter[AnyLine] = TypeAdapter(RegisterLine)


def facts_of(body: Body) -> dict[str, Any]:
    """The body as JSON, its personnummer left out."""
    return body.model_dump(mode="json", exclude={"personnummer"})


def register_path(data_dir: Path) -> Path:
    return data_dir / REGISTER_FILE


@dataclass(frozen=True)
class CaseRegister:
    """The register file; with no ``path``, the one in the data directory at each use."""

    explicit: Path | None = None

    @property
    def path(self) -> Path:
        return self.explicit or register_path(config.data_dir(None))

    def _append(self, line: AnyLine) -> None:
        data = line.model_dump_json().encode() + b"\n"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as e:
            raise RegisterError(f"cannot write the case register {self.path}: {e}") from e

    # -- the hooks the commands call (cli_common.Journal) ----------------------

    def sent(
        self,
        message_type: MessageType,
        body: Body,
        *,
        case_ref: str | None,
        message_id: str,
        sent_at: datetime,
        notice: DecisionNotice | None,
    ) -> None:
        if case_ref is None:
            return  # not about a case (a referral): nothing for the case register
        dob = birth_date(body.personnummer) if isinstance(body, CaseOpened) else None
        self._append(
            SentLine(
                message_id=message_id,
                case_ref=case_ref,
                message_type=message_type,
                sent_at=sent_at,
                facts=facts_of(body),
                date_of_birth=dob,
                notice=notice,
            )
        )

    def received(self, delivered: Delivered) -> None:
        header = delivered.header
        if isinstance(delivered.body, Referral):
            self._append(
                ReferralLine(
                    message_id=header.message_id,
                    sender=header.sender,
                    referral_kind=delivered.body.kind.value,
                    basis=delivered.record.legal_basis,
                    received_at=delivered.record.released_at,
                    log_index=delivered.record.log_index,
                )
            )
            return
        if header.case_ref is None:
            return
        self._append(
            ReceivedLine(
                message_id=header.message_id,
                case_ref=header.case_ref,
                message_type=header.type,
                sender=header.sender,
                log_index=delivered.record.log_index,
                facts=facts_of(delivered.body),
            )
        )

    def noticed(self, notice: DecisionNotice) -> None:
        self._append(NoticeLine(notice=notice))

    # -- reading -----------------------------------------------------------------

    def lines(self) -> list[AnyLine]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as e:
            raise RegisterError(f"cannot read the case register {self.path}: {e}") from e
        out = []
        for number, text in enumerate(raw.splitlines(), start=1):
            try:
                out.append(_LINE.validate_json(text))
            except ValidationError as e:
                raise RegisterError(
                    f"the case register {self.path} is damaged at line {number}"
                ) from e
        return out


# ------------------------------------------------------------------ the fold (pure)


@dataclass(frozen=True)
class Commitment:
    commitment_id: str
    agency: str
    action: str
    owner: str
    due_on: date
    status: StatusCode | None = None
    as_of: date | None = None
    #: Every status released about it, in the order they came: (status, as of).
    history: tuple[tuple[StatusCode, date], ...] = ()
    #: Left out of the latest plan version (``sigbus social plan``).
    in_plan: bool = True
    #: The hub's reminder reached this adapter (social services' own commitment).
    reminded: bool = False

    def overdue(self, today: date) -> bool:
        return self.in_plan and self.due_on < today and self.status is not StatusCode.DONE


@dataclass(frozen=True)
class Meeting:
    at: datetime
    place: str
    agenda: tuple[str, ...]


@dataclass(frozen=True)
class HeldMeeting:
    """A meeting held, as its attendance and minutes were released (codes only)."""

    at: datetime
    agencies: tuple[str, ...] = ()
    young_person: bool | None = None
    guardians: tuple[str, ...] = ()
    discussed: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decided:
    at: datetime
    message_type: MessageType
    message_id: str
    summary: str
    reasons: tuple[str, ...]
    log_indexes: tuple[int, ...]


@dataclass
class CaseView:
    """One case as the social adapter knows it; nothing here is a personnummer."""

    case_ref: str
    status: CaseStatus
    minor: bool
    parties: tuple[str, ...]
    guardians: tuple[str, ...]
    consenters: list[ConsenterStatus]
    selected_at: datetime | None = None
    assessment: tuple[str, str] | None = None
    closed_at: datetime | None = None
    closure_reason: str | None = None
    #: The plan's version as released (0: no plan revision yet).
    plan_version: int = 0
    commitments: list[Commitment] = field(default_factory=list)
    next_meeting: Meeting | None = None
    meetings_held: list[HeldMeeting] = field(default_factory=list)
    decisions: list[Decided] = field(default_factory=list)
    undecided: list[str] = field(default_factory=list)

    def overdue(self, today: date) -> list[Commitment]:
        return [c for c in self.commitments if c.overdue(today)]

    def to_json(self, today: date) -> dict[str, Any]:
        return {
            "case_ref": self.case_ref,
            "status": self.status.value,
            "young_person": "minor" if self.minor else "adult",
            "parties": list(self.parties),
            "guardians": list(self.guardians),
            "consent": [
                {
                    "consenter": c.consenter,
                    "state": c.state.value,
                    "consent_id": c.consent_id,
                    "valid_until": c.valid_until.isoformat() if c.valid_until else None,
                }
                for c in self.consenters
            ],
            "selection": (
                {
                    "at": self.selected_at.isoformat(),
                    "instrument": self.assessment[0] if self.assessment else None,
                    "assessment_id": self.assessment[1] if self.assessment else None,
                }
                if self.selected_at
                else None
            ),
            "closure": (
                {"at": self.closed_at.isoformat(), "reason": self.closure_reason}
                if self.closed_at
                else None
            ),
            "plan_version": self.plan_version,
            "plan": [
                {
                    "commitment_id": c.commitment_id,
                    "agency": c.agency,
                    "action": c.action,
                    "owner_function": c.owner,
                    "due_on": c.due_on.isoformat(),
                    "status": c.status.value if c.status else None,
                    "as_of": c.as_of.isoformat() if c.as_of else None,
                    "overdue": c.overdue(today),
                    "in_plan": c.in_plan,
                    "reminded": c.reminded,
                    "history": [
                        {"status": status.value, "as_of": as_of.isoformat()}
                        for status, as_of in c.history
                    ],
                }
                for c in self.commitments
            ],
            "next_meeting": (
                {
                    "at": self.next_meeting.at.isoformat(),
                    "place": self.next_meeting.place,
                    "agenda": list(self.next_meeting.agenda),
                }
                if self.next_meeting
                else None
            ),
            "meetings_held": [
                {
                    "at": m.at.isoformat(),
                    "agencies_present": list(m.agencies),
                    "young_person_present": m.young_person,
                    "guardians_present": list(m.guardians),
                    "discussed": list(m.discussed),
                }
                for m in self.meetings_held
            ],
            "recent_decisions": [
                {
                    "at": d.at.isoformat(),
                    "message_type": d.message_type.value,
                    "message_id": d.message_id,
                    "summary": d.summary,
                    "reasons": list(d.reasons),
                    "log_indexes": list(d.log_indexes),
                }
                for d in self.decisions
            ],
            "undecided": list(self.undecided),
        }


@dataclass
class _Acc:
    case_ref: str
    dob: date | None = None
    guardians: tuple[str, ...] = ()
    parties: tuple[str, ...] = ()
    events: list[ConsentRecordEvent] = field(default_factory=list)
    revisions: dict[str, int] = field(default_factory=dict)
    selected_at: datetime | None = None
    selection: CaseSelected | None = None
    closed_at: datetime | None = None
    closure: CaseClosed | None = None
    commitments: dict[str, Commitment] = field(default_factory=dict)
    plan_version: int = 0
    meetings: list[Meeting] = field(default_factory=list)
    held: dict[datetime, HeldMeeting] = field(default_factory=dict)
    decisions: list[Decided] = field(default_factory=list)
    undecided: list[str] = field(default_factory=list)


def _body(line: SentLine | ReceivedLine) -> Body:
    try:
        return BODY_MODELS[line.message_type].model_validate_json(json.dumps(line.facts))
    except ValidationError as e:
        raise RegisterError(f"the case register holds an unreadable {line.message_type}") from e


def _apply_sent(acc: _Acc, line: SentLine, notice: DecisionNotice) -> None:
    acc.decisions.append(
        Decided(
            at=notice.decided_at,
            message_type=line.message_type,
            message_id=line.message_id,
            summary=summary(notice),
            reasons=tuple(r for item in notice.items for r in item.reasons),
            log_indexes=tuple(item.log_index for item in notice.items),
        )
    )
    if line.message_type is MessageType.CASE_OPENED:
        if notice.all_taken:
            acc.dob = line.date_of_birth
            acc.guardians = tuple(line.facts.get("guardians_with_custody", ()))
            acc.parties = tuple(line.facts.get("parties", ()))
        return
    if line.message_type in (MessageType.CASE_INVITATION, MessageType.REFERRAL):
        return
    body = _body(line)
    if isinstance(body, ConsentEvent):
        if notice.all_taken:
            revision = acc.revisions.get(body.consent_id, 0) + 1
            acc.revisions[body.consent_id] = revision
            acc.events.append(
                ConsentRecordEvent(
                    consent_id=body.consent_id,
                    revision=revision,
                    action=body.action,
                    consenter_role=body.consenter_role,
                    guardian_ref=body.guardian_ref,
                    scope=body.scope,
                    acted_at=body.acted_at,
                    recorded_at=notice.decided_at,
                    recorded_by=body.recorded_by,
                    evidence_sha256=body.evidence_sha256,
                    source_message_id=line.message_id,
                )
            )
    elif isinstance(body, CaseSelected):
        if notice.all_taken:
            acc.selected_at, acc.selection = notice.decided_at, body
    elif isinstance(body, CaseClosed):
        if notice.all_taken:
            acc.closed_at, acc.closure = notice.decided_at, body
    elif any(i.outcome.value == "released" for i in notice.items):
        _apply_plan(acc, body)  # released to at least one party: it is part of the case


def _apply_plan(acc: _Acc, body: Body) -> None:
    if isinstance(body, PlanCommitment):
        known = acc.commitments.get(body.commitment_id)
        acc.commitments[body.commitment_id] = replace(
            known or Commitment(body.commitment_id, "", "", "", body.due_on),
            agency=body.responsible_agency,
            action=body.action.value,
            owner=body.owner_function,
            due_on=body.due_on,
        )
    elif isinstance(body, CommitmentStatus):
        known = acc.commitments.get(body.commitment_id)
        if known is None:
            return
        history = (*known.history, (body.status, body.as_of))
        if known.as_of is None or body.as_of >= known.as_of:
            known = replace(known, status=body.status, as_of=body.as_of)
        acc.commitments[body.commitment_id] = replace(known, history=history)
    elif isinstance(body, PlanRevision):
        if body.plan_version > acc.plan_version:
            acc.plan_version = body.plan_version
            for cid, known in acc.commitments.items():
                acc.commitments[cid] = replace(known, in_plan=cid in body.commitments)
    elif isinstance(body, MeetingAttendance):
        met = acc.held.get(body.meeting_at) or HeldMeeting(body.meeting_at)
        acc.held[body.meeting_at] = replace(
            met,
            agencies=body.agencies_present,
            young_person=body.young_person_present,
            guardians=body.guardians_present,
        )
    elif isinstance(body, MeetingMinutes):
        met = acc.held.get(body.meeting_at) or HeldMeeting(body.meeting_at)
        acc.held[body.meeting_at] = replace(met, discussed=tuple(a.value for a in body.discussed))
    elif isinstance(body, CommitmentReminder):
        known = acc.commitments.get(body.commitment_id)
        if known is not None:
            acc.commitments[body.commitment_id] = replace(known, reminded=True)
    elif isinstance(body, MeetingNotice):
        acc.meetings.append(
            Meeting(body.meeting_at, body.place.value, tuple(a.value for a in body.agenda))
        )


def case_views(lines: Iterable[AnyLine], rules: Rules, *, now: datetime) -> dict[str, CaseView]:
    """Fold the register into one view per case, in the order the cases were opened."""
    lines = list(lines)
    late: Mapping[str, DecisionNotice] = {
        line.notice.message_id: line.notice for line in lines if isinstance(line, NoticeLine)
    }
    accs: dict[str, _Acc] = {}
    for line in lines:
        if isinstance(line, NoticeLine | ReferralLine):
            continue
        acc = accs.setdefault(line.case_ref, _Acc(line.case_ref))
        if isinstance(line, ReceivedLine):
            if line.message_type in (
                MessageType.PLAN_COMMITMENT,
                MessageType.COMMITMENT_STATUS,
                MessageType.MEETING_NOTICE,
                MessageType.COMMITMENT_REMINDER,
            ):
                _apply_plan(acc, _body(line))
            continue
        notice = line.notice or late.get(line.message_id)
        if notice is None:
            acc.undecided.append(line.message_id)
        else:
            _apply_sent(acc, line, notice)
    return {ref: _view(acc, rules, now) for ref, acc in accs.items() if acc.dob is not None}


def _view(acc: _Acc, rules: Rules, now: datetime) -> CaseView:
    assert acc.dob is not None
    state = CaseState(
        case_ref=acc.case_ref,
        subject=SubjectFacts(
            date_of_birth=acc.dob, guardians_with_custody=frozenset(acc.guardians)
        ),
        parties=frozenset(acc.parties),
        consent_events=tuple(acc.events),
    )
    consenters = consent_collection(state, rules, now=now)
    upcoming = sorted((m for m in acc.meetings if m.at >= now), key=lambda m: m.at)
    selection = acc.selection
    return CaseView(
        case_ref=acc.case_ref,
        status=case_status(
            selected=acc.selected_at is not None,
            closed=acc.closed_at is not None,
            consenters=consenters,
        ),
        minor=age_on(acc.dob, stockholm_date(now)) < rules.consent.age_of_majority,
        parties=acc.parties,
        guardians=acc.guardians,
        consenters=consenters,
        selected_at=acc.selected_at,
        assessment=(
            (selection.assessment.instrument.value, selection.assessment.assessment_id)
            if selection is not None and selection.assessment is not None
            else None
        ),
        closed_at=acc.closed_at,
        closure_reason=acc.closure.reason.value if acc.closure else None,
        plan_version=acc.plan_version,
        commitments=sorted(acc.commitments.values(), key=lambda c: (c.due_on, c.commitment_id)),
        next_meeting=upcoming[0] if upcoming else None,
        meetings_held=sorted(acc.held.values(), key=lambda m: m.at),
        decisions=acc.decisions[-RECENT:],
        undecided=acc.undecided,
    )
