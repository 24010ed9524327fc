"""`sigbus soak`: load with random SIGKILLs of the hub, the adapters and NATS nodes, then
an exact account (issue #12). A short run here; the ten-minute figures are in
docs/operations.md."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_short_soak_with_every_fault_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sigbus", "--dev", "soak", "--minutes", "0.6",
         "--kill-every", "3", "--seed", "7", "--json", "--work-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False, cwd=REPO,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    account = json.loads(done.stdout)
    assert account["kills"] >= 6, account
    assert set(account["kills_by_kind"]) == {"hub", "adapter", "nats"}, account
    assert account["queued"] > 100, account
    assert account["decided"] == account["queued"], account
    assert account["handed_off"] == account["releases"] > 100, account
    assert (account["lost"], account["duplicate_decisions"], account["duplicate_handoffs"]) == (
        0, 0, 0,
    ), account  # fmt: skip
    assert account["log_verified"] is True, account
    assert "Traceback" not in done.stderr


def test_an_unknown_fault_is_refused_in_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sigbus", "--dev", "soak", "--faults", "hub,disk"],
        capture_output=True, text=True, timeout=60, check=False, cwd=REPO,
    )  # fmt: skip
    assert done.returncode != 0
    assert "unknown disk" in done.stderr
    assert "Traceback" not in done.stderr
