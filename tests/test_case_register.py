"""The social worker's case register folds like the hub (issue 13): pure, no bus."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sigbus.agents.social.cli import case_screen
from sigbus.agents.social.consent import consents_of_everyone
from sigbus.agents.social.register import (
    CaseRegister,
    NoticeLine,
    ReceivedLine,
    RegisterError,
    SentLine,
    case_views,
    facts_of,
)
from sigbus.fixtures import birth_date_for_age, fictitious_personnummer
from sigbus.policy import default_rules
from sigbus.policy.lifecycle import CaseStatus, ConsentState
from sigbus.protocol.codes import ActionCode, AgendaItem, NotDoneReason, StatusCode
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import (
    BODY_MODELS,
    CaseOpened,
    CaseSelected,
    CommitmentReminder,
    CommitmentStatus,
    MeetingAttendance,
    MeetingMinutes,
    PlanCommitment,
    PlanRevision,
)
from sigbus.protocol.notice import DecisionNotice, NoticeItem, NoticeOutcome, notice_id_for

NOW = datetime.now(UTC)
YOUTH = fictitious_personnummer(birth_date_for_age(NOW.date(), 16), 982)
CASE = "case-registertest"
PARTIES = ("police", "school", "social")


def notice(message_id: str, outcome: NoticeOutcome, *reasons: str) -> DecisionNotice:
    return DecisionNotice(
        notice_id=notice_id_for(message_id, 1),
        message_id=message_id,
        message_type=MessageType.CONSENT_EVENT,
        sender="social",
        decided_at=NOW,
        items=(NoticeItem(recipient="hub", outcome=outcome, reasons=reasons, log_index=1),),
        hub_key_id="hub-sign-1",
    )


def test_refused_and_undecided_messages_change_nothing_and_a_late_notice_counts(
    tmp_path: Path,
) -> None:
    register = CaseRegister(tmp_path / "register.jsonl")
    opened = CaseOpened(personnummer=YOUTH, guardians_with_custody=("vh-1",), parties=PARTIES)
    register.sent(
        MessageType.CASE_OPENED, opened, case_ref=CASE, message_id="msg-openedcase",
        sent_at=NOW, notice=notice("msg-openedcase", NoticeOutcome.CONFIRMED),
    )  # fmt: skip
    register.sent(
        MessageType.CASE_SELECTED, CaseSelected(decided_by="social_case_worker"), case_ref=CASE,
        message_id="msg-selectedcase", sent_at=NOW, notice=None,
    )  # fmt: skip
    young, guardian = consents_of_everyone(
        ("vh-1",), parties=PARTIES, categories=(MessageType.MEETING_NOTICE,), now=NOW
    )
    register.sent(
        MessageType.CONSENT_EVENT, young, case_ref=CASE, message_id="msg-consentyoung",
        sent_at=NOW, notice=notice("msg-consentyoung", NoticeOutcome.CONFIRMED),
    )  # fmt: skip
    register.sent(
        MessageType.CONSENT_EVENT, guardian, case_ref=CASE, message_id="msg-consentguard",
        sent_at=NOW, notice=notice("msg-consentguard", NoticeOutcome.REFUSED, "consent_conflict"),
    )  # fmt: skip
    rules = default_rules()
    view = case_views(register.lines(), rules, now=NOW + timedelta(seconds=1))[CASE]
    assert view.status is CaseStatus.AWAITING_SELECTION  # the selection is undecided
    assert view.undecided == ["msg-selectedcase"]
    assert [(c.consenter, c.state) for c in view.consenters] == [
        ("young_person", ConsentState.GIVEN),
        ("guardian:vh-1", ConsentState.MISSING),  # refused: not recorded
    ]
    assert view.decisions[-1].reasons == ("consent_conflict",)
    # The selection's notice arrives later, through the inbox.
    register.noticed(notice("msg-selectedcase", NoticeOutcome.CONFIRMED))
    view = case_views(register.lines(), rules, now=NOW + timedelta(seconds=1))[CASE]
    assert (view.status, view.undecided) == (CaseStatus.CONSENT_COLLECTION, [])
    assert YOUTH not in register.path.read_text()
    assert view.minor is True


def test_a_damaged_register_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "register.jsonl"
    path.write_text('{"kind": "sent"}\n')
    with pytest.raises(RegisterError, match="damaged at line 1"):
        CaseRegister(path).lines()


def released(message_id: str, message_type: MessageType) -> DecisionNotice:
    return notice(message_id, NoticeOutcome.RELEASED).model_copy(
        update={
            "message_type": message_type,
            "items": (NoticeItem(recipient="school", outcome=NoticeOutcome.RELEASED, log_index=2),),
        }
    )


def test_the_plan_has_a_version_and_each_commitment_its_status_history(tmp_path: Path) -> None:
    register = CaseRegister(tmp_path / "register.jsonl")
    opened = CaseOpened(personnummer=YOUTH, guardians_with_custody=("vh-1",), parties=PARTIES)
    register.sent(
        MessageType.CASE_OPENED, opened, case_ref=CASE, message_id="msg-openedcase",
        sent_at=NOW, notice=notice("msg-openedcase", NoticeOutcome.CONFIRMED),
    )  # fmt: skip
    due = NOW.date() - timedelta(days=2)
    ours = PlanCommitment(
        commitment_id="cm-familysupport", responsible_agency="social",
        action=ActionCode.FAMILY_SUPPORT, owner_function="social_case_worker", due_on=due,
    )  # fmt: skip
    theirs = ours.model_copy(
        update={"commitment_id": "cm-schoolthing", "responsible_agency": "school"}
    )
    for mid, body in (("msg-commitours", ours), ("msg-committheirs", theirs)):
        register.sent(
            MessageType.PLAN_COMMITMENT, body, case_ref=CASE, message_id=mid, sent_at=NOW,
            notice=released(mid, MessageType.PLAN_COMMITMENT),
        )  # fmt: skip
    d1, d2 = NOW.date() - timedelta(days=5), NOW.date() - timedelta(days=1)
    lines: list[SentLine | ReceivedLine | NoticeLine] = [*register.lines()]
    for index, (mid, body) in enumerate(
        (
            ("msg-statusone", CommitmentStatus(commitment_id="cm-schoolthing",
                                               status=StatusCode.IN_PROGRESS, as_of=d1)),
            ("msg-statustwo", CommitmentStatus(commitment_id="cm-schoolthing",
                                               status=StatusCode.NOT_DONE, as_of=d2,
                                               not_done_reason=NotDoneReason.DECLINED)),
            ("msg-remindedus", CommitmentReminder(commitment_id="cm-familysupport",
                                                  action=ActionCode.FAMILY_SUPPORT,
                                                  owner_function="social_case_worker",
                                                  due_on=due)),
        ),
        start=10,
    ):  # fmt: skip
        lines.append(
            ReceivedLine(
                message_id=mid, case_ref=CASE, message_type=body_type(body), sender="school",
                log_index=index, facts=facts_of(body),
            )
        )  # fmt: skip
    rules = default_rules()
    view = case_views(lines, rules, now=NOW)[CASE]
    assert view.plan_version == 0
    by_id = {c.commitment_id: c for c in view.commitments}
    assert by_id["cm-schoolthing"].history == (
        (StatusCode.IN_PROGRESS, d1),
        (StatusCode.NOT_DONE, d2),
    )
    assert by_id["cm-familysupport"].reminded
    assert {c.commitment_id for c in view.overdue(NOW.date())} == set(by_id)
    revision = PlanRevision(
        plan_version=1, commitments=("cm-familysupport",), revised_by="social_sig_coordinator"
    )
    register.sent(
        MessageType.PLAN_REVISION, revision, case_ref=CASE, message_id="msg-revisedplan",
        sent_at=NOW, notice=released("msg-revisedplan", MessageType.PLAN_REVISION),
    )  # fmt: skip
    view = case_views([*lines, register.lines()[-1]], rules, now=NOW)[CASE]
    assert view.plan_version == 1
    by_id = {c.commitment_id: c for c in view.commitments}
    assert not by_id["cm-schoolthing"].in_plan
    assert [c.commitment_id for c in view.overdue(NOW.date())] == ["cm-familysupport"]
    screen = "\n".join(case_screen(view, NOW.date()))
    assert "plan (version 1):" in screen
    assert "OVERDUE, reminded" in screen
    assert "(not in the plan)" in screen
    assert f"history: in_progress {d1.isoformat()}, not_done {d2.isoformat()}" in screen
    assert view.to_json(NOW.date())["plan_version"] == 1


def body_type(body: object) -> MessageType:
    return next(t for t, m in BODY_MODELS.items() if type(body) is m)


def test_a_meeting_held_shows_who_came_and_what_was_discussed(tmp_path: Path) -> None:
    register = CaseRegister(tmp_path / "register.jsonl")
    opened = CaseOpened(personnummer=YOUTH, guardians_with_custody=("vh-1",), parties=PARTIES)
    register.sent(
        MessageType.CASE_OPENED, opened, case_ref=CASE, message_id="msg-openedcase",
        sent_at=NOW, notice=notice("msg-openedcase", NoticeOutcome.CONFIRMED),
    )  # fmt: skip
    held = NOW - timedelta(hours=2)
    came = MeetingAttendance(
        meeting_at=held, agencies_present=("school", "social"), young_person_present=False,
        guardians_present=("vh-1",),
    )  # fmt: skip
    minutes = MeetingMinutes(meeting_at=held, discussed=(AgendaItem.SAFETY,), note="Ny tid bokas.")
    for mid, kind, body in (
        ("msg-attendance", MessageType.MEETING_ATTENDANCE, came),
        ("msg-theminutes", MessageType.MEETING_MINUTES, minutes),
    ):
        register.sent(
            kind, body, case_ref=CASE, message_id=mid, sent_at=NOW, notice=released(mid, kind)
        )
    view = case_views(register.lines(), default_rules(), now=NOW)[CASE]
    assert [(m.agencies, m.young_person, m.discussed) for m in view.meetings_held] == [
        (("school", "social"), False, ("safety",))
    ]
    screen = "\n".join(case_screen(view, NOW.date()))
    assert "school, social; young person did not come; guardians vh-1; discussed safety" in screen
    assert "Ny tid" not in screen  # codes only on the screen
