"""A frozen or rolled-back directory is refused by every party, across restarts too (issue 10).

Every hub and adapter records the serial it trusted (``directory-state.json`` beside its
keys): an older signed directory put back is refused at the next start. A directory past
its expiry is refused at start, and a running hub stops deciding when its directory
expires (messages wait at the bus) and resumes when a renewed one lands.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from sigbus.agents.setup import agency_setup
from sigbus.broker.setup import hub_setup
from sigbus.protocol import subjects as s
from sigbus.protocol.ids import MessageType
from sigbus.transport.errors import ConfigError
from sigbus.transport.keyring import renew_directory
from sigbus.transport.keystore import (
    DEV_KEYS_DIR,
    DIRECTORY_FILE,
    DIRECTORY_STATE_FILE,
    load_directory,
    load_root_private,
    save_directory,
)
from tests.integration.conftest import World
from tests.integration.test_bus_security import _meeting


def _keys(tmp_path: Path) -> Path:
    keys = tmp_path / "keys"
    shutil.copytree(DEV_KEYS_DIR, keys, ignore=shutil.ignore_patterns(DIRECTORY_STATE_FILE))
    return keys


def _resign(keys: Path, *, expires_in: timedelta) -> None:
    now = datetime.now(UTC)
    current = load_directory(keys)
    nxt = current.model_copy(
        update={"serial": current.serial + 1, "issued_at": now, "expires_at": now + expires_in}
    )
    save_directory(keys, nxt, load_root_private(keys))


def test_an_older_directory_is_refused_after_a_restart(tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    old = (keys / DIRECTORY_FILE).read_bytes()
    _resign(keys, expires_in=timedelta(days=30))
    assert agency_setup("police", keys).directory.serial == 3  # trusted and recorded
    (keys / DIRECTORY_FILE).write_bytes(old)  # validly signed, by the same root
    with pytest.raises(ConfigError, match="rollback"):
        agency_setup("police", keys)
    with pytest.raises(ConfigError, match="rollback"):
        hub_setup(keys)


def test_an_expired_directory_is_refused_at_start_with_one_line(tmp_path: Path) -> None:
    keys = _keys(tmp_path)
    _resign(keys, expires_in=timedelta(seconds=-1))
    with pytest.raises(ConfigError, match="expired"):
        hub_setup(keys)
    result = subprocess.run(
        [sys.executable, "-m", "sigbus", "broker", "run", "--keys", str(keys),
         "--nats", "tls://127.0.0.1:1"],
        capture_output=True, text=True, timeout=60, check=False,
        env={**os.environ, "SIGBUS_DEV": "1"},
    )  # fmt: skip
    assert result.returncode != 0
    assert "expired" in result.stderr
    assert "sigbus keys renew" in result.stderr
    assert "Traceback" not in result.stderr


async def test_a_running_hub_pauses_on_expiry_and_resumes_on_renewal(
    tmp_path: Path, make_world: Callable[[Path], Awaitable[World]]
) -> None:
    keys = _keys(tmp_path)
    _resign(keys, expires_in=timedelta(seconds=4))
    world = await make_world(keys)
    case = await world.open_case_with_consents()
    await asyncio.sleep(max(0.0, (load_directory(keys).expires_at - datetime.now(UTC))
                            .total_seconds()) + 0.2)  # fmt: skip
    mid = await world.adapters["social"].send(
        MessageType.MEETING_NOTICE, _meeting(), case_ref=case, recipients=("school",)
    )
    with capture_logs() as events:
        assert await world.broker.process_batch(timeout=0.2) == 0
    assert any(e["event"] == "hub_paused" and e["reason"] == "directory_expired" for e in events)
    info = await world.broker.js.stream_info(s.INGRESS_STREAM)
    assert info.state.messages == 1  # it waits at the bus, not decided, not lost
    renewed = renew_directory(load_directory(keys), now=datetime.now(UTC))
    save_directory(keys, renewed, load_root_private(keys))
    await world.broker.process_batch(timeout=0.2)  # sees the renewal
    await world.settle()
    assert (await world.entries_for(mid))["school"].outcome.value == "release"


def test_the_state_can_live_outside_a_read_only_keys_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = _keys(tmp_path)
    monkeypatch.setenv("SIGBUS_STATE_DIR", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="SIGBUS_STATE_DIR"):  # cannot record: refused
        agency_setup("police", keys)
    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv("SIGBUS_STATE_DIR", str(state))
    agency_setup("police", keys)
    assert (state / DIRECTORY_STATE_FILE).exists()
    assert not (keys / DIRECTORY_STATE_FILE).exists()
