"""`sigbus social cases` and `sigbus social case show` (issue 13), through the real CLI.

The social worker's picture of a case comes from what social services' adapter can
know: what it sent, the hub's decision notices, and what `sigbus social inbox`
fetched. Ordinary mistakes get one line and exit 2, never a traceback.
"""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sigbus.protocol.personnummer import birth_date
from tests.integration.conftest import World
from tests.integration.test_decision_notice_cli import REPO, SIGBUS, Run, cli

S, SO = "school", "social"
CATEGORIES = (
    "plan_commitment",
    "commitment_status",
    "meeting_notice",
    "case_invitation",
    "plan_revision",
)


def local(*args: str) -> Run:
    """A command that reads only the local case register (no hub, no NATS)."""
    proc = subprocess.run([*SIGBUS, *args], cwd=REPO, capture_output=True, text=True, check=False)
    return Run(proc.returncode, proc.stdout, proc.stderr)


def one_line_error(run: Run, *needles: str) -> None:
    assert run.code == 2, run
    assert "Traceback" not in run.err
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert lines[0].startswith("error: ")
    for needle in needles:
        assert needle in lines[0], run.err


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    data = tmp_path / "data"
    monkeypatch.setenv("SIGBUS_DATA_DIR", str(data))
    return data


async def test_case_show_gives_the_whole_picture_on_one_screen(
    world: World, keys_dir: Path, tmp_path: Path, data_dir: Path
) -> None:
    form = tmp_path / "form.pdf"
    form.write_bytes(b"signed consent form")
    until = (datetime.now(UTC) + timedelta(days=60)).replace(microsecond=0)
    opened = await cli(
        world, keys_dir, "social", "case", "open", "--guardian", "vh-1", "--guardian", "vh-2",
        stdin=world.youth,
    )  # fmt: skip
    assert opened.code == 0, opened
    case = opened.out.splitlines()[-1].split()[1]
    selected = await cli(
        world, keys_dir, "social", "case", "select", "--case", case, "--instrument", "savry",
        "--assessment-id", "as-savry-k12",
    )  # fmt: skip
    assert selected.code == 0, selected

    def consent(*who: str) -> tuple[str, ...]:
        cats = [a for c in CATEGORIES for a in ("--category", c)]
        return ("social", "consent", "give", "--case", case, *who, "--evidence", str(form),
                "--until", until.isoformat(), *cats)  # fmt: skip

    for who in (("--young-person",), ("--guardian", "vh-1")):
        given = await cli(world, keys_dir, *consent(*who))
        assert given.code == 0, given
    listed = local("social", "cases")
    assert listed.code == 0, listed
    assert f"{case}  consent_collection" in listed.out
    assert "consent 2/3" in listed.out

    assert (await cli(world, keys_dir, *consent("--guardian", "vh-2"))).code == 0
    overdue_day = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    committed = await cli(
        world, keys_dir, "school", "commit", "--case", case, "school_attendance_plan",
        "--to", SO, "--due", overdue_day, "--commitment-id", "cm-attendance",
    )  # fmt: skip
    assert committed.code == 0, committed
    revised = await cli(
        world, keys_dir, "social", "plan", "--case", case, "--version", "1",
        "--commitment", "cm-attendance", "--to", S,
    )  # fmt: skip
    assert revised.code == 0, revised
    stale = await cli(
        world, keys_dir, "social", "plan", "--case", case, "--version", "1",
        "--commitment", "cm-attendance", "--to", S,
    )  # fmt: skip
    assert stale.code == 1, stale  # not the plan's next version: denied, and said so
    assert "plan_conflict" in stale.out + stale.err
    for state in ("in_progress", "not_done"):
        extra = ("--reason", "young_person_absent") if state == "not_done" else ()
        reported = await cli(
            world, keys_dir, "school", "status", "--case", case, "--commitment",
            "cm-attendance", state, *extra, "--to", SO,
        )  # fmt: skip
        assert reported.code == 0, reported
    meeting_at = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0)
    called = await cli(
        world, keys_dir, "social", "meeting", "--case", case, "--at", meeting_at.isoformat(),
        "school", "--agenda", "plan_review", "--agenda", "commitment_follow_up", "--to", S,
    )  # fmt: skip
    assert called.code == 0, called
    fetched = await cli(world, keys_dir, "social", "inbox")
    assert fetched.code == 0, fetched
    denied = await cli(
        world, keys_dir, "social", "meeting", "--case", case, "--at", meeting_at.isoformat(),
        "school", "--agenda", "safety", "--to", "bup",
    )  # fmt: skip
    assert denied.code == 1, denied

    shown = local("social", "case", "show", case)
    assert shown.code == 0, shown
    out = shown.out
    assert out.splitlines()[0] == f"case {case}: active"
    assert "minor: the young person and every vårdnadshavare must consent" in out
    assert "on savry as-savry-k12" in out
    day = until.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    for consenter in ("young_person", "guardian:vh-1", "guardian:vh-2"):
        line = next(x for x in out.splitlines() if x.strip().startswith(consenter))
        assert "given consent-" in line
        assert f"until {day}" in line
    plan = next(x for x in out.splitlines() if "cm-attendance" in x)
    assert f"school school_attendance_plan (school_counsellor) due {overdue_day}" in plan
    assert plan.endswith("OVERDUE")
    assert "plan (version 1):" in out
    today = datetime.now(UTC).date().isoformat()
    assert f"    history: in_progress {today}, not_done {today}" in out
    assert f"next meeting: {meeting_at.strftime('%Y-%m-%d %H:%M UTC')} at school" in out
    assert "recent decisions:" in out
    assert "meeting_notice" in out
    assert "recipient_not_party" in out
    # Nothing personal beyond what the social worker holds: no personnummer, no birth date.
    dob = birth_date(world.youth)
    for secret in (world.youth, world.youth[-4:], dob.isoformat(), dob.strftime("%Y%m%d")):
        assert secret not in out + listed.out

    as_json = json.loads(local("social", "case", "show", case, "--json").out)
    assert as_json["status"] == "active"
    assert [c["state"] for c in as_json["consent"]] == ["given"] * 3
    assert as_json["plan"][0]["overdue"] is True
    assert as_json["plan_version"] == 1
    assert [h["status"] for h in as_json["plan"][0]["history"]] == ["in_progress", "not_done"]
    assert as_json["selection"]["instrument"] == "savry"
    assert world.youth not in json.dumps(as_json)
    assert [c["case_ref"] for c in json.loads(local("social", "cases", "--json").out)] == [case]

    closed = await cli(
        world, keys_dir, "social", "case", "close", "--case", case, "--reason", "plan_completed"
    )
    assert closed.code == 0, closed
    after = local("social", "case", "show", case)
    assert after.out.splitlines()[0] == f"case {case}: closed"
    assert ": plan_completed" in after.out
    # The register is the social worker's working copy: 0600, no personnummer in it.
    register = data_dir / "social-case-register.jsonl"
    assert register.stat().st_mode & 0o777 == 0o600
    assert world.youth not in register.read_text()


