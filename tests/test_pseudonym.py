"""The hub's pseudonyms: a person-stable subject id inside the hub, one ref per case outside."""

from __future__ import annotations

import re

from sigbus.broker.pseudonym import subject_id_for, subject_ref_for

KEY = bytes(range(32))
PERSON = subject_id_for("20100315-9801", KEY)


def test_a_subject_ref_is_per_case_and_per_key() -> None:
    one, other = subject_ref_for(PERSON, "case-one", KEY), subject_ref_for(PERSON, "case-two", KEY)
    assert one != other
    assert one == subject_ref_for(PERSON, "case-one", KEY)  # stable within the case
    assert one != subject_ref_for(PERSON, "case-one", bytes(32))  # useless without the key
    assert one != subject_ref_for(subject_id_for("20100315-9819", KEY), "case-one", KEY)


def test_a_subject_ref_is_letters_only_and_not_the_subject_id() -> None:
    for scope in ("case-one", "msg-abcdefgh"):
        ref = subject_ref_for(PERSON, scope, KEY)
        assert re.fullmatch(r"sref-[a-p]{32}", ref)
        assert PERSON.removeprefix("subj-") not in ref
