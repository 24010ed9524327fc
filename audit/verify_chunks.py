"""Checking a run of entry lines that starts anywhere in an export, and joining runs.

The parallel verifier (:mod:`sigbus.parallel_verify`) cuts the entry lines of
an export into chunks, one per process, and hands each chunk to a
:class:`ChunkScanner` in blocks of whole lines; this module holds everything
about those chunks that is not reading files or starting processes.

Each chunk is checked by the same per-entry check as the reference
(:data:`~audit.entry_line.ENTRY_LINE` as a block-wide ``findall`` of
:data:`~audit.entry_line.ENTRY_LINES`, or its equivalent on plain blocks
:data:`~audit.entry_line.ENTRY_LINES_PLAIN`; calendar date; UTF-8; index =
position; ``prev_leaf_hash`` = leaf hash of the line before), taking the
position of its first line from that line's own ``index``. The chunk's leaves
are then folded into the largest aligned perfect subtrees it holds
(:func:`~audit.merkle.subtree_levels`, :func:`~audit.merkle.aligned_subtrees`:
RFC 9162 §2.1.1 splits at powers of two, so these are nodes of the final
tree). :func:`join_chunks` requires chunk 0 to start at index 0 on the genesis
value and every other chunk to start at the index after the previous chunk's
last line and to link to its last leaf hash, and folds those few dozen nodes
into the root (:meth:`~audit.merkle.RootAccumulator.add_subtree`).

This path only ever *accepts*: every fault is None, never a diagnosis, and
the caller re-runs the reference (:func:`audit.verify.verify_export`) so that
every error message and first-bad-entry attribution is the reference's.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable
from dataclasses import dataclass

from sigbus.audit.entry_line import (
    ENTRY_LINES,
    ENTRY_LINES_PLAIN,
    is_valid_utf8,
    plain_newlines,
    valid_date,
)
from sigbus.audit.errors import ProofError
from sigbus.audit.merkle import (
    RootAccumulator,
    Subtree,
    aligned_subtrees,
    hash_leaves,
    subtree_levels,
)
from sigbus.audit.verify import GENESIS

BlockRows = tuple[tuple[bytes, ...], tuple[bytes, ...], tuple[bytes, ...]]


@dataclass(frozen=True)
class ChunkResult:
    """What the parent needs of one intact chunk (small: it crosses a process boundary)."""

    first_index: int
    count: int
    first_prev: bytes
    last_leaf: bytes
    subtrees: tuple[Subtree, ...]
    #: tree size -> this chunk's subtrees up to that size (for earlier checkpoints)
    snapshots: tuple[tuple[int, tuple[Subtree, ...]], ...] = ()


def check_block(buf: bytes, cut: int) -> BlockRows | None:
    """(lines, indexes, prev_leaf_hashes) of ``buf[:cut]`` (whole lines), or None.

    ``buf[cut:]`` may hold the start of a line but no newline. None unless
    every line passes the reference's per-entry check: the entry expression,
    the calendar date and UTF-8 (valid per line iff valid as a whole).
    """
    if not buf.isascii() and not is_valid_utf8(buf[:cut]):
        return None
    newlines = plain_newlines(buf)  # buf[cut:] holds no newline
    if newlines is None:
        rows, newlines = ENTRY_LINES.findall(buf, 0, cut), buf.count(b"\n", 0, cut)
    else:
        rows = ENTRY_LINES_PLAIN.findall(buf, 0, cut)
    # Each match ends in a newline; as many matches as newlines means each match
    # is exactly one whole line and none was skipped (see ENTRY_LINES).
    if not rows or len(rows) != newlines:
        return None
    lines, dates, indexes, prevs = zip(*rows, strict=True)
    if not all(map(valid_date, set(dates))):
        return None
    return lines, indexes, prevs


class ChunkScanner:
    """Checks one chunk's blocks in order, with no Python statement per line.

    Per block: one ``findall`` checks every line and extracts its date, index
    and ``prev_leaf_hash`` (:func:`check_block`); the leaf hashes are one
    :func:`~audit.merkle.hash_leaves`; the index and chain checks compare
    whole joined sequences.
    """

    def __init__(self) -> None:
        self._leaves: list[bytes] = []
        self._first_index = -1
        self._first_prev = b""

    def feed(self, buf: bytes, cut: int) -> bool:
        """Check the whole lines ``buf[:cut]`` that follow those fed so far; False on a fault."""
        rows = check_block(buf, cut)
        if rows is None:
            return False
        lines, indexes, prevs = rows
        leaves = self._leaves
        if self._first_index < 0:
            self._first_index, self._first_prev = int(indexes[0]), prevs[0]
        next_index = self._first_index + len(leaves)
        if indexes != tuple(map(b"%d".__mod__, range(next_index, next_index + len(lines)))):
            return False
        block = hash_leaves(lines)
        # prev_leaf_hash of each line = hex of the leaf before (within the chunk).
        claimed, linked = (prevs, [leaves[-1], *block[:-1]]) if leaves else (prevs[1:], block[:-1])
        if b"".join(claimed) != binascii.hexlify(b"".join(linked)):
            return False
        leaves.extend(block)
        return True

    def result(self, sizes: frozenset[int]) -> ChunkResult | None:
        """The chunk's subtrees, and its prefix subtrees at each of ``sizes`` it reaches.

        None if no line was fed (every chunk holds at least one line).
        """
        leaves, first = self._leaves, self._first_index
        if not leaves:
            return None
        stop = first + len(leaves)
        levels = subtree_levels(leaves, first)
        return ChunkResult(
            first_index=first,
            count=len(leaves),
            first_prev=self._first_prev,
            last_leaf=leaves[-1],
            subtrees=aligned_subtrees(levels, first, stop),
            snapshots=tuple(
                (size, aligned_subtrees(levels, first, size))
                for size in sorted(sizes)
                if first < size <= stop
            ),
        )


def join_chunks(
    results: Iterable[ChunkResult | None], total: int
) -> tuple[bytes, dict[int, bytes]] | None:
    """(root, roots at earlier sizes) of ``total`` entries from consecutive chunks, or None.

    None if a chunk failed, if the chunks do not continue each other (index
    and hash chain across the cut), or if they do not add up to ``total``.
    """
    fold, roots_at = RootAccumulator(), {}
    expected_index, expected_prev = 0, GENESIS
    try:
        for result in results:
            if (
                result is None
                or result.first_index != expected_index
                or result.first_prev != expected_prev
            ):
                return None
            for at, subtrees in result.snapshots:
                trial = fold.copy()
                for level, node in subtrees:
                    trial.add_subtree(level, node)
                roots_at[at] = trial.root()
            for level, node in result.subtrees:
                fold.add_subtree(level, node)
            expected_index += result.count
            expected_prev = result.last_leaf.hex().encode()
    except ProofError:  # an unaligned subtree: cannot happen for chunks that continue
        return None
    if expected_index != total or fold.size != total:
        return None
    return fold.root(), roots_at
