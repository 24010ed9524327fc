"""The SIG case life cycle as hub state (issue 13), on a real nats-server.

Selection, consent collection per required consenter, active, paused, closed:
every transition is a hub record in the log bound to the hub state, and closing a
case stops all sharing about it, statutory or not, with ``case_closed``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from sigbus.agents.social.consent import consent_withdrawn, consents_of_everyone
from sigbus.audit.entry import EntryOutcome
from sigbus.broker.errors import StateCorruptError
from sigbus.broker.setup import hub_setup
from sigbus.policy.lifecycle import CaseStatus, ConsentState, case_status, consent_collection
from sigbus.protocol.codes import (
    AgendaItem,
    AssessmentInstrument,
    ClosureReason,
    ConsenterRole,
    PlaceCode,
)
from sigbus.protocol.ids import MessageType, new_opaque_id
from sigbus.protocol.messages import (
    AssessmentRef,
    CaseClosed,
    CaseOpened,
    CaseSelected,
    MeetingNotice,
    StatutoryAssertion,
)
from sigbus.protocol.subjects import STATE_STREAM, STATE_SUBJECT
from sigbus.transport.bus import connect, ensure_streams, read_stream
from sigbus.transport.keystore import DEV_AGENCIES
from tests.integration.conftest import CONSENT_CATEGORIES, World
from tests.integration.test_decision_notice_cli import EXIT_DENIED, cli
from tests.integration.test_state_bound import check_state, dumps

P, S, SO = "police", "school", "social"


def status_of(world: World, case: str) -> tuple[CaseStatus, dict[str, ConsentState]]:
    record = world.broker.state.cases[case]
    now = datetime.now(UTC)
    consenters = consent_collection(record.policy_state(), world.broker.ctx.rules, now=now)
    status = case_status(
        selected=record.selection is not None,
        closed=record.closure is not None,
        consenters=consenters,
    )
    return status, {c.consenter: c.state for c in consenters}


async def send_and_settle(
    world: World, message_type: MessageType, body: object, **kw: object
) -> str:
    message_id = await world.adapters[SO].send(message_type, body, **kw)  # type: ignore[arg-type]
    await world.settle()
    return message_id


def meeting() -> MeetingNotice:
    return MeetingNotice(
        meeting_at=datetime.now(UTC).replace(microsecond=0),
        place=PlaceCode.SCHOOL,
        agenda=(AgendaItem.PLAN_REVIEW,),
    )


async def test_the_life_cycle_is_hub_state_and_closing_stops_all_sharing(
    world: World, keys_dir: Path
) -> None:
    case = new_opaque_id("case", 12)
    opened = await send_and_settle(
        world,
        MessageType.CASE_OPENED,
        CaseOpened(
            personnummer=world.youth, guardians_with_custody=("vh-1", "vh-2"), parties=DEV_AGENCIES
        ),
        case_ref=case,
    )
    assert status_of(world, case)[0] is CaseStatus.AWAITING_SELECTION

    selected = await send_and_settle(
        world,
        MessageType.CASE_SELECTED,
        CaseSelected(
            assessment=AssessmentRef(instrument=AssessmentInstrument.SAVRY, assessment_id="as-k12"),
            decided_by="social_sig_coordinator",
        ),
        case_ref=case,
    )
    status, consenters = status_of(world, case)
    assert status is CaseStatus.CONSENT_COLLECTION
    # A minor: the young person and every vårdnadshavare, none of whom has consented yet.
    assert consenters == {
        "young_person": ConsentState.MISSING,
        "guardian:vh-1": ConsentState.MISSING,
        "guardian:vh-2": ConsentState.MISSING,
    }
    selection = world.broker.state.cases[case].selection
    assert selection is not None
    assert (selection.instrument, selection.assessment_id) == (AssessmentInstrument.SAVRY, "as-k12")

    # Selecting twice is refused, precisely.
    again = await send_and_settle(
        world, MessageType.CASE_SELECTED, CaseSelected(decided_by="social_case_worker"),
        case_ref=case,
    )  # fmt: skip
    assert (await world.entries_for(again))["-"].reasons == ("case_already_selected",)

    events = consents_of_everyone(
        ("vh-1", "vh-2"), parties=DEV_AGENCIES, categories=CONSENT_CATEGORIES,
        now=datetime.now(UTC),
    )  # fmt: skip
    for event in events[:2]:
        await send_and_settle(world, MessageType.CONSENT_EVENT, event, case_ref=case)
    status, consenters = status_of(world, case)
    assert status is CaseStatus.CONSENT_COLLECTION
    assert consenters["guardian:vh-2"] is ConsentState.MISSING
    assert consenters["guardian:vh-1"] is ConsentState.GIVEN

    await send_and_settle(world, MessageType.CONSENT_EVENT, events[2], case_ref=case)
    assert status_of(world, case)[0] is CaseStatus.ACTIVE
    record = world.broker.state.cases[case]
    until = consent_collection(record.policy_state(), world.broker.ctx.rules, now=datetime.now(UTC))
    assert {c.valid_until for c in until} == {events[0].scope.valid_until}  # type: ignore[union-attr]

    await send_and_settle(
        world,
        MessageType.CONSENT_EVENT,
        consent_withdrawn(
            events[2].consent_id, ConsenterRole.GUARDIAN, "vh-2", acted_at=datetime.now(UTC)
        ),
        case_ref=case,
    )
    status, consenters = status_of(world, case)
    assert (status, consenters["guardian:vh-2"]) == (CaseStatus.PAUSED, ConsentState.WITHDRAWN)

    # Renewed consent: active again; then sharing works, right up to the closure.
    renewed = consents_of_everyone(
        ("vh-2",), parties=DEV_AGENCIES, categories=CONSENT_CATEGORIES, now=datetime.now(UTC)
    )[1].model_copy(update={"consent_id": "consent-guardianvhtwo-renewed"})
    await send_and_settle(world, MessageType.CONSENT_EVENT, renewed, case_ref=case)
    assert status_of(world, case)[0] is CaseStatus.ACTIVE
    before = await send_and_settle(
        world, MessageType.MEETING_NOTICE, meeting(), case_ref=case, recipients=(S,)
    )
    assert (await world.entries_for(before))[S].outcome is EntryOutcome.RELEASE

    closed = await send_and_settle(
        world,
        MessageType.CASE_CLOSED,
        CaseClosed(reason=ClosureReason.PLAN_COMPLETED, closed_by="social_sig_coordinator"),
        case_ref=case,
    )
    assert status_of(world, case)[0] is CaseStatus.CLOSED
    closure = world.broker.state.cases[case].closure
    assert closure is not None
    assert closure.reason is ClosureReason.PLAN_COMPLETED

    # Every transition is a hub record bound to the state.
    for message_id, kind in [
        (opened, MessageType.CASE_OPENED),
        (selected, MessageType.CASE_SELECTED),
        (closed, MessageType.CASE_CLOSED),
    ]:
        entry = (await world.entries_for(message_id))["hub"]
        assert (entry.outcome, entry.message_type) == (EntryOutcome.RECORDED, kind)
        assert entry.state_sha256 is not None

    # After the closure nothing about the case goes anywhere, on consent or on a statute.
    denied = {
        "meeting": await send_and_settle(
            world, MessageType.MEETING_NOTICE, meeting(), case_ref=case, recipients=(S, P)
        ),
        "statutory": await send_and_settle(
            world, MessageType.MEETING_NOTICE, meeting(), case_ref=case, recipients=(P,),
            assertion=StatutoryAssertion(basis="osl_10_18a", evidence_id="ra-after-close"),
        ),
        "consent": await send_and_settle(
            world, MessageType.CONSENT_EVENT,
            renewed.model_copy(update={"consent_id": "consent-after-close"}), case_ref=case,
        ),
        "select": await send_and_settle(
            world, MessageType.CASE_SELECTED, CaseSelected(decided_by="social_case_worker"),
            case_ref=case,
        ),
        "close": await send_and_settle(
            world, MessageType.CASE_CLOSED,
            CaseClosed(reason=ClosureReason.MOVED_AWAY, closed_by="social_case_worker"),
            case_ref=case,
        ),
    }  # fmt: skip
    for what, message_id in denied.items():
        entries = await world.entries_for(message_id)
        assert [(e.outcome, e.reasons) for e in entries.values()] == [
            (EntryOutcome.DENY, ("case_closed",))
        ], what
        assert message_id not in world.received_ids(S) + world.received_ids(P)
    assert world.broker.state.cases[case].closure == closure  # the second close changed nothing

    # A withdrawal is still recorded after closure: it only narrows.
    late = await send_and_settle(
        world,
        MessageType.CONSENT_EVENT,
        consent_withdrawn(
            "consent-youngperson", ConsenterRole.YOUNG_PERSON, None, acted_at=datetime.now(UTC)
        ),
        case_ref=case,
    )
    assert (await world.entries_for(late))["hub"].outcome is EntryOutcome.RECORDED

    # The closure survives a restart of the hub.
    restarted = hub_setup(keys_dir).broker(world.broker.url)
    await restarted.start()
    try:
        assert restarted.state.cases[case].closure == closure
        assert restarted.state.cases[case].selection == selection
    finally:
        await restarted.stop()


async def test_a_dropped_closure_stops_the_hub_and_check_state_finds_it(
    world: World, keys_dir: Path, tmp_path: Path
) -> None:
    """An operator who deletes the closure record to let sharing resume is caught."""
    case = await world.open_case_with_consents()
    await send_and_settle(
        world, MessageType.CASE_SELECTED, CaseSelected(decided_by="social_case_worker"),
        case_ref=case,
    )  # fmt: skip
    closed = await send_and_settle(
        world, MessageType.CASE_CLOSED,
        CaseClosed(reason=ClosureReason.CONSENT_ENDED, closed_by="social_case_worker"),
        case_ref=case,
    )  # fmt: skip
    await world.broker.checkpointer.publish()
    code, report = check_state(*await dumps(world, keys_dir, tmp_path, "before"))
    assert (code, report["findings"]) == (0, [])
    assert report["state_records"] == report["bound_entries"] == 6

    await world.broker.stop()
    nc = await connect(world.broker.url, name="test-operator", creds=hub_setup(keys_dir).creds)
    try:
        js = nc.jetstream()
        records = [
            ((m.headers or {})["Nats-Msg-Id"], bytes(m.data))
            async for m in read_stream(js, STATE_STREAM, STATE_SUBJECT)
        ]
        await js.delete_stream(STATE_STREAM)
        await ensure_streams(js)
        for message_id, data in records:
            if message_id != closed:
                await js.publish(
                    STATE_SUBJECT, data, stream=STATE_STREAM, headers={"Nats-Msg-Id": message_id}
                )
    finally:
        await nc.close()
    broker = hub_setup(keys_dir).broker(world.broker.url)
    with pytest.raises(StateCorruptError, match="dropped"):
        await broker.start()
    await broker.stop()
    code, report = check_state(*await dumps(world, keys_dir, tmp_path, "after"))
    assert code == 1
    assert [(f["fault"], f["message_id"]) for f in report["findings"]] == [("dropped", closed)]


async def test_select_and_close_through_the_cli(world: World, keys_dir: Path) -> None:
    case = await world.open_case_with_consents()
    selected = await cli(
        world, keys_dir, "social", "case", "select", "--case", case,
        "--instrument", "ester", "--assessment-id", "as-ester-k7",
    )  # fmt: skip
    assert selected.code == 0, selected
    assert "confirmed by the hub" in selected.out
    half = await cli(world, keys_dir, "social", "case", "select", "--case", case,
                     "--instrument", "bbic")  # fmt: skip
    assert half.code == 2, half
    assert "--instrument and --assessment-id go together" in half.err
    closed = await cli(
        world, keys_dir, "social", "case", "close", "--case", case, "--reason", "moved_away"
    )
    assert closed.code == 0, closed
    record = world.broker.state.cases[case]
    assert record.closure is not None
    assert record.closure.reason is ClosureReason.MOVED_AWAY
    after = await cli(
        world, keys_dir, "social", "meeting", "--case", case, "--at",
        datetime.now(UTC).isoformat(), "school", "--agenda", "closing", "--to", S,
    )  # fmt: skip
    assert after.code == EXIT_DENIED, after
    assert "case_closed" in after.out
