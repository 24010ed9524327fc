"""A running adapter and a directory in which the hub and another root key holder, acting
without the agency, replaced that agency's own signing and sealing keys (issue #10).

The root threshold is met (hub and police), so only the agency's endorsement is missing:
every party refuses the new directory and keeps the one in force; the agency whose keys
were substituted raises ``security_event kind=directory_own_keys_changed_unendorsed``; it
keeps signing and opening with its pinned keys, and the hub keeps sealing to them."""

from __future__ import annotations

import os
import shutil
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from sigbus.agents.setup import agency_setup
from sigbus.audit.entry import EntryOutcome
from sigbus.protocol.codes import ActionCode, AgendaItem, PlaceCode
from sigbus.protocol.directory import carry_endorsements, parse_signed_directory, sign_directory
from sigbus.protocol.ids import HUB, MessageType
from sigbus.protocol.messages import MeetingNotice, PlanCommitment
from sigbus.transport.errors import ConfigError
from sigbus.transport.keystore import (
    DIRECTORY_FILE,
    generate_agency,
    load_directory,
    load_root_key,
    root_key_path,
)
from tests.integration.conftest import World

P, S, SO = "police", "school", "social"
OWN_ALARM = "directory_own_keys_changed_unendorsed"


@pytest.fixture
def keys_copy(keys_dir: Path, tmp_path: Path) -> Path:
    keys = Path(shutil.copytree(keys_dir, tmp_path / "keys"))
    (keys / "directory-state.json").unlink(missing_ok=True)
    return keys


def substitute_school_keys(keys: Path) -> tuple[int, str, str]:
    """What a hub with a second root key holder can do alone: school's entry replaced by
    keys they made, the next serial, signed by a root threshold, installed without
    `sigbus keys publish`. Returns the new serial and the rogue signing and sealing ids."""
    previous = parse_signed_directory((keys / DIRECTORY_FILE).read_bytes())
    now = datetime.now(UTC)
    rogue = generate_agency(S, now=now - timedelta(minutes=1))
    current = previous.directory
    substituted = current.model_copy(
        update={
            "serial": current.serial + 1,
            "issued_at": now,
            "agencies": tuple(rogue.entry if e.agency == S else e for e in current.agencies),
        }
    )
    signers = [load_root_key(root_key_path(keys, holder)) for holder in (HUB, P)]
    signed = carry_endorsements(
        previous, sign_directory(substituted, previous.roots, signers, onto=None)
    )
    tmp = keys / "directory.json.tmp"
    tmp.write_text(signed.model_dump_json(indent=2) + "\n")
    os.replace(tmp, keys / DIRECTORY_FILE)
    return substituted.serial, rogue.keyfile.signing_key_id, rogue.keyfile.sealing_key_id


def plan() -> PlanCommitment:
    return PlanCommitment(
        commitment_id="cm-attendance",
        responsible_agency=S,
        action=ActionCode.SCHOOL_ATTENDANCE_PLAN,
        owner_function="school_counsellor",
        due_on=datetime.now(UTC).date() + timedelta(days=30),
    )


def meeting() -> MeetingNotice:
    return MeetingNotice(
        meeting_at=datetime.now(UTC), place=PlaceCode.VIDEO, agenda=(AgendaItem.PLAN_REVIEW,)
    )


async def test_a_running_adapter_alarms_on_its_own_unendorsed_key_change_and_keeps_its_keys(
    make_world: Callable[[Path], Awaitable[World]], keys_copy: Path
) -> None:
    world = await make_world(keys_copy)
    school = world.adapters[S]
    pinned = school.identity
    in_force = school.directory.serial
    case = await world.open_case_with_consents()

    serial, rogue_sig, rogue_seal = substitute_school_keys(keys_copy)
    # The root threshold alone verifies it: only school's endorsement is missing.
    assert load_directory(keys_copy).serial == serial == in_force + 1
    assert rogue_seal != pinned.sealing_key_id
    assert rogue_sig != pinned.signing_key_id

    with structlog.testing.capture_logs() as logs:
        from_school = await school.send(
            MessageType.PLAN_COMMITMENT, plan(), case_ref=case, recipients=(SO,)
        )
        to_school = await world.adapters[SO].send(
            MessageType.MEETING_NOTICE, meeting(), case_ref=case, recipients=(S,)
        )
        await world.settle()

    # School's own alarm, once, naming the refused serial and the one kept in force.
    alarms = [e for e in logs if e.get("kind") == OWN_ALARM]
    assert alarms == [
        {
            "event": "security_event",
            "log_level": "error",
            "kind": OWN_ALARM,
            "agency": S,
            "serial": serial,
            "current_serial": in_force,
        }
    ]
    # Every party that looked (school, social, the hub) refused it; none reloaded it.
    refusals = [e for e in logs if e.get("kind") == "unendorsed_key_change"]
    assert len(refusals) >= 3
    assert all(e["agencies"] == [S] for e in refusals)
    assert not [e for e in logs if e["event"] == "directory_reloaded"]

    # School keeps the directory in force, with its own pinned keys in it ...
    assert school.directory.serial == in_force
    assert school.directory.sealing_key(S, at=datetime.now(UTC)).key_id == pinned.sealing_key_id
    assert school.identity == pinned
    # ... signs with its pinned key, and the hub (also refusing) accepts it ...
    assert (await world.entries_for(from_school))[SO].outcome is EntryOutcome.RELEASE
    assert from_school in world.received_ids(SO)
    # ... and the hub sealed the release to school's pinned key, not the substituted one,
    # which school opened.
    assert (await world.entries_for(to_school))[S].outcome is EntryOutcome.RELEASE
    assert to_school in world.received_ids(S)
    delivered = next(d for d in world.inboxes[S].received if d.header.message_id == to_school)
    assert delivered.record.recipient_key_id == pinned.sealing_key_id

    # A restarted school adapter refuses to start on it, with the same alarm: the
    # directory it trusted (and school's keys in it) was persisted.
    with structlog.testing.capture_logs() as logs, pytest.raises(ConfigError) as refused:
        agency_setup(S, keys_copy)
    assert "changes the keys of school without that agency's endorsement" in str(refused.value)
    assert [e["serial"] for e in logs if e.get("kind") == OWN_ALARM] == [serial]
