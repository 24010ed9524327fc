"""A notice of existence, without content (issue 13), on a real nats-server: off by
default and refused with a reason; on, the asker learns only which agencies are
involved, and every query and answer is in the log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from sigbus.agents.setup import agency_setup
from sigbus.audit.entry import EntryOutcome, LogEntry
from sigbus.broker.setup import hub_setup
from sigbus.fixtures import fictitious_personnummer
from sigbus.protocol.codes import ClosureReason
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import CaseClosed
from sigbus.protocol.personnummer import birth_date
from sigbus.transport.keystore import DEV_AGENCIES
from tests.integration.conftest import World
from tests.integration.test_decision_notice_cli import cli
from tests.policy.test_existence import enabled

P, SO = "police", "social"


async def queries(world: World) -> list[LogEntry]:
    entries = await world.log_entries()
    return [e for e in entries if e.message_type is MessageType.EXISTENCE_QUERY]


@pytest.fixture
async def world_on(nats_url: str, keys_dir: Path) -> AsyncIterator[World]:
    """A live hub whose rules file enables the notice of existence."""
    broker = hub_setup(keys_dir, enabled()).broker(nats_url)
    await broker.start()
    adapters = {a: await agency_setup(a, keys_dir).connect(nats_url) for a in DEV_AGENCIES}
    yield World(broker, adapters)
    for adapter in adapters.values():
        await adapter.close()
    await broker.stop()


async def test_off_by_default_the_question_is_refused_and_logged(
    world: World, keys_dir: Path
) -> None:
    await world.open_case_with_consents()
    run = await cli(world, keys_dir, P, "existence", stdin=world.youth)
    assert run.code == 1, run
    assert "existence_notice_off" in run.out
    assert "involved" not in run.out
    assert "refused" in run.err
    (entry,) = [
        e for e in await world.log_entries() if e.message_type is MessageType.EXISTENCE_QUERY
    ]
    assert (entry.outcome, entry.reasons, entry.sender) == (
        EntryOutcome.DENY,
        ("existence_notice_off",),
        P,
    )
    await world.settle()
    assert entry.message_id not in world.received_ids(SO)


async def test_on_the_asker_learns_which_agencies_and_nothing_else(
    world_on: World, keys_dir: Path
) -> None:
    world = world_on
    case = await world.open_case_with_consents()
    run = await cli(world, keys_dir, P, "existence", stdin=world.youth)
    assert run.code == 0, run
    others = sorted(set(DEV_AGENCIES) - {P})
    assert f"involved: yes: {', '.join(others)}" in run.out
    for secret in (case, world.youth, world.youth.replace("-", ""), "consent-", "case_"):
        assert secret not in run.out, secret

    entries = [
        e for e in await world.log_entries() if e.message_type is MessageType.EXISTENCE_QUERY
    ]
    (entry,) = entries
    assert entry.outcome is EntryOutcome.RECORDED
    assert entry.reasons == (f"existence_answered:{'.'.join(others)}",)
    assert (entry.case_ref, entry.legal_basis, entry.consent_refs) == (None, None, ())
    assert entry.recipient == "hub"
    assert entry.state_sha256 is None  # a question changes no hub state
    assert entry.subject_ref is not None  # pseudonymous, of this message only

    # Someone with no open case: no. A closed case is no longer an involvement.
    stranger = fictitious_personnummer(birth_date(world.youth), 985)
    none = await cli(world, keys_dir, P, "existence", stdin=stranger)
    assert none.code == 0, none
    assert "involved: no other agency" in none.out
    await world.adapters[SO].send(
        MessageType.CASE_CLOSED,
        CaseClosed(reason=ClosureReason.PLAN_COMPLETED, closed_by="social_case_worker"),
        case_ref=case,
    )
    await world.settle()
    closed = await cli(world, keys_dir, P, "existence", stdin=world.youth)
    assert "involved: no other agency" in closed.out, closed
    answers = [e.reasons for e in await queries(world)]
    assert answers[1:] == [("existence_answered:none",), ("existence_answered:none",)]
