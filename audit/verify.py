"""The reference verifier of a ``sigbus-log-export/v1`` export: lines in, a report or an error out.

What :func:`verify_export` checks, with no server and no secret key (the
format is :mod:`audit.export_format`):

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

This is the single-process reference: it reads an iterable of lines and
opens nothing. The parallel verifier (:mod:`sigbus.parallel_verify`) runs
the same checks before and after the entries through :func:`read_preamble`,
:func:`check_trailer` and :func:`finish`, so the two cannot drift apart there.
"""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from sigbus.audit.checkpoint import Checkpoint, note_body, verify_cosignature, verify_note
from sigbus.audit.entry import GENESIS_PREV_HASH
from sigbus.audit.entry_line import (
    ENTRY_LINE,
    check_entry_line,
    diagnose_entry_line,
    is_valid_utf8,
    valid_date,
)
from sigbus.audit.errors import AuditError, ExportError
from sigbus.audit.export_format import (
    ExportHeader,
    ExportTrailer,
    parse_cosignature,
    parse_header,
    parse_trailer,
    raw_record,
)
from sigbus.audit.merkle import EMPTY_ROOT, RootAccumulator, new_leaf_hasher
from sigbus.audit.quarantine import QUARANTINE_CODE, Fault, named_quarantine

#: What entry 0's ``prev_leaf_hash`` must be, as the bytes found in the line.
GENESIS = GENESIS_PREV_HASH.encode()
#: Only a line holding this can be a quarantine entry (a cheap test before parsing).
_QUARANTINE_MARK = f'"{QUARANTINE_CODE}:'.encode()

KeySource = Literal["trusted", "declared in file"]


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
    #: (index, fault) of each record that is not a sound entry, each named by a
    #: later quarantine entry of the log (:mod:`audit.quarantine`).
    quarantined: tuple[tuple[int, Fault], ...] = ()

    def summary(self) -> str:
        witnesses = ", ".join(f"{c.witness} ({c.key_source} key)" for c in self.cosignatures)
        earlier = (
            f"; consistent with earlier checkpoints at sizes {list(self.earlier_checkpoints)}"
            if self.earlier_checkpoints
            else ""
        )
        quarantined = (
            "; quarantined records, each named by a later log entry: "
            + ", ".join(f"entry {index} ({fault.value})" for index, fault in self.quarantined)
            if self.quarantined
            else ""
        )
        return (
            f"OK: {self.entries} entries intact, root {base64.b64encode(self.root).decode()}, "
            f"checkpoint signed by {self.origin!r} ({self.log_key_source} key), "
            f"{len(self.cosignatures)} cosignature(s) verified"
            f"{': ' + witnesses if witnesses else ''}{earlier}{quarantined}"
        )

    def to_json(self) -> dict[str, Any]:
        """The report as JSON values (``sigbus audit verify --json``)."""
        return {
            "ok": True,
            "origin": self.origin,
            "entries": self.entries,
            "root": base64.b64encode(self.root).decode(),
            "log_key_source": self.log_key_source,
            "cosignatures": [
                {"witness": c.witness, "key_source": c.key_source, "timestamp": c.timestamp}
                for c in self.cosignatures
            ],
            "earlier_checkpoints": list(self.earlier_checkpoints),
            "quarantined": [
                {"index": index, "fault": fault.value} for index, fault in self.quarantined
            ],
        }


@dataclass(frozen=True)
class Preamble:
    """What is settled before the first entry: the header, the log key, earlier checkpoints."""

    header: ExportHeader
    log_key: Ed25519PublicKey
    key_source: KeySource
    earlier: tuple[Checkpoint, ...]

    @property
    def earlier_sizes(self) -> frozenset[int]:
        """Tree sizes at which the verifier must record the root of the prefix."""
        return frozenset(c.size for c in self.earlier)


def verify_checkpoint(note: str, origin: str, key: Ed25519PublicKey) -> Checkpoint:
    """The checkpoint in ``note``, signed by ``key`` under ``origin`` and naming that origin."""
    try:
        checkpoint = verify_note(note, origin, key)
    except AuditError as e:
        raise ExportError(f"checkpoint is not validly signed: {e}") from e
    if checkpoint.origin != origin:
        raise ExportError("checkpoint origin differs from the header origin")
    return checkpoint


