"""The disclosure-log export format (``sigbus-log-export/v1``) and its offline verifier.

Format: JSON Lines, UTF-8, every line ends with "\\n".

1. Header, RFC 8785 JSON::

       {"entries":N,"format":"sigbus-log-export/v1","log_public_key":"<base64 raw Ed25519>",
        "origin":"<checkpoint origin>"}

2. N entry lines, each *exactly* the RFC 8785 bytes of one ``LogEntry``,
   in index order 0..N-1. These bytes are the RFC 9162 leaf data.
3. A trailer (RFC 8785 JSON)::

       {"checkpoint":"<C2SP signed note>",
        "cosignatures":[{"line":"— <witness> <base64>\\n","public_key":"<base64>",
                         "witness":"<name>"}]}

   The checkpoint's size is N and its root is the Merkle root of the N
   entries; it is signed under the key name ``origin``.

What :func:`verify_export` checks, with no server and no secret key:

- per entry (fast path, see :mod:`audit.entry_line`): the line is the
  canonical RFC 8785 encoding of a schema-valid ``LogEntry`` (key set and
  order, value types, enumerations, string escapes, integer range, calendar
  date, UTF-8); its ``index`` is its position; its ``prev_leaf_hash`` is the
  leaf hash of the line before (``"0" * 64`` for entry 0); its leaf hash is
  folded into the Merkle root. Entries are never parsed into Python objects.
- the header: format, origin, key, and N equal to the checkpoint size;
- the checkpoint: its signature under the trusted log key (or, failing that,
  the header's key, which only proves self-consistency; the report says
  which), its origin, size and root against the recomputed tree;
- every cosignature: against the caller's trusted key for that witness if
  given, else the key the file declares (reported as such);
- optionally, earlier checkpoints the caller already holds: each must be
  signed by the log and have the root of the export's first ``size`` entries,
  otherwise the log has forked or been rewritten since.

A chain break is attributed to the entry that was altered: if entry k+1's
``prev_leaf_hash`` differs from the hash of entry k, then either entry k was
changed (k+1 and k+2 stay linked), or entry k+1's own ``prev_leaf_hash`` was
(then k+2 no longer links to k+1 either); for the last entry the signed root
decides. An intact chain under a wrong root names the last entry (nothing
after it records its hash). With a single altered entry the named index is
exact; with several, it is an altered entry or next to one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import json
import multiprocessing
import operator
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Literal

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sigbus.audit.checkpoint import (
    Checkpoint,
    note_body,
    public_key_bytes,
    verify_cosignature,
    verify_note,
)
from sigbus.audit.entry import GENESIS_PREV_HASH
from sigbus.audit.entry_line import (
    ENTRY_LINE,
    ENTRY_LINES,
    ENTRY_LINES_PLAIN,
    check_entry_line,
    diagnose_entry_line,
    is_valid_utf8,
    plain_newlines,
    valid_date,
)
from sigbus.audit.errors import AuditError, ExportError
from sigbus.audit.merkle import EMPTY_ROOT, RootAccumulator

EXPORT_FORMAT = "sigbus-log-export/v1"
_HEADER_KEYS = {"entries", "format", "log_public_key", "origin"}
_TRAILER_KEYS = {"checkpoint", "cosignatures"}
_COSIGNATURE_KEYS = {"line", "public_key", "witness"}
_GENESIS = GENESIS_PREV_HASH.encode()
#: SHA-256 already fed the RFC 9162 leaf prefix 0x00: ``.copy()`` + ``update(line)``
#: hashes a leaf without building ``b"\x00" + line``.
_LEAF_HASHER = hashlib.sha256(b"\x00")
#: Likewise for interior nodes (prefix 0x01).
_NODE_HASHER = hashlib.sha256(b"\x01")

KeySource = Literal["trusted", "declared in file"]


@dataclass(frozen=True)
class CosignatureRecord:
    """A witness's cosignature as stored in an export."""

    witness: str
    public_key: Ed25519PublicKey
    line: str


