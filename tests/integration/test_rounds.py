"""A round of messages decided together (issue 11): plans made side by side on
worker threads are kept only when no earlier decision of the round changed what
they rest on."""

from __future__ import annotations

from datetime import UTC, datetime

from sigbus.agents.social.consent import consents_of_everyone
from sigbus.audit.entry import EntryOutcome
from sigbus.protocol.ids import MessageType, new_opaque_id
from sigbus.protocol.messages import CaseOpened
from sigbus.protocol.subjects import ingress_subject
from sigbus.transport.keystore import DEV_AGENCIES
from tests.integration.conftest import CONSENT_CATEGORIES, World
from tests.integration.test_flow import status

P, S, SO = "police", "school", "social"


async def test_a_round_sees_the_case_and_consents_decided_earlier_in_it(world: World) -> None:
    """Case, consents and a status queued together: one round, and the status is
    released, since it is decided on the state the hub records before it left."""
    social, school = world.adapters[SO], world.adapters[S]
    case = new_opaque_id("case", 12)
    await social.send(
        MessageType.CASE_OPENED,
        CaseOpened(
            personnummer=world.youth, guardians_with_custody=("vh-1",), parties=DEV_AGENCIES
        ),
        case_ref=case,
    )
    events = consents_of_everyone(
        ("vh-1",), parties=DEV_AGENCIES, categories=CONSENT_CATEGORIES, now=datetime.now(UTC)
    )
    for event in events:
        await social.send(MessageType.CONSENT_EVENT, event, case_ref=case)
    sent = [
        await school.send(
            MessageType.COMMITMENT_STATUS, status(), case_ref=case, recipients=(SO, P)
        )
        for _ in range(6)
    ]
    assert await world.broker.process_batch(timeout=1.0) >= 3  # several in one round
    await world.settle()
    entries = await world.log_entries()
    outcomes = {e.outcome for e in entries if e.message_id in sent}
    assert outcomes == {EntryOutcome.RELEASE}


async def test_the_same_message_twice_in_one_round_is_a_replay(world: World) -> None:
    school = world.adapters[S]
    case = await world.open_case_with_consents()
    envelope = school.seal(
        MessageType.COMMITMENT_STATUS, status(), case_ref=case, recipients=(SO, P)
    )
    mid = envelope.header.message_id
    for copy in range(4):  # past JetStream's duplicate check: other Nats-Msg-Ids
        await school.js.publish(
            ingress_subject(S), envelope.to_wire(), headers={"Nats-Msg-Id": f"{mid}-{copy}"}
        )
    await world.settle()
    entries = [e for e in await world.log_entries() if e.message_id == mid]
    released = [e for e in entries if e.outcome is EntryOutcome.RELEASE]
    replays = [e for e in entries if e.reasons == ("replayed_message_id",)]
    assert len(released) == 2  # once, to each recipient
    assert len({e.ingress_seq for e in released}) == 1
    assert len(replays) == 3
    assert world.received_ids(P).count(mid) == 1