def read_preamble(
    header: ExportHeader,
    *,
    trusted_log_key: Ed25519PublicKey | None,
    earlier_checkpoints: Sequence[str],
) -> Preamble:
    """Choose the log key and check the earlier checkpoints the caller holds.

    An earlier checkpoint larger than the export means the log was truncated
    or rolled back since; its root is compared with the prefix in :func:`finish`.
    """
    log_key = trusted_log_key if trusted_log_key is not None else header.log_public_key
    key_source: KeySource = "trusted" if trusted_log_key is not None else "declared in file"
    earlier = tuple(verify_checkpoint(note, header.origin, log_key) for note in earlier_checkpoints)
    for checkpoint in earlier:
        if checkpoint.size > header.entries:
            raise ExportError(
                f"the log already published a checkpoint of size {checkpoint.size}, "
                f"but the export holds {header.entries} entries (truncated or rolled back)"
            )
    return Preamble(header, log_key, key_source, earlier)


def check_trailer(line: bytes | None, preamble: Preamble) -> tuple[ExportTrailer, Checkpoint]:
    """Decode the trailer and verify its checkpoint's signature and origin."""
    trailer = parse_trailer(line, preamble.header.entries)
    checkpoint = verify_checkpoint(trailer.checkpoint, preamble.header.origin, preamble.log_key)
    return trailer, checkpoint


@dataclass
class _Candidate:
    """A line that is not a sound entry at its position: fine only if later quarantined."""

    index: int
    fault: Fault
    #: The error if no quarantine entry excuses it; None for a chain break, whose
    #: attribution depends on the next line (:func:`_attribute`).
    error: ExportError | None
    claimed: bytes = b""
    #: For a chain break: whether the next line was read, and its candidate if unsound.
    followed: bool = False
    after: _Candidate | None = None

    def failure(self, named: set[tuple[int, Fault]]) -> ExportError | None:
        """The error to raise for this candidate if unexcused (None: the root decides)."""
        if self.error is not None or not self.followed:
            return self.error
        return _attribute(self.index, self.after, named)


class _Chain:
    """Streams entry lines: fast canonical check, index, hash chain, Merkle root.

    The fast loop runs while every line is a sound entry. At the first line
    that is not, the rest runs in :meth:`_run_tolerant`, which treats each
    unsound record as a quarantine candidate (its leaf is its stored bytes)
    and, at the end, fails with the first candidate that no later quarantine
    entry names, attributed exactly as before quarantine existed.
    """

    def __init__(self, expected: int, earlier_sizes: frozenset[int]) -> None:
        self.expected = expected
        self.accumulator = RootAccumulator()
        self.roots_at: dict[int, bytes] = {}
        self._earlier_sizes = earlier_sizes
        self._before_penultimate: RootAccumulator | None = None
        self.last_leaf = b""
        self.pending_break: int | None = None  # index k whose prev_leaf_hash did not link
        self.claimed_prev = b""
        self.quarantined: tuple[tuple[int, Fault], ...] = ()

    def run(self, lines: Iterator[bytes]) -> None:
        accumulator, add = self.accumulator, self.accumulator.add
        expected, leaf_hasher = self.expected, new_leaf_hasher
        earlier, roots_at = self._earlier_sizes, self.roots_at
        prev_hex, last_leaf = GENESIS, b""
        fullmatch, date_ok = ENTRY_LINE.fullmatch, valid_date
        for index in range(expected):
            raw = next(lines, None)
            if raw is None:
                raise _truncated(index, expected)
            line = raw[:-1] if raw[-1:] == b"\n" else raw
            # Inlined audit.entry_line.check_entry_line: this loop is the hot path.
            match = fullmatch(line)
            if (
                match is None
                or not date_ok(match[1])
                or not (line.isascii() or is_valid_utf8(line))
                or match[2] != b"%d" % index
                or match[3] != prev_hex
            ):
                self.last_leaf = last_leaf
                self._run_tolerant(index, line, lines, prev_hex)
                return
            if index == expected - 2:
                self._before_penultimate = accumulator.copy()
            # RFC 9162 §2.1.1 leaf hash SHA-256(0x00 || line), without a concatenation.
            hasher = leaf_hasher()
            hasher.update(line)
            last_leaf = hasher.digest()
            prev_hex = last_leaf.hex().encode()
            add(last_leaf)
            if earlier and index + 1 in earlier:
                roots_at[index + 1] = accumulator.root()
        self.last_leaf = last_leaf

    def _run_tolerant(
        self, start: int, first_line: bytes, lines: Iterator[bytes], prev_hex: bytes
    ) -> None:
        """Lines ``start``.. (the first of them unsound): candidates, names, leaves, root."""
        candidates: list[_Candidate] = []
        named: set[tuple[int, Fault]] = set()
        waiting: _Candidate | None = None
        line = first_line
        for index in range(start, self.expected):
            if index > start:
                raw = next(lines, None)
                if raw is None:
                    self._fail(candidates, named, waiting, _truncated(index, self.expected))
                line = raw[:-1] if raw[-1:] == b"\n" else raw
            record, candidate, hard = _classify_line(index, line, prev_hex)
            if record is None:
                assert hard is not None
                self._collect_names(index + 1, lines, named)
                self._fail(candidates, named, waiting, hard)
            if waiting is not None:
                waiting.followed, waiting.after, waiting = True, candidate, None
            if candidate is not None:
                candidates.append(candidate)
                waiting = candidate if candidate.error is None else None
            elif _QUARANTINE_MARK in line:
                name = _quarantine_named(line, index)
                if name is not None:
                    named.add(name)
            if index == self.expected - 2:
                self._before_penultimate = self.accumulator.copy()
            hasher = new_leaf_hasher()
            hasher.update(record)
            self.last_leaf = hasher.digest()
            prev_hex = self.last_leaf.hex().encode()
            self.accumulator.add(self.last_leaf)
            if index + 1 in self._earlier_sizes:
                self.roots_at[index + 1] = self.accumulator.root()
        unexcused = [c for c in candidates if (c.index, c.fault) not in named]
        if not unexcused:
            self.quarantined = tuple((c.index, c.fault) for c in candidates)
            return
        failure = unexcused[0].failure(named)
        if failure is not None:
            raise failure
        # A chain break at the last entry (no later entry can name it): the
        # signed root decides which side was altered, in resolve_final_break.
        self.pending_break, self.claimed_prev = unexcused[0].index, unexcused[0].claimed

    def _collect_names(
        self, start: int, lines: Iterator[bytes], named: set[tuple[int, Fault]]
    ) -> None:
        """After a line that can be no record at all: read on only to learn which
        earlier candidates are named, so the error names the right line."""
        for index in range(start, self.expected):
            raw = next(lines, None)
            if raw is None:
                return
            line = raw[:-1] if raw[-1:] == b"\n" else raw
            if _QUARANTINE_MARK in line and check_entry_line(line) is not None:
                name = _quarantine_named(line, index)
                if name is not None:
                    named.add(name)

    @staticmethod
    def _fail(
        candidates: Sequence[_Candidate],
        named: set[tuple[int, Fault]],
        waiting: _Candidate | None,
        hard: ExportError,
    ) -> NoReturn:
        """Raise for a line that is no record: an earlier unexcused candidate comes first."""
        if waiting is not None:
            waiting.error = hard  # the strict check stops at the line after a break
        for candidate in candidates:
            failure = candidate.failure(named)
            if (candidate.index, candidate.fault) not in named and failure is not None:
                raise failure
        raise hard

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
                raise _altered(last - 1)
        raise _altered(last)


