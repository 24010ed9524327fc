"""The steering group's plan figures come from the hub state (issue 13): each followed-up
commitment, each meeting whose attendance was released, the first plan version's time."""

from __future__ import annotations

from datetime import timedelta

from sigbus.audit.followup import Measure, count_measures, parse_period
from sigbus.broker.state import MeetingHeldChange
from sigbus.report import case_facts
from tests.console.test_console_app import CASE, NOW, _state


def test_commitments_meetings_and_the_plan_time_are_read_from_the_hub_state() -> None:
    state = _state()  # cm-late (police, overdue), cm-done (school, done), cm-later (school)
    state.apply(
        MeetingHeldChange(
            message_id="msg-att",
            case_ref=CASE,
            meeting_at=NOW - timedelta(hours=1),
            recorded_at=NOW,
        )
    )
    facts = case_facts(state.cases[CASE])
    assert facts.planned_at == NOW  # the first plan version (the one revision)
    got = count_measures([facts], parse_period("2026-11"))
    assert got[Measure.COMMITMENTS_DONE] == 1
    assert got["commitments_done:school"] == 1
    assert got[Measure.COMMITMENTS_OVERDUE] == 1
    assert got["commitments_overdue:police"] == 1  # cm-later falls due in December
    assert got[Measure.MEETINGS_HELD] == 1
    # A commitment left out of the plan is no longer followed up, nor counted.
    state.cases[CASE].commitments["cm-late"].in_plan = False
    assert (
        count_measures([case_facts(state.cases[CASE])], parse_period("2026-11"))[
            Measure.COMMITMENTS_OVERDUE
        ]
        == 0
    )
