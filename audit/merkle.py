"""RFC 9162 §2.1 Merkle tree: hashing, an incremental tree, proofs and their verification.

Hashing (RFC 9162 §2.1.1): a leaf is ``SHA-256(0x00 || d)``, an interior node
``SHA-256(0x01 || left || right)``, the empty tree ``SHA-256("")``. The 0x00 /
0x01 prefixes keep a leaf from ever being passed off as a node (second
preimage).

:class:`MerkleTree` stores every complete, aligned subtree hash (level ``k``
holds the roots of the subtrees of ``2**k`` leaves), which is what is needed
to answer proofs for any earlier tree size; an append computes only the
subtrees it completes (amortised O(1) hashes, worst case O(log n)).

Bulk verification builds the same subtrees a block at a time:
:func:`hash_leaves` and :func:`hash_pairs` hash many leaves or node pairs in
C-level ``map`` calls, :func:`subtree_levels` computes every complete, aligned
subtree inside a block of consecutive leaves that may start anywhere in the
log, :func:`aligned_subtrees` reads off the few that cover a range, and
:meth:`RootAccumulator.add_subtree` folds such blocks into the root. The
parallel export verifier uses exactly these (it has no tree code of its own).
"""

from __future__ import annotations

import hashlib
import itertools
import operator
from collections.abc import Iterable, Sequence

from sigbus.audit.errors import ProofError

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"
_sha256 = hashlib.sha256
#: SHA-256 already fed the leaf prefix 0x00: ``copy()`` + ``update(d)`` hashes a
#: leaf without building ``b"\x00" + d``, and copying skips OpenSSL's set-up.
_LEAF_HASHER = _sha256(_LEAF_PREFIX)
#: Likewise for interior nodes (prefix 0x01).
_NODE_HASHER = _sha256(_NODE_PREFIX)
_DIGEST = operator.methodcaller("digest")
_COPY = operator.methodcaller("copy")
_UPDATE = type(_LEAF_HASHER).update
_repeat = itertools.repeat

#: A fresh SHA-256 that has been fed 0x00: ``h = new_leaf_hasher(); h.update(d);
#: h.digest()`` is :func:`hash_leaf` (``d``) for hot loops that cannot afford a
#: concatenation and a function call per leaf.
new_leaf_hasher = _LEAF_HASHER.copy

#: ``(level, hash)``: the root of a perfect subtree of ``2**level`` leaves.
Subtree = tuple[int, bytes]


