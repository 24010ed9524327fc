"""`sigbus policy check|explain` on the example files in policy/examples/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sigbus.cli_policy import policy_app

ROOT = Path(__file__).resolve().parents[2]
EX = ROOT / "policy" / "examples"
RULES = ROOT / "policy" / "rules.toml"
AT = "2026-03-01T09:00:00+01:00"

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(policy_app, list(args))
    return result.exit_code, result.stdout, result.stderr


def check(state: str, request: str, *extra: str, at: str = AT) -> tuple[int, str, str]:
    return run(
        "check",
        "--rules",
        str(RULES),
        "--state",
        str(EX / state),
        "--request",
        str(EX / request),
        "--at",
        at,
        *extra,
    )


def test_worked_example_case_json() -> None:
    code, out, _ = check("state_case.json", "request_plan_commitment.json")
    assert code == 1  # one recipient denied
    decision = json.loads(out)
    assert decision["decision_id"].startswith("dec-")
    assert decision["decided_at"] == AT
    social, police = decision["per_recipient"]
    assert social["outcome"] == "permit"
    assert social["legal_basis"] == "osl_12_2"
    assert [(r["consent_id"], r["revision"]) for r in social["consent_refs"]] == [
        ("consent-exyp", 1),
        ("consent-exgone", 1),
        ("consent-exgtwo", 2),
    ]
    assert police["outcome"] == "deny"
    assert police["reasons"] == [
        {
            "code": "scope_recipient",
            "consenter": "guardian:vh-2",
            "consent_id": "consent-exgtwo",
            "detail": "police",
        }
    ]


def test_worked_example_before_the_amendment_permits_both() -> None:
    code, out, _ = check(
        "state_case.json", "request_plan_commitment.json", at="2026-02-01T09:00:00+01:00"
    )
    assert code == 0
    assert [r["outcome"] for r in json.loads(out)["per_recipient"]] == ["permit", "permit"]


def test_referral_example_is_statutory() -> None:
    code, out, _ = check("state_referral.json", "request_referral_lul6.json")
    assert code == 0
    (rd,) = json.loads(out)["per_recipient"]
    assert rd["legal_basis"] == "lul_6"
    assert rd["statutory"] is True


@pytest.mark.parametrize("how", [("explain",), ("check", "--explain")])
def test_explain_for_a_person(how: tuple[str, ...]) -> None:
    code, out, _ = run(
        *how,
        "--rules",
        str(RULES),
        "--state",
        str(EX / "state_case.json"),
        "--request",
        str(EX / "request_plan_commitment.json"),
        "--at",
        AT,
    )
    assert code == 1
    assert "social: MAY RECEIVE it, on consent, OSL (2009:400) 12 kap. 2 §" in out
    assert "police: MAY NOT RECEIVE it." in out
    assert "guardian vh-2 does not cover this recipient" in out
    assert "Stockholm time" in out


def test_every_deny_code_has_an_explanation() -> None:
    from sigbus.cli_policy import _SENTENCES
    from sigbus.policy import DenyCode

    assert set(_SENTENCES) == set(DenyCode)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--at", "2026-03-01T09:00:00"), "UTC offset"),
        (("--at", "yesterday"), "ISO 8601"),
        (("--at", "9999-12-31T23:59:59-14:00"), "between the years 1900 and 9000"),
    ],
)
def test_bad_time_exits_2(args: tuple[str, ...], message: str) -> None:
    code, out, err = run(
        "check",
        "--rules",
        str(RULES),
        "--state",
        str(EX / "state_case.json"),
        "--request",
        str(EX / "request_plan_commitment.json"),
        *args,
    )
    assert code == 2
    assert message in err
    assert out == ""


def test_missing_file_exits_2(tmp_path: Path) -> None:
    code, _, err = run(
        "check",
        "--rules",
        str(RULES),
        "--state",
        str(tmp_path / "nope.json"),
        "--request",
        str(EX / "request_plan_commitment.json"),
        "--at",
        AT,
    )
    assert code == 2
    assert "cannot read state file" in err


def test_invalid_state_exits_2_without_echoing_input(tmp_path: Path) -> None:
    bad = tmp_path / "state.json"
    state = json.loads((EX / "state_case.json").read_text())
    state["case"]["subject"]["date_of_birth"] = "20100505-9843"  # fictitious; never echoed
    bad.write_text(json.dumps(state))
    code, _, err = run(
        "check",
        "--rules",
        str(RULES),
        "--state",
        str(bad),
        "--request",
        str(EX / "request_plan_commitment.json"),
        "--at",
        AT,
    )
    assert code == 2
    assert "state file is invalid" in err
    assert "case.subject.date_of_birth" in err
    assert "1234" not in err


def test_not_json_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "request.json"
    bad.write_text("{not json")
    code, _, err = run(
        "check",
        "--rules",
        str(RULES),
        "--state",
        str(EX / "state_case.json"),
        "--request",
        str(bad),
        "--at",
        AT,
    )
    assert code == 2
    assert "request file is invalid" in err


def test_bad_rules_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "rules.toml"
    bad.write_text('rules_version = "x"\n')
    code, _, err = run(
        "check",
        "--rules",
        str(bad),
        "--state",
        str(EX / "state_case.json"),
        "--request",
        str(EX / "request_plan_commitment.json"),
        "--at",
        AT,
    )
    assert code == 2
    assert "rules file does not match the schema" in err


def test_unknown_field_rejected(tmp_path: Path) -> None:
    bad = tmp_path / "request.json"
    req = json.loads((EX / "request_plan_commitment.json").read_text())
    req["personnummer"] = "x"
    bad.write_text(json.dumps(req))
    code, _, err = run(
        "check",
        "--rules",
        str(RULES),
        "--state",
        str(EX / "state_case.json"),
        "--request",
        str(bad),
        "--at",
        AT,
    )
    assert code == 2
    assert "personnummer: Extra inputs are not permitted" in err
