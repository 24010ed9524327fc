"""No personnummer outside ciphertext: a whole scripted CLI session, grepped afterwards.

Issue #9, "Done when": a grep of the whole data directory, every log and every
CLI output of a scripted session, in the 10- and 12-digit forms with and
without the dash, finds no personnummer. The session is the README's story
(`sigbus up`, each agency's commands, a withdrawal, export, verify, query,
`sigbus down`) plus the demo, every command a real `sigbus` subprocess logging
at debug level. Afterwards every byte is searched: the outputs, every file
under both data directories, the NATS server's JetStream store (binary files,
grepped as bytes) and its log. The self-check proves the same grep finds a
personnummer where one was written, so a grep that can see nothing cannot pass.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sigbus.fixtures import birth_date_for_age, fictitious_personnummer
from sigbus.transport.keystore import DEV_KEYS_DIR

SIGBUS = [sys.executable, "-m", "sigbus", "--log-level", "debug"]
REPO = Path(__file__).resolve().parents[2]
#: A compliance officer's trusted inputs: the signed directory and the pinned root.
TRUSTED = ("--directory", str(DEV_KEYS_DIR / "directory.json"),
           "--root", str(DEV_KEYS_DIR / "root.json"))  # fmt: skip
#: Entries the README story logs: 2 referrals, the case, 3 consents, 2 invitations,
#: 2 commitments, 2 statuses, the refused and the recorded withdrawal, 2 denied statuses,
#: and 3 retractions: what waited unfetched under the withdrawn consent (the school's
#: invitation, the commitment and the status to social services; the police had fetched).
LOG_LENGTH = 19


def forms(personnummer: str) -> tuple[bytes, ...]:
    """YYYYMMDD-NNNN, YYYYMMDDNNNN, YYMMDD-NNNN and YYMMDDNNNN (the ``+`` form is not needed)."""
    birth, serial = personnummer.split("-")
    return tuple(
        text.encode()
        for text in (personnummer, birth + serial, f"{birth[2:]}-{serial}", birth[2:] + serial)
    )


def find_personnummer(files: list[Path], numbers: list[str]) -> list[tuple[str, str]]:
    """(file, form) for every form of every number found in any of ``files``, as bytes."""
    needles = [(form, form.decode()) for number in numbers for form in forms(number)]
    found = []
    for path in files:
        data = path.read_bytes()
        found += [(str(path), text) for needle, text in needles if needle in data]
    return found


def every_file(*roots: Path) -> list[Path]:
    return sorted(p for root in roots for p in root.rglob("*") if p.is_file())


@dataclass
class Session:
    """Runs `sigbus` commands against one `sigbus up`, keeping every output as a file."""

    data: Path
    outputs: Path
    count: int = 0
    results: list[subprocess.CompletedProcess[bytes]] = field(default_factory=list)

    def run(self, *args: str, stdin: str | None = None, ok: bool = True) -> str:
        self.count += 1
        result = subprocess.run(
            [*SIGBUS, *args],
            input=stdin.encode() if stdin is not None else None,
            capture_output=True,
            timeout=180,
            check=False,
            cwd=REPO,
            env=self.env(),
        )
        # Outputs live outside the data directories: grepped as outputs, not as data.
        (self.outputs / f"{self.count:02d}-{args[0]}.stdout").write_bytes(result.stdout)
        (self.outputs / f"{self.count:02d}-{args[0]}.stderr").write_bytes(result.stderr)
        assert (result.returncode == 0) is ok, (args, result.stderr[-2000:])
        return result.stdout.decode()

    @contextlib.contextmanager
    def up(self) -> Iterator[subprocess.Popen[bytes]]:
        """`sigbus up` on this session's data directory, its output kept beside the
        commands'; stopped with `sigbus down` (a clean exit asserted), killed if the
        body failed."""
        with (
            (self.outputs / "up.stdout").open("wb") as out,
            (self.outputs / "up.stderr").open("wb") as err,
        ):
            up = subprocess.Popen(
                [*SIGBUS, "up", "--data-dir", str(self.data)],
                cwd=REPO,
                stdout=out,
                stderr=err,
                env=self.env(),
            )
            try:
                wait_for_up(self.data, up)
                yield up
                self.run("down", "--data-dir", str(self.data))
                assert up.wait(timeout=30) == 0
            finally:
                if up.poll() is None:
                    up.kill()
                    up.wait()

    def env(self) -> dict[str, str]:
        return {**os.environ, "SIGBUS_DATA_DIR": str(self.data)}


def wait_for_up(data: Path, up: subprocess.Popen[bytes]) -> None:
    state = data / "sigbus-up.json"
    deadline = time.monotonic() + 30
    while not state.exists() and time.monotonic() < deadline and up.poll() is None:
        time.sleep(0.1)
    assert state.exists(), f"sigbus up did not start (exit status {up.poll()})"


#: The parties whose adapters witness the hub's log (every agency in keys/dev/ but the hub).
WITNESSES = ("police", "school", "social")


def witnesses_cosign(session: Session, case_systems: Path, size: int) -> None:
    """Each party's adapter (`sigbus <agency> serve`) cosigns the hub's checkpoint of ``size``.

    In a deployment they run all the time; the README starts them for a few
    seconds, as here. Their case systems (which hold what the agency received)
    are outside the grepped directories; their logs are grepped with the outputs.
    """
    case_systems.mkdir(exist_ok=True)
    running = []
    for agency in WITNESSES:
        log = (session.outputs / f"serve-{agency}.stderr").open("wb")
        command = [*SIGBUS, agency, "serve", "--out", str(case_systems / f"{agency}-received")]
        process = subprocess.Popen(command, cwd=REPO, stdout=log, stderr=log, env=session.env())
        running.append((process, log))
    try:
        deadline = time.monotonic() + 60
        while not all(cosigned_size(case_systems / f"witness-{a}.json") == size
                      for a in WITNESSES):  # fmt: skip
            assert time.monotonic() < deadline, "the witnesses did not cosign the log"
            time.sleep(0.2)
    finally:
        for process, log in running:
            process.terminate()
            process.wait(timeout=30)
            log.close()


def cosigned_size(state: Path) -> int | None:
    """The tree size of the last checkpoint a witness's state file says it cosigned."""
    try:
        note = json.loads(state.read_text())["last_checkpoint"]
    except (OSError, ValueError):
        return None
    return int(note.split("\n")[1]) if note else None


