"""The witness state machine: TOFU, consistency, stale and forked checkpoints, persistence."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from audit_fixtures import (
    LOG_KEY,
    POLICE_KEY,
    POLICE_WITNESS,
    key_from_seed,
    make_entries,
    signed_checkpoint,
)

from sigbus.audit.checkpoint import DEFAULT_ORIGIN, make_checkpoint_body, note_body, sign_note
from sigbus.audit.checkpoint import verify_cosignature as check_cosignature
from sigbus.audit.entry import leaf_hash
from sigbus.audit.errors import (
    AuditError,
    CheckpointError,
    ForkDetected,
    SignatureError,
    StaleCheckpoint,
)
from sigbus.audit.merkle import MerkleTree
from sigbus.audit.witness import Witness

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def tree_of(count: int) -> MerkleTree:
    return MerkleTree(leaf_hash(line) for line in make_entries(count))


def new_witness() -> Witness:
    return Witness(POLICE_WITNESS, POLICE_KEY, LOG_KEY.public_key(), DEFAULT_ORIGIN)


def test_first_checkpoint_is_trusted_and_cosigned() -> None:
    tree = tree_of(5)
    note = signed_checkpoint(tree)
    witness = new_witness()
    line = witness.observe(note, [], now=NOW)
    assert check_cosignature(note_body(note), line, POLICE_WITNESS, POLICE_KEY.public_key()) == int(
        NOW.timestamp()
    )
    assert witness.last_checkpoint is not None
    assert witness.last_checkpoint.size == 5


def test_growth_with_a_valid_consistency_proof_is_cosigned() -> None:
    tree = tree_of(9)
    witness = new_witness()
    witness.observe(signed_checkpoint(tree, 4), [], now=NOW)
    witness.observe(signed_checkpoint(tree, 9), tree.consistency_proof(4, 9), now=NOW)
    assert witness.last_checkpoint is not None
    assert witness.last_checkpoint.size == 9


def test_growth_without_a_valid_proof_raises_fork_with_evidence() -> None:
    tree = tree_of(9)
    witness = new_witness()
    first = signed_checkpoint(tree, 4)
    witness.observe(first, [], now=NOW)
    second = signed_checkpoint(tree, 9)
    with pytest.raises(ForkDetected) as raised:
        witness.observe(second, tree.consistency_proof(3, 9), now=NOW)
    assert raised.value.previous == first
    assert raised.value.candidate == second
    assert witness.last_checkpoint is not None
    assert witness.last_checkpoint.size == 4


def test_rewritten_history_is_a_fork() -> None:
    honest = tree_of(6)
    witness = new_witness()
    witness.observe(signed_checkpoint(honest, 4), [], now=NOW)
    # The hub rewrites entry 2 and re-signs: no proof can link the two trees.
    entries = make_entries(6)
    entries[2] = entries[2].replace(b"no_consent", b"consent_ok")
    rewritten = MerkleTree(leaf_hash(line) for line in entries)
    with pytest.raises(ForkDetected):
        witness.observe(signed_checkpoint(rewritten, 6), rewritten.consistency_proof(4, 6), now=NOW)


def test_same_size_different_root_is_a_fork() -> None:
    witness = new_witness()
    first = sign_note(
        make_checkpoint_body(DEFAULT_ORIGIN, 3, b"\x01" * 32), DEFAULT_ORIGIN, LOG_KEY
    )
    second = sign_note(
        make_checkpoint_body(DEFAULT_ORIGIN, 3, b"\x02" * 32), DEFAULT_ORIGIN, LOG_KEY
    )
    witness.observe(first, [], now=NOW)
    with pytest.raises(ForkDetected) as raised:
        witness.observe(second, [], now=NOW)
    assert (raised.value.previous, raised.value.candidate) == (first, second)


def test_same_checkpoint_again_is_cosigned_again() -> None:
    tree = tree_of(3)
    witness = new_witness()
    note = signed_checkpoint(tree)
    witness.observe(note, [], now=NOW)
    assert witness.observe(note, [], now=NOW).startswith("\u2014 " + POLICE_WITNESS)


def test_smaller_checkpoint_is_stale_not_cosigned() -> None:
    tree = tree_of(6)
    witness = new_witness()
    witness.observe(signed_checkpoint(tree, 6), [], now=NOW)
    with pytest.raises(StaleCheckpoint):
        witness.observe(signed_checkpoint(tree, 5), [], now=NOW)
    assert witness.last_checkpoint is not None
    assert witness.last_checkpoint.size == 6


def test_checkpoint_not_signed_by_the_log_is_refused() -> None:
    tree = tree_of(3)
    forged = sign_note(
        make_checkpoint_body(DEFAULT_ORIGIN, 3, tree.root()), DEFAULT_ORIGIN, key_from_seed(77)
    )
    with pytest.raises(SignatureError):
        new_witness().observe(forged, [], now=NOW)


def test_checkpoint_for_another_origin_is_refused() -> None:
    note = sign_note(make_checkpoint_body("other/log", 1, b"\x01" * 32), DEFAULT_ORIGIN, LOG_KEY)
    with pytest.raises(CheckpointError):
        new_witness().observe(note, [], now=NOW)


def test_state_survives_a_restart() -> None:
    tree = tree_of(8)
    witness = new_witness()
    witness.observe(signed_checkpoint(tree, 5), [], now=NOW)
    restored = Witness.from_json(witness.to_json(), POLICE_KEY, LOG_KEY.public_key())
    assert restored.last_checkpoint == witness.last_checkpoint
    with pytest.raises(ForkDetected):
        restored.observe(signed_checkpoint(tree, 8), tree.consistency_proof(4, 8), now=NOW)
    restored.observe(signed_checkpoint(tree, 8), tree.consistency_proof(5, 8), now=NOW)


def test_state_for_another_log_key_is_refused() -> None:
    state = new_witness().to_json()
    with pytest.raises(AuditError):
        Witness.from_json(state, POLICE_KEY, key_from_seed(50).public_key())
    with pytest.raises(AuditError):
        Witness.from_json("{}", POLICE_KEY, LOG_KEY.public_key())


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        new_witness().observe(signed_checkpoint(tree_of(1)), [], now=datetime(2026, 1, 1))
