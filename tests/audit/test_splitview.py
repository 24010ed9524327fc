"""Split view, pure: quorum-cosigned checkpoints, gossip comparison, fork evidence."""

from __future__ import annotations

import pytest
from audit_fixtures import (
    LOG_KEY,
    POLICE_KEY,
    POLICE_WITNESS,
    SCHOOL_KEY,
    SCHOOL_WITNESS,
    WITNESS_TIME,
    fixture_trust,
    hybrid_from_seed,
    key_from_seed,
    make_entries,
    signed_checkpoint,
)

from sigbus.audit.checkpoint import (
    DEFAULT_ORIGIN,
    PrivateKey,
    add_signature_lines,
    cosign,
    make_checkpoint_body,
    note_body,
    sign_note,
)
from sigbus.audit.entry import leaf_hash
from sigbus.audit.errors import AuditError, ForkDetected, SignatureError
from sigbus.audit.merkle import MerkleTree
from sigbus.audit.splitview import (
    ForkEvidence,
    ForkVerdict,
    compare_views,
    cosigned_by_quorum,
    parse_fork_evidence,
    verify_fork_evidence,
)
from tests.audit.audit_fixtures import rechained

TREE = MerkleTree(leaf_hash(line) for line in make_entries(9))
LOG = LOG_KEY.public_key()


def forked_tree() -> MerkleTree:
    """Another history: entry 1 rewritten, the chain recomputed (the hub's second view)."""
    entries = make_entries(9)
    entries[1] = entries[1].replace(b'"police"', b'"school"', 1)
    return MerkleTree(leaf_hash(line) for line in rechained(entries))


def cosigned(note: str, *witnesses: tuple[str, PrivateKey]) -> str:
    lines = [cosign(note_body(note), name, key, timestamp=WITNESS_TIME) for name, key in witnesses]
    return add_signature_lines(note, lines)


def test_a_checkpoint_needs_every_party_witness_by_default() -> None:
    note = signed_checkpoint(TREE)
    trust = fixture_trust()
    assert not cosigned_by_quorum(note, trust, log_key_name=DEFAULT_ORIGIN).reached
    one = cosigned(note, (POLICE_WITNESS, POLICE_KEY))
    result = cosigned_by_quorum(one, trust, log_key_name=DEFAULT_ORIGIN)
    assert result.witnesses == ("police",)
    assert not result.reached
    both = cosigned(note, (POLICE_WITNESS, POLICE_KEY), (SCHOOL_WITNESS, SCHOOL_KEY))
    assert cosigned_by_quorum(both, trust, log_key_name=DEFAULT_ORIGIN).reached
    assert cosigned_by_quorum(one, fixture_trust(quorum=1), log_key_name=DEFAULT_ORIGIN).reached


def test_self_made_and_repeated_cosignatures_do_not_count() -> None:
    note = signed_checkpoint(TREE)
    impostor = key_from_seed(66)
    forged = cosigned(
        note, (POLICE_WITNESS, POLICE_KEY), (POLICE_WITNESS, POLICE_KEY), (SCHOOL_WITNESS, impostor)
    )
    result = cosigned_by_quorum(forged, fixture_trust(), log_key_name=DEFAULT_ORIGIN)
    assert result.witnesses == ("police",)
    assert not result.reached


def test_hybrid_witnesses_count_only_with_both_of_their_lines() -> None:
    police, school = hybrid_from_seed(12), hybrid_from_seed(13)
    trust = fixture_trust(witnesses={"police": police, "school": school})
    note = signed_checkpoint(TREE)
    both = cosigned(note, (POLICE_WITNESS, police), (SCHOOL_WITNESS, school))
    assert cosigned_by_quorum(both, trust, log_key_name=DEFAULT_ORIGIN).reached
    # The school's ML-DSA-65 line dropped: its Ed25519 line alone does not count.
    stripped = "".join(
        line
        for line in both.splitlines(keepends=True)
        if not line.startswith("\u2014 " + SCHOOL_WITNESS + "/mldsa65 ")
    )
    assert stripped != both
    result = cosigned_by_quorum(stripped, trust, log_key_name=DEFAULT_ORIGIN)
    assert result.witnesses == ("police",)
    assert not result.reached


def test_a_checkpoint_not_signed_by_the_log_is_refused() -> None:
    body = make_checkpoint_body(DEFAULT_ORIGIN, TREE.size, TREE.root())
    note = sign_note(body, DEFAULT_ORIGIN, key_from_seed(55))
    with pytest.raises(SignatureError):
        cosigned_by_quorum(note, fixture_trust(), log_key_name=DEFAULT_ORIGIN)


