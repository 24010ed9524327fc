"""`sigbus up --metrics-port` and `sigbus <agency> serve --metrics-port`: scrapes while
they run show the decision counters, the witness lag once the serving adapter has
cosigned, the release it received, and no form of the personnummer sent (issue #14)."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import httpx

from tests.integration.test_metrics import _free_port
from tests.integration.test_no_personnummer import REPO, SIGBUS, Session, forms, wait_for_up

PERSONNUMMER = "20100315-9801"  # fictitious, passes the check digit


def scrape_until(url: str, *patterns: str, timeout: float = 40.0) -> str:
    """The endpoint's text once every pattern (a whole line) is in it."""
    wanted = [re.compile(f"^{p}$", re.MULTILINE) for p in patterns]
    text, deadline = "", time.monotonic() + timeout
    while not all(w.search(text) for w in wanted) and time.monotonic() < deadline:
        time.sleep(0.3)
        try:
            text = httpx.get(url).text
        except httpx.TransportError:
            continue
    missing = [w.pattern for w in wanted if not w.search(text)]
    assert not missing, (missing, text[-3000:])
    return text


def test_up_and_serve_expose_metrics_while_a_referral_goes_through(tmp_path: Path) -> None:
    outputs = tmp_path / "out"
    outputs.mkdir()
    session = Session(tmp_path / "data", outputs)
    hub_port, social_port = _free_port(), _free_port()
    with (outputs / "up.stdout").open("wb") as out, (outputs / "up.stderr").open("wb") as err:
        up = subprocess.Popen(
            [*SIGBUS, "up", "--data-dir", str(session.data), "--no-console",
             "--metrics-port", str(hub_port)],
            cwd=REPO, stdout=out, stderr=err, env=session.env(),
        )  # fmt: skip
    serve = None
    try:
        wait_for_up(session.data, up)
        with (outputs / "serve-social.stderr").open("wb") as log:
            serve = subprocess.Popen(
                [*SIGBUS, "social", "serve", "--out", str(tmp_path / "social-received"),
                 "--metrics-port", str(social_port)],
                cwd=REPO, stdout=log, stderr=log, env=session.env(),
            )  # fmt: skip
        session.run(
            "police", "refer", "--reason", "weapon", "--evidence-id", "dnr-metrics-test",
            stdin=f"{PERSONNUMMER}\n",
        )  # fmt: skip
        hub = scrape_until(
            f"http://127.0.0.1:{hub_port}/metrics",
            r'sigbus_hub_decisions_total\{message_type="referral",outcome="release",'
            r'reason="none"\} 1\.0',
            r"sigbus_hub_log_entries [1-9]\d*\.0",
            # social's adapter witnesses the log: once it cosigned, the lag is known.
            r"sigbus_hub_witness_lag_entries \d+\.0",
        )
        social = scrape_until(
            f"http://127.0.0.1:{social_port}/metrics",
            r'sigbus_adapter_releases_received_total\{message_type="referral"\} 1\.0',
            r"sigbus_adapter_outbox_pending 0\.0",
        )
        for form in forms(PERSONNUMMER):
            assert form.decode() not in hub + social
        serve.terminate()  # as the other tests stop `serve` (it has no SIGTERM handler)
        serve.wait(timeout=30)
        session.run("down", "--data-dir", str(session.data))
        assert up.wait(timeout=30) == 0
    finally:
        for process in (serve, up):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
