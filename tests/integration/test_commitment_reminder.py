"""An overdue plan commitment produces exactly one reminder (issue 13), on a real server.

The hub follows up every commitment released to a party: past its due date without
a ``done`` status, the responsible agency gets one ``commitment_reminder`` from the
hub, released under the same rules as the commitment itself, logged, and never
again: not on a second pass, not after a restart (the hub state says so).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sigbus.agents.social.consent import consent_withdrawn
from sigbus.audit.entry import EntryOutcome, LogEntry
from sigbus.broker.setup import hub_setup
from sigbus.protocol.codes import ActionCode, ConsenterRole, StatusCode
from sigbus.protocol.ids import HUB, MessageType
from sigbus.protocol.messages import CommitmentReminder, CommitmentStatus, PlanCommitment
from tests.integration.conftest import World

S, SO = "school", "social"


def commitment(cid: str, due_on: date) -> PlanCommitment:
    return PlanCommitment(
        commitment_id=cid,
        responsible_agency=S,
        action=ActionCode.SCHOOL_ATTENDANCE_PLAN,
        owner_function="school_counsellor",
        due_on=due_on,
    )


async def commit(world: World, case: str, cid: str, due_on: date) -> str:
    return await world.adapters[S].send(
        MessageType.PLAN_COMMITMENT, commitment(cid, due_on), case_ref=case, recipients=(SO,)
    )


async def reminders(world: World) -> list[LogEntry]:
    return [
        e for e in await world.log_entries() if e.message_type is MessageType.COMMITMENT_REMINDER
    ]


def reminded(world: World, agency: str) -> list[CommitmentReminder]:
    inbox = world.inboxes.get(agency)
    received = inbox.received if inbox is not None else []
    return [d.body for d in received if isinstance(d.body, CommitmentReminder)]


async def test_an_overdue_commitment_gets_exactly_one_reminder_also_after_a_restart(
    world: World, keys_dir: Path
) -> None:
    case = await world.open_case_with_consents()
    due = datetime.now(UTC).date() - timedelta(days=3)
    await commit(world, case, "cm-attendance", due)
    await world.settle()

    first = await world.broker.reminder_pass()
    assert [(e.recipient, e.outcome) for e in first] == [(S, EntryOutcome.RELEASE)]
    entry = first[0]
    assert (entry.sender, entry.case_ref, entry.message_type) == (
        HUB,
        case,
        MessageType.COMMITMENT_REMINDER,
    )
    assert entry.consent_refs  # released on the case's consent, as the commitment was
    assert entry.state_sha256 is not None  # "already reminded" is hub state, bound to the log
    await world.settle()
    assert reminded(world, S) == [
        CommitmentReminder(
            commitment_id="cm-attendance",
            action=ActionCode.SCHOOL_ATTENDANCE_PLAN,
            owner_function="school_counsellor",
            due_on=due,
        )
    ]
    assert reminded(world, SO) == []  # to the responsible agency only

    # A second pass, and a day later: nothing again.
    assert await world.broker.reminder_pass() == []
    later = datetime.now(UTC) + timedelta(days=1)
    assert await world.broker.reminder_pass(later) == []

    # A restart (its state from the log-bound store): still the one reminder.
    await world.broker.stop()
    world.broker = hub_setup(keys_dir).broker(world.broker.url)
    await world.broker.start()
    assert await world.broker.reminder_pass() == []
    await world.settle()  # an idle hub runs its own pass: nothing new either
    assert len(await reminders(world)) == 1
    assert len(reminded(world, S)) == 1


async def test_done_before_due_gets_no_reminder_and_not_yet_due_waits(world: World) -> None:
    case = await world.open_case_with_consents()
    today = datetime.now(UTC).date()
    await commit(world, case, "cm-done", today + timedelta(days=2))
    await commit(world, case, "cm-open", today + timedelta(days=2))
    await world.settle()
    for cid, status in (("cm-done", StatusCode.DONE), ("cm-open", StatusCode.IN_PROGRESS)):
        await world.adapters[S].send(
            MessageType.COMMITMENT_STATUS,
            CommitmentStatus(commitment_id=cid, status=status, as_of=today),
            case_ref=case,
            recipients=(SO,),
        )
    await world.settle()
    plan = world.broker.state.cases[case].commitments
    assert [h.status for h in plan["cm-done"].history] == [StatusCode.DONE]

    assert await world.broker.reminder_pass() == []  # not due yet
    after_due = datetime.now(UTC) + timedelta(days=4)
    logged = await world.broker.reminder_pass(after_due)
    assert [(e.recipient, e.outcome) for e in logged] == [(S, EntryOutcome.RELEASE)]
    await world.settle()
    assert [r.commitment_id for r in reminded(world, S)] == ["cm-open"]  # done: none
    assert await world.broker.reminder_pass(after_due + timedelta(days=1)) == []


async def test_without_consent_the_reminder_is_denied_and_logged_not_released(
    world: World,
) -> None:
    case = await world.open_case_with_consents()
    await commit(world, case, "cm-attendance", datetime.now(UTC).date() - timedelta(days=1))
    await world.settle()
    young = next(
        e.consent_id
        for e in world.broker.state.cases[case].events
        if e.consenter_role is ConsenterRole.YOUNG_PERSON
    )
    await world.adapters[SO].send(
        MessageType.CONSENT_EVENT,
        consent_withdrawn(young, ConsenterRole.YOUNG_PERSON, None, acted_at=datetime.now(UTC)),
        case_ref=case,
    )
    await world.settle()

    logged = await world.broker.reminder_pass()
    assert [(e.recipient, e.outcome) for e in logged] == [(S, EntryOutcome.DENY)]
    assert any("consent" in r for r in logged[0].reasons), logged[0].reasons
    assert logged[0].release_id is None
    await world.settle()
    assert reminded(world, S) == []
    # Decided once: the deny is logged, not repeated on every pass.
    assert await world.broker.reminder_pass() == []
    assert len(await reminders(world)) == 1
