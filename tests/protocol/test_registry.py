"""One registry per concept, and everything else derived: completeness checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from sigbus.broker.setup import checked_profiles
from sigbus.policy import default_rules
from sigbus.policy.errors import RulesError
from sigbus.policy.rules import check_rule_references
from sigbus.protocol.errors import ProfileError
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import (
    BODY_MODELS,
    CASE_BOUND_TYPES,
    HUB_RECORD_TYPES,
    MESSAGE_TYPES,
    SentBy,
)
from sigbus.protocol.profiles import Profiles, parse_profile
from sigbus.transport.profiles import load_profiles

SHIPPED = load_profiles(None)


def test_every_message_type_is_classified_once() -> None:
    assert set(MESSAGE_TYPES) == set(MessageType)
    assert {t: spec.model for t, spec in MESSAGE_TYPES.items()} == BODY_MODELS
    assert {t for t, s in MESSAGE_TYPES.items() if s.case_bound} == CASE_BOUND_TYPES
    assert {t for t, s in MESSAGE_TYPES.items() if s.hub_record} == HUB_RECORD_TYPES
    # A hub record is always about a case, and only the lead agency makes one.
    assert all(MESSAGE_TYPES[t].case_bound for t in HUB_RECORD_TYPES)
    assert all(MESSAGE_TYPES[t].sent_by is SentBy.LEAD for t in HUB_RECORD_TYPES)


def test_the_shipped_partners_are_all_there() -> None:
    assert set(SHIPPED) >= {
        "police",
        "school",
        "social",
        "kriminalvarden",
        "arbetsformedlingen",
        "sis",
        "bup",
    }
    assert SHIPPED.lead == "social"


def test_every_message_type_has_a_sender_and_every_statute_a_recipient() -> None:
    senders = {t: [n for n in SHIPPED if t in SHIPPED[n].sends] for t in MessageType}
    hub_only = {t for t, spec in MESSAGE_TYPES.items() if spec.sent_by is SentBy.HUB}
    assert hub_only == {MessageType.COMMITMENT_REMINDER}
    assert not any(senders[t] for t in hub_only), senders  # no agency sends the hub's own
    assert all(v for t, v in senders.items() if t not in hub_only), senders
    rules = default_rules()
    for statute in rules.statute:
        assert statute.recipient in SHIPPED, statute.id
        assert all(s in SHIPPED for s in statute.senders or ()), statute.id


def test_every_rule_id_the_profiles_name_exists() -> None:
    rules = default_rules()
    check_rule_references(rules, SHIPPED.rule_ids(), named_by="agency profiles")
    referral_statutes = {s.id for s in rules.statute if MessageType.REFERRAL in s.categories}
    for name in SHIPPED:
        assert set(SHIPPED[name].referrals.values()) <= referral_statutes, name


def test_a_profile_naming_a_missing_statute_stops_the_hub(tmp_path: Path) -> None:
    local = tmp_path / "profiles"
    local.mkdir()
    text = (Path(__file__).resolve().parents[2] / "profiles" / "police.toml").read_text()
    (local / "police.toml").write_text(text.replace('"lul_6"', '"lul_7"'))
    with pytest.raises(RulesError, match="lul_7"):
        checked_profiles(tmp_path, default_rules())


PARTNER = b"""
name = "partner"
display_name = { sv = "Partner", en = "Partner" }
sends = ["plan_commitment"]
[functions]
partner_contact = { sv = "Kontakt", en = "Contact" }
"""


def test_only_the_lead_may_send_lead_only_types() -> None:
    widened = PARTNER.replace(b'["plan_commitment"]', b'["plan_commitment", "consent_event"]')
    with pytest.raises(ProfileError, match="only the lead agency may send consent_event"):
        parse_profile(widened, file_stem="partner")


def test_no_profile_may_send_the_hubs_own_reminder() -> None:
    widened = PARTNER.replace(b'["plan_commitment"]', b'["plan_commitment", "commitment_reminder"]')
    with pytest.raises(ProfileError, match="only the hub sends commitment_reminder"):
        parse_profile(widened, file_stem="partner")


def test_referral_kinds_go_with_referrals() -> None:
    with pytest.raises(ProfileError, match="referral kinds"):
        parse_profile(PARTNER.replace(b"plan_commitment", b"referral"), file_stem="partner")


def test_a_profile_is_named_like_its_file_and_never_hub() -> None:
    with pytest.raises(ProfileError, match="must match the file name"):
        parse_profile(PARTNER, file_stem="other")
    with pytest.raises(ProfileError, match="hub"):
        parse_profile(PARTNER.replace(b'"partner"', b'"hub"', 1), file_stem="hub")


def test_exactly_one_lead() -> None:
    partner = parse_profile(PARTNER, file_stem="partner")
    with pytest.raises(ProfileError, match="exactly one profile must be the lead"):
        Profiles([partner])
    with pytest.raises(ProfileError, match="found 2"):
        Profiles([SHIPPED["social"], SHIPPED["social"].model_copy(update={"name": "social2"})])
