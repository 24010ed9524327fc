"""The rules file: parsed from bytes, hashed, validated; the shipped file is sane."""

from __future__ import annotations

import hashlib
from importlib import resources

import pytest

from sigbus.policy import RulesError, default_rules, load_rules
from sigbus.protocol.ids import MessageType

SHIPPED = resources.files("sigbus.policy").joinpath("rules.toml").read_bytes()


def test_hash_is_sha256_of_the_bytes() -> None:
    rules = default_rules()
    assert rules.sha256 == hashlib.sha256(SHIPPED).hexdigest()
    # a comment changes the hash: the hash pins the exact file
    assert load_rules(SHIPPED + b"# note\n").sha256 != rules.sha256


def test_shipped_rules() -> None:
    rules = default_rules()
    assert rules.rules_version
    assert rules.max_consent_days == 365
    assert rules.young_person_consent_required_under_15 is True
    assert rules.consent.id == "osl_12_2"
    assert MessageType.REFERRAL not in rules.consent_categories
    s = rules.statutes_by_id
    assert set(s) == {"reporting_duty", "lul_6", "osl_10_18a"}
    assert s["lul_6"].senders == ("police",)
    assert s["lul_6"].recipient == "social"
    assert s["lul_6"].subject_under_age == 18
    assert s["reporting_duty"].recipient == "social"
    assert s["osl_10_18a"].recipient == "police"
    assert s["osl_10_18a"].subject_under_age == 21
    assert s["osl_10_18a"].evidence_re.fullmatch("ra-abcd")
    assert not s["osl_10_18a"].evidence_re.fullmatch("abcd")


def _edit(old: bytes, new: bytes) -> bytes:
    assert old in SHIPPED
    return SHIPPED.replace(old, new, 1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\xff\xfe", "not valid UTF-8 TOML"),
        (b"rules_version = ", "not valid UTF-8 TOML"),
        (b'sha256 = "00"\n' + SHIPPED, "must not contain 'sha256'"),
        (
            _edit(
                b'categories = ["case_invitation"', b'categories = ["referral", "case_invitation"'
            ),
            "consent may not cover referral",
        ),
        (
            _edit(b'recipient = "police"', b'recipient = "hub"'),
            "the hub is never a sender or recipient",
        ),
        (_edit(b'id = "lul_6"', b'id = "reporting_duty"'), "rule ids must be unique"),
        (_edit(b"max_consent_days = 365", b"max_consent_days = 0"), "max_consent_days"),
        (_edit(b"max_consent_days = 365", b"max_consent_days = 365\nsurprise = 1"), "surprise"),
        (_edit(b'evidence_id_pattern = "^ra-', b'evidence_id_pattern = "(^ra-'), "not a regex"),
        # Retention fails closed: no period, a bad period, an unknown or hub category.
        (SHIPPED.split(b"\n[retention]")[0], "retention: Field required"),
        (_edit(b"default_days = 730", b"default_days = 0"), "default_days"),
        (_edit(b"default_days = 730", b""), "default_days: Field required"),
        (_edit(b"referral = 180", b'referral = "soon"'), "retention.days.referral"),
        (_edit(b"referral = 180", b"referal = 180"), "retention.days"),
        (_edit(b"referral = 180", b"consent_event = 30"), "hub records are hub state"),
    ],
)
def test_bad_rules_rejected(data: bytes, message: str) -> None:
    with pytest.raises(RulesError, match=message.replace("(", r"\(")) as info:
        load_rules(data)
    if "sha256" not in message:
        assert info.value.__cause__ is not None  # raise ... from e


def test_retention_schedule_is_the_category_period_from_the_decision() -> None:
    from datetime import UTC, datetime, timedelta
    from types import SimpleNamespace

    from sigbus.policy.retention import due, expires_at

    rules = default_rules()
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    assert expires_at(rules, MessageType.REFERRAL, t0) == t0 + timedelta(days=180)
    assert expires_at(rules, MessageType.PLAN_COMMITMENT, t0) == t0 + timedelta(days=730)
    ref = SimpleNamespace(category=MessageType.REFERRAL, decided_at=t0)
    plan = SimpleNamespace(category=MessageType.PLAN_COMMITMENT, decided_at=t0)
    assert due(rules, [ref, plan], t0 + timedelta(days=180) - timedelta(seconds=1)) == []
    assert due(rules, [ref, plan], t0 + timedelta(days=180)) == [ref]
    assert due(rules, [ref, plan], t0 + timedelta(days=731)) == [ref, plan]
