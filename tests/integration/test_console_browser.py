"""The web console in a real headless Chromium, against a live hub on a real nats-server.

Log in, open the case list and a case page, filter the log, switch language, record a
log-review finding, make the extract for the young person and download its PDF; each
screen is saved to ``test-artifacts/`` (gitignored). Skips only when Debian's
``chromium`` or ``chromium-driver`` is missing (`.ci/run` installs them).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import sigbus.cli_extract  # noqa: F401  (registers verify-extract on audit_app)
from sigbus.cli_audit import audit_app
from sigbus.cli_console import console_server
from sigbus.console.auth import Role, UsersFile, new_user
from sigbus.console.i18n import t
from sigbus.console.source import NatsSource
from sigbus.policy.lifecycle import CaseStatus
from sigbus.protocol.ids import MessageType
from tests.integration.conftest import LUL6, World
from tests.integration.test_flow import referral

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
PASSWORD = "granskning-2026"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()), reason="chromium not installed"
)


async def _downloaded(path: Path, within: float = 30.0) -> bytes:
    """The downloaded file once Chromium has finished it: Chromium creates the target name
    empty and writes into ``NAME.crdownload`` until it renames it, so existence alone
    read an empty PDF in CI."""
    partial = path.with_name(path.name + ".crdownload")
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and path.stat().st_size > 0 and not partial.exists():
            return path.read_bytes()
        await asyncio.sleep(0.1)
    raise AssertionError(f"download of {path.name} not finished within {within} s")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def browser() -> Iterator[object]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


async def test_console_end_to_end_in_chromium(
    world: World, nats_url: str, keys_dir: Path, tmp_path: Path, browser: object
) -> None:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.expected_conditions import staleness_of
    from selenium.webdriver.support.ui import Select, WebDriverWait

    assert isinstance(browser, WebDriver)
    case = await world.open_case_with_consents()
    referral_id = await world.adapters["police"].send(
        MessageType.REFERRAL, referral(world), recipients=("social", "school"), assertion=LUL6
    )
    await world.settle()
    await world.broker.checkpointer.publish()
    size = world.broker.writer.size
    logged = await world.log_entries()
    about_youth = [
        e.index
        for e in logged
        if e.outcome.value in ("release", "deny")
        and (e.case_ref == case or e.message_id == referral_id)
    ]
    statutory = [e.index for e in logged if e.statutory and e.outcome.value == "release"]
    assert about_youth
    assert statutory

    UsersFile(tmp_path / "console-users.json").add(new_user("gry", Role.COMPLIANCE, PASSWORD))
    port = _free_port()
    server = console_server(nats_url, keys_dir, tmp_path, port=port)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser.execute_cdp_cmd(
        "Page.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)}
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert server.started
    base = f"http://127.0.0.1:{port}"
    ARTIFACTS.mkdir(exist_ok=True)

    def shot(name: str) -> None:
        browser.save_screenshot(str(ARTIFACTS / f"console-{name}.png"))

    def click(by: str, value: str) -> None:
        """Click, then wait for the next page (no JavaScript: every click loads one)."""
        old = browser.find_element(By.TAG_NAME, "html")
        browser.find_element(by, value).click()
        # Chromium may answer a query on the page being left with an inspector error
        # ("Node ... does not belong to the document"): keep waiting for the new one.
        WebDriverWait(browser, 10, ignored_exceptions=(WebDriverException,)).until(
            staleness_of(old)
        )

    try:
        browser.get(f"{base}/cases")  # not signed in: the login page
        assert browser.find_element(By.TAG_NAME, "h1").text == "Logga in"
        browser.find_element(By.ID, "username").send_keys("gry")
        browser.find_element(By.ID, "password").send_keys("fel-losenord-1")
        click(By.ID, "login-submit")
        assert "Fel användarnamn" in browser.find_element(By.ID, "login-error").text
        browser.find_element(By.ID, "username").send_keys("gry")
        browser.find_element(By.ID, "password").send_keys(PASSWORD)
        click(By.ID, "login-submit")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Ärenden"
        shot("cases")

        click(By.LINK_TEXT, case)
        assert browser.find_element(By.TAG_NAME, "h1").text == f"Ärende {case}"
        consents = browser.find_element(By.ID, "consents").text
        assert "den unge" in consents
        assert "vårdnadshavare vh-1" in consents
        assert "lämnat" in consents
        # Where the case stands, as the hub's life-cycle rules derive it, and its plan.
        statuses = {t(f"status_{c.value}", "sv") for c in CaseStatus}
        assert browser.find_element(By.ID, "case-status").text in statuses
        assert "den unge" in browser.find_element(By.ID, "consenters").text
        assert (
            browser.find_element(By.ID, "plan-version").text == "Version: ingen antagen plan ännu"
        )
        assert world.youth not in browser.page_source  # never the personnummer
        shot("case")

        browser.get(f"{base}/log")
        Select(browser.find_element(By.ID, "outcome")).select_by_value("release")
        click(By.ID, "filter-submit")
        entries = browser.find_element(By.ID, "entries").text
        assert "LUL (1964:167) 6 §" in entries
        assert "Utlämnat med stöd av lag utan samtycke" in entries  # flagged for review
        assert browser.find_element(By.ID, "matched").text.startswith("1 poster matchade av")
        shot("log-released")

        browser.find_element(By.ID, "case").send_keys(case)
        Select(browser.find_element(By.ID, "outcome")).select_by_value("")
        click(By.ID, "filter-submit")
        assert "case_opened" in browser.find_element(By.ID, "entries").text

        click(By.ID, "lang-toggle")
        assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "en"
        assert browser.find_element(By.TAG_NAME, "h1").text == "Disclosure log"
        assert "entries matched of" in browser.find_element(By.ID, "matched").text
        shot("log-case-en")

        browser.get(f"{base}/status")
        assert browser.find_element(By.ID, "size").text == str(size)
        assert "0 / 3" in browser.find_element(By.ID, "cosigned").text  # no witness ran
        assert browser.find_element(By.ID, "quorum-met").text == "No"
        shot("status-en")
        # The stylesheet applies (the CSP allows no inline style): the skip link waits
        # off screen until it has the keyboard focus.
        skip = browser.find_element(By.CLASS_NAME, "skip")
        assert skip.get_attribute("href").endswith("#main")
        assert skip.location["x"] < 0

        # Log review: the week's sample and anomalies; a finding on the statutory release.
        browser.get(f"{base}/review?lang=sv")
        assert browser.find_element(By.TAG_NAME, "h1").text == "Loggkontroll"
        assert int(browser.find_element(By.ID, "sample-count").text) >= len(about_youth)
        anomalies = browser.find_element(By.ID, "anomalies").text
        assert "utlämnat med stöd av lag utan samtycke" in anomalies
        browser.find_element(By.ID, "finding-index").send_keys(str(statutory[0]))
        Select(browser.find_element(By.ID, "finding-verdict")).select_by_value("follow_up")
        browser.find_element(By.ID, "finding-note").send_keys("fråga polisen om underlaget")
        click(By.ID, "finding-submit")
        assert browser.find_element(By.ID, "findings-count").text == "1"
        findings = browser.find_element(By.ID, "findings").text
        assert "följs upp" in findings
        assert "fråga polisen om underlaget" in findings
        assert len(browser.find_element(By.ID, "chain-head").text) == 64
        ActionChains(browser).scroll_to_element(browser.find_element(By.ID, "chain-head")).perform()
        shot("review")

        # The disclosure extract for the young person, and its PDF downloaded.
        browser.get(f"{base}/extract")
        browser.find_element(By.ID, "personnummer").send_keys(world.youth)
        click(By.ID, "extract-submit")
        assert browser.find_element(By.ID, "extract-lines").text == str(len(about_youth))
        listed = browser.find_element(By.ID, "extract-rows").text
        assert "LUL (1964:167) 6 §" in listed
        assert world.youth not in browser.page_source
        shot("extract")
        browser.find_element(By.ID, "extract-pdf").click()
        pdf = await _downloaded(downloads / "registerutdrag.pdf")
        assert pdf.startswith(b"%PDF-")
        assert f"lines={len(about_youth)}".encode() in pdf
        assert len(re.findall(rb"\(#\d+ ", pdf)) == len(about_youth)
        (ARTIFACTS / "console-extract.pdf").write_bytes(pdf)
        # Its JSON: complete and proven, but no witness ran, so never a verdict of "verified".
        browser.find_element(By.ID, "extract-json").click()
        json_file = downloads / "registerutdrag.json"
        await _downloaded(json_file)
        trusted = ["--directory", str(keys_dir / "directory.json")]
        trusted += ["--root", str(keys_dir / "root.json")]
        verified = CliRunner().invoke(audit_app, ["verify-extract", str(json_file), *trusted])
        assert verified.exit_code == 1, verified.output
        assert "witness quorum not met" in verified.output
        document = json.loads(json_file.read_bytes())
        assert document["completeness"]["statement"]["indexes"] == about_youth
        # The access log, held and signed by the hub, listed for the compliance officer.
        browser.find_element(By.LINK_TEXT, "Åtkomstloggen").click()
        shown = browser.find_element(By.ID, "access").text
        assert "extract_pdf" in shown
        assert case in shown
        assert browser.find_element(By.ID, "access-head").text
        assert world.youth not in browser.page_source
        shot("access")
    finally:
        server.should_exit = True
        thread.join(timeout=10)
    access = NatsSource(nats_url, keys_dir).access_log()
    held = await access.read()
    await access.head()  # the chain verifies under the hub's signing key in the directory
    views = [(r["view"], r["case_ref"], r["user"]) for r in held]
    scopes = ",".join(
        sorted({e.case_ref or e.message_id for e in logged if e.index in about_youth})
    )
    assert views == [
        ("case", case, "gry"),
        ("log", case, "gry"),
        ("log", case, "gry"),
        ("review", "-", "gry"),
        ("review", "-", "gry"),
        ("extract", scopes, "gry"),
        ("extract_pdf", scopes, "gry"),
        ("extract_json", scopes, "gry"),
        ("access_log", "-", "gry"),
    ]
    assert world.youth not in repr(held)
    assert not (tmp_path / "console-access.jsonl").exists()  # nothing on the console's disk
    verify = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "sigbus", "console", "verify"),
        *("--nats", nats_url, "--keys", str(keys_dir)),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await verify.communicate()
    assert verify.returncode == 0, out
    assert f"access: {len(held)} records, head {held[-1]['hash']}".encode() in out
    assert b"findings: 1 records" in out
