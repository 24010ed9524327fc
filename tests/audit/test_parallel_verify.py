"""The parallel file verifier gives the reference's report, error and first bad entry."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from audit_fixtures import (
    ALL_WITNESSES,
    LOG_KEY,
    Log,
    fixture_trust,
    make_entries,
    make_log,
    signed_checkpoint,
)
from hypothesis import given, settings
from hypothesis import strategies as st

import sigbus.parallel_verify as parallel
from sigbus.audit.checkpoint import DEFAULT_ORIGIN, make_checkpoint_body, sign_note
from sigbus.audit.entry_line import (
    ENTRY_LINE,
    ENTRY_LINE_PLAIN,
    check_entry_line,
    is_plain,
    plain_newlines,
)
from sigbus.audit.errors import ExportError
from sigbus.audit.merkle import hash_leaf, root_from_leaf_hashes
from sigbus.audit.verify import verify_export
from sigbus.audit.verify_chunks import ChunkScanner, check_block, join_chunks

COUNT = 300
TRUST = fixture_trust()
Tamper = Callable[[list[bytes]], list[bytes]]


@pytest.fixture(scope="module")
def log() -> Log:
    return make_log(COUNT, ALL_WITNESSES)


@pytest.fixture(autouse=True)
def small_files_go_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(parallel, "PARALLEL_MIN_ENTRIES", 1)


def write(tmp_path: Path, lines: list[bytes]) -> Path:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"".join(lines))
    return path


def reference_outcome(lines: list[bytes], **kwargs: object) -> object:
    try:
        return verify_export(lines, **{"trust": TRUST, **kwargs})  # type: ignore[arg-type]
    except ExportError as e:
        return (str(e), e.entry_index)


def file_outcome(path: Path, workers: int, **kwargs: object) -> object:
    try:
        return parallel.verify_export_file(path, workers=workers, **{"trust": TRUST, **kwargs})  # type: ignore[arg-type]
    except ExportError as e:
        return (str(e), e.entry_index)


@pytest.mark.parametrize("workers", [2, 3, 7])
def test_intact_file_takes_the_fast_path_and_matches_the_reference(
    log: Log, tmp_path: Path, workers: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = log.export_lines()
    path = write(tmp_path, lines)
    expected = verify_export(lines, trust=TRUST)

    def no_fallback(*args: object, **kwargs: object) -> None:
        raise AssertionError("the parallel path fell back to the reference")

    monkeypatch.setattr(parallel, "verify_export", no_fallback)
    report = parallel.verify_export_file(path, workers=workers, trust=TRUST)
    assert report == expected


@pytest.mark.parametrize("workers", [2, 3])
def test_earlier_checkpoints_at_every_kind_of_size(log: Log, tmp_path: Path, workers: int) -> None:
    lines = log.export_lines()
    path = write(tmp_path, lines)
    sizes = [1, 2, 3, 64, 128, 149, 150, 151, 199, 256, 299, COUNT]
    notes = [signed_checkpoint(log.tree, size) for size in sizes]
    expected = verify_export(lines, trust=TRUST, earlier_checkpoints=notes)
    assert expected.earlier_checkpoints == tuple(sizes)
    report = parallel.verify_export_file(
        path, trust=TRUST, workers=workers, earlier_checkpoints=notes
    )
    assert report == expected

    forged = sign_note(
        make_checkpoint_body(DEFAULT_ORIGIN, 150, b"\x00" * 32), DEFAULT_ORIGIN, LOG_KEY
    )
    expected_fork = reference_outcome(lines, earlier_checkpoints=[forged])
    assert isinstance(expected_fork, tuple)
    assert "fork" in expected_fork[0]
    assert file_outcome(path, workers, earlier_checkpoints=[forged]) == expected_fork


def flip(index: int, byte: int = 40) -> Tamper:
    def tamper(lines: list[bytes]) -> list[bytes]:
        copy = list(lines)
        line = bytearray(copy[index + 1])
        line[byte] ^= 0x01
        copy[index + 1] = bytes(line)
        return copy

    return tamper


def swap(a: int, b: int) -> Tamper:
    def tamper(lines: list[bytes]) -> list[bytes]:
        copy = list(lines)
        copy[a + 1], copy[b + 1] = copy[b + 1], copy[a + 1]
        return copy

    return tamper


def prev_hash_of(index: int) -> Tamper:
    def tamper(lines: list[bytes]) -> list[bytes]:
        copy = list(lines)
        start = copy[index + 1].index(b'"prev_leaf_hash":"') + len(b'"prev_leaf_hash":"')
        line = bytearray(copy[index + 1])
        line[start] = ord("f") if line[start] != ord("f") else ord("e")
        copy[index + 1] = bytes(line)
        return copy

    return tamper


TAMPERS: dict[str, Tamper] = {
    "flip first entry": flip(0),
    "flip entry 1": flip(1),
    "flip near the middle": flip(149),
    "flip at the middle": flip(150),
    "flip after the middle": flip(151),
    "flip last entry": flip(COUNT - 1),
    "flip penultimate entry": flip(COUNT - 2),
    "prev hash at the middle": prev_hash_of(150),
    "prev hash of the last": prev_hash_of(COUNT - 1),
    "swap across the middle": swap(149, 150),
    "swap far apart": swap(10, 250),
    "remove the middle": lambda lines: lines[:151] + lines[152:],
    "duplicate the middle": lambda lines: [*lines[:151], lines[151], *lines[151:]],
    "truncate entries": lambda lines: lines[:200],
    "drop the trailer": lambda lines: lines[:-1],
    "extra entry before the trailer": lambda lines: [*lines[:-1], lines[5], lines[-1]],
    "data after the trailer": lambda lines: [*lines, b"\n"],
    "no final newline": lambda lines: [*lines[:-1], lines[-1].rstrip(b"\n")],
    "escaped slash": lambda lines: (
        [*lines[:100], lines[100].replace(b'"dec-', b'"dec\\/', 1), *lines[101:]]
    ),
    "control byte": lambda lines: (
        [*lines[:100], lines[100].replace(b'"dec-', b'"dec\x01', 1), *lines[101:]]
    ),
    "invalid utf-8": lambda lines: (
        [*lines[:100], lines[100].replace(b'"dec-', b'"dec\xff', 1), *lines[101:]]
    ),
    "header count off by one": lambda lines: [
        lines[0].replace(b'"entries":300', b'"entries":299'),
        *lines[1:],
    ],
    "cosignature altered": lambda lines: [*lines[:-1], lines[-1].replace(b"police", b"schoo", 1)],
    "empty line in the middle": lambda lines: [*lines[:151], b"\n", *lines[151:]],
    # A raw newline inside a string: the plain pattern's strings could run across
    # it, so the match count against the newline count must catch it.
    "newline inside a string": lambda lines: (
        [*lines[:100], lines[100].replace(b'"dec-', b'"dec\n', 1), *lines[101:]]
    ),
    "junk before an entry": lambda lines: [*lines[:100], b"x" + lines[100], *lines[101:]],
}


@pytest.mark.parametrize("name", sorted(TAMPERS))
@pytest.mark.parametrize("workers", [2, 3])
def test_tampered_file_gives_the_reference_error_and_entry(
    log: Log, tmp_path: Path, name: str, workers: int
) -> None:
    lines = TAMPERS[name](log.export_lines())
    expected = reference_outcome(lines)
    path = write(tmp_path, lines)
    assert file_outcome(path, workers) == expected
    if name != "no final newline":  # the reference accepts a last line without "\n"
        assert isinstance(expected, tuple), f"{name}: the reference accepted it"


@pytest.mark.parametrize("block_bytes", [1 << 23, 5000, 1000, 100])
def test_fast_path_rejects_what_the_reference_rejects(
    log: Log, tmp_path: Path, block_bytes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path itself (no fallback) never accepts a tampered file.

    Small blocks put block boundaries everywhere, and 100 bytes is shorter than
    a line (a line then spans several reads).
    """
    monkeypatch.setattr(parallel, "_BLOCK_BYTES", block_bytes)
    intact = write(tmp_path, log.export_lines())
    assert parallel._verify_parallel(intact, 3, TRUST, ()) == verify_export(
        log.export_lines(), trust=TRUST
    )
    for name, tamper in TAMPERS.items():
        if name == "no final newline":
            continue
        path = write(tmp_path, tamper(log.export_lines()))
        assert parallel._verify_parallel(path, 3, TRUST, ()) is None, name


