"""Decision notices on a real server: matching the log, signed by the hub, durable, the
sender's alone (issue 13)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest
import structlog
from nats.errors import Error as NatsError

from sigbus.agents.errors import NoticeRejected
from sigbus.agents.runtime import Delivered
from sigbus.agents.setup import agency_setup
from sigbus.protocol import subjects as s
from sigbus.protocol.ids import MessageType
from sigbus.protocol.notice import (
    DecisionNotice,
    NoticeItem,
    NoticeOutcome,
    SignedNotice,
    sign_notice,
)
from sigbus.protocol.signing import HybridPrivateKey
from sigbus.transport.bus import connect
from tests.integration.conftest import World
from tests.integration.test_bus_security import _meeting

P, S, SO = "police", "school", "social"


async def _never(_: Delivered) -> None:
    raise AssertionError("a notice was handed to the case system as a release")


async def test_a_release_gets_an_all_released_notice_with_the_logs_indexes(world: World) -> None:
    case = await world.open_case_with_consents()
    mid = await world.adapters[SO].send(
        MessageType.MEETING_NOTICE, _meeting(), case_ref=case, recipients=(P, S)
    )
    await world.settle()  # the social adapter's receive loop takes the notice, logged only
    notice = await world.adapters[SO].await_notice(mid, timeout=5)
    assert notice is not None
    assert notice.all_taken
    logged = await world.entries_for(mid)
    assert {i.recipient: (i.outcome, i.log_index) for i in notice.items} == {
        P: (NoticeOutcome.RELEASED, logged[P].index),
        S: (NoticeOutcome.RELEASED, logged[S].index),
    }
    stored = [n.notice for n in await world.inbox_items(SignedNotice) if n.notice.message_id == mid]
    assert stored == [notice]  # the inbox copy and the service's answer are one notice
    assert mid not in world.received_ids(SO)
    assert mid in world.received_ids(P)
    assert mid in world.received_ids(S)


async def test_hub_records_are_confirmed(world: World) -> None:
    await world.open_case_with_consents()
    confirmed = [
        n.notice
        for n in await world.inbox_items(SignedNotice)
        if n.notice.message_type in (MessageType.CASE_OPENED, MessageType.CONSENT_EVENT)
    ]
    assert len(confirmed) == 4  # the case and three consents
    assert all(
        n.items[0].outcome is NoticeOutcome.CONFIRMED and n.items[0].recipient == "hub"
        for n in confirmed
    )
    text = json.dumps([n.model_dump(mode="json") for n in confirmed])
    assert world.youth[:8] not in text
    assert "subj" not in text
    assert "case-" not in text


async def test_a_notice_signed_by_another_key_is_rejected(world: World) -> None:
    mid = await world.adapters[S].send(MessageType.MEETING_NOTICE, _meeting(), recipients=(SO,))
    await world.broker.drain_ingress(idle_timeout=0.3)
    genuine = await world.adapters[S].await_notice(mid, timeout=5)
    assert genuine is not None
    forged = DecisionNotice.model_validate(
        {
            **genuine.model_dump(),
            "notice_id": "ntc-forged",
            "items": (NoticeItem(recipient=SO, outcome=NoticeOutcome.RELEASED, log_index=0),),
        }
    )
    signed = sign_notice(forged, HybridPrivateKey.generate())  # same hub key id, other key
    with pytest.raises(NoticeRejected, match="does not verify"):
        world.adapters[S].check_notice(signed)
    await world.broker.js.publish(s.inbox_subject(S), signed.to_wire(), stream=s.INBOX_STREAM)
    taken: list[DecisionNotice] = []

    async def keep(notice: DecisionNotice) -> None:
        taken.append(notice)

    with structlog.testing.capture_logs() as logs:
        while await world.adapters[S].receive(_never, on_notice=keep, timeout=0.3):
            pass
    assert [n.notice_id for n in taken] == [genuine.notice_id]  # the forgery never passed
    assert [e["kind"] for e in logs if e["event"] == "security_event"] == ["notice_rejected"]


@pytest.fixture
def info_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Events from info up, from loggers made from now on (an earlier test may have
    configured a higher level): what `serve` writes at its default level."""
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))
    try:
        with structlog.testing.capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(**saved)


async def test_a_notice_waits_for_an_offline_sender(
    world: World, keys_dir: Path, info_logs: list[MutableMapping[str, Any]]
) -> None:
    school = world.adapters[S]
    mid = await school.send(MessageType.MEETING_NOTICE, _meeting(), recipients=(SO,))
    await school.close()  # the school goes offline before the hub decides
    await world.broker.drain_ingress(idle_timeout=0.3)
    back = await agency_setup(S, keys_dir).connect(world.broker.url)
    world.adapters[S] = back  # closed with the world
    taken: list[DecisionNotice] = []

    async def keep(notice: DecisionNotice) -> None:
        taken.append(notice)

    while await back.receive(_never, on_notice=keep, timeout=0.3):
        pass
    assert [n.message_id for n in taken] == [mid]
    assert taken[0].items[0].outcome is NoticeOutcome.DENIED  # only the lead calls meetings
    assert taken[0].items[0].reasons == ("sender_not_allowed",)
    # What `serve` logs of it: ids, outcome, codes and the index, as key-values.
    events = [e for e in info_logs if e["event"] == "decision_notice"]
    assert events == [
        {
            "event": "decision_notice",
            "log_level": "info",
            "agency": S,
            "message_id": mid,
            "type": "meeting_notice",
            "recipient": None,
            "outcome": "denied",
            "reasons": "sender_not_allowed",
            "log_index": taken[0].items[0].log_index,
        }
    ]


async def test_police_cannot_fetch_the_schools_notices(world: World, keys_dir: Path) -> None:
    mid = await world.adapters[S].send(MessageType.MEETING_NOTICE, _meeting(), recipients=(SO,))
    await world.broker.drain_ingress(idle_timeout=0.3)
    # Asking its own notice service for the school's message: the same answer as for
    # a message never sent, so police do not even learn that it exists.
    assert await world.adapters[P].await_notice(mid, timeout=1) is None
    request = json.dumps({"message_id": mid}).encode()
    nc = await connect(world.broker.url, name="police-probe", creds=agency_setup(P, keys_dir).creds)
    answers = []
    try:
        for subject, body in (
            (s.service_subject(S, s.NOTICE_REQUEST), request),
            (f"{s.HUB_JS_PREFIX}.CONSUMER.MSG.NEXT.{s.INBOX_STREAM}.{s.inbox_consumer(S)}", b"1"),
        ):
            with contextlib.suppress(NatsError, asyncio.TimeoutError):
                answers.append(await nc.request(subject, body, timeout=0.5))
    finally:
        await nc.close()
    assert answers == []
    # The school still has its notice: nothing was taken from its inbox.
    assert await world.adapters[S].await_notice(mid, timeout=5) is not None
    taken: list[DecisionNotice] = []

    async def keep(notice: DecisionNotice) -> None:
        taken.append(notice)

    while await world.adapters[S].receive(_never, on_notice=keep, timeout=0.3):
        pass
    assert [n.message_id for n in taken] == [mid]
