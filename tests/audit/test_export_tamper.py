"""Tamper tests on a real export: each fault is detected and names the right entry."""

from __future__ import annotations

import json

import pytest
import rfc8785
from audit_fixtures import (
    LOG_KEY,
    POLICE_KEY,
    POLICE_WITNESS,
    SCHOOL_KEY,
    SCHOOL_WITNESS,
    Log,
    fixture_trust,
    key_from_seed,
    make_entries,
    make_log,
    signed_checkpoint,
)

from sigbus.audit.checkpoint import DEFAULT_ORIGIN, make_checkpoint_body, sign_note
from sigbus.audit.entry import LogEntry, leaf_hash
from sigbus.audit.errors import ExportError
from sigbus.audit.export_format import read_entry_lines, write_export
from sigbus.audit.merkle import MerkleTree
from sigbus.audit.verify import verify_export
from sigbus.audit.verify_report import SELF_CONSISTENT_ONLY, VERIFIED

COUNT = 7
WITNESSES = [(POLICE_WITNESS, POLICE_KEY), (SCHOOL_WITNESS, SCHOOL_KEY)]
#: The officer's trust anchors: police and school witness, so the default quorum is 2.
TRUST = fixture_trust()


@pytest.fixture(scope="module")
def log() -> Log:
    return make_log(COUNT, WITNESSES)


@pytest.fixture
def lines(log: Log) -> list[bytes]:
    return log.export_lines()


def entry_line(lines: list[bytes], index: int) -> int:
    return index + 1  # line 0 is the header


