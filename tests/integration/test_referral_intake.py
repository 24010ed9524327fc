"""Referral intake (issue 13): `sigbus social referrals` lists what social services
received, and `sigbus social case open --referral` links the case to it in the hub state
(a hub record in the log), so the report can measure the time from referral to plan."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import CaseOpened
from sigbus.protocol.reasons import ReasonCode
from tests.integration.conftest import LUL6, World
from tests.integration.test_audit_log import referral
from tests.integration.test_decision_notice_cli import cli
from tests.integration.test_social_cases_cli import local, one_line_error

P, SO = "police", "social"


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("SIGBUS_DATA_DIR", str(data))
    return data


async def test_the_queue_lists_referrals_and_a_case_opened_for_one_is_linked_at_the_hub(
    world: World, keys_dir: Path, data_dir: Path
) -> None:
    sent = await world.adapters[P].send(
        MessageType.REFERRAL, referral(world), recipients=(SO,), assertion=LUL6
    )
    await world.broker.drain_ingress(idle_timeout=0.3)
    fetched = await cli(world, keys_dir, "social", "inbox")
    assert fetched.code == 0, fetched

    queue = local("social", "referrals")
    assert queue.code == 0, queue
    (line,) = [x for x in queue.out.splitlines() if x.startswith(sent)]
    assert "from police" in line
    assert "basis lul_6 (lul_6_notification)" in line
    assert line.endswith("no case opened")
    assert world.youth not in queue.out
    assert world.youth.replace("-", "") not in queue.out

    unknown = await cli(
        world, keys_dir, "social", "case", "open", "--referral", "msg-notreceivedyet",
        stdin=world.youth,
    )  # fmt: skip
    one_line_error(unknown, "unknown referral", "sigbus social inbox")

    opened = await cli(
        world, keys_dir, "social", "case", "open", "--guardian", "vh-1", "--referral", sent,
        stdin=world.youth,
    )  # fmt: skip
    assert opened.code == 0, opened
    case = opened.out.splitlines()[-1].split()[1]
    record = world.broker.state.cases[case]
    assert record.referral is not None
    assert record.referral.message_id == sent
    released = (await world.entries_for(sent))[SO]
    assert record.referral.received_at <= record.opened_at
    assert abs((record.referral.received_at - released.decided_at).total_seconds()) < 5
    (hub_record,) = [
        e
        for e in await world.log_entries()
        if e.case_ref == case and e.message_type is MessageType.CASE_OPENED
    ]
    assert hub_record.recipient == "hub"
    assert hub_record.state_sha256 is not None  # the link is in the case_opened hub record

    listed = json.loads(local("social", "referrals", "--json").out)
    (mine,) = [x for x in listed if x["message_id"] == sent]
    assert mine["case_ref"] == case
    assert set(mine) == {
        "message_id", "sender", "kind", "basis", "received_at", "log_index", "case_ref",
    }  # fmt: skip

    # The register knows it has a case; the hub refuses a second link all the same.
    again = await cli(
        world, keys_dir, "social", "case", "open", "--referral", sent, stdin=world.youth
    )
    one_line_error(again, f"already has case {case}")
    body = CaseOpened(
        personnummer=world.youth,
        guardians_with_custody=(),
        parties=(SO, P),
        referral=record.referral,
    )
    twice = await world.adapters[SO].send(MessageType.CASE_OPENED, body, case_ref="case-second")
    await world.broker.drain_ingress(idle_timeout=0.3)
    assert (await world.entries_for(twice))["-"].reasons == (
        ReasonCode.REFERRAL_ALREADY_LINKED.value,
    )
