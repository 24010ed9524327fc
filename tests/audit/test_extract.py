"""The disclosure extract (GDPR art. 15): exactly the person's lines, each proven."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from audit_fixtures import LOG_KEY, POLICE_KEY, fixture_trust, key_from_seed
from extract_fixtures import (
    LINES_A,
    LINES_B,
    PERSON_A,
    PERSON_B,
    PSEUDONYM_KEY,
    SID_A,
    SID_B,
    leaves,
    signed_log,
)

from sigbus.audit.entry import EntryOutcome, LogEntry
from sigbus.audit.extract import Extract, ExtractError, build_extract, verify_extract
from sigbus.console.extract import about_person
from sigbus.protocol.personnummer import PersonnummerError


def _extract(personnummer: str, quorum_cosigs: bool = True) -> Extract:
    data, note, cosigs = signed_log()
    return build_extract(
        note,
        data,
        cosigs if quorum_cosigs else [],
        log_key=LOG_KEY.public_key(),
        is_about=about_person(personnummer, PSEUDONYM_KEY),
        signer=LOG_KEY,
    )


def test_the_extract_lists_exactly_the_persons_releases_and_denies_across_cases() -> None:
    a, b = _extract(PERSON_A), _extract(PERSON_B)
    assert [line.entry.index for line in a.lines] == LINES_A  # case-a, case-c and a referral
    assert [line.entry.index for line in b.lines] == LINES_B
    assert {line.entry.outcome.value for line in a.lines} == {"release", "deny"}
    # The consenter comes from the log's own hub record of the consent event.
    assert next(line.consenters for line in a.lines) == ("guardian",)


def test_the_same_personnummer_in_the_10_or_12_digit_separatorless_form_finds_the_same() -> None:
    assert [x.entry.index for x in _extract(PERSON_A.replace("-", "")).lines] == LINES_A


def test_a_malformed_personnummer_is_refused_without_echoing_it() -> None:
    with pytest.raises(PersonnummerError) as raised:
        about_person("20100315-9802", PSEUDONYM_KEY)  # wrong check digit
    assert "9802" not in str(raised.value)


@dataclass(frozen=True)
class _Case:
    subject_id: str


def test_a_hub_deny_naming_no_subject_is_the_persons_in_their_case_only() -> None:
    # The hub denies a message in a closed case before the policy: no subject_ref.
    base = LogEntry.model_validate_json(leaves()[0])
    deny = base.model_copy(
        update={"subject_ref": None, "outcome": EntryOutcome.DENY, "case_ref": "case-a"}
    )
    cases = {"case-a": _Case(SID_A), "case-b": _Case(SID_B)}
    assert about_person(PERSON_A, PSEUDONYM_KEY, cases)(deny)
    assert not about_person(PERSON_B, PSEUDONYM_KEY, cases)(deny)
    assert not about_person(PERSON_A, PSEUDONYM_KEY)(deny)  # no case records: not known
    outside = deny.model_copy(update={"case_ref": None})
    assert not about_person(PERSON_A, PSEUDONYM_KEY, cases)(outside)


def test_every_line_verifies_offline_against_the_trusted_directory_only() -> None:
    report = verify_extract(_extract(PERSON_A).to_json(), fixture_trust())
    assert report.lines == len(LINES_A)
    assert set(report.cosigned_by) == {"police", "school"}


def _tampered(edit: Callable[[dict[str, object]], None]) -> bytes:
    document = json.loads(_extract(PERSON_A).to_json())
    edit(document)
    return json.dumps(document).encode()


def _set_recipient(d: dict[str, object]) -> None:
    d["lines"][0]["entry"]["recipient"] = "police"  # type: ignore[index]


def _drop_proof_node(d: dict[str, object]) -> None:
    d["lines"][0]["proof"] = d["lines"][0]["proof"][1:]  # type: ignore[index]


def _other_leaf(d: dict[str, object]) -> None:
    lines = d["lines"]  # type: ignore[assignment]
    lines[0]["leaf_hash"] = lines[1]["leaf_hash"]  # type: ignore[index]


def _no_cosignatures(d: dict[str, object]) -> None:
    d["cosignatures"] = []


def _drop_line(d: dict[str, object]) -> None:
    d["lines"] = d["lines"][:1] + d["lines"][2:]  # type: ignore[index]


def _unlist_too(d: dict[str, object]) -> None:
    _drop_line(d)  # and rewrite the statement to match: its signature no longer holds
    statement = d["completeness"]["statement"]  # type: ignore[index]
    statement["indexes"] = [line["entry"]["index"] for line in d["lines"]]  # type: ignore[attr-defined]


def _no_statement(d: dict[str, object]) -> None:
    del d["completeness"]


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (_set_recipient, "leaf hash is not the entry's"),
        (_drop_proof_node, "inclusion proof"),
        (_other_leaf, "leaf hash is not the entry's"),
        (_no_cosignatures, "witness quorum not met"),
        (_drop_line, r"not complete: the hub listed log indexes \[\d+\] that it lacks"),
        (_unlist_too, "not signed by a log key"),
        (_no_statement, "no completeness statement"),
    ],
)
def test_a_tampered_extract_fails_naming_why(
    edit: Callable[[dict[str, object]], None], says: str
) -> None:
    with pytest.raises(ExtractError, match=says):
        verify_extract(_tampered(edit), fixture_trust())


def test_an_extract_under_another_log_key_is_refused() -> None:
    data, note, cosigs = signed_log()
    with pytest.raises(ExtractError):
        build_extract(
            note,
            data,
            cosigs,
            log_key=POLICE_KEY.public_key(),
            is_about=lambda e: True,
            signer=POLICE_KEY,
        )


def test_a_log_that_is_not_its_checkpoints_tree_gives_no_extract() -> None:
    data, note, cosigs = signed_log()
    forged = LogEntry.model_validate_json(data[4]).model_copy(update={"recipient": "police"})
    data[4] = forged.canonical_bytes()
    with pytest.raises(ExtractError, match="not the tree"):
        build_extract(
            note,
            data,
            cosigs,
            log_key=LOG_KEY.public_key(),
            is_about=lambda e: True,
            signer=LOG_KEY,
        )


def test_an_extract_signed_by_an_untrusted_log_key_fails_verification() -> None:
    from audit_fixtures import ALL_WITNESSES, cosignature_records

    from sigbus.audit.checkpoint import DEFAULT_ORIGIN, note_body, sign_note

    extract = _extract(PERSON_A)
    rogue = sign_note(note_body(extract.checkpoint), DEFAULT_ORIGIN, key_from_seed(77))
    cosigs = [
        {"line": c.line, "public_key": "", "witness": c.witness}
        for c in cosignature_records(rogue, ALL_WITNESSES)
    ]
    document = json.loads(extract.to_json())
    document["checkpoint"], document["cosignatures"] = rogue, cosigs
    with pytest.raises(ExtractError, match="not validly signed"):
        verify_extract(json.dumps(document).encode(), fixture_trust())
