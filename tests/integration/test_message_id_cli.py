"""A caller-chosen ``--message-id`` makes a sending command an idempotent retry (issue #12).

Each command runs as its own process against the session's nats-server while the
test's hub decides, with its outbox in a fresh data directory.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from sigbus.fixtures import birth_date_for_age, fictitious_personnummer
from tests.integration.conftest import World
from tests.integration.test_decision_notice_cli import REPO, SIGBUS, cli

P, SO = "police", "social"


@pytest.fixture(autouse=True)
def own_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("SIGBUS_DATA_DIR", str(data))  # the subprocesses inherit it
    return data


def errors(err: str) -> list[str]:
    """stderr without the development-keys notice every `--dev` start prints."""
    return [x for x in err.strip().splitlines() if not x.startswith("sigbus: using the DEV")]


def refer(reason: str, message_id: str) -> tuple[str, ...]:
    return ("police", "refer", "--reason", reason, "--evidence-id", "dnr-retry",
            "--message-id", message_id)  # fmt: skip


async def test_a_retry_with_the_same_message_id_is_not_sent_twice(
    world: World, keys_dir: Path, own_data_dir: Path
) -> None:
    mid = "msg-retry-police-aaaa"
    first = await cli(world, keys_dir, *refer("weapon", mid), stdin=world.youth)
    assert first.code == 0, first
    assert f"sent referral {mid}" in first.out
    outcome = [line for line in first.out.splitlines() if "social" in line]
    assert outcome, first.out
    assert (own_data_dir / "outbox-police.sqlite").exists()

    again = await cli(world, keys_dir, *refer("weapon", mid), stdin=world.youth)
    assert again.code == 0, again
    assert f"already sent referral {mid}: a retry, not sent again" in again.out
    assert [line for line in again.out.splitlines() if "social" in line] == outcome
    await world.settle()
    assert len([e for e in await world.log_entries() if e.message_id == mid]) == 1
    assert world.received_ids(SO).count(mid) <= 1

    other = await cli(world, keys_dir, *refer("suspected_offence", mid), stdin=world.youth)
    assert other.code == 2, other
    assert errors(other.err) == [
        f"error: message id {mid} was already used for a different message; "
        "a retry must repeat the same content, a new message needs a new id"
    ]
    assert world.youth[-4:] not in other.out + other.err
    assert len([e for e in await world.log_entries() if e.message_id == mid]) == 1


@pytest.mark.parametrize(
    "bad", ["retry-1", "msg-short", "msg-20100315-9801", "msg-has space-in-it"]
)
async def test_a_malformed_message_id_exits_2_with_one_line(
    world: World, keys_dir: Path, bad: str
) -> None:
    run = await cli(world, keys_dir, *refer("weapon", bad), stdin=world.youth, decide=False)
    assert run.code == 2, run
    lines = errors(run.err)
    assert len(lines) == 1, run.err
    assert lines[0].startswith("error: --message-id takes msg-")
    assert bad not in run.err  # an id that may hold a personnummer is not echoed
    assert "sent" not in run.out
    assert await world.log_entries() == []


async def test_every_sending_command_takes_a_message_id(world: World, keys_dir: Path) -> None:
    commands = [
        ("police", "refer"), ("school", "refer"), ("police", "commit"), ("police", "status"),
        ("social", "case", "open"), ("social", "consent", "give"),
        ("social", "consent", "withdraw"), ("social", "invite"), ("social", "meeting"),
    ]  # fmt: skip
    for command in commands:
        run = await cli(world, keys_dir, *command, "--help", decide=False)
        assert run.code == 0, (command, run)
        assert "--message-id" in run.out, command


async def test_a_send_the_bus_does_not_take_is_kept_and_a_retry_delivers_it_once(
    nats_url: str,
    keys_dir: Path,
    make_world: Callable[[Path], Awaitable[World]],
) -> None:
    """No hub yet (no streams): the command says the message is kept under its id and
    exits 3; the retry with that id, once the hub is up, sends it, and only once."""
    mid = "msg-kept-in-outbox"
    youth = fictitious_personnummer(birth_date_for_age(datetime.now(UTC).date(), 16), 982)
    proc = await asyncio.create_subprocess_exec(
        *SIGBUS, *refer("weapon", mid), "--no-wait", "--nats", nats_url, "--keys",
        str(keys_dir), cwd=REPO, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate(youth.encode())
    assert proc.returncode == 3, (out, err)
    [line] = [x for x in errors(err.decode()) if not x.startswith("{")]  # events aside
    assert f"kept in the outbox as {mid}" in line
    assert f"retry with --message-id {mid}, never under a new id" in line
    world = await make_world(keys_dir)
    world.youth = youth
    again = await cli(world, keys_dir, *refer("weapon", mid), stdin=youth)
    assert again.code == 0, again
    assert f"sent referral {mid}" in again.out
    await world.settle()
    assert len([e for e in await world.log_entries() if e.message_id == mid]) == 1
    assert world.received_ids(SO) == [mid]
