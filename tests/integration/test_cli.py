"""The command line as users run it: demo, up/down with agency commands, compose config."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from sigbus.transport.natsserver import pid_alive

SIGBUS = [sys.executable, "-m", "sigbus"]
REPO = Path(__file__).resolve().parents[2]


def run(
    *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SIGBUS, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO,
    )


def wait_for(condition: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    return condition()


def start_up(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`sigbus up` in the background; returns the process and its NATS URL once serving."""
    up = subprocess.Popen(
        [*SIGBUS, "up", "--data-dir", str(data)],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    state = data / "sigbus-up.json"
    assert wait_for(state.exists, 30), "sigbus up did not start"
    return up, json.loads(state.read_text())["nats_url"]


def test_demo_json_reports_every_expectation_held(tmp_path: Path) -> None:
    result = run("demo", "--json", "--data-dir", str(tmp_path), timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["releases_by_type"]["referral"] == 1
    assert report["denies_by_type"]["commitment_status"] == 3
    assert report["log_length"] == 45
    assert report["releases_by_type"]["meeting_minutes"] == 3  # 5c, to the parties
    assert report["releases_by_type"]["plan_revision"] == 3  # the plan, version 1 (7d)
    assert report["releases_by_type"]["commitment_reminder"] == 1  # the overdue one (7c)
    # opened, selected, three consents, withdrawal, the questionnaire (10b), closed
    assert report["recorded"] == 8
    # The refused withdrawal and the denied status each came back to their sender.
    steps = {x["step"].split(".")[0]: x for x in report["expectations"]}
    assert all(x["held"] for x in report["expectations"])
    assert steps["9"]["notice"]["items"][0]["outcome"] == "refused"
    assert steps["9b"]["notice"]["items"][0]["outcome"] == "confirmed"
    assert {i["outcome"] for i in steps["10"]["notice"]["items"]} == {"denied"}
    # The life cycle (issue 13): selected on a SAVRY assessment, consent collected from
    # all three, paused by the withdrawal, closed; then everything is denied case_closed.
    assert steps["2b"]["case_state"]["observed"]["selection"] == "savry as-savry-k12"
    assert steps["2b"]["case_state"]["observed"]["status"] == "consent_collection"
    collected = steps["3b"]["case_state"]["observed"]
    assert (collected["status"], collected["missing"]) == ("active", "none")
    assert collected["guardian:vh-2"].startswith("given until ")
    assert steps["3b"]["notice"] is None  # a step that reads the hub's state, sends nothing
    # The meeting the police had not fetched is pulled back by the withdrawal, and logged.
    assert steps["8b"]["observed"] == {"police": "release"}
    assert steps["8a"]["observed"] == {"police": "release"}  # the hub's one reminder
    assert steps["8a"]["notice"] is None
    assert steps["7d"]["case_state"]["observed"]["plan"].startswith("version 1: ")
    assert steps["9b"]["observed"] == {"hub": "recorded", "police": "retraction"}
    assert steps["9b"]["case_state"]["observed"]["status"] == "paused"
    assert report["retractions"] == 1
    assert steps["11"]["case_state"]["observed"]["closure"] == "plan_completed"
    assert steps["12"]["notice"]["items"][0]["reasons"] == ["case_closed"]
    assert report["audit"]["ok"] is True
    # The retention run: the referral's key shredded as scheduled, the hub refuses to open
    # it, the rest opens, and the log one entry longer still verifies.
    retention = report["retention"]
    assert retention["ok"] is True
    assert retention["as_scheduled"] is True
    assert retention["shredded"] == report["releases_by_type"]["referral"]
    assert retention["refusals"] == ["content_shredded"] * retention["shredded"]
    assert f"{report['log_length'] + retention['shredded']} entries" in retention["verify"]
    # SiS joined by configuration only: it received releases under consent, and witnessed.
    assert report["received_by_agency"]["sis"] == 6  # with the meeting's records and the plan
    assert len(report["audit"]["cosigned_by"]) == 4
    export = Path(report["audit"]["export"])
    keys = export.parent / "keys"  # the demo's own root and signed directory
    trusted = run("audit", "verify", str(export), "--directory", str(keys / "directory.json"),
                  "--root", str(keys / "root.json"))  # fmt: skip
    assert trusted.returncode == 0, trusted.stderr
    assert trusted.stdout.startswith("VERIFIED / VERIFIERAD")
    assert "quorum 4 of 4" in trusted.stdout
    assert run("audit", "verify", str(export)).returncode == 2  # nothing trusted given
    assert (
        "20"
        not in "".join(  # no personnummer digits anywhere in the export's entries
            line for line in export.read_text().splitlines()[1:-1] if "personnummer" in line
        )
    )


def test_up_agency_commands_and_down_leave_no_process(tmp_path: Path) -> None:
    data = tmp_path / "data"
    up, url = start_up(data)
    state = data / "sigbus-up.json"
    try:
        env_args = ("--nats", url)
        refer = run(
            "police",
            "refer",
            "--reason",
            "weapon",
            "--evidence-id",
            "dnr-cli-test",
            *env_args,
            stdin="20100315-9801\n",
        )
        assert refer.returncode == 0, refer.stderr
        assert "9801" not in refer.stdout + refer.stderr
        time.sleep(1.5)  # the broker decides
        inbox = run("social", "inbox", *env_args)
        assert inbox.returncode == 0, inbox.stderr
        assert "referral" in inbox.stdout
        assert "basis=lul_6 [statutory]" in inbox.stdout
        assert "9801" not in inbox.stdout
        bad = run(
            "police",
            "refer",
            "--reason",
            "weapon",
            "--evidence-id",
            "dnr-cli-test",
            *env_args,
            stdin="20100315-9802\n",
        )
        assert bad.returncode == 2
        assert "personnummer" in bad.stderr
        assert "9802" not in bad.stderr
        # A personnummer typed where an id belongs is refused without being repeated.
        misplaced = run(
            "social",
            "case",
            "open",
            "--case",
            "case-20100315-9801",
            *env_args,
            stdin="20100315-9801\n",
        )
        assert misplaced.returncode == 2
        assert "case_ref" in misplaced.stderr
        assert "9801" not in misplaced.stdout + misplaced.stderr
        server_pids = [int(p.stem.split("_")[-1]) for p in (data / "nats" / "run").glob("*.ports")]
        assert len(server_pids) == 1
        down = run("down", "--data-dir", str(data))
        assert down.returncode == 0, down.stderr
        assert up.wait(timeout=20) == 0
        assert not pid_alive(server_pids[0])
        assert not state.exists()
    finally:
        if up.poll() is None:
            up.send_signal(signal.SIGKILL)
            up.wait()


def test_killed_parent_takes_the_embedded_server_with_it(tmp_path: Path) -> None:
    """No orphan even when `sigbus up` dies without cleaning up (SIGKILL)."""
    data = tmp_path / "data"
    up, _ = start_up(data)
    ports = list((data / "nats" / "run").glob("*.ports"))
    assert len(ports) == 1
    server_pid = int(ports[0].stem.split("_")[-1])
    os.kill(up.pid, signal.SIGKILL)
    up.wait()
    assert wait_for(lambda: not pid_alive(server_pid), 10)


OWN_CASE_SYSTEM = """
import json, os


class Recorder:
    \"\"\"An agency's own case system: here it keeps ids and the body's kind only.\"\"\"

    def __init__(self, path):
        self.path = path

    async def deliver(self, delivered):
        line = json.dumps({"message_id": delivered.header.message_id,
                           "kind": delivered.body.kind.value}) + "\\n"
        with open(self.path, "a") as f:
            f.write(line)
"""


@pytest.mark.parametrize("own_class", [False, True], ids=["directory-drop", "sink-class"])
def test_serve_delivers_into_the_case_system_and_witnesses_the_log(
    tmp_path: Path, own_class: bool
) -> None:
    data = tmp_path / "data"
    up, url = start_up(data)
    serve = None
    try:
        out = tmp_path / ("social-casesystem.jsonl" if own_class else "social-drop")
        (tmp_path / "agencycs.py").write_text(OWN_CASE_SYSTEM)
        chosen = ["--sink", "agencycs:Recorder"] if own_class else []
        serve = subprocess.Popen(
            [*SIGBUS, "social", "serve", "--nats", url, "--out", str(out), *chosen],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(tmp_path)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        refer = run(
            "police",
            "refer",
            "--reason",
            "weapon",
            "--evidence-id",
            "dnr-cli-test",
            "--nats",
            url,
            stdin="20100315-9801\n",
        )
        assert refer.returncode == 0, refer.stderr
        witness = tmp_path / "witness-social.json"
        dropped = (lambda: out.exists()) if own_class else (lambda: any(out.glob("*.json")))
        wait_for(lambda: dropped() and witness.exists(), 30)
        assert dropped(), "nothing delivered to the case system"
        if own_class:
            delivered = json.loads(out.read_text().splitlines()[0])
            assert delivered["kind"] == "lul_6_notification"
        else:
            [file] = out.glob("*.json")
            delivered = json.loads(file.read_text())
            assert delivered["body"]["personnummer"] == "20100315-9801"  # inside the agency
            assert file.name == f"{delivered['release']['release_id']}.json"
            assert oct(file.stat().st_mode & 0o777) == "0o600"
        assert witness.exists(), "the adapter did not cosign a checkpoint"
        assert "sigbus/dev/disclosure-log" in witness.read_text()
    finally:
        if serve is not None:
            serve.terminate()
            serve.wait(timeout=10)
        run("down", "--data-dir", str(data))
        if up.poll() is None:
            up.kill()
        up.wait()
