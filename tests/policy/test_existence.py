"""The notice of existence (issue 13): off by default, fail closed on a bad switch, and
an answer that names agencies only (policy/existence.py, pure)."""

from __future__ import annotations

from importlib import resources

import pytest

from sigbus.policy import default_rules
from sigbus.policy.errors import RulesError
from sigbus.policy.existence import (
    ExistenceRefusal,
    answer_existence,
    parse_detail,
)
from sigbus.policy.rules import Rules, load_rules

SHIPPED = resources.files("sigbus.policy").joinpath("rules.toml").read_bytes()


def with_switch(value: str) -> bytes:
    assert b"\nenabled = false\n" in SHIPPED
    return SHIPPED.replace(b"\nenabled = false\n", f"\nenabled = {value}\n".encode())


def enabled() -> Rules:
    return load_rules(with_switch("true"))


def test_it_is_off_by_default_and_off_refuses() -> None:
    assert default_rules().existence_notice.enabled is False
    answer = answer_existence("police", [("social", "school")], default_rules())
    assert answer.refused is ExistenceRefusal.OFF
    assert answer.agencies == ()


def test_a_rules_file_without_the_section_is_off() -> None:
    start = SHIPPED.index(b"[existence_notice]")
    assert not load_rules(SHIPPED[:start]).existence_notice.enabled


@pytest.mark.parametrize("bad", ['"yes"', '"true"', "1", "0", '"false"', "[]"])
def test_a_bad_switch_fails_the_load(bad: str) -> None:
    with pytest.raises(RulesError, match="existence_notice"):
        load_rules(with_switch(bad))


def test_an_unknown_key_fails_the_load() -> None:
    with pytest.raises(RulesError):
        load_rules(with_switch("false\ncategories = true"))


def test_on_it_names_only_the_other_agencies_of_open_cases() -> None:
    answer = answer_existence(
        "police", [("social", "police", "school"), ("social", "sis", "hub")], enabled()
    )
    assert answer.refused is None
    assert answer.agencies == ("school", "sis", "social")
    assert answer.involved
    assert answer.detail() == "school.sis.social"
    assert parse_detail(answer.detail()) == answer.agencies


def test_on_with_no_open_case_the_answer_is_none() -> None:
    answer = answer_existence("police", [], enabled())
    assert (answer.refused, answer.agencies, answer.involved) == (None, (), False)
    assert answer.detail() == "none"
    assert parse_detail("none") == ()
    # Asking about a case the asker alone is party to tells nothing new.
    assert answer_existence("police", [("police",)], enabled()).agencies == ()
