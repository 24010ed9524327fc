"""Quarantined log records in an export: accepted only when a later entry names them."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pytest
from audit_fixtures import (
    ALL_WITNESSES,
    START,
    Log,
    cosignature_records,
    fixture_trust,
    make_entries,
    signed_checkpoint,
    trust_args,
)
from typer.testing import CliRunner

import sigbus.parallel_verify as parallel
from sigbus.audit.entry import LogEntry, leaf_hash
from sigbus.audit.errors import ExportError
from sigbus.audit.export_format import raw_record, read_entry_lines, record_line
from sigbus.audit.merkle import MerkleTree
from sigbus.audit.quarantine import Fault, classify, named_quarantine, quarantine_entry
from sigbus.audit.verify import GENESIS, verify_export
from sigbus.cli_audit import audit_app

#: A stray record as a hub bug or an operator might store it: not JSON, not
#: UTF-8, with a newline (an export must keep it byte for byte all the same).
GARBAGE = b"\xff\xfe not an entry\nsecond line \x00"


def entry(index: int, prev: bytes) -> bytes:
    """One canonical entry at ``index`` chained to the leaf hash ``prev``."""
    return make_entries(1, start=index, prev=prev.hex())[0]


def naming(index: int, prev: bytes, quarantined: int, fault: Fault) -> bytes:
    return quarantine_entry(
        index=index,
        prev_leaf_hash=prev.hex(),
        decided_at=START + timedelta(hours=1),
        quarantined=quarantined,
        fault=fault,
    ).canonical_bytes()


def build(records: Sequence[bytes | None], *, name: Fault | None = None) -> list[bytes]:
    """Records as a log holds them; None is a bad record (``GARBAGE``) at that place.

    ``OK`` is a sound entry; other bytes are stored as given. Every built entry
    chains to the leaf of the record before it, as the hub writes. With
    ``name``, a quarantine entry naming the first bad record with that fault ends
    the log, as the hub appends on its next start.
    """
    stored: list[bytes] = []
    prev = bytes.fromhex(GENESIS.decode())
    for index, record in enumerate(records):
        stored.append(GARBAGE if record is None else record or entry(index, prev))
        prev = leaf_hash(stored[-1])
    if name is not None:
        bad = next(i for i, r in enumerate(records) if r is None or r)
        stored.append(naming(len(stored), prev, bad, name))
    return stored


def export(stored: Sequence[bytes]) -> list[bytes]:
    tree = MerkleTree(leaf_hash(record) for record in stored)
    note = signed_checkpoint(tree)
    return Log(list(stored), tree, note, cosignature_records(note, ALL_WITNESSES)).export_lines()


TRUST = fixture_trust()
OK = b""  # a sound entry at its place (built by ``build``)


def test_a_named_garbage_record_verifies_and_is_reported() -> None:
    stored = build([OK, OK, OK, None, OK, OK], name=Fault.NOT_AN_ENTRY)
    lines = export(stored)
    report = verify_export(lines, trust=fixture_trust())
    assert report.entries == 7
    assert report.quarantined == ((3, Fault.NOT_AN_ENTRY),)
    assert "quarantined: records each named by a later log entry: entry 3 (not_an_entry)" in (
        report.summary()
    )
    assert report.to_json()["quarantined"] == [{"index": 3, "fault": "not_an_entry"}]
    # Byte-exact: the raw-record line decodes to the stored bytes, and they are the leaf.
    assert lines[4] == b'{"raw_record":"' + base64.b64encode(GARBAGE) + b'"}\n'
    assert list(read_entry_lines(lines)) == stored


def test_an_unnamed_garbage_record_fails_closed() -> None:
    lines = export(build([OK, OK, OK, None, OK, OK]))
    with pytest.raises(ExportError, match="entry 3: a stored record that is not a log entry") as e:
        verify_export(lines, trust=TRUST)
    assert e.value.entry_index == 3


def test_a_name_with_another_fault_or_before_the_record_excuses_nothing() -> None:
    wrong_fault = export(build([OK, OK, None, OK], name=Fault.CHAIN_BREAK))
    with pytest.raises(ExportError) as e:
        verify_export(wrong_fault, trust=TRUST)
    assert e.value.entry_index == 2
    # A quarantine entry can only name a record before it.
    stored = build([OK, OK, OK])
    early = naming(3, leaf_hash(stored[-1]), 4, Fault.NOT_AN_ENTRY)
    stored += [early, GARBAGE]
    stored.append(entry(5, leaf_hash(GARBAGE)))
    with pytest.raises(ExportError) as e:
        verify_export(export(stored), trust=TRUST)
    assert e.value.entry_index == 4


def test_an_agency_entry_cannot_name_a_record() -> None:
    hub = json.loads(naming(4, b"\0" * 32, 2, Fault.NOT_AN_ENTRY))
    assert named_quarantine(**{k: hub[k] for k in ("outcome", "sender", "recipient", "reasons")})
    for change in ({"sender": "school"}, {"outcome": "deny"}, {"recipient": "police"}):
        fields = {k: hub[k] for k in ("outcome", "sender", "recipient", "reasons")} | change
        assert named_quarantine(**fields) is None


def chain_breaking(index: int) -> bytes:
    """A canonical entry that does not link to the record before it (a hub bug)."""
    return entry(index, b"\x07" * 32)


def test_a_parseable_record_that_breaks_the_chain_is_quarantined_the_same_way() -> None:
    records: list[bytes | None] = [OK, OK, chain_breaking(2), OK, OK]
    stored = build(records, name=Fault.CHAIN_BREAK)
    assert classify(stored[2], 2, leaf_hash(stored[1]).hex()) is Fault.CHAIN_BREAK
    report = verify_export(export(stored), trust=TRUST)
    assert report.quarantined == ((2, Fault.CHAIN_BREAK),)
    with pytest.raises(ExportError, match="entry 1: altered") as e:  # as before quarantine
        verify_export(export(build(records)), trust=TRUST)
    assert e.value.entry_index == 1


def test_a_record_at_the_wrong_index_is_quarantined_the_same_way() -> None:
    stored = build([OK, OK])
    stored.append(entry(7, leaf_hash(stored[-1])))  # claims index 7 at position 2
    stored.append(entry(3, leaf_hash(stored[-1])))
    assert classify(stored[2], 2, leaf_hash(stored[1]).hex()) is Fault.WRONG_INDEX
    stored.append(naming(4, leaf_hash(stored[-1]), 2, Fault.WRONG_INDEX))
    assert verify_export(export(stored), trust=TRUST).quarantined == ((2, Fault.WRONG_INDEX),)
    with pytest.raises(ExportError, match="line carries index 7"):
        verify_export(export(stored[:4]), trust=TRUST)


def test_tampering_elsewhere_in_a_quarantined_log_names_the_tampered_entry() -> None:
    lines = export(build([OK, OK, None, OK, OK, OK, OK], name=Fault.NOT_AN_ENTRY))
    tampered = list(lines)
    tampered[5] = tampered[5].replace(b'"ingress_seq":', b'"ingress_seq":9', 1)  # entry 4
    with pytest.raises(ExportError) as e:
        verify_export(tampered, trust=TRUST)
    assert e.value.entry_index == 4
    garbled = list(lines)
    garbled[5] = b"not json\n"
    with pytest.raises(ExportError, match="entry 4: not valid UTF-8 JSON"):
        verify_export(garbled, trust=TRUST)
    # Removing the quarantine entry (the last one) truncates the log: the root says so.
    with pytest.raises(ExportError):
        verify_export([*lines[:-2], lines[-1]], trust=TRUST)


def test_raw_record_lines_have_one_encoding() -> None:
    sound = make_entries(1)[0]
    assert record_line(sound) == sound
    assert raw_record(record_line(GARBAGE)) == GARBAGE
    assert raw_record(record_line(b"")) == b""
    with pytest.raises(ExportError, match="holds a canonical entry"):
        raw_record(b'{"raw_record":"' + base64.b64encode(sound) + b'"}')
    with pytest.raises(ExportError, match="base64"):
        raw_record(b'{"raw_record":"QQ="}')  # not canonical padding
    with pytest.raises(ExportError, match="base64"):
        raw_record(b'{"raw_record":"!!!!"}')
    # A stored record that itself looks like a raw-record line is wrapped again.
    lookalike = record_line(GARBAGE)
    assert raw_record(record_line(lookalike)) == lookalike


def test_the_parallel_verifier_gives_the_reference_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parallel, "PARALLEL_MIN_ENTRIES", 1)
    good = tmp_path / "quarantined.jsonl"
    good.write_bytes(b"".join(export(build([OK] * 9 + [None] + [OK] * 9, name=Fault.NOT_AN_ENTRY))))
    assert parallel.verify_export_file(good, trust=TRUST, workers=2) == verify_export(
        good.open("rb"), trust=TRUST
    )
    assert parallel.verify_export_file(good, trust=TRUST, workers=2).quarantined == (
        (9, Fault.NOT_AN_ENTRY),
    )
    bad = tmp_path / "unnamed.jsonl"
    bad.write_bytes(b"".join(export(build([OK] * 9 + [None] + [OK] * 9))))
    with pytest.raises(ExportError) as e:
        parallel.verify_export_file(bad, trust=TRUST, workers=2)
    assert e.value.entry_index == 9


def test_cli_verify_and_query_with_a_quarantined_record(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"".join(export(build([OK, None, OK], name=Fault.NOT_AN_ENTRY))))
    trusted = trust_args(tmp_path)
    result = CliRunner().invoke(audit_app, ["verify", str(path), *trusted])
    assert result.exit_code == 0, result.output
    assert "entry 1 (not_an_entry)" in result.output
    result = CliRunner().invoke(audit_app, ["verify", "--json", str(path), *trusted])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert (document["ok"], document["verdict"]) == (True, "verified")
    assert document["quarantined"] == [{"index": 1, "fault": "not_an_entry"}]
    # query shows entries only: never a quarantined record's bytes.
    result = CliRunner().invoke(audit_app, ["query", str(path)])
    assert result.exit_code == 0, result.output
    shown = [LogEntry.model_validate_json(line) for line in result.stdout.splitlines()]
    assert [e.index for e in shown] == [0, 2, 3]
    assert shown[-1].reasons == ("quarantined_record:1:not_an_entry",)

    unnamed = tmp_path / "unnamed.jsonl"
    unnamed.write_bytes(b"".join(export(build([OK, None, OK]))))
    result = CliRunner().invoke(audit_app, ["verify", "--json", str(unnamed), *trusted])
    assert result.exit_code == 1
    document = json.loads(result.output)
    assert (document["ok"], document["verdict"], document["entry_index"]) == (False, "failed", 1)