def hash_leaf(data: bytes) -> bytes:
    """RFC 9162 §2.1.1: MTH({d0}) = SHA-256(0x00 || d0)."""
    return _sha256(_LEAF_PREFIX + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """RFC 9162 §2.1.1: SHA-256(0x01 || MTH(left) || MTH(right))."""
    return _sha256(_NODE_PREFIX + left + right).digest()


def hash_leaves(data: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.1 leaf hashes SHA-256(0x00 || d) of every ``d`` in ``data``.

    Same result as ``[hash_leaf(d) for d in data]`` with no Python statement
    per leaf: copies of a hasher already fed 0x00, each fed one item, all in
    C-level maps.
    """
    hashers = list(map(_COPY, _repeat(_LEAF_HASHER, len(data))))
    any(map(_UPDATE, hashers, data))  # update() returns None: consumes all
    return list(map(_DIGEST, hashers))


def hash_pairs(nodes: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 §2.1.1 parents SHA-256(0x01 || left || right) of nodes (0, 1), (2, 3), ...

    ``nodes`` must hold an even number of hashes; like :func:`hash_leaves`,
    one ``map`` per step rather than one statement per pair.
    """
    if len(nodes) % 2:
        raise ProofError(f"{len(nodes)} nodes cannot be paired")
    hashers = list(map(_COPY, _repeat(_NODE_HASHER, len(nodes) // 2)))
    any(map(_UPDATE, hashers, nodes[0::2]))  # update() returns None: consumes all
    any(map(_UPDATE, hashers, nodes[1::2]))
    return list(map(_DIGEST, hashers))


def subtree_levels(leaf_hashes: list[bytes], first: int = 0) -> list[list[bytes]]:
    """Every complete, aligned subtree over the leaves ``first .. first + len - 1``.

    ``levels[l][i]`` is MTH of the ``2**l`` leaves from ``(ceil(first / 2**l) + i) * 2**l``:
    the aligned perfect subtrees that lie wholly inside the block. RFC 9162
    §2.1.1 splits D[n] at the largest power of two k < n, so, recursively,
    every such aligned range is a node of the tree of any size that contains
    it; the nodes can therefore be computed from this block alone, without the
    leaves before or after it (which is what lets chunks of a log be hashed
    apart). ``levels[0]`` is ``leaf_hashes`` itself; each level above is one
    :func:`hash_pairs` over the level below, skipping a first node whose
    sibling lies before the block. With ``first = 0`` this is the layout of
    :class:`MerkleTree`.
    """
    levels, nodes, low, high = [leaf_hashes], leaf_hashes, first, first + len(leaf_hashes)
    while True:
        up_low, up_high = (low + 1) // 2, high // 2
        if up_high <= up_low:
            return levels
        offset = 2 * up_low - low  # 1 when the first node's sibling is before the block
        nodes = hash_pairs(nodes[offset : offset + 2 * (up_high - up_low)])
        levels.append(nodes)
        low, high = up_low, up_high


def aligned_subtrees(levels: list[list[bytes]], first: int, stop: int) -> tuple[Subtree, ...]:
    """Leaves ``first .. stop - 1`` as the largest aligned perfect subtrees, left to right.

    ``levels`` is :func:`subtree_levels` of a block starting at ``first`` and
    reaching at least ``stop``. Each subtree starts at a multiple of its own
    width, so appending them in order to a :class:`RootAccumulator` that holds
    exactly the leaves before ``first`` is the same as appending the leaves.
    """
    out: list[Subtree] = []
    position = first
    while position < stop:
        level = 0
        while (
            level + 1 < len(levels)
            and position % (2 << level) == 0
            and position + (2 << level) <= stop
        ):
            level += 1
        base = (first + (1 << level) - 1) >> level  # position of levels[level][0]
        out.append((level, levels[level][(position >> level) - base]))
        position += 1 << level
    return tuple(out)


def _largest_power_of_two_below(n: int) -> int:
    """RFC 9162 §2.1.1's k: the largest power of two smaller than n (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _require_hash(value: bytes, what: str) -> None:
    if len(value) != HASH_SIZE:
        raise ProofError(f"{what} is {len(value)} bytes, expected {HASH_SIZE}")


class RootAccumulator:
    """Streaming MTH over leaf hashes: O(log n) memory, one node hash per leaf on average.

    ``_stack`` holds the roots of the perfect subtrees that make up the
    leaves seen so far, largest first (one per set bit of the count), which
    is exactly the shape of RFC 9162's recursive split.
    """

    __slots__ = ("_count", "_stack")

    def __init__(self) -> None:
        self._stack: list[bytes] = []
        self._count = 0

    @property
    def size(self) -> int:
        return self._count

    def add(self, leaf_hash: bytes) -> None:
        stack = self._stack
        stack.append(leaf_hash)
        self._count += 1
        count = self._count
        # Each trailing zero bit of the new count is a pair of equal-sized
        # subtrees that just became one perfect subtree.
        while not count & 1:
            right = stack.pop()
            stack[-1] = _sha256(_NODE_PREFIX + stack[-1] + right).digest()
            count >>= 1

    def add_subtree(self, level: int, node: bytes) -> None:
        """Append a whole perfect subtree of ``2**level`` leaves, given its root ``node``.

        The same as adding its leaves one by one, provided it is aligned: the
        count so far must be a multiple of ``2**level`` (then every subtree on
        the stack is at least as wide, so it joins the RFC 9162 §2.1.1 split as
        its next node). Raises :class:`ProofError` otherwise.
        """
        _require_hash(node, "subtree hash")
        if level < 0 or self._count % (1 << level):
            raise ProofError(
                f"a subtree of 2**{level} leaves cannot start at leaf {self._count} (unaligned)"
            )
        stack = self._stack
        stack.append(node)
        self._count += 1 << level
        count = self._count >> level
        while not count & 1:  # as in add(): each trailing zero bit merges two subtrees
            right = stack.pop()
            stack[-1] = _sha256(_NODE_PREFIX + stack[-1] + right).digest()
            count >>= 1

    def root(self) -> bytes:
        """MTH of the leaves seen so far; folds the perfect subtrees right to left."""
        stack = self._stack
        if not stack:
            return EMPTY_ROOT
        node = stack[-1]
        for left in reversed(stack[:-1]):
            node = _sha256(_NODE_PREFIX + left + node).digest()
        return node

    def copy(self) -> RootAccumulator:
        clone = RootAccumulator()
        clone._stack = list(self._stack)
        clone._count = self._count
        return clone


def root_from_leaf_hashes(leaf_hashes: Iterable[bytes]) -> bytes:
    """MTH(D[n]) of all ``leaf_hashes`` in one streaming pass (for bulk verification)."""
    accumulator = RootAccumulator()
    add = accumulator.add
    for leaf in leaf_hashes:
        add(leaf)
    return accumulator.root()


class MerkleTree:
    """Append-only RFC 9162 tree that can serve proofs for any size up to its own.

    Every level is one ``bytearray`` of 32-byte node hashes, not a list of
    ``bytes`` objects: 1,000,000 leaves take about 64 MB (leaves and all the
    nodes above them), a third of what a list of objects would.
    """

    def __init__(self, leaf_hashes: Iterable[bytes] = ()) -> None:
        # _levels[k][32*j : 32*(j+1)] = MTH of the perfect subtree of leaves
        # [j*2**k, (j+1)*2**k), which is subtree_levels(leaves, 0); built in bulk.
        leaves = list(leaf_hashes)
        wrong = next((leaf for leaf in leaves if len(leaf) != HASH_SIZE), None)
        if wrong is not None:
            _require_hash(wrong, "leaf hash")
        self._levels: list[bytearray] = [
            bytearray(b"".join(level)) for level in subtree_levels(leaves, 0)
        ]
        self._size = len(leaves)

    @classmethod
    def from_levels(cls, levels: Sequence[bytes | bytearray]) -> MerkleTree:
        """A tree from the packed levels of another (:meth:`packed_levels`), not re-hashed.

        A ``bytearray`` level is taken over, not copied (the caller gives it up).

        Only the shape is checked (level k holds ``size >> k`` nodes); whether the
        hashes are the log's is for the caller to establish (a snapshot's signature
        over them, its root against a signed checkpoint, its last leaves against the
        stored entries).
        """
        if not levels or len(levels[0]) % HASH_SIZE:
            raise ProofError("packed tree levels are malformed")
        size = len(levels[0]) // HASH_SIZE
        expected = max(1, size.bit_length())
        if len(levels) != expected:
            raise ProofError(f"a tree of {size} leaves has {expected} levels, not {len(levels)}")
        for level, nodes in enumerate(levels):
            if len(nodes) != (size >> level) * HASH_SIZE:
                raise ProofError(f"tree level {level} has the wrong number of nodes")
        tree = cls()
        tree._levels = [n if isinstance(n, bytearray) else bytearray(n) for n in levels]
        tree._size = size
        return tree

    def packed_levels(self) -> list[bytearray]:
        """Every level as it is stored (append-only: a prefix never changes). Do not modify."""
        return self._levels

    def _node(self, level: int, position: int) -> bytes:
        start = position * HASH_SIZE
        return bytes(self._levels[level][start : start + HASH_SIZE])

    @property
    def size(self) -> int:
        return self._size

    def append(self, leaf_hash: bytes) -> int:
        """Add one leaf hash (see :func:`hash_leaf`); returns its index."""
        _require_hash(leaf_hash, "leaf hash")
        levels = self._levels
        index = self._size
        levels[0] += leaf_hash
        self._size += 1
        node, position, level = leaf_hash, index, 0
        while position & 1:  # a right child completes its parent
            node = hash_children(self._node(level, position - 1), node)
            level += 1
            position >>= 1
            if level == len(levels):
                levels.append(bytearray())
            levels[level] += node
        return index

    def leaf_hash(self, index: int) -> bytes:
        if not 0 <= index < self.size:
            raise ProofError(f"leaf index {index} outside tree of size {self.size}")
        return self._node(0, index)

    def _subtree_root(self, start: int, end: int) -> bytes:
        """MTH(D[start:end]) for a range produced by RFC 9162's recursive split."""
        width = end - start
        level = width.bit_length() - 1
        if width == 1 << level and start % width == 0:
            return self._node(level, start >> level)
        split = start + _largest_power_of_two_below(width)
        return hash_children(self._subtree_root(start, split), self._subtree_root(split, end))

    def _check_size(self, size: int) -> None:
        if not 0 <= size <= self.size:
            raise ProofError(f"tree size {size} outside 0..{self.size}")

    def root(self, size: int | None = None) -> bytes:
        """MTH(D[size]) (RFC 9162 §2.1.1); the current root when ``size`` is None."""
        size = self.size if size is None else size
        self._check_size(size)
        return EMPTY_ROOT if size == 0 else self._subtree_root(0, size)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        """PATH(index, D[size]) per RFC 9162 §2.1.3.1, leaf-adjacent sibling first."""
        size = self.size if size is None else size
        self._check_size(size)
        if not 0 <= index < size:
            raise ProofError(f"leaf index {index} outside tree of size {size}")
        path: list[bytes] = []
        start, end = 0, size
        while end - start > 1:
            split = start + _largest_power_of_two_below(end - start)
            if index < split:  # PATH(m, D[0:k]) : MTH(D[k:n])
                path.append(self._subtree_root(split, end))
                end = split
            else:  # PATH(m - k, D[k:n]) : MTH(D[0:k])
                path.append(self._subtree_root(start, split))
                start = split
        path.reverse()  # the recursion emits the root-adjacent sibling last
        return path

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        """PROOF(size1, D[size2]) per RFC 9162 §2.1.4.1 (empty when size1 is 0 or size2)."""
        size2 = self.size if size2 is None else size2
        self._check_size(size2)
        if not 0 <= size1 <= size2:
            raise ProofError(f"size1 {size1} outside 0..{size2}")
        if size1 in (0, size2):
            return []
        proof: list[bytes] = []
        start, end = 0, size2
        m = size1  # m is relative to start, as in SUBPROOF(m, D[start:end], b)
        whole_subtree = True  # the RFC's b: D[start:end] is still the original first tree?
        while m != end - start:
            k = _largest_power_of_two_below(end - start)
            if m <= k:  # SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
                proof.append(self._subtree_root(start + k, end))
                end = start + k
            else:  # SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
                proof.append(self._subtree_root(start, start + k))
                start += k
                m -= k
                whole_subtree = False
        if not whole_subtree:  # SUBPROOF(m, D[m], false) = {MTH(D[m])}
            proof.append(self._subtree_root(start, end))
        proof.reverse()
        return proof


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """Check ``proof`` that ``leaf_hash`` is leaf ``index`` of the tree ``root`` of ``size``.

    Implements RFC 9162 §2.1.3.2 step by step; raises :class:`ProofError`.
    """
    _require_hash(leaf_hash, "leaf hash")
    _require_hash(root, "root")
    for position, node in enumerate(proof):
        _require_hash(node, f"proof[{position}]")
    # Step 1: leaf_index must be smaller than tree_size.
    if not 0 <= index < size:
        raise ProofError(f"leaf index {index} outside tree of size {size}")
    # Step 2: fn = leaf_index, sn = tree_size - 1.  Step 3: r = hash.
    fn, sn, r = index, size - 1, leaf_hash
    # Step 4: fold every proof element in.
    for node in proof:
        if sn == 0:  # 4a: more proof than tree
            raise ProofError("inclusion proof is longer than the tree is high")
        if fn & 1 or fn == sn:  # 4b: the sibling is on the left
            r = hash_children(node, r)
            if not fn & 1:  # 4b.ii: skip levels where this node has no right sibling
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:  # the sibling is on the right
            r = hash_children(r, node)
        fn >>= 1  # 4c
        sn >>= 1
    # Step 5: sn must be 0 and r must equal the root.
    if sn != 0:
        raise ProofError("inclusion proof is shorter than the tree is high")
    if r != root:
        raise ProofError("inclusion proof does not lead to the expected root")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """Check ``proof`` that the tree ``root2`` of ``size2`` extends ``root1`` of ``size1``.

    Implements RFC 9162 §2.1.4.2; raises :class:`ProofError`. The RFC's
    algorithm is for 0 < size1 < size2; the edges follow transparency-dev:
    equal sizes need an empty proof and equal roots, and size1 = 0 is rejected
    (every tree extends the empty one, so such a "proof" proves nothing).
    """
    if not 0 <= size1 <= size2:
        raise ProofError(f"size1 {size1} is larger than size2 {size2}")
    if size1 == 0:
        raise ProofError("consistency with an empty tree is not a meaningful proof")
    if size1 == size2:
        if proof:
            raise ProofError("sizes are equal but the consistency proof is not empty")
        if root1 != root2:
            raise ProofError("sizes are equal but the roots differ")
        return
    _require_hash(root1, "root1")
    _require_hash(root2, "root2")
    for position, node in enumerate(proof):
        _require_hash(node, f"proof[{position}]")
    # Step 1: an empty consistency_path fails.
    if not proof:
        raise ProofError("consistency proof is empty")
    path = list(proof)
    # Step 2: if first is an exact power of 2, prepend first_hash.
    if size1 & (size1 - 1) == 0:
        path.insert(0, root1)
    # Step 3: fn = first - 1, sn = second - 1.
    fn, sn = size1 - 1, size2 - 1
    # Step 4: if LSB(fn) is set, right-shift fn and sn until it is not.
    while fn & 1:
        fn >>= 1
        sn >>= 1
    # Step 5: fr = sr = the first value of the path.
    fr = sr = path[0]
    # Step 6: fold in every subsequent value.
    for node in path[1:]:
        if sn == 0:  # 6a
            raise ProofError("consistency proof is longer than the tree is high")
        if fn & 1 or fn == sn:  # 6b
            fr = hash_children(node, fr)
            sr = hash_children(node, sr)
            if not fn & 1:  # 6b.iii
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = hash_children(sr, node)
        fn >>= 1  # 6c
        sn >>= 1
    # Step 7: fr == first_hash, sr == second_hash, sn == 0.
    if sn != 0:
        raise ProofError("consistency proof is shorter than the tree is high")
    if fr != root1:
        raise ProofError("consistency proof does not lead to the first root")
    if sr != root2:
        raise ProofError("consistency proof does not lead to the second root")
