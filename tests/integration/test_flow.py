"""The whole flow on a real nats-server: consent gates, denies are logged, nothing leaks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sigbus.audit.entry import EntryOutcome
from sigbus.broker.setup import hub_setup
from sigbus.protocol.codes import (
    ActionCode,
    ConsentAction,
    ConsenterRole,
    ReferralKind,
    ReferralReason,
    StatusCode,
)
from sigbus.protocol.identity import AgencyIdentity
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import CommitmentStatus, ConsentEvent, PlanCommitment, Referral
from sigbus.protocol.signing import HybridPrivateKey
from sigbus.protocol.subjects import ingress_subject
from tests.integration.conftest import LUL6, World

P, S, SO = "police", "school", "social"


def referral(world: World) -> Referral:
    return Referral(
        kind=ReferralKind.LUL_6_NOTIFICATION,
        personnummer=world.youth,
        reasons=(ReferralReason.SUSPECTED_OFFENCE,),
        observed_on=datetime.now(UTC).date(),
        contact_function="police_youth_unit",
    )


def status(state: StatusCode = StatusCode.IN_PROGRESS) -> CommitmentStatus:
    return CommitmentStatus(
        commitment_id="cm-attendance", status=state, as_of=datetime.now(UTC).date()
    )


async def test_referral_reaches_social_services_only(world: World) -> None:
    mid = await world.adapters[P].send(
        MessageType.REFERRAL, referral(world), recipients=(SO, S), assertion=LUL6
    )
    await world.settle()
    entries = await world.entries_for(mid)
    assert entries["social"].outcome is EntryOutcome.RELEASE
    assert entries["social"].statutory is True
    assert entries["social"].legal_basis == "lul_6"
    assert entries["school"].outcome is EntryOutcome.DENY
    assert world.received_ids(SO) == [mid]
    assert world.received_ids(S) == []
    delivered = world.inboxes[SO].received[0]
    assert delivered.body.personnummer == world.youth
    assert delivered.record.log_index == entries["social"].index


async def test_consent_gates_release_and_withdrawal_stops_it(world: World) -> None:
    case = await world.open_case_with_consents()
    school = world.adapters[S]
    await school.send(
        MessageType.PLAN_COMMITMENT,
        PlanCommitment(
            commitment_id="cm-attendance",
            responsible_agency=S,
            action=ActionCode.SCHOOL_ATTENDANCE_PLAN,
            owner_function="school_counsellor",
            due_on=datetime.now(UTC).date() + timedelta(days=30),
        ),
        case_ref=case,
        recipients=(SO, P),
    )
    first = await school.send(
        MessageType.COMMITMENT_STATUS, status(), case_ref=case, recipients=(SO, P)
    )
    await world.settle()
    released = await world.entries_for(first)
    assert {r: e.outcome for r, e in released.items()} == {
        "social": EntryOutcome.RELEASE,
        "police": EntryOutcome.RELEASE,
    }
    assert {c.consent_id for c in released["police"].consent_refs} == {
        "consent-youngperson",
        "consent-guardianvh1",
        "consent-guardianvh2",
    }

    await world.adapters[SO].send(
        MessageType.CONSENT_EVENT,
        ConsentEvent(
            consent_id="consent-guardianvh2",
            action=ConsentAction.WITHDRAWN,
            consenter_role=ConsenterRole.GUARDIAN,
            guardian_ref="vh-2",
            acted_at=datetime.now(UTC),
            recorded_by="social_case_worker",
        ),
        case_ref=case,
    )
    after = await school.send(
        MessageType.COMMITMENT_STATUS, status(StatusCode.DONE), case_ref=case, recipients=(SO, P)
    )
    await world.settle()
    denied = await world.entries_for(after)
    assert {e.outcome for e in denied.values()} == {EntryOutcome.DENY}
    assert any("consent_withdrawn" in r for r in denied["police"].reasons)
    assert after not in world.received_ids(P)
    assert after not in world.received_ids(SO)
    assert first in world.received_ids(P)


async def test_message_from_unknown_key_is_denied_logged_not_delivered(world: World) -> None:
    police = world.adapters[P]
    rogue = AgencyIdentity(
        agency=P,
        signing_key=HybridPrivateKey.generate(),
        signing_key_id="police-sig-0000000000000000",
        sealing_suite=police.identity.sealing_suite,
        sealing_private=police.identity.sealing_private,
        sealing_key_id=police.identity.sealing_key_id,
    )
    police.identity = rogue
    mid = await police.send(MessageType.REFERRAL, referral(world), recipients=(SO,), assertion=LUL6)
    await world.settle()
    (entry,) = (await world.log_entries())[-1:]
    assert entry.outcome is EntryOutcome.DENY
    assert entry.reasons == ("unknown_sender_key",)
    # Nothing the unverified header claims is logged: only the publisher NATS vouches for.
    assert entry.message_id.startswith("ingress-")
    assert entry.message_id != mid
    assert (entry.sender, entry.message_type, entry.case_ref) == (P, None, None)
    assert world.received_ids(SO) == []


async def test_a_forged_header_blames_nobody_else(world: World) -> None:
    """Police publish on their own ingress subject a message claiming to be the school's,
    in another case: the deny entry names the police, and no case and no type."""
    police, school = world.adapters[P], world.adapters[S]
    case = await world.open_case_with_consents()
    forged = school.seal(MessageType.COMMITMENT_STATUS, status(), case_ref=case, recipients=(SO,))
    await police.publish_raw(
        ingress_subject(P),
        forged.to_wire(),
        forged.header.message_id,
    )
    await world.settle()
    (entry,) = (await world.log_entries())[-1:]
    assert entry.reasons == ("sender_mismatch",)
    assert (entry.sender, entry.case_ref, entry.message_type) == (P, None, None)
    assert entry.message_id != forged.header.message_id


async def test_replayed_message_id_is_denied_even_outside_the_duplicate_window(
    world: World,
) -> None:
    police = world.adapters[P]
    envelope = police.seal(MessageType.REFERRAL, referral(world), recipients=(SO,), assertion=LUL6)
    wire, mid = envelope.to_wire(), envelope.header.message_id
    subject = ingress_subject(P)
    await police.publish_raw(subject, wire, mid)
    # A replay under a fresh Nats-Msg-Id slips past JetStream's de-duplication,
    # exactly as a replay after the duplicate window would: the hub must catch it.
    await police.publish_raw(subject, wire, mid + "-replay")
    await world.settle()
    outcomes = [(e.outcome, e.reasons) for e in await world.log_entries() if e.message_id == mid]
    assert outcomes == [(EntryOutcome.RELEASE, ()), (EntryOutcome.DENY, ("replayed_message_id",))]
    assert world.received_ids(SO) == [mid]


async def test_hub_keeps_serving_after_garbage(world: World) -> None:
    police = world.adapters[P]
    await police.publish_raw(ingress_subject(P), b"\x00garbage", "msg-garbageinput")
    mid = await police.send(MessageType.REFERRAL, referral(world), recipients=(SO,), assertion=LUL6)
    await world.settle()
    entries = await world.log_entries()
    assert entries[0].outcome is EntryOutcome.DENY
    assert entries[0].reasons == ("not_json",)
    assert entries[1].message_id == mid
    assert entries[1].outcome is EntryOutcome.RELEASE
    assert world.received_ids(SO) == [mid]


async def test_no_personnummer_outside_ciphertext(world: World) -> None:
    """Log entries and every stream's raw bytes carry ids only."""
    case = await world.open_case_with_consents()
    await world.adapters[P].send(
        MessageType.REFERRAL, referral(world), recipients=(SO,), assertion=LUL6
    )
    await world.adapters[S].send(
        MessageType.COMMITMENT_STATUS, status(), case_ref=case, recipients=(SO, P)
    )
    await world.settle()
    digits = world.youth.replace("-", "")
    for entry in await world.log_entries():
        text = entry.canonical_bytes().decode()
        assert world.youth not in text
        assert digits not in text
        assert digits[2:] not in text


async def test_hub_state_survives_a_restart(world: World, keys_dir: Path) -> None:
    """Cases and consent records come back from the encrypted state stream."""
    case = await world.open_case_with_consents()
    restarted = hub_setup(keys_dir).broker(world.broker.url)
    await restarted.start()
    try:
        assert restarted.state.cases[case].facts == world.broker.state.cases[case].facts
        assert len(restarted.state.cases[case].events) == 3
        assert restarted.state.applied == world.broker.state.applied
    finally:
        await restarted.stop()
