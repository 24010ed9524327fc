"""A real exchange on a real nats-server: what the bus carried validates against the
published schemas (docs/schemas), on the wire and once opened."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from sigbus.contracts import contracts
from sigbus.protocol.codes import ActionCode, AgendaItem, PlaceCode, ReferralKind, ReferralReason
from sigbus.protocol.contracts import SCHEMA_DIR
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import MeetingNotice, PlanCommitment, Referral
from sigbus.protocol.subjects import INBOX_STREAM
from tests.integration.conftest import LUL6, World, make_world, world  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.integration


def _validators() -> dict[str, jsonschema.Draft202012Validator]:
    """The committed files, not the generator: they are what other systems read."""
    out = {}
    for contract in contracts():
        path = ROOT / SCHEMA_DIR / f"{contract.name}.schema.json"
        out[contract.name] = jsonschema.Draft202012Validator(
            json.loads(path.read_text(encoding="utf-8"))
        )
    return out


def _errors(validator: jsonschema.Draft202012Validator, doc: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.validator}" for e in validator.iter_errors(doc)]


async def test_a_real_exchange_validates_against_the_schemas(world: World) -> None:  # noqa: F811
    case = await world.open_case_with_consents()
    today = datetime.now(UTC).date()
    await world.adapters["police"].send(
        MessageType.REFERRAL,
        Referral(
            kind=ReferralKind.LUL_6_NOTIFICATION,
            personnummer=world.youth,
            reasons=(ReferralReason.SUSPECTED_OFFENCE,),
            observed_on=today,
            contact_function="police_youth_unit",
        ),
        recipients=("social",),
        assertion=LUL6,
    )
    await world.adapters["school"].send(
        MessageType.PLAN_COMMITMENT,
        PlanCommitment(
            commitment_id="cm-schoolattendance",
            responsible_agency="school",
            action=ActionCode.SCHOOL_ATTENDANCE_PLAN,
            owner_function="school_counsellor",
            due_on=today + timedelta(days=30),
        ),
        case_ref=case,
        recipients=("social", "police"),
    )
    await world.adapters["social"].send(
        MessageType.MEETING_NOTICE,
        MeetingNotice(
            meeting_at=datetime.now(UTC) + timedelta(days=7),
            place=PlaceCode.SOCIAL_SERVICES_OFFICE,
            agenda=(AgendaItem.PLAN_REVIEW,),
        ),
        case_ref=case,
        recipients=("police", "school"),
    )
    await world.settle()
    validators = _validators()

    # On the wire: every release in the inbox stream, and the sender's envelope in it.
    info = await world.broker.js.stream_info(INBOX_STREAM)
    wire = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        stored = await world.broker.js.get_msg(INBOX_STREAM, seq)
        wire.append(json.loads(stored.data or b""))
    assert len(wire) >= 5
    notices = [item for item in wire if item.get("kind") == "decision_notice"]
    assert notices  # each sender's notices share its inbox with releases
    for notice in notices:
        assert _errors(validators["decision_notice"], notice) == []
    wire = [item for item in wire if item.get("kind") != "decision_notice"]
    for release in wire:
        assert _errors(validators["release"], release) == []
        assert _errors(validators["envelope"], release["envelope"]) == []
        assert _errors(validators["release_record"], release["record"]) == []

    # Opened by the recipients: each body against the schema its signed header names.
    delivered = [d for inbox in world.inboxes.values() for d in inbox.received]
    assert {d.header.type for d in delivered} == {
        MessageType.REFERRAL,
        MessageType.PLAN_COMMITMENT,
        MessageType.MEETING_NOTICE,
    }
    assert len(delivered) == len(wire)
    for d in delivered:
        body = d.body.model_dump(mode="json")
        assert _errors(validators[d.header.type.value], body) == [], d.header.type

    # The disclosure log, as an auditor reads it.
    entries = await world.log_entries()
    assert len(entries) > len(wire)  # hub records and releases alike
    for entry in entries:
        assert _errors(validators["log_entry"], entry.model_dump(mode="json")) == []

    # And a tampered release is refused by the same schema.
    tampered = {**wire[0], "record": {**wire[0]["record"], "log_index": -1}}
    assert _errors(validators["release"], tampered) != []