def _truncated(index: int, expected: int) -> ExportError:
    return ExportError(
        f"entry {index}: missing, the file ends after {index} of {expected} entries (truncated)",
        entry_index=index,
    )


def _altered(index: int) -> ExportError:
    return ExportError(
        f"entry {index}: altered (its hash no longer links the hash chain)",
        entry_index=index,
    )


def _classify_line(
    index: int, line: bytes, prev_hex: bytes
) -> tuple[bytes | None, _Candidate | None, ExportError | None]:
    """(stored record, candidate if unsound, error if no record at all) of line ``index``.

    The faults and their order are :func:`audit.quarantine.classify`'s, so the
    hub and the verifier name the same fault; the errors are those the
    verifier gave before quarantine existed.
    """
    match = check_entry_line(line)
    if match is not None:
        _, index_text, claimed = match.groups()
        if index_text != b"%d" % index:
            error = ExportError(
                f"entry {index}: line carries index {int(index_text)} "
                "(an entry was removed, duplicated or reordered)",
                entry_index=index,
            )
            return line, _Candidate(index, Fault.WRONG_INDEX, error), None
        if claimed != prev_hex:
            # Entry 0 must link to the genesis value; later, the next line decides.
            at_genesis = _altered(0) if index == 0 else None
            return line, _Candidate(index, Fault.CHAIN_BREAK, at_genesis, claimed), None
        return line, None, None
    try:
        record = raw_record(line)
    except ExportError as e:
        return None, None, ExportError(f"entry {index}: {e}", entry_index=index)
    if record is None:
        return (
            None,
            None,
            ExportError(f"entry {index}: {diagnose_entry_line(line)}", entry_index=index),
        )
    error = ExportError(
        f"entry {index}: a stored record that is not a log entry, "
        "and no later entry of the log quarantines it",
        entry_index=index,
    )
    return record, _Candidate(index, Fault.NOT_AN_ENTRY, error), None