def readme_story(session: Session, youth: str, classmate: str) -> None:
    """The README's "Trying it by hand", step by step, plus the refusals."""
    run, data = session.run, session.data
    until = (datetime.now(UTC) + timedelta(days=180)).replace(microsecond=0).isoformat()
    due = (date.today() + timedelta(days=30)).isoformat()
    run("police", "refer", "--reason", "suspected_offence", "--reason", "weapon",
        "--evidence-id", "dnr-k1234", stdin=youth + "\n")  # fmt: skip
    run("school", "refer", "--reason", "school_absence", "--evidence-id", "dnr-s5678",
        stdin=classmate + "\n")  # fmt: skip
    time.sleep(1.5)  # the broker decides
    assert run("social", "inbox").count("referral") == 2
    run("social", "case", "open", "--guardian", "vh-1", "--guardian", "vh-2",
        "--case", "case-trial", stdin=youth + "\n")  # fmt: skip
    (data / "form.pdf").write_text("signed consent form\n")
    for who in (
        ["--young-person", "--consent-id", "consent-youngperson"],
        ["--guardian", "vh-1", "--consent-id", "consent-guardianone"],
        ["--guardian", "vh-2", "--consent-id", "consent-guardiantwo"],
    ):
        run("social", "consent", "give", "--case", "case-trial", *who,
            "--evidence", str(data / "form.pdf"), "--until", until,
            "--category", "case_invitation", "--category", "plan_commitment",
            "--category", "commitment_status", "--category", "meeting_notice")  # fmt: skip
    run("social", "invite", "--case", "case-trial", "--to", "police", "--to", "school",
        stdin=youth + "\n")  # fmt: skip
    run("school", "commit", "school_attendance_plan", "--owner", "school_counsellor",
        "--case", "case-trial", "--due", due, "--commitment-id", "cm-attendance",
        "--to", "social", "--to", "police")  # fmt: skip
    run("school", "status", "in_progress", "--case", "case-trial",
        "--commitment", "cm-attendance", "--to", "social", "--to", "police")  # fmt: skip
    time.sleep(1.5)
    assert "commitment_status" in run("police", "inbox")
    # Typed with the wrong consenter flag: refused, and the command says so (exit 1).
    refused = run("social", "consent", "withdraw", "--case", "case-trial", "--young-person",
                  "--consent-id", "consent-guardiantwo", ok=False)  # fmt: skip
    assert "REFUSED by the hub" in refused
    run("social", "consent", "withdraw", "--case", "case-trial", "--guardian", "vh-2",
        "--consent-id", "consent-guardiantwo")  # fmt: skip
    denied = run("school", "status", "done", "--case", "case-trial",
                 "--commitment", "cm-attendance", "--to", "social", "--to", "police",
                 ok=False)  # fmt: skip
    assert "DENIED to police: policy:consent_withdrawn:guardian:vh-2" in denied
    time.sleep(1.5)
    assert "0 message(s)" in run("police", "inbox")
    # Refusals must not repeat what was typed: a wrong check digit, and a
    # personnummer where an id belongs.
    wrong = youth[:-1] + str((int(youth[-1]) + 1) % 10)
    run("police", "refer", "--reason", "weapon", "--evidence-id", "dnr-k1234",
        stdin=wrong + "\n", ok=False)  # fmt: skip
    run("social", "case", "open", "--case", f"case-{youth}", stdin=youth + "\n", ok=False)
    time.sleep(1.5)
    # The idle hub has checkpointed every entry by now (the sleeps above).
    witnesses_cosign(session, data.parent / "case-systems", LOG_LENGTH)
    export = data / "log-export.jsonl"
    run("audit", "export", "--out", str(export))
    assert json.loads(export.read_text().splitlines()[0])["entries"] == LOG_LENGTH
    verified = json.loads(run("audit", "verify", "--json", str(export), *TRUSTED))
    assert (verified["verdict"], verified["entries"]) == ("verified", LOG_LENGTH)
    assert "consent_withdrawn" in run("audit", "query", str(export), "--outcome", "deny")
    run("audit", "query", str(export))


