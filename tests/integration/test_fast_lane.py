"""The withdrawal fast lane and retraction (issue 11), on a real nats-server.

A withdrawal takes effect ahead of the messages queued before it, releases
still unfetched in an inbox are pulled back and logged as retractions, and
nothing but a withdrawal may jump the queue.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from structlog.testing import capture_logs

from sigbus.agents.casesystem import MemoryCaseSystem
from sigbus.agents.social.consent import consents_of_everyone
from sigbus.audit.entry import EntryOutcome
from sigbus.protocol.codes import ConsentAction, ConsenterRole, ReferralKind, ReferralReason
from sigbus.protocol.ids import MessageType, new_opaque_id
from sigbus.protocol.messages import CaseOpened, ConsentEvent, Referral
from sigbus.protocol.subjects import urgent_subject
from sigbus.transport.keystore import DEV_AGENCIES
from tests.integration.conftest import CONSENT_CATEGORIES, LUL6, World
from tests.integration.test_flow import status

P, S, SO = "police", "school", "social"


def withdrawal() -> ConsentEvent:
    return ConsentEvent(
        consent_id="consent-guardianvh2",
        action=ConsentAction.WITHDRAWN,
        consenter_role=ConsenterRole.GUARDIAN,
        guardian_ref="vh-2",
        acted_at=datetime.now(UTC),
        recorded_by="social_case_worker",
    )


async def until_the_hub_holds_the_withdrawal(world: World) -> None:
    """The hub's fast-lane watcher has fetched it (it long-polls beside the loop)."""
    for _ in range(100):
        if world.broker._urgent:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the fast lane never delivered the withdrawal")


async def test_a_withdrawal_overtakes_the_messages_queued_before_it(world: World) -> None:
    case = await world.open_case_with_consents()
    school = world.adapters[S]
    queued = [
        await school.send(
            MessageType.COMMITMENT_STATUS, status(), case_ref=case, recipients=(SO, P)
        )
        for _ in range(40)
    ]
    withdrawn = await world.adapters[SO].send(
        MessageType.CONSENT_EVENT, withdrawal(), case_ref=case
    )
    await until_the_hub_holds_the_withdrawal(world)
    await world.settle()
    entries = await world.log_entries()
    (recorded,) = [e for e in entries if e.message_id == withdrawn]
    assert recorded.outcome is EntryOutcome.RECORDED
    behind = [e for e in entries if e.message_id in queued]
    assert len(behind) == 2 * len(queued)
    # Decided after the withdrawal although sent before it: none is released.
    assert all(e.index > recorded.index for e in behind)
    assert {e.outcome for e in behind} == {EntryOutcome.DENY}
    assert all(any("consent_withdrawn" in r for r in e.reasons) for e in behind)
    assert not set(queued) & set(world.received_ids(P) + world.received_ids(SO))


async def test_unfetched_releases_are_pulled_back_and_logged(world: World) -> None:
    case = await world.open_case_with_consents()
    school = world.adapters[S]
    sent = [
        await school.send(
            MessageType.COMMITMENT_STATUS, status(), case_ref=case, recipients=(SO, P)
        )
        for _ in range(5)
    ]
    await world.broker.drain_ingress(idle_timeout=0.3)
    social = world.inboxes.setdefault(SO, MemoryCaseSystem())
    while await world.adapters[SO].receive(social.deliver, timeout=0.3):
        pass  # social services fetched theirs; the police did not (yet)
    assert set(world.received_ids(SO)) >= set(sent)

    withdrawn = await world.adapters[SO].send(
        MessageType.CONSENT_EVENT, withdrawal(), case_ref=case
    )
    await world.settle()
    entries = await world.log_entries()
    released = {e.release_id: e for e in entries if e.message_id in sent and e.release_id}
    retracted = [e for e in entries if e.outcome is EntryOutcome.RETRACTION]
    police_releases = {rid for rid, e in released.items() if e.recipient == P}
    assert len(police_releases) == 5
    # Exactly the police's five, each once, logged after the withdrawal's record.
    assert sorted(e.release_id or "" for e in retracted) == sorted(police_releases)
    (recorded,) = [
        e for e in entries if e.message_id == withdrawn and e.outcome is EntryOutcome.RECORDED
    ]
    assert all(e.index > recorded.index for e in retracted)
    assert all(e.message_id == withdrawn for e in retracted)
    assert all(e.reasons == ("retracted_after_withdrawal",) for e in retracted)
    # ... and they never reach the police, while what social services fetched stays a release.
    assert not set(sent) & set(world.received_ids(P))
    assert {e.recipient for e in retracted} == {P}


async def test_only_a_withdrawal_may_take_the_fast_lane(world: World) -> None:
    police = world.adapters[P]
    envelope = police.seal(
        MessageType.REFERRAL,
        Referral(
            kind=ReferralKind.LUL_6_NOTIFICATION,
            personnummer=world.youth,
            reasons=(ReferralReason.SUSPECTED_OFFENCE,),
            observed_on=datetime.now(UTC).date(),
            contact_function="police_youth_unit",
        ),
        recipients=(SO,),
        assertion=LUL6,
    )
    mid = envelope.header.message_id
    await police.publish_raw(urgent_subject(P), envelope.to_wire(), mid)
    await world.settle()
    entries = await world.entries_for(mid)
    assert {e.outcome for e in entries.values()} == {EntryOutcome.DENY}
    assert {e.reasons for e in entries.values()} == {("wrong_lane",)}
    assert mid not in world.received_ids(SO)


async def test_a_withdrawal_of_a_consent_still_in_the_queue_waits_for_it(world: World) -> None:
    """Ahead of the queue the consent it withdraws is not recorded yet: it is decided
    again in its ingress order (after the consent), not refused."""
    social = world.adapters[SO]
    case = new_opaque_id("case", 12)
    guardians = ("vh-1", "vh-2")
    await social.send(
        MessageType.CASE_OPENED,
        CaseOpened(
            personnummer=world.youth, guardians_with_custody=guardians, parties=DEV_AGENCIES
        ),
        case_ref=case,
    )
    events = consents_of_everyone(
        guardians, parties=DEV_AGENCIES, categories=CONSENT_CATEGORIES, now=datetime.now(UTC)
    )
    given = [await social.send(MessageType.CONSENT_EVENT, e, case_ref=case) for e in events]
    withdrawn = await social.send(MessageType.CONSENT_EVENT, withdrawal(), case_ref=case)
    await until_the_hub_holds_the_withdrawal(world)
    with capture_logs() as logs:
        await world.settle()
    assert [e["event"] for e in logs].count("withdrawal_deferred") == 1
    entries = await world.log_entries()
    (last_given,) = [e for e in entries if e.message_id == given[-1]]
    (recorded,) = [e for e in entries if e.message_id == withdrawn]
    assert (last_given.outcome, recorded.outcome) == (EntryOutcome.RECORDED,) * 2
    assert last_given.index < recorded.index
