"""The sender always learns the outcome (issue 13): the real CLI against a real hub.

Each sending command runs as its own process, as a user would run it, against the
session's nats-server, while the test's hub decides. Every deny the issue lists
gives a refused/denied notice with the right reason and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from sigbus.fixtures import birth_date_for_age, fictitious_personnummer
from sigbus.protocol.ids import MessageType, new_opaque_id
from sigbus.protocol.messages import CaseOpened
from sigbus.transport.keystore import DEV_AGENCIES
from tests.integration.conftest import World

SIGBUS = [sys.executable, "-m", "sigbus"]
REPO = Path(__file__).resolve().parents[2]
P, S, SO = "police", "school", "social"
EXIT_DENIED, EXIT_NO_DECISION = 1, 3


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


async def cli(world: World, keys: Path, *args: str, stdin: str = "", decide: bool = True) -> Run:
    """Run one `sigbus …` command while the hub decides (unless ``decide`` is off)."""
    proc = await asyncio.create_subprocess_exec(
        *SIGBUS,
        *args,
        "--nats",
        world.broker.url,
        "--keys",
        str(keys),
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    talk = asyncio.ensure_future(proc.communicate(stdin.encode()))
    while not talk.done():
        if decide:
            await world.broker.process_batch(timeout=0.2)
        else:
            await asyncio.sleep(0.2)
    out, err = talk.result()
    assert proc.returncode is not None
    return Run(proc.returncode, out.decode(), err.decode())


def index_in(out: str, recipient_phrase: str) -> int:
    """The log index the CLI printed on the line naming ``recipient_phrase``."""
    line = next(x for x in out.splitlines() if recipient_phrase in x)
    return int(line.rsplit("log index ", 1)[1].rstrip(")"))


async def test_a_withdrawal_with_the_wrong_consenter_is_refused_loudly(
    world: World, keys_dir: Path
) -> None:
    case = await world.open_case_with_consents()
    with structlog.testing.capture_logs() as logs:
        run = await cli(
            world,
            keys_dir,
            "social",
            "consent",
            "withdraw",
            "--case",
            case,
            "--consent-id",
            "consent-guardianvh1",  # a guardian's consent, typed as the young person's
            "--young-person",
        )
    assert run.code == EXIT_DENIED, run
    assert "REFUSED by the hub" in run.out
    assert "consent_conflict" in run.out
    assert "withdrawal was NOT applied" in run.err
    assert "sharing under it continues" in run.err
    alarms = [e for e in logs if e["event"] == "consent_withdrawal_refused"]
    assert len(alarms) == 1
    assert alarms[0]["log_level"] == "error"
    assert alarms[0]["reasons"] == "consent_conflict"
    entry = next(e for e in await world.log_entries() if e.index == index_in(run.out, "REFUSED"))
    assert entry.outcome.value == "deny"
    assert entry.reasons == ("consent_conflict",)


async def test_a_consent_for_a_guardian_not_in_the_case_is_refused(
    world: World, keys_dir: Path, tmp_path: Path
) -> None:
    case = await world.open_case_with_consents()
    form = tmp_path / "form.pdf"
    form.write_bytes(b"signed consent form")
    until = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    run = await cli(
        world, keys_dir, "social", "consent", "give", "--case", case, "--guardian", "vh-9",
        "--evidence", str(form), "--until", until, "--category", "meeting_notice",
    )  # fmt: skip
    assert run.code == EXIT_DENIED, run
    assert "REFUSED by the hub, nothing changed: consent_conflict" in run.out
    assert "consent consent-" not in run.out  # no "consent <id>" as if it were recorded


async def test_opening_a_case_that_exists_is_refused(world: World, keys_dir: Path) -> None:
    case = await world.open_case_with_consents()
    run = await cli(world, keys_dir, "social", "case", "open", "--case", case, stdin=world.youth)
    assert run.code == EXIT_DENIED, run
    assert "case_exists" in run.out
    assert f"case {case}" not in run.out.splitlines()
    assert world.youth[-4:] not in run.out + run.err


async def test_a_lul6_notification_about_an_adult_is_denied(world: World, keys_dir: Path) -> None:
    adult = fictitious_personnummer(birth_date_for_age(datetime.now(UTC).date(), 20), 983)
    run = await cli(
        world, keys_dir, "police", "refer", "--reason", "weapon", "--evidence-id", "dnr-adult",
        stdin=adult,
    )  # fmt: skip
    assert run.code == EXIT_DENIED, run
    assert "DENIED to social: policy:statute_precondition_not_met:lul_6:age" in run.out
    assert adult[-4:] not in run.out + run.err
    logged = await world.entries_for(run.out.split()[2])
    assert logged[SO].outcome.value == "deny"
    assert index_in(run.out, "DENIED to social") == logged[SO].index


async def test_an_invitation_before_any_consent_is_denied(world: World, keys_dir: Path) -> None:
    case = new_opaque_id("case", 12)
    await world.adapters[SO].send(
        MessageType.CASE_OPENED,
        CaseOpened(
            personnummer=world.youth, guardians_with_custody=("vh-1",), parties=DEV_AGENCIES
        ),
        case_ref=case,
    )
    await world.settle()
    run = await cli(
        world, keys_dir, "social", "invite", "--case", case, "--to", S, stdin=world.youth
    )
    assert run.code == EXIT_DENIED, run
    assert "DENIED to school: policy:consent_missing:young_person" in run.out
    assert "denied for 1 of 1 recipient(s)" in run.out


async def test_a_released_referral_exits_zero_with_the_logs_indexes(
    world: World, keys_dir: Path
) -> None:
    run = await cli(
        world, keys_dir, "police", "refer", "--reason", "weapon", "--evidence-id", "dnr-ok",
        stdin=world.youth,
    )  # fmt: skip
    assert run.code == 0, run
    assert ": all released" in run.out
    message_id = run.out.split()[2]
    logged = await world.entries_for(message_id)
    assert logged[SO].outcome.value == "release"
    assert index_in(run.out, "released to social") == logged[SO].index
    assert world.youth[-4:] not in run.out + run.err


async def test_no_decision_in_time_exits_3_and_no_wait_exits_0(
    world: World, keys_dir: Path
) -> None:
    refer = ("police", "refer", "--reason", "weapon", "--evidence-id", "dnr-wait")
    late = await cli(world, keys_dir, *refer, "--timeout", "1", stdin=world.youth, decide=False)
    assert late.code == EXIT_NO_DECISION, late
    assert "no decision from the hub within 1s" in late.err
    skipped = await cli(world, keys_dir, *refer, "--no-wait", stdin=world.youth, decide=False)
    assert skipped.code == 0, skipped
    assert "--no-wait" in skipped.out
    assert "decision for" not in skipped.out
    # Both are stored and decided later; each sender's notice waits in its inbox.
    await world.broker.drain_ingress(idle_timeout=0.3)
    notices: list[str] = []

    async def keep(notice: object) -> None:
        notices.append(getattr(notice, "message_id", ""))

    async def drop(_: object) -> None:
        raise AssertionError("a notice was handed to the case system")

    while await world.adapters[P].receive(drop, on_notice=keep, timeout=0.3):
        pass
    assert set(notices) == {late.out.split()[2], skipped.out.split()[2]}
