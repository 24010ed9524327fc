"""Least privilege on the real server: identities, permissions, mutual TLS (issue 4)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
import structlog
from nats.errors import Error as NatsError

from sigbus.agents.setup import agency_setup
from sigbus.protocol.codes import AgendaItem, PlaceCode
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import MeetingNotice
from sigbus.protocol.subjects import (
    INBOX_STREAM,
    INGRESS_STREAM,
    LOG_ENTRY_SUBJECT,
    LOG_STREAM,
    PROOF_CONSISTENCY,
    PROOF_INCLUSION,
    STATE_STREAM,
    STATE_SUBJECT,
    inbox_consumer,
    inbox_subject,
    ingress_subject,
    service_subject,
)
from sigbus.transport.bus import connect
from sigbus.transport.errors import TransportError
from sigbus.transport.natsauth import CA_CERT, NatsCredentials, new_nkey_seed
from tests.integration.conftest import LUL6, World

P, S, SO = "police", "school", "social"
SETTLE_S = 0.5


async def _violations(action: object) -> list[dict[str, object]]:
    with structlog.testing.capture_logs() as logs:
        await action  # type: ignore[misc]
        await asyncio.sleep(SETTLE_S)  # the server's -ERR arrives asynchronously
    return [e for e in logs if e.get("kind") == "permission_violation"]


async def test_school_cannot_subscribe_to_the_police_inbox(world: World, keys_dir: Path) -> None:
    nc = await connect(world.broker.url, name="school-probe", creds=agency_setup(S, keys_dir).creds)
    try:
        received: list[bytes] = []

        async def subscribe() -> None:
            async def cb(msg: nats.aio.msg.Msg) -> None:
                received.append(msg.data)

            await nc.subscribe(inbox_subject(P), cb=cb)
            await nc.subscribe(LOG_ENTRY_SUBJECT, cb=cb)

        violations = await _violations(subscribe())
        assert len(violations) == 2  # logged as security events, never ignored
        await world.adapters[P].send(
            MessageType.REFERRAL, _referral(world), recipients=(SO,), assertion=LUL6
        )
        await world.settle()
        assert received == []
    finally:
        await nc.close()


async def test_school_cannot_publish_as_police(world: World, keys_dir: Path) -> None:
    nc = await connect(world.broker.url, name="school-probe", creds=agency_setup(S, keys_dir).creds)
    try:
        with pytest.raises((NatsError, asyncio.TimeoutError)):
            await nc.jetstream().publish(ingress_subject(P), b"{}", timeout=1.0)
    finally:
        await nc.close()
    hub_js = world.broker.js
    assert (await hub_js.stream_info(INGRESS_STREAM)).state.messages == 0


async def test_school_cannot_read_the_log_or_another_agencys_consumer(
    world: World, keys_dir: Path
) -> None:
    await world.adapters[P].send(
        MessageType.REFERRAL, _referral(world), recipients=(SO,), assertion=LUL6
    )
    await world.broker.drain_ingress(idle_timeout=0.3)
    nc = await connect(world.broker.url, name="school-probe", creds=agency_setup(S, keys_dir).creds)
    js = nc.jetstream()
    try:
        with pytest.raises((NatsError, asyncio.TimeoutError)):
            await js.get_msg(LOG_STREAM, 1)
        with pytest.raises((NatsError, asyncio.TimeoutError)):
            await js.stream_info(LOG_STREAM)
        # The social services' releases sit in social's consumer: school cannot pull them.
        reply = None
        with pytest.raises((NatsError, asyncio.TimeoutError)):
            reply = await nc.request(
                f"$JS.API.CONSUMER.MSG.NEXT.{INBOX_STREAM}.{inbox_consumer(SO)}", b"1", timeout=1.0
            )
        assert reply is None
    finally:
        await nc.close()
    await world.settle()
    assert len(world.received_ids(SO)) == 1  # still there for its owner


async def test_client_without_certificate_is_refused(world: World, keys_dir: Path) -> None:
    ctx = ssl.create_default_context(cafile=str(keys_dir / CA_CERT))  # trusts us, no client cert
    seed = agency_setup(S, keys_dir).creds.nkey_seed
    with pytest.raises((NatsError, OSError, asyncio.TimeoutError)):
        nc = await nats.connect(
            world.broker.url, tls=ctx, nkeys_seed_str=seed, allow_reconnect=False, connect_timeout=2
        )
        await nc.close()


async def test_unknown_nkey_is_refused(world: World, keys_dir: Path) -> None:
    stranger = NatsCredentials(agency=S, nkey_seed=new_nkey_seed(), keys_dir=keys_dir)
    with pytest.raises(TransportError):
        nc = await connect(world.broker.url, name="stranger", creds=stranger)
        await nc.close()


async def test_plaintext_is_refused_without_insecure_dev(world: World) -> None:
    with pytest.raises(TransportError, match="insecure-dev"):
        await connect(world.broker.url, name="plain", creds=NatsCredentials(agency=S))
    # and the server itself refuses a plaintext client
    with pytest.raises((NatsError, OSError, asyncio.TimeoutError)):
        nc = await nats.connect(world.broker.url, allow_reconnect=False, connect_timeout=2)
        await nc.close()


def _meeting() -> MeetingNotice:
    return MeetingNotice(
        meeting_at=datetime.now(UTC), place=PlaceCode.VIDEO, agenda=(AgendaItem.PLAN_REVIEW,)
    )


def _referral(world: World) -> object:
    from datetime import UTC, datetime

    from sigbus.protocol.codes import ReferralKind, ReferralReason
    from sigbus.protocol.messages import Referral

    return Referral(
        kind=ReferralKind.LUL_6_NOTIFICATION,
        personnummer=world.youth,
        reasons=(ReferralReason.WEAPON,),
        observed_on=datetime.now(UTC).date(),
        contact_function="police_youth_unit",
    )


@pytest.mark.parametrize(
    "reply_to", [LOG_ENTRY_SUBJECT, STATE_SUBJECT, "sigbus.inbox.school", "_INBOX_hub.x"]
)
async def test_a_proof_reply_cannot_be_aimed_at_a_stream(
    world: World, keys_dir: Path, reply_to: str
) -> None:
    """The police ask for a proof with a reply subject of their choosing: the hub answers
    only on a reply inbox, so the log, hub state and inboxes stay as they were."""
    await world.adapters[P].send(
        MessageType.REFERRAL, _referral(world), recipients=(SO,), assertion=LUL6
    )
    await world.settle()
    js = world.broker.js
    streams = (LOG_STREAM, STATE_STREAM, INBOX_STREAM)
    before = {s: (await js.stream_info(s)).state.messages for s in streams}
    police = world.adapters[P].nc
    request = json.dumps({"size1": 1, "size2": 2}).encode()
    await police.publish(service_subject(P, PROOF_CONSISTENCY), request, reply=reply_to)
    await police.flush()
    await asyncio.sleep(0.5)
    after = {s: (await js.stream_info(s)).state.messages for s in streams}
    assert after == before
    # The hub still works: the next message is decided and logged.
    await world.adapters[P].send(
        MessageType.REFERRAL, _referral(world), recipients=(SO,), assertion=LUL6
    )
    await world.settle()
    assert world.broker.writer.size == before[LOG_STREAM] + 1
    # A proper request, on the requester's own inbox, is still answered.
    answer = await police.request(service_subject(P, PROOF_CONSISTENCY), request, timeout=5.0)
    assert b"proof" in answer.data


async def _inclusion(
    nc: nats.aio.client.Client, agency: str, index: int, size: int
) -> dict[str, object]:
    request = json.dumps({"index": index, "size": size}).encode()
    answer = await nc.request(service_subject(agency, PROOF_INCLUSION), request, timeout=5.0)
    reply: dict[str, object] = json.loads(answer.data)
    return reply


async def test_the_log_shows_an_entry_only_to_its_sender_and_released_recipient(
    world: World,
) -> None:
    """The police's LUL 6 § notification is released to social services and denied to
    the school: the school cannot read either entry through the proof service."""
    mid = await world.adapters[P].send(
        MessageType.REFERRAL, _referral(world), recipients=(SO, S), assertion=LUL6
    )
    await world.settle()
    size = world.broker.writer.size
    entries = {e.recipient: e for e in await world.log_entries() if e.message_id == mid}
    assert {r: e.outcome.value for r, e in entries.items()} == {SO: "release", S: "deny"}
    school, social, police = (world.adapters[a].nc for a in (S, SO, P))
    for entry in entries.values():
        refused = await _inclusion(school, S, entry.index, size)
        assert refused["error"] == "not_a_party_to_entry"
        assert refused.get("leaf_hash") is None
        assert refused.get("proof") == []
        assert (await _inclusion(police, P, entry.index, size))["leaf_hash"]  # the sender's own
    assert (await _inclusion(social, SO, entries[SO].index, size))["leaf_hash"]
    assert (await _inclusion(social, SO, entries[S].index, size))["error"] == "not_a_party_to_entry"


@pytest.mark.parametrize("form", ["short", "pinned-subject", "legacy-durable"])
async def test_police_cannot_point_their_consumer_at_the_school_inbox(
    world: World, keys_dir: Path, form: str
) -> None:
    """Police create their own inbox consumer asking for the school's inbox as its filter:
    the short forms are not granted, and the pinned form refuses a body with another filter."""
    case = await world.open_case_with_consents()
    await world.adapters[SO].send(
        MessageType.MEETING_NOTICE, _meeting(), case_ref=case, recipients=(S,)
    )
    await world.broker.drain_ingress(idle_timeout=0.3)
    name = inbox_consumer(P)
    body = json.dumps(
        {
            "stream_name": INBOX_STREAM,
            "config": {
                "name": name,
                "durable_name": name,
                "ack_policy": "explicit",
                "filter_subject": inbox_subject(S),
            },
        }
    ).encode()
    subject = {
        "short": f"$JS.API.CONSUMER.CREATE.{INBOX_STREAM}.{name}",
        "pinned-subject": f"$JS.API.CONSUMER.CREATE.{INBOX_STREAM}.{name}.{inbox_subject(P)}",
        "legacy-durable": f"$JS.API.CONSUMER.DURABLE.CREATE.{INBOX_STREAM}.{name}",
    }[form]
    nc = world.adapters[P].nc
    answer = None
    with contextlib.suppress(NatsError, asyncio.TimeoutError):
        answer = await nc.request(subject, body, timeout=1.0)
    if answer is not None:
        assert b'"error"' in answer.data, answer.data  # the server refused the filter
    info = await world.broker.js.consumers_info(INBOX_STREAM)
    filters = {c.name: c.config.filter_subject for c in info}
    assert filters.get(name) in (None, inbox_subject(P))
    await world.settle()
    assert len(world.received_ids(S)) == 1  # the school's release is still the school's