@dataclass(frozen=True)
class CosignatureCheck:
    witness: str
    key_source: KeySource
    timestamp: int


@dataclass(frozen=True)
class VerifyReport:
    origin: str
    entries: int
    root: bytes
    log_key_source: KeySource
    cosignatures: tuple[CosignatureCheck, ...] = ()
    earlier_checkpoints: tuple[int, ...] = field(default=())  # sizes proven consistent

    def summary(self) -> str:
        witnesses = ", ".join(f"{c.witness} ({c.key_source} key)" for c in self.cosignatures)
        earlier = (
            f"; consistent with earlier checkpoints at sizes {list(self.earlier_checkpoints)}"
            if self.earlier_checkpoints
            else ""
        )
        return (
            f"OK: {self.entries} entries intact, root {base64.b64encode(self.root).decode()}, "
            f"checkpoint signed by {self.origin!r} ({self.log_key_source} key), "
            f"{len(self.cosignatures)} cosignature(s) verified"
            f"{': ' + witnesses if witnesses else ''}{earlier}"
        )


def _json_line(value: Any) -> bytes:
    encoded: bytes = rfc8785.dumps(value)
    return encoded + b"\n"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def write_export(
    entries: Iterable[bytes],
    signed_checkpoint: str,
    cosignatures: Sequence[CosignatureRecord],
    *,
    log_public_key: Ed25519PublicKey,
    origin: str,
) -> Iterator[bytes]:
    """Yield the lines (each ending in "\\n") of an export of ``entries``.

    ``entries`` are the canonical entry bytes in index order; there must be
    exactly as many as the checkpoint's size, and their root must be its root
    (checked as they stream by; :class:`ExportError` at the end otherwise,
    so write to a temporary file and rename on success).
    """
    checkpoint = verify_note(signed_checkpoint, origin, log_public_key)
    yield _json_line(
        {
            "entries": checkpoint.size,
            "format": EXPORT_FORMAT,
            "log_public_key": _b64(public_key_bytes(log_public_key)),
            "origin": origin,
        }
    )
    accumulator = RootAccumulator()
    for entry in entries:
        if b"\n" in entry:
            raise ExportError("entry bytes contain a newline", entry_index=accumulator.size)
        accumulator.add(hashlib.sha256(b"\x00" + entry).digest())
        yield entry + b"\n"
    if accumulator.size != checkpoint.size or accumulator.root() != checkpoint.root:
        raise ExportError(
            f"{accumulator.size} entries do not match the checkpoint of size {checkpoint.size}"
        )
    body = note_body(signed_checkpoint)
    for record in cosignatures:
        verify_cosignature(body, record.line, record.witness, record.public_key)
    yield _json_line(
        {
            "checkpoint": signed_checkpoint,
            "cosignatures": [
                {
                    "line": record.line,
                    "public_key": _b64(public_key_bytes(record.public_key)),
                    "witness": record.witness,
                }
                for record in cosignatures
            ],
        }
    )


def _decode_key(text: object, what: str) -> Ed25519PublicKey:
    if not isinstance(text, str):
        raise ExportError(f"{what} is not a base64 string")
    try:
        return Ed25519PublicKey.from_public_bytes(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError) as e:
        raise ExportError(f"{what} is not a base64 raw Ed25519 public key") from e


