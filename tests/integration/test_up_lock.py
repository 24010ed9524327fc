"""One `sigbus up` per data directory, and `sigbus down` always finds it (issue 12)."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from pathlib import Path

from tests.integration.test_no_personnummer import REPO, SIGBUS, Session


def _up(session: Session, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        up = subprocess.Popen(
            [*SIGBUS, "up", "--data-dir", str(session.data)],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=session.env(),
        )
    deadline = time.monotonic() + 30
    state = session.data / "sigbus-up.json"
    while time.monotonic() < deadline and up.poll() is None:  # its own state, not a stale one
        with contextlib.suppress(OSError, ValueError):
            if json.loads(state.read_text())["pid"] == up.pid:
                return up
        time.sleep(0.1)
    raise AssertionError(f"sigbus up did not start (exit status {up.poll()})")


def test_a_second_up_is_refused_and_down_finds_the_first(tmp_path: Path) -> None:
    data, outputs = tmp_path / "data", tmp_path / "out"
    outputs.mkdir()
    session = Session(data, outputs)
    first = _up(session, outputs / "first.stderr")
    try:
        second = subprocess.run([*SIGBUS, "up", "--data-dir", str(data)], cwd=REPO,
                                capture_output=True, text=True, timeout=60, check=False,
                                env=session.env())  # fmt: skip
        assert second.returncode == 2
        assert f"already running on {data} (pid {first.pid})" in second.stderr
        assert "Traceback" not in second.stderr
        state = json.loads((data / "sigbus-up.json").read_text())
        assert state["pid"] == first.pid  # the refused one left the first one's file alone
        (data / "sigbus-up.json").unlink()  # even without it, down finds the running one
        session.run("down", "--data-dir", str(data))
        assert first.wait(timeout=30) == 0
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    session.run("down", "--data-dir", str(data), ok=False)  # nothing left to stop


def test_up_starts_again_after_a_kill(tmp_path: Path) -> None:
    data, outputs = tmp_path / "data", tmp_path / "out"
    outputs.mkdir()
    session = Session(data, outputs)
    killed = _up(session, outputs / "killed.stderr")
    killed.send_signal(signal.SIGKILL)
    killed.wait(timeout=10)
    again = _up(session, outputs / "again.stderr")  # the kernel released the lock
    try:
        assert (data / "sigbus-up.lock").read_text().strip() == str(again.pid)
        session.run("down", "--data-dir", str(data))
        assert again.wait(timeout=30) == 0
    finally:
        if again.poll() is None:
            again.kill()
            again.wait()