def test_gossip_of_a_consistent_larger_checkpoint_is_no_fork() -> None:
    small, large = signed_checkpoint(TREE, 4), signed_checkpoint(TREE, 9)
    proof = TREE.consistency_proof(4, 9)
    compare_views(small, large, proof, log_key=LOG, log_key_name=DEFAULT_ORIGIN)
    compare_views(large, small, proof, log_key=LOG, log_key_name=DEFAULT_ORIGIN)
    compare_views(large, large, (), log_key=LOG, log_key_name=DEFAULT_ORIGIN)


def test_gossip_of_the_same_size_with_another_root_is_a_fork() -> None:
    mine, theirs = signed_checkpoint(TREE), signed_checkpoint(forked_tree())
    with pytest.raises(ForkDetected, match="size 9 with different roots") as caught:
        compare_views(mine, theirs, (), log_key=LOG, log_key_name=DEFAULT_ORIGIN)
    assert (caught.value.previous, caught.value.candidate) == (mine, theirs)


def test_gossip_of_another_history_is_a_fork_whatever_proof_the_hub_serves() -> None:
    mine, theirs = signed_checkpoint(TREE, 4), signed_checkpoint(forked_tree(), 9)
    for proof in (TREE.consistency_proof(4, 9), forked_tree().consistency_proof(4, 9), ()):
        with pytest.raises(ForkDetected, match="not proven consistent"):
            compare_views(mine, theirs, proof, log_key=LOG, log_key_name=DEFAULT_ORIGIN)


def test_forged_gossip_is_refused_not_taken_for_a_fork() -> None:
    body = make_checkpoint_body(DEFAULT_ORIGIN, 9, forked_tree().root())
    forged = sign_note(body, DEFAULT_ORIGIN, key_from_seed(55))
    with pytest.raises(SignatureError):
        compare_views(signed_checkpoint(TREE), forged, (), log_key=LOG, log_key_name=DEFAULT_ORIGIN)


def evidence_of(fork: ForkDetected) -> ForkEvidence:
    return ForkEvidence.of(
        fork,
        origin=DEFAULT_ORIGIN,
        detected_by=POLICE_WITNESS,
        detected_at="2026-11-23T10:00:00+00:00",
        source="gossip",
        peer="school",
    )


def test_same_size_fork_evidence_is_proven_offline_after_a_round_trip() -> None:
    mine, theirs = signed_checkpoint(TREE), signed_checkpoint(forked_tree())
    with pytest.raises(ForkDetected) as caught:
        compare_views(mine, theirs, (), log_key=LOG, log_key_name=DEFAULT_ORIGIN)
    evidence = parse_fork_evidence(evidence_of(caught.value).model_dump_json())
    check = verify_fork_evidence(evidence, fixture_trust())
    assert check.verdict is ForkVerdict.PROVEN
    assert (check.first.size, check.second.size) == (9, 9)


def test_different_sizes_are_not_proven_offline_by_a_failed_proof() -> None:
    """A witness could put any garbage in the proof field: two honest checkpoints
    of different sizes must never read as a proven fork."""
    honest = ForkDetected(
        "framed",
        previous=signed_checkpoint(TREE, 4),
        candidate=signed_checkpoint(TREE, 9),
        consistency_proof=(b"\x00" * 32,),
    )
    check = verify_fork_evidence(evidence_of(honest), fixture_trust())
    assert check.verdict is ForkVerdict.INCONSISTENT_PROOF
    linked = ForkDetected(
        "not a fork",
        previous=signed_checkpoint(TREE, 4),
        candidate=signed_checkpoint(TREE, 9),
        consistency_proof=tuple(TREE.consistency_proof(4, 9)),
    )
    assert verify_fork_evidence(evidence_of(linked), fixture_trust()).verdict is (
        ForkVerdict.NOT_A_FORK
    )


def test_evidence_with_a_checkpoint_not_by_the_log_key_is_refused() -> None:
    body = make_checkpoint_body(DEFAULT_ORIGIN, 9, forked_tree().root())
    forged = ForkDetected(
        "x",
        previous=signed_checkpoint(TREE),
        candidate=sign_note(body, DEFAULT_ORIGIN, key_from_seed(55)),
    )
    with pytest.raises(SignatureError, match="second checkpoint is not signed"):
        verify_fork_evidence(evidence_of(forged), fixture_trust())
    with pytest.raises(AuditError, match="sigbus-fork-evidence/v1"):
        parse_fork_evidence(b'{"format": "something-else"}')
