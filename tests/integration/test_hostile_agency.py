"""The hostile agency: police's own, valid credentials against a real server (issue 9).

Each probe is a request on a subject the police account does not own, or a JetStream
API call it was never exported. The bus refuses every one (a permission violation,
no responders, or an error reply from the police account's own disabled JetStream),
and afterwards every stream and every consumer of the hub account is as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest
import structlog
from nats.aio.msg import Msg
from nats.errors import Error as NatsError

from sigbus.agents.errors import PublishFailed
from sigbus.agents.setup import agency_setup
from sigbus.protocol import subjects as s
from sigbus.protocol.ids import MessageType
from sigbus.transport.bus import INGRESS_BACKLOG, connect
from sigbus.transport.config import auditor_credentials
from tests.integration.conftest import World
from tests.integration.test_bus_security import _meeting

P, S, SO = "police", "school", "social"
API, HUB_API = "$JS.API", s.HUB_JS_PREFIX
CONSUMER = {
    "stream_name": s.INBOX_STREAM,
    "config": {
        "durable_name": "evil",
        "ack_policy": "explicit",
        "filter_subject": s.inbox_subject(S),
    },
}

PROBES: dict[str, tuple[str, object]] = {
    "school ingress": (s.ingress_subject(S), {}),
    "log append": (s.LOG_ENTRY_SUBJECT, {}),
    "hub state": (s.STATE_SUBJECT, {}),
    "school inbox": (s.inbox_subject(S), {}),
    "forged checkpoint": (s.CHECKPOINT_SUBJECT, {}),
    "cosign as school": (s.cosignature_subject(S), {}),
    "gossip as school": (s.gossip_subject(S), {}),
    "school's proof service": (s.service_subject(S, s.PROOF_INCLUSION), {"index": 0, "size": 1}),
    "school's notice service": (s.service_subject(S, s.NOTICE_REQUEST), {"message_id": "msg-x"}),
    "account info": (f"{API}.INFO", {}),
    "stream list": (f"{API}.STREAM.LIST", {}),
    "log info": (f"{API}.STREAM.INFO.{s.LOG_STREAM}", {}),
    "log get": (f"{API}.STREAM.MSG.GET.{s.LOG_STREAM}", {"seq": 1}),
    "log direct get": (f"{API}.DIRECT.GET.{s.LOG_STREAM}", {"seq": 1}),
    "log delete": (f"{API}.STREAM.DELETE.{s.LOG_STREAM}", {}),
    "inbox purge": (f"{API}.STREAM.PURGE.{s.INBOX_STREAM}", {}),
    "new stream": (f"{API}.STREAM.CREATE.EVIL", {"name": "EVIL", "subjects": ["sigbus.>"]}),
    "kv bucket": (f"{API}.STREAM.CREATE.KV_evil", {"name": "KV_evil"}),
    "kv put": ("$KV.evil.key", {}),
    "object store": (f"{API}.STREAM.CREATE.OBJ_evil", {"name": "OBJ_evil"}),
    "consumer create short": (f"{API}.CONSUMER.CREATE.{s.INBOX_STREAM}", CONSUMER),
    "consumer create via hub": (f"{HUB_API}.CONSUMER.CREATE.{s.INBOX_STREAM}.evil", CONSUMER),
    "own consumer update": (
        f"{HUB_API}.CONSUMER.CREATE.{s.INBOX_STREAM}.{s.inbox_consumer(P)}",
        CONSUMER,
    ),
    "school consumer delete": (
        f"{HUB_API}.CONSUMER.DELETE.{s.INBOX_STREAM}.{s.inbox_consumer(S)}",
        {},
    ),
    "own consumer delete": (
        f"{HUB_API}.CONSUMER.DELETE.{s.INBOX_STREAM}.{s.inbox_consumer(P)}",
        {},
    ),
    "consumer list": (f"{HUB_API}.CONSUMER.LIST.{s.INBOX_STREAM}", {}),
    "school next": (f"{HUB_API}.CONSUMER.MSG.NEXT.{s.INBOX_STREAM}.{s.inbox_consumer(S)}", 1),
    "hub ingress next": (f"{HUB_API}.CONSUMER.MSG.NEXT.{s.INGRESS_STREAM}.hub", 1),
    "ack school's release": (f"$JS.ACK.{s.INBOX_STREAM}.{s.inbox_consumer(S)}.1.1.1.0.0", {}),
    "ack hub ingress": (f"$JS.ACK.{s.INGRESS_STREAM}.hub.1.1.1.0.0", {}),
    "system ping": ("$SYS.REQ.SERVER.PING", {}),
    "system connz": ("$SYS.REQ.ACCOUNT.SIGBUS_HUB.CONNZ", {}),
}


async def _snapshot(world: World) -> dict[str, object]:
    js = world.broker.js
    streams = {
        name: (info.state.messages, info.state.last_seq)
        for name in s.ALL_STREAMS
        for info in [await js.stream_info(name)]
    }
    consumers = {
        (c.stream_name, c.name, c.config.filter_subject, c.num_pending)
        for stream in (s.INBOX_STREAM, s.CHECKPOINT_STREAM)
        for c in await js.consumers_info(stream)
    }
    names = await js.streams_info()
    return {"streams": streams, "consumers": consumers, "names": {n.config.name for n in names}}


@pytest.mark.parametrize("probe", sorted(PROBES))
async def test_police_credentials_cannot_reach_what_is_not_theirs(
    world: World, keys_dir: Path, probe: str
) -> None:
    case = await world.open_case_with_consents()
    await world.adapters[SO].send(
        MessageType.MEETING_NOTICE, _meeting(), case_ref=case, recipients=(S,)
    )
    await world.broker.drain_ingress(idle_timeout=0.3)  # the school's release waits
    before = await _snapshot(world)
    subject, body = PROBES[probe]
    nc = await connect(world.broker.url, name="police-probe", creds=agency_setup(P, keys_dir).creds)
    answer = None
    try:
        with contextlib.suppress(NatsError, asyncio.TimeoutError):
            answer = await nc.request(subject, json.dumps(body).encode(), timeout=0.5)
    finally:
        await nc.close()
    if answer is not None:  # only the police account's own, disabled JetStream answers
        assert b"not enabled for account" in answer.data, answer.data
    assert await _snapshot(world) == before
    await world.settle()
    assert len(world.received_ids(S)) == 1  # the school's release is still the school's
    assert world.broker.writer.size > 0


async def test_a_flood_is_refused_at_the_bus_beyond_the_backlog(world: World) -> None:
    """Police publish more than the backlog while the hub is not deciding: the bus
    takes INGRESS_BACKLOG and refuses the rest, and the school's message is next in
    line behind at most that many."""
    police = world.adapters[P]
    accepted, refusals = 0, []
    for i in range(INGRESS_BACKLOG + 10):
        try:
            await police.js.publish(
                s.ingress_subject(P), b"{}", headers={"Nats-Msg-Id": f"flood-{i}"}, timeout=2.0
            )
            accepted += 1
        except NatsError as e:
            refusals.append(str(e).lower())
    assert accepted == INGRESS_BACKLOG
    assert len(refusals) == 10
    assert all("maximum messages per subject" in r for r in refusals), refusals
    with pytest.raises(PublishFailed, match="most messages allowed waiting"):
        await police.send(MessageType.MEETING_NOTICE, _meeting(), recipients=(SO,))
    mid = await world.adapters[S].send(MessageType.MEETING_NOTICE, _meeting(), recipients=(SO,))
    info = await world.broker.js.stream_info(s.INGRESS_STREAM)
    assert info.state.messages == INGRESS_BACKLOG + 1
    await world.settle()
    decided = [e.message_id for e in await world.log_entries()]
    assert decided.index(mid) == INGRESS_BACKLOG  # behind the flood, never further


async def test_an_oversized_message_is_refused(world: World) -> None:
    with pytest.raises(NatsError):
        await world.adapters[P].js.publish(s.ingress_subject(P), b"x" * (129 * 1024), timeout=2.0)
    assert (await world.broker.js.stream_info(s.INGRESS_STREAM)).state.messages == 0


@pytest.mark.parametrize(
    "subject",
    [
        s.LOG_ENTRY_SUBJECT,
        f"{API}.CONSUMER.CREATE.{s.LOG_STREAM}",
        f"{API}.STREAM.DELETE.{s.LOG_STREAM}",
        f"{API}.STREAM.MSG.GET.{s.STATE_STREAM}",
        f"{API}.STREAM.MSG.GET.{s.INBOX_STREAM}",
    ],
)
async def test_the_auditor_reads_the_log_and_nothing_else(
    world: World, keys_dir: Path, subject: str
) -> None:
    await world.open_case_with_consents()
    before = await _snapshot(world)
    nc = await connect(world.broker.url, name="auditor", creds=auditor_credentials(keys_dir))
    try:
        info = await nc.jetstream().stream_info(s.LOG_STREAM)  # reading is what it is for
        assert info.state.messages == world.broker.writer.size
        answer = None
        with contextlib.suppress(NatsError, asyncio.TimeoutError):
            answer = await nc.request(subject, b'{"seq": 1}', timeout=0.5)
        assert answer is None
    finally:
        await nc.close()
    assert await _snapshot(world) == before


async def test_police_cannot_gossip_as_school(world: World, keys_dir: Path) -> None:
    """Witness gossip: social hears school on school's gossip subject, and never police
    publishing there (only school's account may; the bus reports the violation)."""
    heard: list[bytes] = []

    async def on_gossip(msg: Msg) -> None:
        heard.append(msg.data)

    listening = await world.adapters[SO].nc.subscribe(s.gossip_subject(S), cb=on_gossip)
    nc = await connect(world.broker.url, name="police-probe", creds=agency_setup(P, keys_dir).creds)
    try:
        with structlog.testing.capture_logs() as logs:
            await nc.publish(s.gossip_subject(S), b'{"forged": true}')
            await nc.flush()
            await asyncio.sleep(0.3)
    finally:
        await nc.close()
    assert heard == []
    assert any(e.get("kind") == "permission_violation" for e in logs), logs
    await world.adapters[S].nc.publish(s.gossip_subject(S), b'{"honest": true}')
    await world.adapters[S].nc.flush()
    for _ in range(20):
        if heard:
            break
        await asyncio.sleep(0.05)
    await listening.unsubscribe()
    assert heard == [b'{"honest": true}']