def test_a_scripted_session_leaves_no_personnummer_anywhere(tmp_path: Path) -> None:
    today = date.today()
    youth = fictitious_personnummer(birth_date_for_age(today, 16), 983)
    classmate = fictitious_personnummer(birth_date_for_age(today, 14), 984)
    # What `sigbus demo` uses (sigbus/demo.py), for the day it runs.
    demo_youth = {fictitious_personnummer(birth_date_for_age(today, 16), 981)}
    outputs, data, demo_data = tmp_path / "outputs", tmp_path / "data", tmp_path / "demo"
    outputs.mkdir()
    session = Session(data, outputs)

    with session.up():
        readme_story(session, youth, classmate)
    demo = session.run("demo", "--json", "--data-dir", str(demo_data))
    assert json.loads(demo)["ok"] is True
    demo_youth.add(fictitious_personnummer(birth_date_for_age(date.today(), 16), 981))

    files = every_file(outputs, data, demo_data)
    # The grep saw the whole session: the outputs, both JetStream stores and the
    # server logs, and the up process's decisions.
    names = {p.name for p in files}
    assert "nats-server.log" in names
    stores = [p for p in files if "jetstream" in p.parts and p.suffix == ".blk"]
    assert len({p.parts[len(tmp_path.parts)] for p in stores}) == 2, "both stores grepped"
    assert b'"event": "decision"' in (outputs / "up.stderr").read_bytes()
    assert sum(p.stat().st_size for p in stores) > 50_000

    numbers = [youth, classmate, *demo_youth]
    assert find_personnummer(files, numbers) == []

    # Self-check: the same grep finds each form where it was written on purpose
    # (a 12-digit form also holds the 10-digit one, so "among what it found").
    planted = tmp_path / "planted.bin"
    for form in forms(youth):
        planted.write_bytes(b"\x00\x01binary " + form + b" \xff")
        found = find_personnummer([*files, planted], numbers)
        assert (str(planted), form.decode()) in found
        assert {path for path, _ in found} == {str(planted)}
