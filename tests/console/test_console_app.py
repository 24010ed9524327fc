"""The console's app with Starlette's TestClient: login, sessions, CSRF, roles, languages."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from sigbus.audit.entry import EntryOutcome
from sigbus.broker.state import (
    CaseOpenedChange,
    CaseSelectedChange,
    CommitmentRecordedChange,
    CommitmentRemindedChange,
    CommitmentStatusChange,
    ConsentRecordedChange,
    HubState,
    PlanRevisedChange,
)
from sigbus.console.app import Console, make_app
from sigbus.console.auth import SESSION_COOKIE, Role, Sessions, UsersFile, new_user
from sigbus.console.i18n import LANGS, REASONS, STRINGS
from sigbus.console.records import AccessLog, FileStore, RecordsError, SignedLog
from sigbus.console.shaping import (
    FilterError,
    commitment_rows,
    meeting_rows,
    parse_filter,
    readable_reason,
)
from sigbus.console.source import Snapshot
from sigbus.console.status import LogStatus
from sigbus.policy.lifecycle import CaseStatus, ConsentState
from sigbus.policy.model import ConsentRecordEvent, DenyCode
from sigbus.policy.rules import default_rules
from sigbus.protocol.codes import (
    ActionCode,
    AssessmentInstrument,
    ClosureReason,
    ConsentAction,
    ConsenterRole,
    ConsentPurpose,
    StatusCode,
)
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import ConsentScope
from sigbus.protocol.reasons import ReasonCode
from sigbus.protocol.signing import HybridPrivateKey

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
PASSWORD = "correct horse battery"
CASE = "case-0001"
WITNESSES = ("police", "school", "social")


def _entry(index: int, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "index": index,
        "decided_at": (NOW + timedelta(minutes=index)).isoformat(),
        "message_type": "case_invitation",
        "sender": "social",
        "recipient": "school",
        "case_ref": CASE,
        "legal_basis": "osl_12_2",
        "statutory": False,
        "outcome": "release",
        "reasons": [],
        "message_id": f"msg-{index:04d}",
    }
    return {**base, **fields}


ENTRIES = [
    _entry(0, outcome="recorded", recipient=None, message_type="case_opened", legal_basis=None),
    _entry(1),
    _entry(
        2, recipient="police", outcome="deny", reasons=["policy:consent_withdrawn:guardian:vh-2"]
    ),
    _entry(
        3,
        case_ref="case-0002",
        sender="police",
        recipient="social",
        legal_basis="lul_6",
        statutory=True,
        message_type="referral",
    ),
]


def _state() -> HubState:
    state = HubState()
    state.apply(
        CaseOpenedChange(
            message_id="msg-1",
            case_ref=CASE,
            subject_id="subj-x",
            date_of_birth=date(2010, 5, 1),
            guardians_with_custody=("vh-1",),
            parties=("social", "school", "police"),
            opened_at=NOW,
        )
    )
    scope = ConsentScope(
        disclosers=("social", "school"),
        recipients=("social", "school"),
        categories=(MessageType.CASE_INVITATION,),
        purpose=ConsentPurpose.SIG_CASE,
        valid_from=NOW,
        valid_until=NOW + timedelta(days=180),
    )
    state.apply(
        ConsentRecordedChange(
            message_id="msg-2",
            case_ref=CASE,
            event=ConsentRecordEvent(
                consent_id="c-1",
                revision=1,
                action=ConsentAction.GIVEN,
                consenter_role=ConsenterRole.GUARDIAN,
                guardian_ref="vh-1",
                scope=scope,
                acted_at=NOW,
                recorded_at=NOW,
                recorded_by="handl-1",
                source_message_id="msg-2",
                evidence_sha256="0" * 64,
            ),
        )
    )
    state.apply(
        CaseSelectedChange(
            message_id="msg-3",
            case_ref=CASE,
            instrument=AssessmentInstrument.SAVRY,
            assessment_id="as-0001",
            decided_by="handl-1",
            selected_at=NOW,
        )
    )
    for n, (cid, agency, due) in enumerate(
        [
            ("cm-late", "police", NOW.date() - timedelta(days=2)),
            ("cm-done", "school", NOW.date() - timedelta(days=2)),
            ("cm-later", "school", NOW.date() + timedelta(days=30)),
        ]
    ):
        state.apply(
            CommitmentRecordedChange(
                message_id=f"msg-c{n}",
                case_ref=CASE,
                commitment_id=cid,
                sender=agency,
                responsible_agency=agency,
                action=ActionCode.MENTOR,
                owner_function="mentor",
                due_on=due,
                recorded_at=NOW,
            )
        )
    state.apply(
        CommitmentStatusChange(
            message_id="msg-s1",
            case_ref=CASE,
            commitment_id="cm-done",
            status=StatusCode.DONE,
            as_of=NOW.date(),
            recorded_at=NOW,
        )
    )
    state.apply(
        PlanRevisedChange(
            message_id="msg-p1",
            case_ref=CASE,
            plan_version=2,
            commitments=("cm-late", "cm-done", "cm-later"),
            revised_at=NOW,
        )
    )
    state.apply(
        CommitmentRemindedChange(
            message_id="msg-r1",
            case_ref=CASE,
            commitment_id="cm-late",
            due_on=NOW.date() - timedelta(days=2),
            released=True,
            decided_at=NOW,
        )
    )
    return state


class StaticSource:
    async def snapshot(self) -> Snapshot:
        return Snapshot(
            entries=ENTRIES,
            cases=dict(_state().cases),
            status=LogStatus(4, True, True, ("school",), ("police", "school", "social"), 3),
            agencies=("hub", "police", "school", "social"),
        )


SIGNER = HybridPrivateKey.generate()


def records(chain: SignedLog) -> list[dict[str, Any]]:
    return asyncio.run(chain.read())


@pytest.fixture
def console(tmp_path: Path) -> Console:
    users = UsersFile(tmp_path / "users.json")
    for name, role in (("sam", Role.COORDINATOR), ("gry", Role.COMPLIANCE), ("rev", Role.AUDITOR)):
        users.add(new_user(name, role, PASSWORD))
    return Console(
        users=users,
        sessions=Sessions(b"k" * 32),
        source=StaticSource(),
        access=AccessLog(FileStore(tmp_path / "access.jsonl"), SIGNER, "hub-sign-test"),
        rules=default_rules(),
        clock=lambda: NOW,
    )


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def login(client: TestClient, user: str, password: str = PASSWORD) -> Any:
    page = client.get("/login")
    return client.post(
        "/login",
        data={"username": user, "password": password, "csrf": _csrf(page.text)},
        follow_redirects=False,
    )


def test_login_then_case_list_and_case_page(console: Console) -> None:
    client = TestClient(make_app(console))
    response = login(client, "sam")
    assert response.status_code == 303
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie.replace("Strict", "strict")
    cases = client.get("/cases")
    assert cases.status_code == 200
    assert f'href="/cases/{CASE}"' in cases.text
    page = client.get(f"/cases/{CASE}")
    assert page.status_code == 200
    assert "vårdnadshavare vh-1" in page.text
    assert "lämnat" in page.text
    assert (NOW + timedelta(days=180)).strftime("%Y-%m-%d") in page.text
    assert "samtycket återkallat (guardian:vh-2)" in page.text  # the readable reason
    # Where the case stands, the plan with its overdue commitment, the meetings.
    assert "samtycken inhämtas" in page.text  # selected, the young person's consent missing
    assert "savry as-0001" in page.text
    assert re.search(r"den unge</td><td>saknas", page.text)
    assert "Version: 2" in page.text
    assert re.search(r"cm-late</td><td>police.*?försenat, påmind", page.text)
    assert re.search(r"cm-done</td>.*?klart</td>", page.text)
    assert "subj-x" not in page.text
    assert "2010-05-01" not in page.text
    # The view of personal data was logged: who, role, what, when; only the case ref.
    shown = records(console.access)
    assert [{k: r[k] for k in ("at", "user", "role", "view", "case_ref")} for r in shown] == [
        {
            "at": NOW.isoformat(),
            "user": "sam",
            "role": "coordinator",
            "view": "case",
            "case_ref": CASE,
        }
    ]
    assert shown[0]["key_id"] == "hub-sign-test"
    assert shown[0]["sig"]


def test_wrong_password_and_unknown_user_are_refused(console: Console) -> None:
    client = TestClient(make_app(console))
    for user, password in (("sam", "wrong password!"), ("nobody", PASSWORD)):
        response = login(client, user, password)
        assert response.status_code == 401
        assert "Fel användarnamn eller lösenord." in response.text
        assert SESSION_COOKIE not in response.cookies
    assert client.get("/cases", follow_redirects=False).status_code == 303


def test_logins_are_throttled_per_user(console: Console) -> None:
    client = TestClient(make_app(console))
    for _ in range(5):
        assert login(client, "gry", "guess-guess-1").status_code == 401
    assert login(client, "gry").status_code == 429  # even the right password, for now
    assert login(client, "sam").status_code == 303  # another user is not held up
    console.clock = lambda: NOW + timedelta(minutes=16)
    assert login(client, "gry").status_code == 303  # the window has passed


def test_expired_session_is_refused(console: Console) -> None:
    console.sessions = Sessions(b"k" * 32, idle_s=1)
    client = TestClient(make_app(console))
    login(client, "sam")
    assert client.get("/cases").status_code == 200
    time.sleep(2.1)
    response = client.get("/cases", follow_redirects=False)
    assert response.status_code == 303
    assert response.headers["location"] == "/login"


def test_forged_session_cookie_is_refused(console: Console) -> None:
    forged = Sessions(b"x" * 32).issue(Sessions(b"x" * 32).new(console.users.load()["gry"]))
    client = TestClient(make_app(console), cookies={SESSION_COOKIE: forged})
    assert client.get("/log", follow_redirects=False).status_code == 303


def test_post_without_csrf_is_403(console: Console) -> None:
    client = TestClient(make_app(console))
    assert client.post("/login", data={"username": "sam", "password": PASSWORD}).status_code == 403
    login(client, "sam")
    assert client.post("/logout", data={}).status_code == 403
    assert client.post("/logout", data={"csrf": "forged"}).status_code == 403
    assert client.get("/cases").status_code == 200  # still signed in


def test_roles_are_checked_on_every_route(console: Console) -> None:
    client = TestClient(make_app(console))
    login(client, "sam")  # coordinator: no log
    assert client.get("/log").status_code == 403
    assert client.get("/status").status_code == 403
    client = TestClient(make_app(console))
    login(client, "rev")  # read-only auditor: no case page, no log filtered to a case
    assert client.get("/cases").status_code == 403
    assert client.get(f"/cases/{CASE}").status_code == 403
    assert client.get(f"/log?case={CASE}").status_code == 403
    assert client.get("/log").status_code == 200
    assert client.get("/status").status_code == 200
    assert records(console.access) == []  # nothing shown, nothing logged


def test_log_filters_readable_wording_and_statutory_flag(console: Console) -> None:
    client = TestClient(make_app(console))
    login(client, "gry")
    everything = client.get("/log")
    assert "4 poster matchade av 4" in everything.text
    assert "Utlämnat med stöd av lag utan samtycke" in everything.text  # the lul_6 release
    assert "LUL (1964:167) 6 §" in everything.text  # the statute's title and citation
    assert "<td>Samtycke</td>" in everything.text  # the consent basis, in words
    denied = client.get(f"/log?case={CASE}&outcome=deny")
    assert "1 poster matchade av 4" in denied.text
    assert "samtycket återkallat" in denied.text
    assert records(console.access)[-1]["view"] == "log"
    english = client.get("/log?agency=police&lang=en")
    assert "2 entries matched of 4" in english.text
    assert '<html lang="en">' in english.text
    assert client.get("/log?outcome=released").status_code == 400  # misspelt: refused
    assert client.get("/log?agency=skola").status_code == 400
    status = client.get("/status?lang=sv")
    assert 'id="quorum-met">Nej' in status.text
    assert "1 / 3" in status.text


def test_filter_refuses_unknown_values() -> None:
    with pytest.raises(FilterError) as e:
        parse_filter({"since": "yesterday"}, agencies=[], bases=[])
    assert e.value.field == "since"
    assert parse_filter({"outcome": "deny", "case": " "}, agencies=[], bases=[]).case is None


def test_every_string_in_both_languages() -> None:
    for table in (STRINGS, REASONS):
        for key, texts in table.items():
            assert set(texts) == set(LANGS), key
            assert all(texts[lang].strip() for lang in LANGS), key
    # Every hub reason code and every policy deny code has readable wording.
    assert {c.value for c in ReasonCode} <= set(REASONS)
    assert {f"policy:{c.value}" for c in DenyCode} <= set(REASONS)
    assert {f"out_{o.value}" for o in EntryOutcome} <= set(STRINGS)
    # The case page's life cycle, consent states, closure reasons and statuses.
    assert {f"status_{c.value}" for c in CaseStatus} <= set(STRINGS)
    assert {f"consent_{c.value}" for c in ConsentState} <= set(STRINGS)
    assert {f"closure_{c.value}" for c in ClosureReason} <= set(STRINGS)
    assert {f"cs_{c.value}" for c in StatusCode} <= set(STRINGS)
    assert readable_reason("policy:consent_expired", "en") == "consent expired"


class _DownStore(FileStore):
    async def append(self, record: Any, after: int) -> None:
        raise RecordsError("SIGBUS_ACCESS unreachable (NoServersError)")


def test_the_access_log_is_listed_signed_and_a_view_it_cannot_log_is_refused(
    console: Console, tmp_path: Path
) -> None:
    client = TestClient(make_app(console))
    login(client, "gry")
    client.get(f"/cases/{CASE}")
    page = client.get("/access")
    assert page.status_code == 200
    assert f"<td>case</td><td>{CASE}</td>" in page.text
    assert "<td>access_log</td>" in page.text
    assert 'id="access-head"' in page.text  # the chain verifies under the hub's key
    path = tmp_path / "access.jsonl"
    path.write_text(path.read_text().replace('"view": "case"', '"view": "log"'))
    assert "Åtkomstloggens kedja är bruten" in client.get("/access").text
    sam = TestClient(make_app(console))
    login(sam, "sam")
    assert sam.get("/access").status_code == 403
    console.access = AccessLog(_DownStore(tmp_path / "down.jsonl"), SIGNER, "hub-sign-test")
    refused = sam.get(f"/cases/{CASE}")
    assert refused.status_code == 503  # not shown unless its view is on record at the hub
    assert "subj-x" not in refused.text
    assert "Parter" not in refused.text


def test_overdue_is_what_the_reminder_pass_counts() -> None:
    """Past due, in the plan and not done: overdue; done or not yet due: not."""
    record = _state().cases[CASE]
    shown = {r.commitment: r for r in commitment_rows(record, NOW, "en")}
    assert (shown["cm-late"].overdue, shown["cm-late"].reminded) == (True, True)
    assert (shown["cm-done"].overdue, shown["cm-done"].status) == (False, "done")
    assert (shown["cm-later"].overdue, shown["cm-later"].status) == (False, "no status yet")
    record.commitments["cm-late"].in_plan = False  # left out of a later plan version
    assert not {r.commitment: r for r in commitment_rows(record, NOW, "en")}["cm-late"].overdue


def test_meetings_are_the_cases_released_meeting_messages_one_row_each() -> None:
    entries = [
        *ENTRIES,
        _entry(4, message_type="meeting_notice", recipient="police", message_id="msg-m1"),
        _entry(5, message_type="meeting_notice", recipient="school", message_id="msg-m1"),
        _entry(6, message_type="meeting_minutes", outcome="deny", message_id="msg-m2"),
        _entry(7, message_type="meeting_minutes", case_ref="case-0002", message_id="msg-m3"),
    ]
    (row,) = meeting_rows(entries, CASE, "sv")
    assert (row.message_type, row.sender, row.recipients) == (
        "kallelse",
        "social",
        "police, school",
    )
