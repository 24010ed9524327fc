"""The social worker's case register folds like the hub (issue 13): pure, no bus."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sigbus.agents.social.consent import consents_of_everyone
from sigbus.agents.social.register import CaseRegister, RegisterError, case_views
from sigbus.fixtures import birth_date_for_age, fictitious_personnummer
from sigbus.policy import default_rules
from sigbus.policy.lifecycle import CaseStatus, ConsentState
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import CaseOpened, CaseSelected
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
