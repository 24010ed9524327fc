"""Property tests: the incremental tree matches RFC 9162's recursive definition and
every proof it serves verifies, while any single mutation is rejected."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sigbus.audit.errors import ProofError
from sigbus.audit.merkle import (
    EMPTY_ROOT,
    MerkleTree,
    RootAccumulator,
    aligned_subtrees,
    hash_children,
    hash_leaf,
    hash_leaves,
    hash_pairs,
    new_leaf_hasher,
    root_from_leaf_hashes,
    subtree_levels,
    verify_consistency,
    verify_inclusion,
)


def naive_root(leaves: list[bytes]) -> bytes:
    """RFC 9162 §2.1.1 MTH, written as literally as possible."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hash_children(naive_root(leaves[:k]), naive_root(leaves[k:]))


def leaves_of(count: int) -> list[bytes]:
    return [hash_leaf(b"entry-%d" % i) for i in range(count)]


def flip(data: bytes, bit: int) -> bytes:
    position = bit % (len(data) * 8)
    mutated = bytearray(data)
    mutated[position // 8] ^= 1 << (position % 8)
    return bytes(mutated)


sizes = st.integers(min_value=1, max_value=70)


def test_empty_tree_root_is_sha256_of_nothing() -> None:
    assert MerkleTree().root() == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert root_from_leaf_hashes([]) == EMPTY_ROOT


def test_known_leaf_hash_from_rfc_vectors() -> None:
    # MTH({""}) as in the transparency-dev vectors ("bjQLnP+z...").
    assert hash_leaf(b"").hex().startswith("6e340b9cffb37a98")


@given(count=st.integers(min_value=0, max_value=130))
def test_incremental_root_equals_naive_root(count: int) -> None:
    leaves = leaves_of(count)
    tree = MerkleTree()
    accumulator = RootAccumulator()
    for size, leaf in enumerate(leaves, start=1):
        assert tree.append(leaf) == size - 1
        accumulator.add(leaf)
        assert tree.root() == naive_root(leaves[:size]) == accumulator.root()
    assert root_from_leaf_hashes(leaves) == naive_root(leaves)
    for size in range(count + 1):
        assert tree.root(size) == naive_root(leaves[:size])


@given(data=st.data(), size=sizes)
@settings(max_examples=150)
def test_inclusion_proofs_verify_and_mutations_fail(data: st.DataObject, size: int) -> None:
    tree = MerkleTree(leaves_of(size + data.draw(st.integers(0, 5))))
    index = data.draw(st.integers(0, size - 1))
    proof, root, leaf = tree.inclusion_proof(index, size), tree.root(size), tree.leaf_hash(index)
    verify_inclusion(leaf, index, size, proof, root)

    # Sizes are not mutated: RFC 9162 proofs do not always bind the tree size
    # (e.g. index 0 has the same path shape in trees of 3 and 4 leaves); the
    # signed checkpoint binds size and root together.
    mutation = data.draw(st.sampled_from(["leaf", "root", "index", "node", "drop", "add"]))
    bit = data.draw(st.integers(0, 255))
    args: list[Any] = [leaf, index, size, list(proof), root]
    if mutation == "leaf":
        args[0] = flip(leaf, bit)
    elif mutation == "root":
        args[4] = flip(root, bit)
    elif mutation == "index":
        args[1] = data.draw(st.integers(-1, size + 1).filter(lambda i: i != index))
    elif mutation == "node" and proof:
        position = data.draw(st.integers(0, len(proof) - 1))
        args[3][position] = flip(proof[position], bit)
    elif mutation == "drop" and proof:
        args[3].pop(data.draw(st.integers(0, len(proof) - 1)))
    else:
        args[3].insert(data.draw(st.integers(0, len(proof))), hash_leaf(b"extra"))
    with pytest.raises(ProofError):
        verify_inclusion(*args)


@given(data=st.data(), size2=sizes)
@settings(max_examples=150)
def test_consistency_proofs_verify_and_mutations_fail(data: st.DataObject, size2: int) -> None:
    tree = MerkleTree(leaves_of(size2))
    size1 = data.draw(st.integers(1, size2))
    proof = tree.consistency_proof(size1, size2)
    root1, root2 = tree.root(size1), tree.root(size2)
    verify_consistency(size1, size2, proof, root1, root2)

    mutation = data.draw(st.sampled_from(["root1", "root2", "node", "drop", "add"]))
    bit = data.draw(st.integers(0, 255))
    args: list[Any] = [size1, size2, list(proof), root1, root2]
    if mutation == "root1":
        args[3] = flip(root1, bit)
    elif mutation == "root2":
        args[4] = flip(root2, bit)
    elif mutation == "node" and proof:
        position = data.draw(st.integers(0, len(proof) - 1))
        args[2][position] = flip(proof[position], bit)
    elif mutation == "drop" and proof:
        args[2].pop(data.draw(st.integers(0, len(proof) - 1)))
    else:
        args[2].insert(data.draw(st.integers(0, len(proof))), hash_leaf(b"extra"))
    with pytest.raises(ProofError):
        verify_consistency(*args)


def test_size_that_changes_the_proof_shape_is_rejected() -> None:
    tree = MerkleTree(leaves_of(8))
    proof = tree.consistency_proof(3, 4)
    with pytest.raises(ProofError):
        verify_consistency(3, 8, proof, tree.root(3), tree.root(4))
    with pytest.raises(ProofError):
        verify_inclusion(tree.leaf_hash(5), 5, 8, tree.inclusion_proof(5, 6), tree.root(6))


def test_tree_rejects_out_of_range_requests() -> None:
    tree = MerkleTree(leaves_of(5))
    with pytest.raises(ProofError):
        tree.inclusion_proof(5, 5)
    with pytest.raises(ProofError):
        tree.root(6)
    with pytest.raises(ProofError):
        tree.consistency_proof(4, 3)
    with pytest.raises(ProofError):
        tree.append(b"short")


def test_bulk_hashing_matches_one_at_a_time() -> None:
    data = [b"", b"a", b"entry-1" * 50, bytes(range(256))]
    assert hash_leaves(data) == [hash_leaf(d) for d in data]
    hasher = new_leaf_hasher()
    hasher.update(data[2])
    assert hasher.digest() == hash_leaf(data[2])
    nodes = leaves_of(6)
    assert hash_pairs(nodes) == [hash_children(nodes[i], nodes[i + 1]) for i in (0, 2, 4)]
    with pytest.raises(ProofError):
        hash_pairs(nodes[:3])


@given(count=st.integers(min_value=0, max_value=70))
def test_subtree_levels_from_zero_are_the_tree_s_levels(count: int) -> None:
    leaves = leaves_of(count)
    levels = subtree_levels(list(leaves))
    tree = MerkleTree()
    for leaf in leaves:
        tree.append(leaf)
    assert [bytearray(b"".join(level)) for level in levels] == tree._levels
    assert MerkleTree(leaves)._levels == tree._levels


@given(count=st.integers(min_value=0, max_value=70))
def test_tree_from_packed_levels_is_the_same_tree(count: int) -> None:
    tree = MerkleTree(leaves_of(count))
    copy = MerkleTree.from_levels([bytes(level) for level in tree.packed_levels()])
    assert copy.size == count
    assert copy.root() == tree.root()
    copy.append(hash_leaf(b"next"))
    tree.append(hash_leaf(b"next"))
    assert copy.root() == tree.root()
    if count > 1:
        with pytest.raises(ProofError):
            MerkleTree.from_levels([bytes(level) for level in tree.packed_levels()][:-1])


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=80), st.data())
def test_chunk_subtrees_fold_into_the_root(total: int, data: st.DataObject) -> None:
    """Any split into chunks: their subtrees (and prefix snapshots) fold into the right roots."""
    leaves = [bytes([i % 256, i // 256]) * 16 for i in range(total)]
    drawn = data.draw(st.lists(st.integers(min_value=0, max_value=total)))
    cuts = sorted({cut for cut in drawn if 0 < cut < total})
    bounds = list(zip([0, *cuts], [*cuts, total], strict=True))
    fold = RootAccumulator()
    for first, stop in bounds:
        levels = subtree_levels(leaves[first:stop], first)
        for size in range(first + 1, stop + 1):
            trial = fold.copy()
            for node in aligned_subtrees(levels, first, size):
                trial.add_subtree(*node)  # raises ProofError if not aligned
            assert trial.size == size
            assert trial.root() == root_from_leaf_hashes(leaves[:size])
        for node in aligned_subtrees(levels, first, stop):
            fold.add_subtree(*node)
    assert fold.root() == root_from_leaf_hashes(leaves)


def test_unaligned_subtree_is_refused() -> None:
    accumulator = RootAccumulator()
    accumulator.add(hash_leaf(b"0"))
    with pytest.raises(ProofError, match="unaligned"):
        accumulator.add_subtree(1, hash_leaf(b"pair"))
    with pytest.raises(ProofError):
        accumulator.add_subtree(0, b"short")
    accumulator.add_subtree(0, hash_leaf(b"1"))
    accumulator.add_subtree(1, hash_children(hash_leaf(b"2"), hash_leaf(b"3")))
    assert accumulator.root() == naive_root([hash_leaf(b"%d" % i) for i in range(4)])
