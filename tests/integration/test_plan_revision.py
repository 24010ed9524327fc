"""The versioned plan (issue 13), on a real server: each plan revision is the plan's
next version, holds only the case's commitments, and is released to the parties only
under consent; a commitment left out of the plan is no longer followed up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sigbus.agents.social.consent import consents_of_everyone
from sigbus.audit.entry import EntryOutcome
from sigbus.protocol.codes import ActionCode
from sigbus.protocol.ids import MessageType, new_opaque_id
from sigbus.protocol.messages import CaseOpened, PlanCommitment, PlanRevision
from sigbus.transport.keystore import DEV_AGENCIES
from tests.integration.conftest import CONSENT_CATEGORIES, World

P, S, SO = "police", "school", "social"


async def open_case(world: World, categories: tuple[MessageType, ...]) -> str:
    social = world.adapters[SO]
    case = new_opaque_id("case", 12)
    await social.send(
        MessageType.CASE_OPENED,
        CaseOpened(
            personnummer=world.youth, guardians_with_custody=("vh-1",), parties=DEV_AGENCIES
        ),
        case_ref=case,
    )
    for event in consents_of_everyone(
        ("vh-1",), parties=DEV_AGENCIES, categories=categories, now=datetime.now(UTC)
    ):
        await social.send(MessageType.CONSENT_EVENT, event, case_ref=case)
    await world.settle()
    return case


async def commit(world: World, case: str, cid: str, days: int) -> None:
    await world.adapters[S].send(
        MessageType.PLAN_COMMITMENT,
        PlanCommitment(
            commitment_id=cid,
            responsible_agency=S,
            action=ActionCode.STUDY_SUPPORT,
            owner_function="school_counsellor",
            due_on=datetime.now(UTC).date() + timedelta(days=days),
        ),
        case_ref=case,
        recipients=(SO,),
    )


async def revise(world: World, case: str, version: int, *commitments: str) -> str:
    return await world.adapters[SO].send(
        MessageType.PLAN_REVISION,
        PlanRevision(
            plan_version=version, commitments=commitments, revised_by="social_sig_coordinator"
        ),
        case_ref=case,
        recipients=(P, S),
    )


async def test_each_revision_is_the_next_version_released_to_the_parties(world: World) -> None:
    case = await open_case(world, (*CONSENT_CATEGORIES, MessageType.PLAN_REVISION))
    await commit(world, case, "cm-support", 20)
    await commit(world, case, "cm-late", -2)
    await world.settle()
    record = world.broker.state.cases[case]
    assert record.plan_version == 0

    first = await revise(world, case, 1, "cm-support", "cm-late")
    await world.settle()
    logged = await world.entries_for(first)
    assert {r: e.outcome for r, e in logged.items()} == {
        P: EntryOutcome.RELEASE,
        S: EntryOutcome.RELEASE,
    }
    assert first in world.received_ids(P)
    assert first in world.received_ids(S)
    assert record.plan_version == 1
    assert logged[P].state_sha256 is not None  # the plan's version is hub state, in the log

    # Not the next version, or a commitment the case does not have: plan_conflict.
    again = await revise(world, case, 1, "cm-support")
    skipped = await revise(world, case, 3, "cm-support")
    unknown = await revise(world, case, 2, "cm-support", "cm-nosuchthing")
    await world.settle()
    for refused in (again, skipped, unknown):
        entries = await world.entries_for(refused)
        assert [e.reasons for e in entries.values()] == [("plan_conflict",)], entries
        assert refused not in world.received_ids(S)
    assert record.plan_version == 1

    # Version 2 leaves the overdue commitment out: it is no longer followed up.
    second = await revise(world, case, 2, "cm-support")
    await world.settle()
    assert record.plan_version == 2
    assert second in world.received_ids(P)
    assert not record.commitments["cm-late"].in_plan
    assert await world.broker.reminder_pass() == []
    notice = await world.adapters[SO].await_notice(second, timeout=5.0)
    assert notice is not None
    assert {i.outcome.value for i in notice.items} == {"released"}


async def test_without_consent_for_plan_revisions_nothing_is_released(world: World) -> None:
    case = await open_case(world, CONSENT_CATEGORIES)  # no plan_revision in the scope
    await commit(world, case, "cm-support", 20)
    await world.settle()
    sent = await revise(world, case, 1, "cm-support")
    await world.settle()
    entries = await world.entries_for(sent)
    assert {e.outcome for e in entries.values()} == {EntryOutcome.DENY}
    assert all(any(r.startswith("policy:") for r in e.reasons) for e in entries.values())
    assert sent not in world.received_ids(P) + world.received_ids(S)
    assert world.broker.state.cases[case].plan_version == 0  # denied: not the plan
