"""`sigbus up --metrics-port`: a scrape while the hub runs shows the decision counters,
and no form of the personnummer that was sent (issue #14)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import httpx

from tests.integration.test_metrics import _free_port
from tests.integration.test_no_personnummer import REPO, SIGBUS, Session, forms, wait_for_up

PERSONNUMMER = "20100315-9801"  # fictitious, passes the check digit


def test_up_serves_metrics_with_the_decision_counters(tmp_path: Path) -> None:
    outputs = tmp_path / "out"
    outputs.mkdir()
    session = Session(tmp_path / "data", outputs)
    port = _free_port()
    with (outputs / "up.stdout").open("wb") as out, (outputs / "up.stderr").open("wb") as err:
        up = subprocess.Popen(
            [*SIGBUS, "up", "--data-dir", str(session.data), "--no-console",
             "--metrics-port", str(port)],
            cwd=REPO, stdout=out, stderr=err, env=session.env(),
        )  # fmt: skip
    try:
        wait_for_up(session.data, up)
        session.run(
            "police", "refer", "--reason", "weapon", "--evidence-id", "dnr-metrics-test",
            stdin=f"{PERSONNUMMER}\n",
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}/metrics"
        pattern = re.compile(
            r'^sigbus_hub_decisions_total\{message_type="referral",outcome="release",'
            r'reason="none"\} 1\.0$',
            re.MULTILINE,
        )
        text, deadline = "", time.monotonic() + 30
        while not pattern.search(text) and time.monotonic() < deadline:
            time.sleep(0.3)
            try:
                text = httpx.get(url).text
            except httpx.TransportError:
                continue
        assert pattern.search(text), text[-2000:]
        assert re.search(r"^sigbus_hub_log_entries [1-9]", text, re.MULTILINE)
        for form in forms(PERSONNUMMER):
            assert form.decode() not in text
        session.run("down", "--data-dir", str(session.data))
        assert up.wait(timeout=30) == 0
    finally:
        if up.poll() is None:
            up.kill()
            up.wait()