plain_mutation = st.tuples(
    st.integers(min_value=0, max_value=COUNT - 1),
    st.integers(min_value=0, max_value=800),
    st.sampled_from(
        [b"", b"a", b"0", b'"', b",", b"}", b"{", b"9", b"-", b"\xc3\xa9", b"null", b"\x7f"]
    ),
    st.integers(min_value=0, max_value=3),
)


@settings(max_examples=400, deadline=None)
@given(plain_mutation)
def test_plain_pattern_agrees_with_the_exact_one_on_plain_lines(
    mutation: tuple[int, int, bytes, int],
) -> None:
    index, at, insert, cut = mutation
    line = make_entries(1, start=0)[0] if index == 0 else _LINES[index]
    at = min(at, len(line))
    mutated = line[:at] + insert + line[at + cut :]
    assert is_plain(mutated)
    assert (ENTRY_LINE_PLAIN.fullmatch(mutated) is None) == (ENTRY_LINE.fullmatch(mutated) is None)


_LINES = make_entries(COUNT)


def test_plain_check_finds_backslashes_and_controls() -> None:
    assert is_plain(b"{}\n{}\n")
    assert not is_plain(b"{}\\\n")
    for control in [*range(0x0A), *range(0x0B, 0x20)]:
        assert not is_plain(b"{}" + bytes([control]) + b"\n")


