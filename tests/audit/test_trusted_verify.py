"""Verification against the trust anchors fails closed on every rewrite, even the hub's own.

The fixture directory (signed by ``ROOT_KEY``) names the hub's log key
``LOG_KEY`` and two witnesses, police and school; the default quorum is both.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
import rfc8785
from audit_fixtures import (
    ALL_WITNESSES,
    LOG_KEY,
    POLICE_WITNESS,
    ROOT_KEY,
    SCHOOL_WITNESS,
    WITNESS_TIME,
    Log,
    cosignature_records,
    fixture_directory,
    fixture_trust,
    hand_written_export,
    key_from_seed,
    make_log,
    rechained,
    signed_checkpoint,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sigbus.agents.witnessing import witness_name
from sigbus.audit.checkpoint import cosign, note_body
from sigbus.audit.entry import leaf_hash
from sigbus.audit.errors import AuditError, ExportError
from sigbus.audit.export_format import CosignatureRecord
from sigbus.audit.merkle import MerkleTree
from sigbus.audit.trust import TrustError, trust_from_directory
from sigbus.audit.verify import verify_export
from sigbus.audit.verify_report import VERIFIED
from sigbus.protocol.canonical import b64encode
from sigbus.protocol.directory import KeyStatus
from sigbus.protocol.ids import HUB

COUNT = 9
TRUST = fixture_trust()


@pytest.fixture(scope="module")
def log() -> Log:
    return make_log(COUNT, ALL_WITNESSES)


def export_of(entries: list[bytes], cosignatures: list[CosignatureRecord] | None = None) -> bytes:
    """``entries`` re-signed by the hub's real log key, with ``cosignatures`` in the trailer
    (default: the real witnesses cosign)."""
    note = signed_checkpoint(MerkleTree(leaf_hash(line) for line in entries))
    records = cosignature_records(note, ALL_WITNESSES) if cosignatures is None else cosignatures
    return hand_written_export(entries, note, records, LOG_KEY.public_key())


def fails(data: bytes, **kwargs: object) -> str:
    with pytest.raises(AuditError) as raised:
        verify_export(data.splitlines(keepends=True), **{"trust": TRUST, **kwargs})  # type: ignore[arg-type]
    return str(raised.value)


def test_the_honest_export_is_verified(log: Log) -> None:
    report = verify_export(log.export_lines(), trust=TRUST)
    assert report.verdict == VERIFIED
    assert report.trust is not None
    assert (report.trust.quorum, report.trust.witnesses, report.trust.missing) == (2, 2, ())
    assert report.trust.log_key_id.startswith("hub-sig-")
    assert {c.key_id for c in report.cosignatures} == {
        k.key_id for w in TRUST.witnesses.values() for k in w.keys
    }


@pytest.mark.parametrize("rewrite", ["changed", "dropped", "reordered"])
def test_a_log_rewritten_and_resigned_with_the_hubs_real_key_fails(log: Log, rewrite: str) -> None:
    """The hub holds the log key: it can sign any history, but not cosign it for the witnesses."""
    entries = list(log.entries)
    if rewrite == "changed":
        entries[2] = entries[2].replace(b'"deny"', b'"release"')
    elif rewrite == "dropped":
        del entries[4]
    else:
        entries[3], entries[4] = entries[4], entries[3]
    new_entries = rechained(entries)
    # Cosignatures removed: nothing counts.
    assert "quorum not met: 0 of the 2" in fails(export_of(new_entries, []))
    # The witnesses' real cosignatures of the true log, kept: they are over another tree.
    assert "quorum not met: 0 of the 2" in fails(export_of(new_entries, log.cosignatures))
    # Cosignatures self-made with fresh keys, under the real witness names.
    fresh = [(POLICE_WITNESS, key_from_seed(90)), (SCHOOL_WITNESS, key_from_seed(91))]
    forged = export_of(
        new_entries,
        cosignature_records(
            signed_checkpoint(MerkleTree(leaf_hash(line) for line in new_entries)), fresh
        ),
    )
    message = fails(forged)
    assert "quorum not met: 0 of the 2" in message
    assert "does not verify under any unrevoked signing key of police" in message


def test_cosignatures_that_do_not_count(log: Log) -> None:
    body = note_body(log.note)
    police, school = log.cosignatures
    stranger = CosignatureRecord(
        witness="sigbus/witness/stranger",
        public_key=key_from_seed(92).public_key(),
        line=cosign(body, "sigbus/witness/stranger", key_from_seed(92), timestamp=WITNESS_TIME),
    )
    # A witness not in the directory, a duplicate, and a missing school: 1 of 2.
    message = fails(export_of(log.entries, [police, stranger, police]))
    assert "quorum not met: 1 of the 2" in message
    assert "sigbus/witness/stranger: not a witness in the directory" in message
    assert "second cosignature by a witness already counted" in message
    assert "never cosigned: school" in message
    # The real signature, but the record declares another key.
    declared = dataclasses.replace(school, public_key=key_from_seed(93).public_key())
    assert "declares a key other than its directory key" in fails(
        export_of(log.entries, [police, declared])
    )
    # With quorum 1, police alone is enough, and the report names what did not count.
    report = verify_export(
        export_of(log.entries, [police, stranger]).splitlines(keepends=True),
        trust=fixture_trust(quorum=1),
    )
    assert report.trust is not None
    assert report.trust.missing == ("school",)
    assert [r.witness for r in report.trust.rejected] == ["sigbus/witness/stranger"]


def test_a_revoked_or_expired_witness_key_does_not_count(log: Log) -> None:
    directory = fixture_directory()
    police = directory.entry("police")
    key = police.keys[0]
    revoked = key.model_copy(update={"status": KeyStatus.REVOKED, "revoked_at": key.not_after})
    expired = key.model_copy(
        update={"not_after": key.not_before + timedelta(days=1)}  # long before WITNESS_TIME
    )
    for changed in (revoked, expired):
        agencies = tuple(
            e.model_copy(update={"keys": (changed,)}) if e.agency == "police" else e
            for e in directory.agencies
        )
        trust = trust_from_directory(
            directory.model_copy(update={"agencies": agencies}),
            root_public=ROOT_KEY.public_key().public_bytes_raw(),
            witness_name=witness_name,
        )
        with pytest.raises(ExportError, match="quorum not met: 1 of the 2"):
            verify_export(log.export_lines(), trust=trust)


def test_quorum_must_be_between_one_and_the_number_of_witnesses() -> None:
    for quorum in (0, 3):
        with pytest.raises(TrustError, match="out of range"):
            fixture_trust(quorum=quorum)
    no_log_key = fixture_directory().model_copy(
        update={
            "agencies": (
                *(a for a in fixture_directory().agencies if a.agency != HUB),
                fixture_directory().entry(HUB).model_copy(update={"keys": ()}),
            )
        }
    )
    with pytest.raises(TrustError, match="no unrevoked log key"):
        trust_from_directory(no_log_key, root_public=b"", witness_name=witness_name)


def test_an_inconsistent_earlier_checkpoint_fails_the_whole_verification(log: Log) -> None:
    entries = list(log.entries)
    entries[1] = entries[1].replace(b'"police"', b'"school"', 1)
    other_history = MerkleTree(leaf_hash(line) for line in rechained(entries))
    inconsistent = signed_checkpoint(other_history, 4)
    consistent = signed_checkpoint(log.tree, 4)
    assert "fork" in fails(
        b"".join(log.export_lines()), earlier_checkpoints=[consistent, inconsistent]
    )
    report = verify_export(log.export_lines(), trust=TRUST, earlier_checkpoints=[consistent])
    assert report.earlier_checkpoints == (4,)


def test_the_header_cannot_swap_the_log_key(log: Log) -> None:
    attacker = key_from_seed(94)
    lines = log.export_lines()
    header = rfc8785.dumps(
        {
            "entries": COUNT,
            "format": "sigbus-log-export/v1",
            "log_public_key": b64encode(attacker.public_key().public_bytes_raw()),
            "origin": "sigbus/dev/disclosure-log",
        }
    )
    assert "not the hub's in the directory" in fails(b"".join([header + b"\n", *lines[1:]]))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_single_byte_change_anywhere_fails(log: Log, data: st.DataObject) -> None:
    honest = b"".join(log.export_lines())
    position = data.draw(st.integers(0, len(honest) - 1), label="position")
    value = data.draw(st.integers(0, 255).filter(lambda b: b != honest[position]), label="byte")
    changed = honest[:position] + bytes([value]) + honest[position + 1 :]
    fails(changed)


@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_any_single_entry_dropped_duplicated_or_moved_fails(log: Log, data: st.DataObject) -> None:
    lines = log.export_lines()
    entries = lines[1:-1]
    index = data.draw(st.integers(0, COUNT - 1), label="index")
    action = data.draw(st.sampled_from(["drop", "duplicate", "move"]), label="action")
    if action == "drop":
        del entries[index]
    elif action == "duplicate":
        entries.insert(index, entries[index])
    else:
        target = data.draw(st.integers(0, COUNT - 1).filter(lambda t: t != index), label="to")
        entries.insert(target, entries.pop(index))
    fails(b"".join([lines[0], *entries, lines[-1]]))
