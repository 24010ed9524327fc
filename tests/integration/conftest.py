"""A live hub and three live adapters on the session's nats-server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest

from sigbus.agents.casesystem import MemoryCaseSystem
from sigbus.agents.runtime import Adapter
from sigbus.agents.setup import agency_setup
from sigbus.agents.social.consent import consents_of_everyone
from sigbus.audit.entry import LogEntry
from sigbus.broker.service import Broker
from sigbus.broker.setup import hub_setup
from sigbus.fixtures import birth_date_for_age, fictitious_personnummer
from sigbus.protocol.ids import AgencyId, MessageType, new_opaque_id
from sigbus.protocol.messages import CaseOpened, StatutoryAssertion
from sigbus.protocol.notice import parse_inbox_item
from sigbus.protocol.subjects import INBOX_ALL, INBOX_STREAM, LOG_STREAM
from sigbus.transport.bus import read_stream
from sigbus.transport.keystore import DEV_AGENCIES

T = TypeVar("T")

#: The police's own reference for a LUL 6 § notification: the statute's evidence.
LUL6 = StatutoryAssertion(basis="lul_6", evidence_id="dnr-polis-test")

CONSENT_CATEGORIES = (
    MessageType.CASE_INVITATION,
    MessageType.PLAN_COMMITMENT,
    MessageType.COMMITMENT_STATUS,
    MessageType.MEETING_NOTICE,
)


@dataclass
class World:
    broker: Broker
    adapters: dict[AgencyId, Adapter]
    inboxes: dict[AgencyId, MemoryCaseSystem] = field(default_factory=dict)
    youth: str = field(
        default_factory=lambda: fictitious_personnummer(
            birth_date_for_age(datetime.now(UTC).date(), 16), 982
        )
    )

    async def settle(self) -> None:
        """Let the hub process everything, then let every adapter drain its inbox."""
        await self.broker.drain_ingress(idle_timeout=0.3)
        for agency, adapter in self.adapters.items():
            inbox = self.inboxes.setdefault(agency, MemoryCaseSystem())
            while await adapter.receive(inbox.deliver, timeout=0.3):
                pass

    def received_ids(self, agency: AgencyId) -> list[str]:
        return [d.header.message_id for d in self.inboxes.get(agency, MemoryCaseSystem()).received]

    async def log_entries(self) -> list[LogEntry]:
        out = []
        for seq in range(1, self.broker.writer.size + 1):
            msg = await self.broker.js.get_msg(LOG_STREAM, seq)
            assert msg.data is not None
            out.append(LogEntry.model_validate_json(msg.data))
        return out

    async def inbox_items(self, kind: type[T]) -> list[T]:
        """Every item of ``kind`` stored in any inbox (a release, or a decision notice)."""
        items = []
        async for msg in read_stream(self.broker.js, INBOX_STREAM, INBOX_ALL):
            item = parse_inbox_item(msg.data)
            if isinstance(item, kind):
                items.append(item)
        return items

    async def entries_for(self, message_id: str) -> dict[str, LogEntry]:
        return {
            (e.recipient if e.recipient else "-"): e
            for e in await self.log_entries()
            if e.message_id == message_id
        }

    async def open_case_with_consents(
        self,
        guardians: tuple[str, ...] = ("vh-1", "vh-2"),
        parties: tuple[AgencyId, ...] = DEV_AGENCIES,
    ) -> str:
        """Open a case and record consent from the young person and every guardian,
        scoped to ``parties`` for all consent categories."""
        social = self.adapters["social"]
        case = new_opaque_id("case", 12)
        await social.send(
            MessageType.CASE_OPENED,
            CaseOpened(personnummer=self.youth, guardians_with_custody=guardians, parties=parties),
            case_ref=case,
        )
        events = consents_of_everyone(
            guardians, parties=parties, categories=CONSENT_CATEGORIES, now=datetime.now(UTC)
        )
        for event in events:
            await social.send(MessageType.CONSENT_EVENT, event, case_ref=case)
        await self.settle()
        return case


@pytest.fixture
async def make_world(nats_url: str) -> AsyncIterator[Callable[[Path], Awaitable[World]]]:
    """Build live Worlds from a keys dir (the dev keys, or a modified copy); all torn down."""
    worlds: list[World] = []

    async def make(keys: Path) -> World:
        broker = hub_setup(keys).broker(nats_url)
        await broker.start()
        adapters = {a: await agency_setup(a, keys).connect(nats_url) for a in DEV_AGENCIES}
        worlds.append(World(broker, adapters))
        return worlds[-1]

    yield make
    for world in worlds:
        for adapter in world.adapters.values():
            await adapter.close()
        await world.broker.stop()


@pytest.fixture
async def world(make_world: Callable[[Path], Awaitable[World]], keys_dir: Path) -> World:
    return await make_world(keys_dir)