def test_plain_newlines_counts_newlines_of_plain_data_only() -> None:
    assert plain_newlines(b"") == 0
    assert plain_newlines(b"{}\n{}\n") == 2
    assert plain_newlines(b"{}\\\n") is None
    for control in [*range(0x0A), *range(0x0B, 0x20)]:
        assert plain_newlines(b"{}\n" + bytes([control]) + b"\n") is None
    assert plain_newlines(b"\x7f\xc3\xa9\n") == 1


block_mutation = st.tuples(
    st.integers(min_value=0, max_value=COUNT - 1),
    st.integers(min_value=0, max_value=800),
    st.sampled_from(
        [
            b"",
            b"a",
            b"0",
            b'"',
            b",",
            b"}",
            b"{",
            b"9",
            b"-",
            b"\xc3\xa9",
            b"\xff",
            b"null",
            b"\n",
            b"\\",
            b"\\n",
            b"\\u0001",
            b"\\u001F",
            b"\x01",
            b"\x1f",
            b"x\n{",
        ]
    ),
    st.integers(min_value=0, max_value=3),
)


@settings(max_examples=600, deadline=None)
@given(block_mutation)
def test_block_check_agrees_with_the_per_line_check(mutation: tuple[int, int, bytes, int]) -> None:
    """The worker's whole-block check accepts a block iff every line passes the reference's."""
    index, at, insert, cut = mutation
    line = _LINES[index]
    at = min(at, len(line))
    mutated = line[:at] + insert + line[at + cut :]
    block = _LINES[0] + b"\n" + mutated + b"\n" + _LINES[1] + b"\n"
    lines = block.split(b"\n")[:-1]
    expected = all(check_entry_line(one) is not None for one in lines)
    rows = check_block(block, len(block))
    assert (rows is not None) == expected
    if rows is not None:
        assert list(rows[0]) == lines


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_scanned_chunks_join_into_the_reference_root(data: st.DataObject) -> None:
    """Without files or processes: chunks cut anywhere, fed in blocks, join into the root."""
    lines = _LINES[: data.draw(st.integers(min_value=2, max_value=COUNT))]
    total = len(lines)
    cuts = sorted(set(data.draw(st.lists(st.integers(min_value=1, max_value=total - 1)))))
    sizes = frozenset(data.draw(st.lists(st.integers(min_value=1, max_value=total))))
    results = []
    for first, stop in zip([0, *cuts], [*cuts, total], strict=True):
        scanner = ChunkScanner()
        step = data.draw(st.integers(min_value=1, max_value=stop - first))
        for at in range(first, stop, step):
            block = b"".join(line + b"\n" for line in lines[at : min(at + step, stop)])
            assert scanner.feed(block, len(block))
        results.append(scanner.result(sizes))
    leaves = [hash_leaf(line) for line in lines]
    assert join_chunks(results, total) == (
        root_from_leaf_hashes(leaves),
        {size: root_from_leaf_hashes(leaves[:size]) for size in sizes},
    )
    assert join_chunks(results, total + 1) is None
    if len(results) > 1:
        assert join_chunks(results[1:], total) is None  # does not start at index 0
        assert join_chunks([results[0], *results[2:]], total) is None  # a gap
