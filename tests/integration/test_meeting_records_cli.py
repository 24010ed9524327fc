"""Meetings (issue 13): attendance and minutes, through the real CLI on a real server.

`sigbus social attendance` says which agencies came and whether the young person and
each guardian (by ref) did; `sigbus social minutes` sends the agenda codes dealt with
and one short note, screened for personnummer. Both are released to the parties only
under consent.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sigbus.audit.entry import EntryOutcome
from sigbus.fixtures import birth_date_for_age, fictitious_personnummer
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import MeetingAttendance, MeetingMinutes
from tests.integration.conftest import CONSENT_CATEGORIES, World
from tests.integration.test_decision_notice_cli import cli
from tests.integration.test_plan_revision import open_case
from tests.integration.test_social_cases_cli import one_line_error

P, S, SO = "police", "school", "social"
MEETINGS = (MessageType.MEETING_ATTENDANCE, MessageType.MEETING_MINUTES)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("SIGBUS_DATA_DIR", str(data))
    return data


def held_at() -> str:
    return (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0).isoformat()


async def decided(world: World, message_type: MessageType) -> dict[str, EntryOutcome]:
    return {
        e.recipient: e.outcome
        for e in await world.log_entries()
        if e.message_type is message_type and e.recipient is not None
    }


async def test_attendance_and_minutes_reach_the_parties_and_a_personnummer_is_refused(
    world: World, keys_dir: Path, data_dir: Path
) -> None:
    case = await open_case(world, (*CONSENT_CATEGORIES, *MEETINGS))
    at = held_at()
    came = await cli(
        world, keys_dir, "social", "attendance", "--case", case, "--at", at,
        "--agency", SO, "--agency", S, "--young-person", "--guardian", "vh-1",
        "--to", P, "--to", S,
    )  # fmt: skip
    assert came.code == 0, came
    wrote = await cli(
        world, keys_dir, "social", "minutes", "--case", case, "--at", at,
        "--discussed", "plan_review", "--discussed", "new_actions",
        "--text", "Skolan tar fram en närvaroplan.", "--to", P, "--to", S,
    )  # fmt: skip
    assert wrote.code == 0, wrote
    assert await decided(world, MessageType.MEETING_ATTENDANCE) == {
        P: EntryOutcome.RELEASE,
        S: EntryOutcome.RELEASE,
    }
    assert await decided(world, MessageType.MEETING_MINUTES) == {
        P: EntryOutcome.RELEASE,
        S: EntryOutcome.RELEASE,
    }
    await world.settle()
    bodies = [d.body for d in world.inboxes[S].received]
    attendance = next(b for b in bodies if isinstance(b, MeetingAttendance))
    assert attendance.agencies_present == (SO, S)
    assert (attendance.young_person_present, attendance.guardians_present) == (True, ("vh-1",))
    minutes = next(b for b in bodies if isinstance(b, MeetingMinutes))
    assert minutes.note == "Skolan tar fram en närvaroplan."
    # The hub keeps only when the meeting was held (the steering group's count), bound to
    # the log like any state change; who came stays in the sealed message.
    assert world.broker.state.cases[case].meetings_held == [attendance.meeting_at]

    # A personnummer in the note: one line, exit 2, nothing sent, the number not echoed.
    pnr = fictitious_personnummer(birth_date_for_age(datetime.now(UTC).date(), 15), 984)
    size = world.broker.writer.size
    refused = await cli(
        world, keys_dir, "social", "minutes", "--case", case, "--at", at,
        "--discussed", "safety", "--text", f"Ring om {pnr}", "--to", S,
    )  # fmt: skip
    one_line_error(refused, "invalid input at note", "personnummer")
    assert pnr not in refused.err
    assert pnr.replace("-", "")[2:] not in refused.err
    # A guardian who is not in the case, or an agency that is no party: denied.
    stranger = await cli(
        world, keys_dir, "social", "attendance", "--case", case, "--at", at,
        "--no-young-person", "--guardian", "vh-9", "--to", S,
    )  # fmt: skip
    assert stranger.code == 1, stranger
    assert "schema_invalid" in stranger.out + stranger.err
    assert world.broker.writer.size == size + 1  # only the stranger's deny


async def test_without_consent_attendance_is_denied_and_not_released(
    world: World, keys_dir: Path, data_dir: Path
) -> None:
    case = await open_case(world, CONSENT_CATEGORIES)  # meetings' records not in scope
    came = await cli(
        world, keys_dir, "social", "attendance", "--case", case, "--at", held_at(),
        "--agency", SO, "--young-person", "--to", S,
    )  # fmt: skip
    assert came.code == 1, came  # the sender is told it was denied
    assert await decided(world, MessageType.MEETING_ATTENDANCE) == {S: EntryOutcome.DENY}
    assert world.broker.state.cases[case].meetings_held == []  # released to nobody: not held
    await world.settle()
    assert not any(isinstance(d.body, MeetingAttendance) for d in world.inboxes[S].received)


async def test_the_hub_refuses_minutes_whose_note_holds_a_personnummer(
    world: World, data_dir: Path
) -> None:
    case = await open_case(world, (*CONSENT_CATEGORIES, *MEETINGS))
    pnr = fictitious_personnummer(birth_date_for_age(datetime.now(UTC).date(), 15), 985)
    # Built past the model's own screening, as a careless adapter might.
    smuggled = MeetingMinutes.model_construct(
        version=1, meeting_at=datetime.now(UTC), discussed=("safety",), note=f"ring {pnr}"
    )
    sent = await world.adapters[SO].send(
        MessageType.MEETING_MINUTES, smuggled, case_ref=case, recipients=(S,)
    )
    await world.settle()
    entries = await world.entries_for(sent)
    assert [(e.outcome, e.reasons) for e in entries.values()] == [
        (EntryOutcome.DENY, ("personnummer_in_free_text",))
    ]
    assert sent not in world.received_ids(S)
