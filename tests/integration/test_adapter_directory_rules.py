"""A running adapter on a live bus and the directories a hub may try on it (issue #10).

- Rolled back: a validly signed older directory put back is refused (``directory_rollback``)
  and the newer one stays in force.
- Frozen: the hub stops publishing and the directory in force runs out; the adapter raises
  ``security_event kind=directory_expired`` (the hub stops deciding, test_directory_expiry).
- Substituted: a tampered hub puts a sealing key of its own in school's entry, signed by
  the hub's root share alone, or by a root threshold but without school's endorsement.
  Police refuses it with the precise reason, keeps sealing to the hub key in force, and
  nothing anywhere is sealed to the substituted key.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import structlog

from sigbus.protocol.codes import ActionCode
from sigbus.protocol.directory import carry_endorsements, parse_signed_directory, sign_directory
from sigbus.protocol.ids import HUB, AgencyId, MessageType, new_opaque_id
from sigbus.protocol.messages import PlanCommitment
from sigbus.protocol.release import Release
from sigbus.transport.keystore import (
    DIRECTORY_FILE,
    generate_agency,
    load_directory,
    load_root_key,
    load_root_private,
    root_key_path,
    save_directory,
)
from tests.integration.conftest import World
from tests.integration.test_own_keys_unendorsed import meeting, plan

P, S = "police", "school"
CASE = new_opaque_id("case", 12)


@pytest.fixture
def keys_copy(keys_dir: Path, tmp_path: Path) -> Path:
    keys = Path(shutil.copytree(keys_dir, tmp_path / "keys"))
    (keys / "directory-state.json").unlink(missing_ok=True)
    return keys


def police_plan() -> PlanCommitment:
    return plan().model_copy(
        update={
            "responsible_agency": P,
            "action": ActionCode.POLICE_CONTACT_PERSON,
            "owner_function": "police_youth_unit",
        }
    )


def _touch_later(path: Path, step: int) -> None:
    """A new mtime, so the watcher sees a file of the same size as changed."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + step * 1_000_000_000))


def substitute_school_sealing_key(keys: Path, holders: tuple[AgencyId, ...], step: int) -> str:
    """School's entry replaced by keys the hub made, at the next serial, signed by the root
    keys of ``holders`` only and installed in place. Returns the substituted sealing key id."""
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
    signers = [load_root_key(root_key_path(keys, holder)) for holder in holders]
    signed = carry_endorsements(
        previous, sign_directory(substituted, previous.roots, signers, onto=None)
    )
    (keys / DIRECTORY_FILE).write_text(signed.model_dump_json(indent=2) + "\n")
    _touch_later(keys / DIRECTORY_FILE, step)
    return rogue.keyfile.sealing_key_id


async def test_a_running_adapter_refuses_a_rollback_and_alarms_on_a_frozen_directory(
    make_world: Callable[[Path], Awaitable[World]], keys_copy: Path
) -> None:
    world = await make_world(keys_copy)
    police = world.adapters[P]
    old = (keys_copy / DIRECTORY_FILE).read_bytes()
    now = datetime.now(UTC)
    newer = load_directory(keys_copy).model_copy(
        update={
            "serial": police.directory.serial + 1,
            "issued_at": now,
            "expires_at": now + timedelta(seconds=2),
        }
    )
    save_directory(keys_copy, newer, load_root_private(keys_copy))
    _touch_later(keys_copy / DIRECTORY_FILE, 1)
    police.seal(MessageType.MEETING_NOTICE, meeting(), case_ref=CASE, recipients=(S,))
    assert police.directory.serial == newer.serial  # a valid newer one is taken while running

    (keys_copy / DIRECTORY_FILE).write_bytes(old)  # validly signed, by the same root
    _touch_later(keys_copy / DIRECTORY_FILE, 2)
    with structlog.testing.capture_logs() as logs:
        police.seal(MessageType.MEETING_NOTICE, meeting(), case_ref=CASE, recipients=(S,))
    assert [e["kind"] for e in logs if e["event"] == "security_event"] == ["directory_rollback"]
    assert police.directory.serial == newer.serial

    await asyncio.sleep(max(0.0, (newer.expires_at - datetime.now(UTC)).total_seconds()) + 0.1)
    with structlog.testing.capture_logs() as logs:
        police.seal(MessageType.MEETING_NOTICE, meeting(), case_ref=CASE, recipients=(S,))
    assert [e for e in logs if e["event"] == "security_event"] == [
        {
            "event": "security_event",
            "log_level": "error",
            "kind": "directory_expired",
            "serial": newer.serial,
        }
    ]


async def test_a_tampered_hub_cannot_make_police_seal_to_a_substituted_school_key(
    make_world: Callable[[Path], Awaitable[World]], keys_copy: Path
) -> None:
    world = await make_world(keys_copy)
    police, school = world.adapters[P], world.adapters[S]
    in_force = police.directory
    hub_key = in_force.sealing_key(HUB, at=datetime.now(UTC)).key_id
    pinned_school = school.identity.sealing_key_id
    case = await world.open_case_with_consents()

    attempts = [((HUB,), "root_threshold_not_met"), ((HUB, P), "unendorsed_key_change")]
    rogue_keys = []
    for step, (holders, reason) in enumerate(attempts, start=1):
        rogue = substitute_school_sealing_key(keys_copy, holders, step)
        rogue_keys.append(rogue)
        with structlog.testing.capture_logs() as logs:
            envelope = police.seal(
                MessageType.PLAN_COMMITMENT, police_plan(), case_ref=case, recipients=(S,)
            )
            sent = await police.send(
                MessageType.PLAN_COMMITMENT, police_plan(), case_ref=case, recipients=(S,)
            )
            await world.settle()
        # Police refused it, with the precise reason, and kept the directory in force ...
        # (school's own alarm on its substituted keys is test_own_keys_unendorsed's).
        refusals = [
            e
            for e in logs
            if e["event"] == "security_event"
            and e["kind"] != "directory_own_keys_changed_unendorsed"
        ]
        assert refusals
        assert {e["kind"] for e in refusals} == {reason}, refusals
        assert police.directory == in_force
        # ... so it seals only to the hub's key in force, never to the substituted one ...
        assert envelope.sealed_key_id == hub_key != rogue
        # ... and what reached school was sealed to school's pinned key.
        delivered = next(d for d in world.inboxes[S].received if d.header.message_id == sent)
        assert delivered.record.recipient_key_id == pinned_school != rogue

    sealed_to = {r.record.recipient_key_id for r in await world.inbox_items(Release)}
    assert sealed_to
    assert not sealed_to & set(rogue_keys)