def flip_bit(data: bytes, bit: int) -> bytes:
    mutated = bytearray(data)
    mutated[bit // 8] ^= 1 << (bit % 8)
    return bytes(mutated)


def replace_in_entry(lines: list[bytes], index: int, old: bytes, new: bytes) -> list[bytes]:
    copy = list(lines)
    position = entry_line(lines, index)
    assert old in copy[position]
    copy[position] = copy[position].replace(old, new, 1)
    return copy


def rejected_at(lines: list[bytes], **kwargs: object) -> int | None:
    with pytest.raises(ExportError) as raised:
        verify_export(lines, **{"trust": TRUST, **kwargs})  # type: ignore[arg-type]
    return raised.value.entry_index


def test_intact_export_verifies_against_the_trust_anchors_only(lines: list[bytes]) -> None:
    trusted = verify_export(lines, trust=TRUST)
    assert (trusted.verdict, trusted.entries) == (VERIFIED, COUNT)
    assert [(c.agency, c.witness) for c in trusted.cosignatures] == [
        ("police", POLICE_WITNESS),
        ("school", SCHOOL_WITNESS),
    ]
    assert trusted.lines()[0].startswith("VERIFIED / VERIFIERAD")
    own = verify_export(lines, trust=None)
    assert own.verdict == SELF_CONSISTENT_ONLY
    assert own.trust is None
    assert not own.summary().startswith("VERIFIED")
    assert own.lines()[0].startswith("NOT VERIFIED / INTE VERIFIERAD")


def test_every_line_ends_with_newline_and_entries_are_canonical(
    log: Log, lines: list[bytes]
) -> None:
    assert all(line.endswith(b"\n") for line in lines)
    header = json.loads(lines[0])
    assert header["format"] == "sigbus-log-export/v1"
    assert header["entries"] == COUNT
    assert list(read_entry_lines(lines)) == log.entries
    for line in log.entries:
        assert LogEntry.model_validate_json(line).canonical_bytes() == line


@pytest.mark.parametrize("index", [0, 3, COUNT - 1])
def test_content_change_names_the_changed_entry(lines: list[bytes], index: int) -> None:
    # Still canonical and schema-valid: only the hash chain / root can catch it.
    tampered = replace_in_entry(lines, index, b'"ingress_seq":', b'"ingress_seq":9')
    assert rejected_at(tampered) == index


@pytest.mark.parametrize("index", [1, 3, COUNT - 1])
def test_prev_hash_change_names_that_entry_not_the_one_before(
    lines: list[bytes], index: int
) -> None:
    line = lines[entry_line(lines, index)]
    position = line.index(b'"prev_leaf_hash":"') + len(b'"prev_leaf_hash":"')
    digit = line[position : position + 1]
    tampered = list(lines)
    swapped = b"0" if digit != b"0" else b"1"
    tampered[entry_line(lines, index)] = line[:position] + swapped + line[position + 1 :]
    assert rejected_at(tampered) == index


@pytest.mark.parametrize("index", [0, 3, COUNT - 1])
def test_every_single_bit_flip_in_an_entry_names_that_entry(lines: list[bytes], index: int) -> None:
    position = entry_line(lines, index)
    line = lines[position][:-1]  # flips of the line terminator are covered below
    step = 1 if index == 3 else 7
    for bit in range(0, len(line) * 8, step):
        tampered = list(lines)
        tampered[position] = flip_bit(line, bit) + b"\n"
        # A flip that creates a newline splits the entry into two lines.
        tampered = b"".join(tampered).splitlines(keepends=True)
        assert rejected_at(tampered) == index, f"bit {bit}"


def test_truncation_is_detected(lines: list[bytes]) -> None:
    without_last_entry = lines[:COUNT] + lines[COUNT + 1 :]
    assert rejected_at(without_last_entry) == COUNT - 1
    assert rejected_at(lines[:4]) == 3
    assert rejected_at(lines[:-1]) is None  # checkpoint line missing
    cut_mid_line = [*lines[:3], lines[3][:100]]
    assert rejected_at(cut_mid_line) == 2


def test_truncation_with_adjusted_header_is_detected(lines: list[bytes]) -> None:
    header = json.loads(lines[0])
    header["entries"] = COUNT - 1
    rewritten = [json.dumps(header, separators=(",", ":"), sort_keys=True).encode() + b"\n"]
    with pytest.raises(ExportError, match="size"):
        verify_export(rewritten + lines[1:COUNT] + lines[COUNT + 1 :], trust=TRUST)


def test_removed_entry_is_named(lines: list[bytes]) -> None:
    assert rejected_at(lines[:3] + lines[4:]) == 2


def test_duplicated_line_is_named(lines: list[bytes]) -> None:
    assert rejected_at([*lines[:4], lines[3], *lines[4:]]) == 3


def test_swapped_lines_are_named(lines: list[bytes]) -> None:
    swapped = list(lines)
    swapped[3], swapped[4] = swapped[4], swapped[3]
    assert rejected_at(swapped) == 2


def test_extra_lines_are_detected(lines: list[bytes]) -> None:
    extra_entry = make_entries(1, start=COUNT, prev=leaf_hash(lines[COUNT][:-1]).hex())[0]
    assert rejected_at([*lines[:-1], extra_entry + b"\n", *lines[-1:]]) == COUNT
    with pytest.raises(ExportError, match="after the checkpoint"):
        verify_export([*lines, b"{}\n"], trust=TRUST)


def test_forged_checkpoint_is_detected(log: Log, lines: list[bytes]) -> None:
    forged = sign_note(
        make_checkpoint_body(DEFAULT_ORIGIN, COUNT, log.tree.root()),
        DEFAULT_ORIGIN,
        key_from_seed(66),
    )
    trailer = json.loads(lines[-1])
    trailer["checkpoint"] = forged
    tampered = [*lines[:-1], rfc8785.dumps(trailer) + b"\n"]
    with pytest.raises(ExportError, match="checkpoint is not validly signed"):
        verify_export(tampered, trust=TRUST)


def test_rewritten_log_resigned_by_an_attacker_fails_only_against_the_trusted_key() -> None:
    attacker = key_from_seed(66)
    entries = make_entries(COUNT)
    tree = MerkleTree(leaf_hash(line) for line in entries)
    note = sign_note(
        make_checkpoint_body(DEFAULT_ORIGIN, COUNT, tree.root()), DEFAULT_ORIGIN, attacker
    )
    lines = list(
        write_export(entries, note, [], log_public_key=attacker.public_key(), origin=DEFAULT_ORIGIN)
    )
    assert verify_export(lines, trust=None).verdict == SELF_CONSISTENT_ONLY
    with pytest.raises(ExportError, match="header declares a log key that is not the hub"):
        verify_export(lines, trust=TRUST)


def test_rechained_entries_under_the_old_checkpoint_fail_the_root(log: Log) -> None:
    entries = make_entries(COUNT)
    entries[2] = entries[2].replace(b"no_consent", b"consent_ok")
    rechained = make_entries(0)
    prev = "0" * 64
    for line in entries:
        entry = LogEntry.model_validate_json(line).model_copy(update={"prev_leaf_hash": prev})
        rechained.append(entry.canonical_bytes())
        prev = leaf_hash(rechained[-1]).hex()
    lines = [log.export_lines()[0], *(line + b"\n" for line in rechained), log.export_lines()[-1]]
    with pytest.raises(ExportError, match="recomputed"):
        verify_export(lines, trust=TRUST)


def test_bad_cosignature_does_not_count(lines: list[bytes]) -> None:
    trailer = json.loads(lines[-1])
    line = trailer["cosignatures"][1]["line"]
    trailer["cosignatures"][1]["line"] = line[:-6] + ("A" if line[-6] != "A" else "B") + line[-5:]
    tampered = [*lines[:-1], rfc8785.dumps(trailer) + b"\n"]
    with pytest.raises(ExportError, match="quorum not met: 1 of the 2"):
        verify_export(tampered, trust=TRUST)
    with pytest.raises(ExportError, match="cosignature 1"):
        verify_export(tampered, trust=None)  # even the file's own key rejects it
    assert verify_export(tampered, trust=fixture_trust(quorum=1)).trust.rejected[0].position == 1  # type: ignore[union-attr]


def test_cosignature_by_an_untrusted_key_does_not_count(log: Log) -> None:
    impostor = key_from_seed(55)
    lines = make_log(COUNT, [(POLICE_WITNESS, impostor)]).export_lines()
    assert verify_export(lines, trust=None).cosignatures[0].agency is None
    with pytest.raises(ExportError, match="quorum not met: 0 of the 1"):
        verify_export(lines, trust=fixture_trust(quorum=1))


def test_fork_against_an_earlier_checkpoint_is_detected(log: Log) -> None:
    earlier = signed_checkpoint(log.tree, 4)
    report = verify_export(log.export_lines(), trust=TRUST, earlier_checkpoints=[earlier])
    assert report.earlier_checkpoints == (4,)
    # The hub rewrites entry 2 and signs a new checkpoint with its real key.
    entries = make_entries(COUNT)
    entries[2] = entries[2].replace(b"no_consent", b"consent_ok")
    rechained, prev = [], "0" * 64
    for line in entries:
        entry = LogEntry.model_validate_json(line).model_copy(update={"prev_leaf_hash": prev})
        rechained.append(entry.canonical_bytes())
        prev = leaf_hash(rechained[-1]).hex()
    tree = MerkleTree(leaf_hash(line) for line in rechained)
    forked = list(
        write_export(
            rechained,
            signed_checkpoint(tree),
            [],
            log_public_key=LOG_KEY.public_key(),
            origin=DEFAULT_ORIGIN,
        )
    )
    assert verify_export(forked, trust=None).entries == COUNT  # self-consistent on its own
    with pytest.raises(ExportError, match="fork"):
        verify_export(forked, trust=TRUST, earlier_checkpoints=[earlier])


def test_rollback_below_an_earlier_checkpoint_is_detected(log: Log) -> None:
    bigger = make_log(COUNT + 3)
    with pytest.raises(ExportError, match="rolled back"):
        verify_export(log.export_lines(), trust=TRUST, earlier_checkpoints=[bigger.note])


def test_writer_refuses_entries_that_do_not_match_the_checkpoint(log: Log) -> None:
    with pytest.raises(ExportError):
        list(
            write_export(
                log.entries[:-1],
                log.note,
                [],
                log_public_key=LOG_KEY.public_key(),
                origin=DEFAULT_ORIGIN,
            )
        )


def test_empty_or_garbage_header_is_rejected() -> None:
    with pytest.raises(ExportError, match="empty"):
        verify_export([], trust=TRUST)
    with pytest.raises(ExportError, match="header"):
        verify_export([b"not json\n"], trust=TRUST)
