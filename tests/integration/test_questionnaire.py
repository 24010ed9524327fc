"""The young person's voice (issue 13), on a real server: a coded questionnaire is a hub
record, confirmed to social services, counted in the steering group's report with small
counts suppressed; no other agency can record one, and a closed case takes none."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from sigbus.audit.followup import STOCKHOLM, followup, parse_period
from sigbus.protocol.codes import ClosureReason, QuestionnaireAnswer, QuestionnaireOccasion
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import CaseClosed, YouthQuestionnaire
from sigbus.report import case_facts
from tests.integration.conftest import World
from tests.integration.test_decision_notice_cli import cli

S, SO = "school", "social"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("SIGBUS_DATA_DIR", str(data))
    return data


def answers(occasion: QuestionnaireOccasion) -> YouthQuestionnaire:
    return YouthQuestionnaire(
        occasion=occasion,
        listened_to=QuestionnaireAnswer.YES,
        support_helped=QuestionnaireAnswer.PARTLY,
        knew_the_plan=QuestionnaireAnswer.YES,
        recorded_by="social_case_worker",
    )


async def test_the_questionnaire_is_recorded_counted_and_suppressed(
    world: World, keys_dir: Path, data_dir: Path
) -> None:
    case = await world.open_case_with_consents()
    recorded = await cli(
        world, keys_dir, "social", "questionnaire", "--case", case, "--occasion", "review",
        "--listened-to", "yes", "--support-helped", "partly", "--knew-the-plan", "yes",
    )  # fmt: skip
    assert recorded.code == 0, recorded
    assert "confirmed" in recorded.out
    # Only the lead agency records one: the school's is refused.
    school = await world.adapters[S].send(
        MessageType.YOUTH_QUESTIONNAIRE, answers(QuestionnaireOccasion.REVIEW), case_ref=case
    )
    await world.settle()
    assert [e.reasons for e in (await world.entries_for(school)).values()] == [
        ("sender_not_allowed",)
    ]
    record = world.broker.state.cases[case]
    assert [q.support_helped for q in record.questionnaires] == [QuestionnaireAnswer.PARTLY]

    month = parse_period(datetime.now(STOCKHOLM).strftime("%Y-%m"))
    exact = {r.measure: r.count for r in followup([case_facts(record)], month, k=1).rows}
    assert exact["questionnaires"] == 1
    assert exact["questionnaires:support_helped:partly"] == 1
    hidden = {r.measure: r.count for r in followup([case_facts(record)], month, k=5).rows}
    assert hidden["questionnaires"] is None
    assert all(v is None for m, v in hidden.items() if m.startswith("questionnaires"))

    # A closed case takes no questionnaire.
    await world.adapters[SO].send(
        MessageType.CASE_CLOSED,
        CaseClosed(reason=ClosureReason.PLAN_COMPLETED, closed_by="social_sig_coordinator"),
        case_ref=case,
    )
    late = await world.adapters[SO].send(
        MessageType.YOUTH_QUESTIONNAIRE, answers(QuestionnaireOccasion.CLOSURE), case_ref=case
    )
    await world.settle()
    assert [e.reasons for e in (await world.entries_for(late)).values()] == [("case_closed",)]
    assert len(record.questionnaires) == 1