def _attribute(index: int, after: _Candidate | None, named: set[tuple[int, Fault]]) -> ExportError:
    """Who was altered, given a break at ``index`` (k) and what line k+1 is.

    If k+1 links to k, entry k is unaltered and entry k-1 was changed; if k+1
    breaks too, entry k's own ``prev_leaf_hash`` (hence its hash) was. If k+1
    is unsound in another way and not quarantined, that is the first fault the
    strict check meets; if it is quarantined, it records no hash, so entry k
    is named.
    """
    if after is None:
        return _altered(index - 1)
    if after.fault is Fault.CHAIN_BREAK or (after.index, after.fault) in named:
        return _altered(index)
    assert after.error is not None
    return after.error


def _quarantine_named(line: bytes, index: int) -> tuple[int, Fault] | None:
    """(index, fault) a canonical entry line names as quarantined, if it is a
    quarantine entry naming an earlier record."""
    value = json.loads(line)
    name = named_quarantine(
        outcome=value["outcome"],
        sender=value["sender"],
        recipient=value["recipient"],
        reasons=value["reasons"],
    )
    return name if name is not None and name[0] < index else None


def _check_cosignatures(
    body: str,
    records: Sequence[object],
    trusted: Mapping[str, Ed25519PublicKey],
) -> tuple[CosignatureCheck, ...]:
    checks: list[CosignatureCheck] = []
    for position, raw in enumerate(records):
        record = parse_cosignature(position, raw)
        witness = record.witness
        source: KeySource = "trusted" if witness in trusted else "declared in file"
        key = trusted.get(witness, record.public_key)
        try:
            timestamp = verify_cosignature(body, record.line, witness, key)
        except AuditError as e:
            raise ExportError(f"cosignature {position} by {witness!r} is invalid: {e}") from e
        checks.append(CosignatureCheck(witness=witness, key_source=source, timestamp=timestamp))
    return tuple(checks)


def verify_export(
    lines: Iterable[bytes],
    *,
    trusted_log_key: Ed25519PublicKey | None = None,
    trusted_witness_keys: Mapping[str, Ed25519PublicKey] | None = None,
    earlier_checkpoints: Sequence[str] = (),
) -> VerifyReport:
    """Recompute and check everything in an export; raise :class:`ExportError` on the first fault.

    ``lines`` are the file's lines (e.g. a binary file object the caller
    opened). See the module docstring for what is checked.
    """
    iterator = iter(lines)
    preamble = read_preamble(
        parse_header(next(iterator, None)),
        trusted_log_key=trusted_log_key,
        earlier_checkpoints=earlier_checkpoints,
    )
    chain = _Chain(preamble.header.entries, preamble.earlier_sizes)
    chain.run(iterator)
    try:
        trailer, checkpoint = check_trailer(next(iterator, None), preamble)
    except ExportError:
        chain.resolve_final_break(None)
        raise
    chain.resolve_final_break(checkpoint.root)

    if next(iterator, None) is not None:
        raise ExportError("unexpected data after the checkpoint line")
    report = finish(
        preamble,
        trailer,
        checkpoint,
        root=chain.accumulator.root(),
        roots_at=chain.roots_at,
        trusted_witness_keys=trusted_witness_keys,
    )
    return dataclasses.replace(report, quarantined=chain.quarantined)


def finish(
    preamble: Preamble,
    trailer: ExportTrailer,
    checkpoint: Checkpoint,
    *,
    root: bytes,
    roots_at: Mapping[int, bytes],
    trusted_witness_keys: Mapping[str, Ed25519PublicKey] | None,
) -> VerifyReport:
    """The checks after the entries, given their recomputed ``root`` and prefix roots.

    ``roots_at`` maps each earlier checkpoint's size to the root of that many
    leading entries. Shared by the reference and the parallel verifier.
    """
    header = preamble.header
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
    for previous in preamble.earlier:
        prefix_root = roots_at.get(previous.size, EMPTY_ROOT)
        if previous.root != prefix_root:
            raise ExportError(
                f"fork: the earlier checkpoint of size {previous.size} does not match the "
                "export's first entries (history was rewritten)"
            )
    cosignatures = _check_cosignatures(
        note_body(trailer.checkpoint), trailer.cosignatures, trusted_witness_keys or {}
    )
    return VerifyReport(
        origin=header.origin,
        entries=header.entries,
        root=root,
        log_key_source=preamble.key_source,
        cosignatures=cosignatures,
        earlier_checkpoints=tuple(sorted(preamble.earlier_sizes)),
    )
