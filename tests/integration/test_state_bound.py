"""The curious operator edits the hub state with the hub's own credentials (issue #10).

``SIGBUS_STATE`` denies delete and purge, but the hub's credentials may still
delete the whole stream and write it again without the withdrawal, or add a
record of their own. The log commits to every state record
(``LogEntry.state_sha256``), so the hub refuses to start on such a state with a
precise reason and a security event, and ``sigbus audit check-state`` finds the
same offline.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog
from nats.js.errors import NotFoundError
from typer.testing import CliRunner

from sigbus.agents.setup import agency_setup
from sigbus.agents.witnessing import log_public_key
from sigbus.broker.errors import StateCorruptError
from sigbus.broker.service import CRASH_AFTER_LOG_ENV
from sigbus.broker.setup import hub_setup
from sigbus.cli_audit import audit_app
from sigbus.export import export_log, export_state
from sigbus.protocol.codes import ConsentAction, ConsenterRole
from sigbus.protocol.ids import MessageType, new_opaque_id
from sigbus.protocol.messages import CaseOpened, ConsentEvent
from sigbus.protocol.subjects import INGRESS_STREAM, STATE_STREAM, STATE_SUBJECT
from sigbus.transport import config
from sigbus.transport.bus import connect, ensure_streams, read_stream
from tests.integration.conftest import World

SO, S = "social", "school"


async def withdraw(world: World, case: str) -> str:
    return await world.adapters[SO].send(
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


async def dumps(world: World, keys_dir: Path, tmp_path: Path, name: str) -> tuple[Path, Path]:
    """The log export (the auditor's read-only identity) and the state dump (the hub's)."""
    log_file, state_file = tmp_path / f"{name}.log.jsonl", tmp_path / f"{name}.state.jsonl"
    auditor = await connect(
        world.broker.url, name="test-auditor", creds=config.auditor_credentials(keys_dir)
    )
    try:
        key = log_public_key(world.adapters[SO])
        await export_log(auditor.jetstream(), log_file, key, witnesses=[S])
    finally:
        await auditor.close()
    hub = await connect(world.broker.url, name="test-hub", creds=hub_setup(keys_dir).creds)
    try:
        await export_state(hub.jetstream(), state_file)
    finally:
        await hub.close()
    return log_file, state_file


def check_state(log_file: Path, state_file: Path) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(
        audit_app, ["check-state", str(log_file), "--state", str(state_file), "--json"]
    )
    return result.exit_code, json.loads(result.stdout)


@pytest.mark.parametrize("attack", ["drop_withdrawal", "inject_record"])
async def test_an_edited_state_stops_the_hub_and_check_state_finds_it(
    world: World, keys_dir: Path, tmp_path: Path, attack: str
) -> None:
    case = await world.open_case_with_consents()
    withdrawal = await withdraw(world, case)
    await world.settle()
    entry = (await world.entries_for(withdrawal))["hub"]
    assert (entry.consent_action, entry.consenter_role) == (
        ConsentAction.WITHDRAWN,
        ConsenterRole.GUARDIAN,
    )
    assert entry.state_sha256 is not None
    await world.broker.checkpointer.publish()

    # Untouched: the state matches the log.
    code, report = check_state(*await dumps(world, keys_dir, tmp_path, "before"))
    assert (code, report["ok"], report["findings"]) == (0, True, [])
    # The case, the young person's and two guardians' consents, the withdrawal.
    assert report["state_records"] == report["bound_entries"] == 5

    # The operator, with the hub's credentials, while the hub is down.
    await world.broker.stop()
    nc = await connect(world.broker.url, name="test-operator", creds=hub_setup(keys_dir).creds)
    try:
        js = nc.jetstream()
        records = [
            ((m.headers or {})["Nats-Msg-Id"], bytes(m.data))
            async for m in read_stream(js, STATE_STREAM, STATE_SUBJECT)
        ]
        if attack == "drop_withdrawal":
            await js.delete_stream(STATE_STREAM)
            await ensure_streams(js)
            for message_id, data in records:
                if message_id != withdrawal:
                    await js.publish(
                        STATE_SUBJECT,
                        data,
                        stream=STATE_STREAM,
                        headers={"Nats-Msg-Id": message_id},
                    )
        else:
            await js.publish(STATE_SUBJECT, records[-1][1], stream=STATE_STREAM)
    finally:
        await nc.close()

    broker = hub_setup(keys_dir).broker(world.broker.url)
    with structlog.testing.capture_logs() as logs, pytest.raises(StateCorruptError) as refused:
        await broker.start()
    await broker.stop()
    fault = "dropped" if attack == "drop_withdrawal" else "injected"
    assert "does not match the disclosure log" in str(refused.value)
    assert fault in str(refused.value)
    alarms = [e for e in logs if e.get("kind") == "hub_state_not_bound_to_log"]
    assert [a["fault"] for a in alarms] == [fault]
    assert alarms[0]["log_level"] == "critical"
    if attack == "drop_withdrawal":
        assert alarms[0]["message_id"] == withdrawal
        assert alarms[0]["log_index"] == entry.index

    # Offline: check-state names the same, and exits non-zero.
    code, report = check_state(*await dumps(world, keys_dir, tmp_path, "after"))
    assert code == 1
    assert report["ok"] is False
    assert [f["fault"] for f in report["findings"]] == [fault]


async def _streams_made(nats_url: str, keys_dir: Path, within: float = 60.0) -> None:
    """Wait until the hub process has made its ingress stream (a loaded machine may take
    seconds); a fixed sleep lost the race in CI and the send found no stream."""
    nc = await connect(nats_url, name="test-observer", creds=hub_setup(keys_dir).creds)
    try:
        js = nc.jetstream()
        deadline = asyncio.get_running_loop().time() + within
        while True:
            try:
                await js.stream_info(INGRESS_STREAM)
            except NotFoundError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.1)
            else:
                return
    finally:
        await nc.close()


async def test_crash_between_log_and_state_write_is_completed_on_restart(
    nats_url: str, keys_dir: Path
) -> None:
    """Log first: a hub killed after the append starts again (the message is not acked),
    writes the very record the log named (deterministic sealing), and the state matches."""
    env = {**os.environ, CRASH_AFTER_LOG_ENV: "1"}
    cmd = [sys.executable, "-m", "sigbus", "broker", "run", "--nats", nats_url,
           "--keys", str(keys_dir), "--ack-wait", "2"]  # fmt: skip
    social = await agency_setup(SO, keys_dir).connect(nats_url)
    first = subprocess.Popen(cmd, env=env)
    try:
        await _streams_made(nats_url, keys_dir)
        youth = World(broker=None, adapters={}).youth  # type: ignore[arg-type]
        case = new_opaque_id("case", 12)
        mid = await social.send(
            MessageType.CASE_OPENED,
            CaseOpened(personnummer=youth, guardians_with_custody=("vh-1",), parties=(SO, S)),
            case_ref=case,
        )
        code = await asyncio.to_thread(first.wait, 20)
    finally:
        if first.poll() is None:
            first.kill()
        await social.close()
    assert code == 70  # died by the injected fault: logged, state not written
    nc = await connect(nats_url, name="test-observer", creds=hub_setup(keys_dir).creds)
    try:
        js = nc.jetstream()
        assert (await js.stream_info(STATE_STREAM)).state.messages == 0

        broker = hub_setup(keys_dir).broker(nats_url, ack_wait=timedelta(seconds=2))
        await broker.start()  # the gap is the message in flight: not a finding
        try:
            await broker.drain_ingress(idle_timeout=2.5)
            assert case in broker.state.cases
            (entry,) = broker.writer.entries()
            assert entry.message_id == mid
            stored = [bytes(m.data) async for m in read_stream(js, STATE_STREAM, STATE_SUBJECT)]
            assert len(stored) == 1
            assert hashlib.sha256(stored[0]).hexdigest() == entry.state_sha256
        finally:
            await broker.stop()
        again = hub_setup(keys_dir).broker(nats_url)
        await again.start()  # matches now, with nothing in flight
        await again.stop()
        assert case in again.state.cases
    finally:
        await nc.close()
