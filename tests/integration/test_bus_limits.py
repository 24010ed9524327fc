"""Per-agency limits set in configuration and enforced by the bus (issue 9).

An agency's profile may carry ``[limits]``; the rendered NATS account enforces
them on a real server before the hub sees anything, and the hub names an agency
whose backlog is full (the condition behind every backlog refusal).
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest
from nats.errors import Error as NatsError
from structlog.testing import capture_logs

from sigbus.agents.setup import agency_setup
from sigbus.broker.backlog import BacklogWatch, full_backlogs
from sigbus.broker.setup import hub_setup
from sigbus.protocol import subjects as s
from sigbus.protocol.errors import ProfileError
from sigbus.protocol.profiles import parse_profile
from sigbus.transport.bus import INGRESS_BACKLOG, connect, ensure_streams
from sigbus.transport.errors import TransportError
from sigbus.transport.keystore import DEV_KEYS_DIR, load_directory
from sigbus.transport.natsauth import render_authorization
from sigbus.transport.natsserver import EmbeddedNats
from sigbus.transport.profiles import shipped_profiles_dir
from tests.integration.conftest import World

P = "police"
POLICE_LIMITS = "\n[limits]\nmax_payload = 8192\nmax_connections = 2\n"


def _police_profile(extra: str) -> bytes:
    return shipped_profiles_dir().joinpath(f"{P}.toml").read_bytes() + extra.encode()


def test_limits_come_from_the_profile_and_are_rendered_per_account() -> None:
    limited = parse_profile(_police_profile(POLICE_LIMITS), file_stem=P)
    assert (limited.limits.max_payload, limited.limits.max_connections) == (8192, 2)
    text = "\n".join(render_authorization(load_directory(DEV_KEYS_DIR), limits={P: limited.limits}))
    police = text[text.index(f'"{P}": {{') :]
    assert "max_payload: 8192, max_connections: 2, max_subscriptions: 64" in police
    school = text[text.index('"school": {') :]
    assert "max_payload: 131072, max_connections: 8" in school  # the defaults


@pytest.mark.parametrize(
    "limits", ["max_payload = 200000", "max_payload = 100", "max_connections = 0", "burst = 5"]
)
def test_a_limit_outside_its_bounds_is_refused_by_name(limits: str) -> None:
    with pytest.raises(ProfileError, match="limits"):
        parse_profile(_police_profile(f"\n[limits]\n{limits}\n"), file_stem=P)


async def test_the_bus_enforces_a_profiles_limits(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    shutil.copytree(DEV_KEYS_DIR, keys)
    creds = agency_setup(P, keys).creds
    with EmbeddedNats(tmp_path / "nats", keys_dir=keys) as server:
        hub = await connect(server.url, name="hub", creds=hub_setup(keys).creds)
        await ensure_streams(hub.jetstream())
        first = await connect(server.url, name="police-1", creds=creds)
        second = await connect(server.url, name="police-2", creds=creds)
        third = await connect(server.url, name="police-3", creds=creds)  # the defaults: 8
        await third.close()
        # Agency IT lowers police's share in its local profile; a reload applies it.
        (keys / "profiles").mkdir()
        (keys / "profiles" / f"{P}.toml").write_bytes(_police_profile(POLICE_LIMITS))
        server.reload()
        await asyncio.sleep(0.5)
        try:
            with pytest.raises(TransportError):  # the third connection is over the cap
                await connect(server.url, name="police-3", creds=creds)
            js = first.jetstream(prefix=creds.js_prefix)
            await js.publish(s.ingress_subject(P), b"x" * 4096, timeout=2.0)  # within
            with pytest.raises((NatsError, asyncio.TimeoutError)):
                await js.publish(s.ingress_subject(P), b"x" * 9000, timeout=2.0)
            info = await hub.jetstream().stream_info(s.INGRESS_STREAM)
            assert info.state.messages == 1  # the oversized one was never stored
        finally:
            for nc in (first, second, hub):
                if not nc.is_closed:
                    await nc.close()
        server_log = (tmp_path / "nats" / "run" / "nats-server.log").read_text()
        # nats-server logs each refusal with its reason (the payload one with the account).
        assert '"police/nkey:' in server_log
        assert "maximum payload exceeded: 9000 vs 8192" in server_log
        assert "maximum account active connections exceeded" in server_log


def test_full_backlogs_names_only_agencies_at_the_limit() -> None:
    waiting = {s.ingress_subject(P): 64, s.ingress_subject("school"): 3, "sigbus.other": 99}
    assert full_backlogs(waiting, 64) == {P: 64}


async def test_the_hub_logs_a_full_backlog_and_its_draining(world: World) -> None:
    world.broker.backlog = BacklogWatch(interval_s=0.0)
    police = world.adapters[P]
    for i in range(INGRESS_BACKLOG):
        await police.js.publish(
            s.ingress_subject(P), b"{}", headers={"Nats-Msg-Id": f"fill-{i}"}, timeout=2.0
        )
    with capture_logs() as events:
        # The first look sees the full backlog; once one is decided (and acked) it drains.
        await world.broker.process_batch(timeout=1.0)
        assert world.broker.backlog.full == {P: INGRESS_BACKLOG}
        for _ in range(20):
            await world.broker.process_batch(timeout=1.0)
            if not world.broker.backlog.full:
                break
    assert world.broker.backlog.full == {}  # drained (logged at info: agency_backlog_drained)
    full = [e for e in events if e["event"] == "agency_backlog_full"]
    assert [(e["agency"], e["reason"], e["waiting"]) for e in full] == [
        (P, "backlog_full", INGRESS_BACKLOG)
    ]
