"""A partner that appears nowhere in the code joins a running SIG by configuration only.

The hub, the NATS server and the three development adapters are already running
when the municipality's youth recreation centre joins: its keys are made and added
to the signed directory, its profile is dropped into the profiles folder, and the
server reloads its users. Nobody restarts, and the adapters that never heard of it
accept its releases.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from sigbus.agents.setup import agency_setup
from sigbus.broker.setup import PROFILES_POLL_S, hub_setup
from sigbus.protocol.codes import ActionCode, AgendaItem, PlaceCode
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import MeetingNotice, PlanCommitment
from sigbus.transport.keystore import DEV_AGENCIES, DEV_KEYS_DIR, join_dev_agency
from sigbus.transport.natsserver import EmbeddedNats
from tests.integration.conftest import World

NEWCOMER = "fritidsgarden"
PROFILE = """
name = "fritidsgarden"
display_name = { sv = "Fritidsgården", en = "Youth recreation centre" }
sends = ["plan_commitment", "commitment_status"]
actions = ["leisure_activity", "mentor"]

[functions]
fritidsgarden_youth_leader = { sv = "Fritidsledare", en = "Youth leader" }
"""


def test_the_newcomer_is_named_nowhere_in_the_code() -> None:
    root = Path(__file__).resolve().parents[2]
    tracked = subprocess.run(
        ["git", "grep", "-l", "-i", NEWCOMER, "--", "*.py", "*.toml", ":!tests"],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert tracked.returncode == 1, tracked.stdout  # 1: no match anywhere outside tests/


async def test_a_new_partner_joins_a_running_sig_without_code_or_restarts(
    tmp_path: Path,
) -> None:
    keys = tmp_path / "keys"
    shutil.copytree(DEV_KEYS_DIR, keys)
    with EmbeddedNats(tmp_path / "nats", keys_dir=keys) as server:
        broker = hub_setup(keys).broker(server.url)
        await broker.start()
        adapters = {a: await agency_setup(a, keys).connect(server.url) for a in DEV_AGENCIES}
        world = World(broker, adapters)
        try:
            # Agency IT at the centre generates keys; the hub adds them; the server reloads.
            join_dev_agency(keys, NEWCOMER, now=datetime.now(UTC))
            server.reload()
            await asyncio.sleep(0.5)
            world.adapters[NEWCOMER] = await agency_setup(NEWCOMER, keys).connect(server.url)
            case = await world.open_case_with_consents(parties=(*DEV_AGENCIES, NEWCOMER))

            async def commit() -> str:
                return await world.adapters[NEWCOMER].send(
                    MessageType.PLAN_COMMITMENT,
                    PlanCommitment(
                        commitment_id="cm-leisure",
                        responsible_agency=NEWCOMER,
                        action=ActionCode.LEISURE_ACTIVITY,
                        owner_function="fritidsgarden_youth_leader",
                        due_on=datetime.now(UTC).date(),
                    ),
                    case_ref=case,
                    recipients=("social", "police", "school"),
                )

            # Listed, but no profile yet: what it may send is unknown, so nothing is.
            early = await commit()
            await world.settle()
            denied = await world.entries_for(early)
            assert {e.outcome.value for e in denied.values()} == {"deny"}
            assert {e.reasons for e in denied.values()} == {("sender_not_allowed",)}
            # The profile lands: the hub picks it up without a restart.
            (keys / "profiles").mkdir()
            (keys / "profiles" / f"{NEWCOMER}.toml").write_text(PROFILE)
            await asyncio.sleep(PROFILES_POLL_S + 0.2)  # the hub looks once a second at most
            commitment = await commit()
            notice = await world.adapters["social"].send(
                MessageType.MEETING_NOTICE,
                MeetingNotice(
                    meeting_at=datetime.now(UTC),
                    place=PlaceCode.VIDEO,
                    agenda=(AgendaItem.PLAN_REVIEW,),
                ),
                case_ref=case,
                recipients=(NEWCOMER,),
            )
            await world.settle()

            entries = await world.entries_for(commitment)
            assert {r: e.outcome.value for r, e in entries.items()} == {
                "social": "release",
                "police": "release",
                "school": "release",
            }
            for old in DEV_AGENCIES:
                assert commitment in world.received_ids(old), old
            assert world.received_ids(NEWCOMER) == [notice]
            delivered = world.inboxes[NEWCOMER].received[0]
            assert delivered.record.legal_basis == "osl_12_2"
        finally:
            for adapter in world.adapters.values():
                await adapter.close()
            await broker.stop()


def test_the_command_line_offers_the_newcomer_its_commands(tmp_path: Path) -> None:
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / f"{NEWCOMER}.toml").write_text(PROFILE)
    env = {**os.environ, "SIGBUS_PROFILES_DIR": str(tmp_path / "profiles")}
    shown = subprocess.run(
        [sys.executable, "-m", "sigbus", NEWCOMER, "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    for command in ("inbox", "serve", "commit", "status"):
        assert command in shown.stdout
    assert "refer" not in shown.stdout  # its profile sends no referrals
    assert "Fritidsgården" in shown.stdout
