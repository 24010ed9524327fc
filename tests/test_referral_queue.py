"""The referral intake queue folded from the case register (agents/social/intake.py):
a case counts as opened for a referral only once the hub confirmed it, and the queue
holds no personnummer (issue 13)."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from sigbus.agents.social.intake import referral_queue
from sigbus.agents.social.register import CaseRegister, NoticeLine, ReferralLine
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import CaseOpened, ReferralLink
from sigbus.protocol.notice import NoticeOutcome
from tests.test_case_register import NOW, PARTIES, YOUTH, notice


def referral_line(message_id: str, at_minutes: int) -> ReferralLine:
    return ReferralLine(
        message_id=message_id,
        sender="police",
        referral_kind="lul_6_notification",
        basis="lul_6",
        received_at=NOW + timedelta(minutes=at_minutes),
        log_index=at_minutes,
    )


def test_only_a_confirmed_case_opened_links_a_referral(tmp_path: Path) -> None:
    register = CaseRegister(tmp_path / "register.jsonl")
    for line in (referral_line("msg-referralsecond", 2), referral_line("msg-referralfirst", 1)):
        register._append(line)
    link = ReferralLink(message_id="msg-referralfirst", received_at=NOW)
    refused = CaseOpened(
        personnummer=YOUTH, guardians_with_custody=(), parties=PARTIES, referral=link
    )
    register.sent(
        MessageType.CASE_OPENED, refused, case_ref="case-refusedone", message_id="msg-refusedopen",
        sent_at=NOW, notice=notice("msg-refusedopen", NoticeOutcome.REFUSED, "case_exists"),
    )  # fmt: skip
    assert [(q.message_id, q.case_ref) for q in referral_queue(register.lines())] == [
        ("msg-referralfirst", None),
        ("msg-referralsecond", None),
    ]
    register.sent(
        MessageType.CASE_OPENED, refused, case_ref="case-lateconfirm", message_id="msg-lateopened",
        sent_at=NOW, notice=None,
    )  # fmt: skip
    assert referral_queue(register.lines())[0].case_ref is None  # not decided yet
    register._append(NoticeLine(notice=notice("msg-lateopened", NoticeOutcome.CONFIRMED)))
    first, second = referral_queue(register.lines())
    assert (first.message_id, first.case_ref) == ("msg-referralfirst", "case-lateconfirm")
    assert first.link() == ReferralLink(
        message_id="msg-referralfirst", received_at=first.received_at
    )
    assert first.line().endswith("case case-lateconfirm")
    assert second.line().endswith("no case opened")
    text = register.path.read_text()
    assert YOUTH not in text
    assert YOUTH.replace("-", "") not in text