def _parse_json_object(line: bytes, keys: set[str], what: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{what} is not valid JSON") from e
    if not isinstance(value, dict) or set(value) != keys:
        raise ExportError(f"{what} must be an object with exactly the keys {sorted(keys)}")
    return value


@dataclass(frozen=True)
class _Header:
    origin: str
    log_public_key: Ed25519PublicKey
    entries: int


def _parse_header(line: bytes | None) -> _Header:
    if line is None:
        raise ExportError("export file is empty")
    header = _parse_json_object(line, _HEADER_KEYS, "header line")
    if header["format"] != EXPORT_FORMAT:
        raise ExportError(f"header format is not {EXPORT_FORMAT!r}")
    entries, origin = header["entries"], header["origin"]
    if not isinstance(entries, int) or isinstance(entries, bool) or entries < 0:
        raise ExportError("header 'entries' is not a non-negative integer")
    if not isinstance(origin, str) or not origin:
        raise ExportError("header 'origin' is not a non-empty string")
    return _Header(origin, _decode_key(header["log_public_key"], "header log_public_key"), entries)


class _Chain:
    """Streams entry lines: fast canonical check, index, hash chain, Merkle root."""

    def __init__(self, expected: int, earlier_sizes: set[int]) -> None:
        self.expected = expected
        self.accumulator = RootAccumulator()
        self.roots_at: dict[int, bytes] = {}
        self._earlier_sizes = earlier_sizes
        self._before_penultimate: RootAccumulator | None = None
        self.last_leaf = b""
        self.pending_break: int | None = None  # index k whose prev_leaf_hash did not link
        self.claimed_prev = b""

    def run(self, lines: Iterator[bytes]) -> None:
        accumulator, add = self.accumulator, self.accumulator.add
        expected, leaf_hasher = self.expected, _LEAF_HASHER.copy
        earlier, roots_at = self._earlier_sizes, self.roots_at
        prev_hex, last_leaf = _GENESIS, b""
        fullmatch, date_ok = ENTRY_LINE.fullmatch, valid_date
        for index in range(expected):
            raw = next(lines, None)
            if raw is None:
                raise ExportError(
                    f"entry {index}: missing, the file ends after {index} of {expected} "
                    "entries (truncated)",
                    entry_index=index,
                )
            line = raw[:-1] if raw[-1:] == b"\n" else raw
            # Inlined audit.entry_line.check_entry_line: this loop is the hot path.
            match = fullmatch(line)
            if (
                match is None
                or not date_ok(match[1])
                or not (line.isascii() or is_valid_utf8(line))
            ):
                raise ExportError(f"entry {index}: {diagnose_entry_line(line)}", entry_index=index)
            _, index_text, claimed = match.groups()
            if index_text != b"%d" % index:
                raise ExportError(
                    f"entry {index}: line carries index {int(index_text)} "
                    "(an entry was removed, duplicated or reordered)",
                    entry_index=index,
                )
            if claimed != prev_hex:
                self._chain_break(index, claimed, prev_hex)
            elif self.pending_break is not None:
                # Entry k+1 links to entry k, so entry k is unaltered and the
                # break at k means entry k-1 was changed.
                raise self._altered(self.pending_break - 1)
            if index == expected - 2:
                self._before_penultimate = accumulator.copy()
            hasher = leaf_hasher()
            hasher.update(line)
            last_leaf = hasher.digest()
            prev_hex = last_leaf.hex().encode()
            add(last_leaf)
            if earlier and index + 1 in earlier:
                roots_at[index + 1] = accumulator.root()
        self.last_leaf = last_leaf

    def _chain_break(self, index: int, claimed: bytes, prev_hex: bytes) -> None:
        if index == 0 or self.pending_break is not None:
            # Entry 0 must link to the genesis value; and a second break in a
            # row means entry k's own prev_leaf_hash (hence its hash) changed.
            raise self._altered(index - 1 if index else 0)
        self.pending_break = index
        self.claimed_prev = claimed

    @staticmethod
    def _altered(index: int) -> ExportError:
        return ExportError(
            f"entry {index}: altered (its hash no longer links the hash chain)",
            entry_index=index,
        )

    def resolve_final_break(self, signed_root: bytes | None) -> None:
        """A break at the last entry: the signed root says which side was altered."""
        if self.pending_break is None:
            return
        last = self.pending_break
        if signed_root is not None and self._before_penultimate is not None:
            # Hypothesis: entry last-1 was altered and the last entry is intact,
            # so the original leaf last-1 is what the last entry claims.
            trial = self._before_penultimate.copy()
            trial.add(bytes.fromhex(self.claimed_prev.decode()))
            trial.add(self.last_leaf)
            if trial.root() == signed_root:
                raise self._altered(last - 1)
        raise self._altered(last)


def _parse_trailer(line: bytes | None, expected: int) -> dict[str, Any]:
    if line is None:
        raise ExportError("the checkpoint line is missing (truncated)")
    stripped = line[:-1] if line[-1:] == b"\n" else line
    if check_entry_line(stripped) is not None:
        raise ExportError(
            f"entry {expected}: unexpected extra entry after the {expected} the header announces",
            entry_index=expected,
        )
    trailer = _parse_json_object(line, _TRAILER_KEYS, "checkpoint line")
    if not isinstance(trailer["checkpoint"], str) or not isinstance(trailer["cosignatures"], list):
        raise ExportError("checkpoint line has the wrong types")
    return trailer


def _check_cosignatures(
    body: str,
    records: list[Any],
    trusted: Mapping[str, Ed25519PublicKey],
) -> tuple[CosignatureCheck, ...]:
    checks: list[CosignatureCheck] = []
    for position, record in enumerate(records):
        if not isinstance(record, dict) or set(record) != _COSIGNATURE_KEYS:
            raise ExportError(f"cosignature {position} is malformed")
        witness, line = record["witness"], record["line"]
        if not isinstance(witness, str) or not isinstance(line, str):
            raise ExportError(f"cosignature {position} is malformed")
        declared = _decode_key(record["public_key"], f"cosignature {position} public_key")
        source: KeySource = "trusted" if witness in trusted else "declared in file"
        key = trusted.get(witness, declared)
        try:
            timestamp = verify_cosignature(body, line, witness, key)
        except AuditError as e:
            raise ExportError(f"cosignature {position} by {witness!r} is invalid: {e}") from e
        checks.append(CosignatureCheck(witness=witness, key_source=source, timestamp=timestamp))
    return tuple(checks)


def _verify_checkpoint(note: str, origin: str, key: Ed25519PublicKey) -> Checkpoint:
    try:
        checkpoint = verify_note(note, origin, key)
    except AuditError as e:
        raise ExportError(f"checkpoint is not validly signed: {e}") from e
    if checkpoint.origin != origin:
        raise ExportError("checkpoint origin differs from the header origin")
    return checkpoint


def _earlier_checkpoints(
    notes: Sequence[str], header: _Header, log_key: Ed25519PublicKey
) -> list[Checkpoint]:
    earlier = [_verify_checkpoint(note, header.origin, log_key) for note in notes]
    for checkpoint in earlier:
        if checkpoint.size > header.entries:
            raise ExportError(
                f"the log already published a checkpoint of size {checkpoint.size}, "
                f"but the export holds {header.entries} entries (truncated or rolled back)"
            )
    return earlier


def verify_export(
    lines: Iterable[bytes],
    *,
    trusted_log_key: Ed25519PublicKey | None = None,
    trusted_witness_keys: Mapping[str, Ed25519PublicKey] | None = None,
    earlier_checkpoints: Sequence[str] = (),
) -> VerifyReport:
    """Recompute and check everything in an export; raise :class:`ExportError` on the first fault.

    ``lines`` are the file's lines (e.g. a binary file object). See the
    module docstring for what is checked.
    """
    iterator = iter(lines)
    header = _parse_header(next(iterator, None))
    log_key = trusted_log_key if trusted_log_key is not None else header.log_public_key
    key_source: KeySource = "trusted" if trusted_log_key is not None else "declared in file"
    earlier = _earlier_checkpoints(earlier_checkpoints, header, log_key)

    chain = _Chain(header.entries, {c.size for c in earlier})
    chain.run(iterator)
    try:
        trailer = _parse_trailer(next(iterator, None), header.entries)
        checkpoint = _verify_checkpoint(trailer["checkpoint"], header.origin, log_key)
    except ExportError:
        chain.resolve_final_break(None)
        raise
    chain.resolve_final_break(checkpoint.root)

    if next(iterator, None) is not None:
        raise ExportError("unexpected data after the checkpoint line")
    return _finish(
        header,
        key_source,
        earlier,
        checkpoint,
        trailer,
        root=chain.accumulator.root(),
        roots_at=chain.roots_at,
        trusted_witness_keys=trusted_witness_keys,
    )


def _finish(
    header: _Header,
    key_source: KeySource,
    earlier: list[Checkpoint],
    checkpoint: Checkpoint,
    trailer: dict[str, Any],
    *,
    root: bytes,
    roots_at: Mapping[int, bytes],
    trusted_witness_keys: Mapping[str, Ed25519PublicKey] | None,
) -> VerifyReport:
    """The checks after the entries, shared by the reference and the parallel path."""
    if checkpoint.size != header.entries:
        raise ExportError(
            f"checkpoint size {checkpoint.size} differs from the {header.entries} entries"
        )
    if root != checkpoint.root:
        # The chain is intact, so with a single altered entry it can only be
        # the last one (nothing after it records its hash). Several changes
        # with a recomputed chain also end here; the message says so.
        last = header.entries - 1 if header.entries else None
        raise ExportError(
            f"entry {last}: the entries' Merkle root differs from the signed checkpoint root "
            "(the last entry was altered, or the hash chain was recomputed after a change)",
            entry_index=last,
        )
    for previous in earlier:
        prefix_root = roots_at.get(previous.size, EMPTY_ROOT)
        if previous.root != prefix_root:
            raise ExportError(
                f"fork: the earlier checkpoint of size {previous.size} does not match the "
                "export's first entries (history was rewritten)"
            )
    cosignatures = _check_cosignatures(
        note_body(trailer["checkpoint"]), trailer["cosignatures"], trusted_witness_keys or {}
    )
    return VerifyReport(
        origin=header.origin,
        entries=header.entries,
        root=root,
        log_key_source=key_source,
        cosignatures=cosignatures,
        earlier_checkpoints=tuple(sorted({c.size for c in earlier})),
    )


def read_entry_lines(lines: Iterable[bytes]) -> Iterator[bytes]:
    """The entry lines (without "\\n") of an export, header and trailer skipped, unverified."""
    iterator = iter(lines)
    header = _parse_header(next(iterator, None))
    for _ in range(header.entries):
        raw = next(iterator, None)
        if raw is None:
            return
        yield raw[:-1] if raw[-1:] == b"\n" else raw


# --- Parallel verification of large export files -----------------------------------
#
# The entry lines are split by byte range into one chunk per CPU (cut just after a
# newline). Each chunk is scanned by the same per-entry check as the reference
# (:data:`ENTRY_LINE` as a block-wide ``findall`` of :data:`ENTRY_LINES` or its
# equivalent on plain blocks :data:`ENTRY_LINES_PLAIN`, calendar date, UTF-8,
# index = position, prev_leaf_hash = leaf hash of the line before), taking
# the position of its first line from that line's own ``index``; the parent then
# requires chunk 0 to start at index 0 and link to the genesis value, and every
# other chunk to start at the index after the previous chunk's last line and to
# link to its last leaf hash. Each chunk also folds its leaves into the largest
# aligned perfect subtrees it can (RFC 9162 splits at powers of two, so these are
# nodes of the final tree); the parent folds those few dozen nodes into the root.
#
# The fast path only ever *accepts*. On any fault at all it returns None and
# :func:`verify_export_file` re-runs the single-process reference over the file,
# so every error message and first-bad-entry attribution is the reference's.

#: Below this many entries the reference path is used (process start-up is not free).
PARALLEL_MIN_ENTRIES = 50_000
_TRAILER_SEARCH_LIMIT = 1 << 22  # a checkpoint line longer than 4 MiB: use the reference

Subtree = tuple[int, bytes]  # (level, hash): a perfect subtree of 2**level leaves


@dataclass(frozen=True)
class _ChunkResult:
    ok: bool
    first_index: int = -1
    count: int = 0
    first_prev: bytes = b""
    last_leaf: bytes = b""
    subtrees: tuple[Subtree, ...] = ()
    #: tree size -> this chunk's subtrees up to that size (for earlier checkpoints)
    snapshots: tuple[tuple[int, tuple[Subtree, ...]], ...] = ()


_CHUNK_FAILED = _ChunkResult(ok=False)
_BLOCK_BYTES = 1 << 23
_DIGEST = operator.methodcaller("digest")
_COPY = operator.methodcaller("copy")
_UPDATE = type(_LEAF_HASHER).update
_repeat = itertools.repeat


def _scan_chunk(path: str, start: int, end: int, sizes: frozenset[int]) -> _ChunkResult:
    """Check the entry lines in bytes [start, end) of ``path`` (runs in a worker process).

    Reads and checks the chunk in blocks of about :data:`_BLOCK_BYTES` (so memory
    is reused rather than touched afresh), with no Python statement per line:
    one ``findall`` per block checks every line and extracts its date, index and
    ``prev_leaf_hash``; the leaf hashes are a ``map`` of SHA-256 over the lines;
    the index and chain checks compare whole joined sequences.
    """
    leaves: list[bytes] = []
    first_index, first_prev, pending = -1, b"", b""
    with open(path, "rb") as file:
        file.seek(start)
        remaining = end - start
        while remaining > 0:
            data = file.read(min(_BLOCK_BYTES, remaining))
            if not data:
                return _CHUNK_FAILED
            remaining -= len(data)
            buf = pending + data if pending else data
            if remaining:
                cut = buf.rfind(b"\n") + 1
                if not cut:  # a line longer than a block: read on
                    pending = buf
                    continue
                pending = buf[cut:]
            elif not buf.endswith(b"\n"):
                return _CHUNK_FAILED
            else:
                cut, pending = len(buf), b""
            rows = _check_block(buf, cut)
            if rows is None:
                return _CHUNK_FAILED
            lines, indexes, prevs = rows
            if first_index < 0:
                first_index, first_prev = int(indexes[0]), prevs[0]
            next_index = first_index + len(leaves)
            if indexes != tuple(map(b"%d".__mod__, range(next_index, next_index + len(lines)))):
                return _CHUNK_FAILED
            # Leaf hashes: copies of a SHA-256 already fed 0x00 (copying skips
            # OpenSSL's per-object set-up), each fed one line, all in C-level maps.
            hashers = list(map(_COPY, _repeat(_LEAF_HASHER, len(lines))))
            any(map(_UPDATE, hashers, lines))  # update() returns None: consumes all
            block = list(map(_DIGEST, hashers))
            # prev_leaf_hash of each line = hex of the leaf before (within the chunk).
            claimed, linked = (
                (prevs, [leaves[-1], *block[:-1]]) if leaves else (prevs[1:], block[:-1])
            )
            if b"".join(claimed) != binascii.hexlify(b"".join(linked)):
                return _CHUNK_FAILED
            leaves.extend(block)
    if not leaves:
        return _CHUNK_FAILED
    stop = first_index + len(leaves)
    levels = _tree_levels(leaves, first_index)
    return _ChunkResult(
        ok=True,
        first_index=first_index,
        count=len(leaves),
        first_prev=first_prev,
        last_leaf=leaves[-1],
        subtrees=_subtrees(levels, first_index, stop),
        snapshots=tuple(
            (size, _subtrees(levels, first_index, size))
            for size in sorted(sizes)
            if first_index < size <= stop
        ),
    )


def _check_block(
    buf: bytes, cut: int
) -> tuple[tuple[bytes, ...], tuple[bytes, ...], tuple[bytes, ...]] | None:
    """(lines, indexes, prev_leaf_hashes) of ``buf[:cut]`` (whole lines), or None.

    None unless every line passes the reference's per-entry check: the entry
    expression, the calendar date and UTF-8 (valid per line iff valid as a whole).
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


def _pair_hashes(nodes: list[bytes]) -> list[bytes]:
    """RFC 9162 parents of nodes (0, 1), (2, 3), ... (an even number of nodes)."""
    hashers = list(map(_COPY, _repeat(_NODE_HASHER, len(nodes) // 2)))
    any(map(_UPDATE, hashers, nodes[0::2]))  # update() returns None: consumes all
    any(map(_UPDATE, hashers, nodes[1::2]))
    return list(map(_DIGEST, hashers))


def _tree_levels(leaves: list[bytes], first: int) -> list[list[bytes]]:
    """Every node of the tree over leaves first.. that lies wholly inside the chunk.

    ``levels[l][i]`` is the perfect subtree of 2**l leaves at position
    ``ceil(first / 2**l) + i``; each level is hashed in one ``map`` over pairs.
    """
    levels, nodes, low, high = [leaves], leaves, first, first + len(leaves)
    while True:
        up_low, up_high = (low + 1) // 2, high // 2
        if up_high <= up_low:
            return levels
        offset = 2 * up_low - low  # 1 when the first node's sibling is before the chunk
        nodes = _pair_hashes(nodes[offset : offset + 2 * (up_high - up_low)])
        levels.append(nodes)
        low, high = up_low, up_high


def _subtrees(levels: list[list[bytes]], first: int, stop: int) -> tuple[Subtree, ...]:
    """Leaves first..stop-1 as the largest aligned perfect subtrees, left to right."""
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


class _SubtreeFold:
    """Like :class:`RootAccumulator`, but also takes whole aligned perfect subtrees."""

    def __init__(self) -> None:
        self.stack: list[bytes] = []
        self.count = 0

    def add(self, level: int, node: bytes) -> bool:
        """Append a subtree of 2**level leaves; False if it would not be aligned."""
        if self.count % (1 << level):
            return False
        self.stack.append(node)
        self.count += 1 << level
        while not (self.count >> level) & 1:
            right = self.stack.pop()
            self.stack[-1] = hashlib.sha256(b"\x01" + self.stack[-1] + right).digest()
            level += 1
        return True

    def copy(self) -> _SubtreeFold:
        clone = _SubtreeFold()
        clone.stack, clone.count = list(self.stack), self.count
        return clone

    def root(self) -> bytes:
        if not self.stack:
            return EMPTY_ROOT
        node = self.stack[-1]
        for left in reversed(self.stack[:-1]):
            node = hashlib.sha256(b"\x01" + left + node).digest()
        return node


def _trailer_start(file: BinaryIO, size: int, floor: int) -> int | None:
    """Offset of the last line of the file (the checkpoint line), or None."""
    end = size - 1 if size > floor else size  # a final "\n" ends the last line
    window = 1 << 16
    while True:
        begin = max(floor, end - window)
        file.seek(begin)
        cut = file.read(end - begin).rfind(b"\n")
        if cut >= 0:
            return begin + cut + 1
        if begin == floor or window >= _TRAILER_SEARCH_LIMIT:
            return None
        window *= 4


def _chunk_bounds(file: BinaryIO, start: int, end: int, parts: int) -> list[tuple[int, int]]:
    """Split [start, end) into up to ``parts`` ranges, each cut just after a newline."""
    cuts = [start]
    for part in range(1, parts):
        file.seek(max(cuts[-1], start + (end - start) * part // parts))
        file.readline()
        if file.tell() >= end:
            break
        cuts.append(file.tell())
    cuts.append(end)
    return [(a, b) for a, b in itertools.pairwise(cuts) if b > a]


def _default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _verify_parallel(
    path: Path,
    workers: int,
    trusted_log_key: Ed25519PublicKey | None,
    trusted_witness_keys: Mapping[str, Ed25519PublicKey] | None,
    earlier_checkpoints: Sequence[str],
) -> VerifyReport | None:
    """The fast path: a report when the file is intact, None on anything else."""
    try:
        with path.open("rb") as file:
            header = _parse_header(file.readline())
            if header.entries < PARALLEL_MIN_ENTRIES:
                return None
            log_key = trusted_log_key if trusted_log_key is not None else header.log_public_key
            key_source: KeySource = "trusted" if trusted_log_key is not None else "declared in file"
            earlier = _earlier_checkpoints(earlier_checkpoints, header, log_key)
            body_start, size = file.tell(), os.fstat(file.fileno()).st_size
            trailer_at = _trailer_start(file, size, body_start)
            if trailer_at is None or trailer_at <= body_start:
                return None
            file.seek(trailer_at)
            trailer_line = file.read()
            bounds = _chunk_bounds(file, body_start, trailer_at, workers)
        trailer = _parse_trailer(trailer_line, header.entries)
        checkpoint = _verify_checkpoint(trailer["checkpoint"], header.origin, log_key)
    except (ExportError, OSError):
        return None

    sizes = frozenset(c.size for c in earlier)
    results = _run_chunks(str(path), bounds, sizes)
    fold, roots_at = _SubtreeFold(), {}
    expected_index, expected_prev = 0, _GENESIS
    for result in results:
        if (
            not result.ok
            or result.first_index != expected_index
            or result.first_prev != expected_prev
        ):
            return None
        for at, subtrees in result.snapshots:
            trial = fold.copy()
            if not all(trial.add(level, node) for level, node in subtrees):
                return None
            roots_at[at] = trial.root()
        if not all(fold.add(level, node) for level, node in result.subtrees):
            return None
        expected_index += result.count
        expected_prev = result.last_leaf.hex().encode()
    if expected_index != header.entries or fold.count != header.entries:
        return None
    try:
        return _finish(
            header,
            key_source,
            earlier,
            checkpoint,
            trailer,
            root=fold.root(),
            roots_at=roots_at,
            trusted_witness_keys=trusted_witness_keys,
        )
    except ExportError:
        return None


def _run_chunks(
    path: str, bounds: list[tuple[int, int]], sizes: frozenset[int]
) -> list[_ChunkResult]:
    """Chunk 0 in this process, the others in worker processes ('fork' where available)."""
    if len(bounds) == 1:
        return [_scan_chunk(path, *bounds[0], sizes)]
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    with ProcessPoolExecutor(max_workers=len(bounds) - 1, mp_context=context) as pool:
        futures = [pool.submit(_scan_chunk, path, a, b, sizes) for a, b in bounds[1:]]
        first = _scan_chunk(path, *bounds[0], sizes)
        return [first, *(future.result() for future in futures)]


def verify_export_file(
    path: Path,
    *,
    trusted_log_key: Ed25519PublicKey | None = None,
    trusted_witness_keys: Mapping[str, Ed25519PublicKey] | None = None,
    earlier_checkpoints: Sequence[str] = (),
    workers: int | None = None,
) -> VerifyReport:
    """:func:`verify_export` for a file, across ``workers`` processes when it is large.

    Same checks and same result as the reference: an intact file gives the same
    report; on any fault the reference re-runs (single process) and raises its
    :class:`ExportError`, naming the same first bad entry.
    """
    workers = _default_workers() if workers is None else workers
    if workers > 1:
        report = _verify_parallel(
            path, workers, trusted_log_key, trusted_witness_keys, earlier_checkpoints
        )
        if report is not None:
            return report
    with path.open("rb") as lines:
        return verify_export(
            lines,
            trusted_log_key=trusted_log_key,
            trusted_witness_keys=trusted_witness_keys,
            earlier_checkpoints=earlier_checkpoints,
        )
