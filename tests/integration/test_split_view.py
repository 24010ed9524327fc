"""Split view on a real server: the hub shows two agencies two different logs.

The hub here is a simulated hostile operator with the hub's own credentials and
log key: it signs a second checkpoint of the same size with another root and, by
fetching and acking from the witness consumers it owns, lets police see only the
honest checkpoint and school only the forged one. Neither witness can tell from
its own stream; their gossip (agency to agency, transport/natsauth.py) does.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from nats.aio.msg import Msg
from structlog.testing import capture_logs
from typer.testing import CliRunner

from sigbus.agents.witnessing import WitnessRunner
from sigbus.audit.checkpoint import (
    DEFAULT_ORIGIN,
    make_checkpoint_body,
    note_body,
    sign_note,
    verify_cosignature,
)
from sigbus.broker.setup import hub_setup
from sigbus.cli_audit import audit_app
from sigbus.protocol.ids import AgencyId, MessageType
from sigbus.protocol.proofs import CheckpointGossip
from sigbus.protocol.subjects import (
    CHECKPOINT_STREAM,
    CHECKPOINT_SUBJECT,
    gossip_subject,
    witness_consumer,
)
from sigbus.transport.keystore import DIRECTORY_FILE, ROOT_FILE
from tests.integration.conftest import LUL6, World
from tests.integration.test_audit_log import referral

P, S, SO = "police", "school", "social"


async def swallow(world: World, agency: AgencyId) -> int:
    """The hub fetches and acks what waits for ``agency``'s witness: it never sees it."""
    sub = await world.broker.js.pull_subscribe_bind(witness_consumer(agency), CHECKPOINT_STREAM)
    taken = 0
    try:
        while True:
            try:
                msgs = await sub.fetch(50, timeout=0.3)
            except TimeoutError:
                return taken
            for msg in msgs:
                await msg.ack_sync()
                taken += 1
    finally:
        await sub.unsubscribe()


async def test_gossip_catches_a_hub_that_shows_two_agencies_two_logs(
    world: World, tmp_path: Path, keys_dir: Path
) -> None:
    await world.adapters[P].send(
        MessageType.REFERRAL, referral(world), recipients=(SO,), assertion=LUL6
    )
    await world.settle()
    await world.broker.checkpointer.publish(force=True)
    size = world.broker.writer.size
    police = WitnessRunner(world.adapters[P], state_path=tmp_path / "witness-police.json")
    school = WitnessRunner(world.adapters[S], state_path=tmp_path / "witness-school.json")

    assert await swallow(world, S) >= 1  # school never sees the honest checkpoint
    await police.run_once(timeout=0.3)
    assert set(police.cosigned) == {size}
    forged = sign_note(
        make_checkpoint_body(DEFAULT_ORIGIN, size, b"\x07" * 32),
        DEFAULT_ORIGIN,
        hub_setup(keys_dir).log_key,
    )
    await world.broker.js.publish(CHECKPOINT_SUBJECT, forged.encode(), stream=CHECKPOINT_STREAM)
    assert await swallow(world, P) == 1  # and police never sees the forged one

    with capture_logs() as logs:
        await school.run_once(timeout=0.3)  # first view: the forged one, cosigned (TOFU)
        assert school.cosigned == [size]
        assert school.alarms == []  # on its own stream, nothing looks wrong
        await asyncio.sleep(0.2)
        await police.run_once(timeout=0.3)  # hears school's view
        await asyncio.sleep(0.2)
        await school.run_once(timeout=0.3)  # hears police's view
    assert len(police.alarms) == 1
    assert len(school.alarms) == 1
    forks = [e for e in logs if e.get("kind") == "log_fork_detected"]
    assert sorted((e["agency"], e["peer"]) for e in forks) == [(P, S), (S, P)]
    for event in forks:
        assert event["log_level"] == "error"
        assert (event["first_size"], event["second_size"], event["source"]) == (
            size,
            size,
            "gossip",
        )
        assert all(forged not in str(value) for value in event.values())  # sizes, never notes

    # The evidence police saved verifies offline against the pinned root and directory.
    out = tmp_path / "fork.json"
    runner = CliRunner()
    exported = runner.invoke(
        audit_app,
        ["fork-evidence", "export", "--witness-state", str(police.state_path), "--out", str(out)],
    )
    assert exported.exit_code == 0, exported.output
    trusted = [
        "--directory",
        str(keys_dir / DIRECTORY_FILE),
        "--root",
        str(keys_dir / ROOT_FILE),
    ]
    result = runner.invoke(audit_app, ["verify-fork", str(out), *trusted, "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["verdict"] == "fork-proven"
    assert document["sizes"] == [size, size]
    assert document["detected_by"] == "sigbus/witness/police"


async def test_consistent_gossip_raises_no_alarm(world: World, tmp_path: Path) -> None:
    """Witnesses a checkpoint apart (police at size n, school at n+1) agree after a
    consistency proof from the hub's proof service: different sizes alone are no alarm."""
    police, school = WitnessRunner(world.adapters[P]), WitnessRunner(world.adapters[S])
    for lagging in (False, True):
        await world.adapters[P].send(
            MessageType.REFERRAL, referral(world), recipients=(SO,), assertion=LUL6
        )
        await world.settle()
        await world.broker.checkpointer.publish(force=True)
        if lagging:
            await swallow(world, P)  # police lags: it never sees the larger checkpoint
        else:
            await police.run_once(timeout=0.3)
    await school.run_once(timeout=0.3)
    await asyncio.sleep(0.2)
    await police.run_once(timeout=0.3)
    await asyncio.sleep(0.2)
    await school.run_once(timeout=0.3)
    assert police.witness.last_checkpoint is not None
    assert school.witness.last_checkpoint is not None
    assert police.witness.last_checkpoint.size < school.witness.last_checkpoint.size
    assert police.alarms == []
    assert school.alarms == []


async def test_a_witness_restarted_from_its_state_gossips_its_view_again(
    world: World, tmp_path: Path
) -> None:
    """After a restart the witness has its last cosigned checkpoint (the state file) but
    no cosignature line in memory: it cosigns that same view again and gossips it."""
    await world.adapters[P].send(
        MessageType.REFERRAL, referral(world), recipients=(SO,), assertion=LUL6
    )
    await world.settle()
    await world.broker.checkpointer.publish(force=True)
    state = tmp_path / "witness-police.json"
    first = WitnessRunner(world.adapters[P], state_path=state)
    await first.run_once(timeout=0.3)
    await first.close()
    note = first.witness.last_note
    assert note is not None

    heard: list[CheckpointGossip] = []

    async def on_gossip(msg: Msg) -> None:
        heard.append(CheckpointGossip.model_validate_json(msg.data))

    listening = await world.adapters[SO].nc.subscribe(gossip_subject(P), cb=on_gossip)
    again = WitnessRunner(world.adapters[P], state_path=state)
    assert await again.run_once(timeout=0.3) == 0  # nothing new to cosign
    for _ in range(20):
        if heard:
            break
        await asyncio.sleep(0.05)
    await listening.unsubscribe()
    assert [g.signed_checkpoint for g in heard] == [note]
    # The witness key (never the signing key), hybrid: the gossip carries both lines.
    witness_key = world.adapters[P].identity.witness_key
    assert witness_key is not None
    key = witness_key.public_key()
    assert heard[0].cosignature.count("\n") == 2
    verify_cosignature(note_body(note), heard[0].cosignature, "sigbus/witness/police", key)