async def test_ordinary_mistakes_get_one_line_and_exit_2(
    world: World, keys_dir: Path, tmp_path: Path, data_dir: Path
) -> None:
    case = await world.open_case_with_consents()
    form = tmp_path / "form.pdf"
    form.write_bytes(b"signed")
    give = ("social", "consent", "give", "--case", case, "--young-person",
            "--category", "meeting_notice")  # fmt: skip
    one_line_error(
        await cli(world, keys_dir, *give, "--evidence", str(form), "--until", "15/12/2026"),
        "--until", "15/12/2026", "is not a date-time",
    )  # fmt: skip
    one_line_error(
        await cli(world, keys_dir, *give, "--evidence", str(form), "--until", "2026-12-15T10:00"),
        "has no time zone",
    )
    one_line_error(
        await cli(
            world, keys_dir, *give, "--evidence", str(tmp_path / "missing.pdf"),
            "--until", "2026-12-15T10:00+01:00",
        ),
        "--evidence", "missing.pdf", "cannot be read",
    )  # fmt: skip
    one_line_error(
        await cli(
            world, keys_dir, "school", "commit", "--case", case, "mentor", "--to", SO,
            "--due", "15/12/2026",
        ),
        "--due", "is not a date: write YYYY-MM-DD",
    )  # fmt: skip
    one_line_error(
        await cli(
            world, keys_dir, "social", "meeting", "--case", case, "--at", "15/12/2026 14:00",
            "school", "--agenda", "safety", "--to", S,
        ),
        "--at",
    )  # fmt: skip
    one_line_error(
        await cli(
            world, keys_dir, "social", "case", "select", "--case", case, "--instrument",
            "savry", "--assessment-id", "as-19900101",
        ),
        "invalid input at assessment_id", "six or more consecutive digits",
    )  # fmt: skip
    one_line_error(local("social", "case", "show", "case-nosuchcase"), "unknown case")
    # Nothing of the above reached the hub.
    kinds = {e.message_type for e in await world.log_entries() if e.case_ref == case}
    assert {k.value for k in kinds if k is not None} == {"case_opened", "consent_event"}
