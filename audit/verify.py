"""The reference verifier of a ``sigbus-log-export/v1`` export: lines in, a report or an error out.

What :func:`verify_export` checks, with no server and no secret key (the
format is :mod:`audit.export_format`):

- per entry (fast path, see :mod:`audit.entry_line`): the line is the
  canonical RFC 8785 encoding of a schema-valid ``LogEntry`` (key set and
  order, value types, enumerations, string escapes, integer range, calendar
  date, UTF-8); its ``index`` is its position; its ``prev_leaf_hash`` is the
  leaf hash of the line before (``"0" * 64`` for entry 0); its leaf hash is
  folded into the Merkle root. Entries are never parsed into Python objects.
- the header: format, origin, and N equal to the checkpoint size (the key
  it declares is used only by the self-consistency check);
- the checkpoint: its signature under one of the hub's log keys taken *by
  name* from the signed directory the caller verified (:mod:`audit.trust`),
  its origin, size and root against the recomputed tree;
- the cosignatures: each counts only if it is by a witness the directory
  names, verifies under that agency's directory key (never the key the file
  declares) within the key's validity, and is the first by that witness; fewer
  than the quorum fails the verification;
- optionally, earlier checkpoints the caller already holds: each must be
  signed by a trusted log key and have the root of the export's first
  ``size`` entries (RFC 9162 §2.1.4), otherwise the log has forked or been
  rewritten since.

With ``trust=None`` the same checks run against the keys the file declares
and the verdict is ``self-consistent-only``: anyone can produce such a file
(:mod:`audit.verify_report`).

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

import dataclasses
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from sigbus.audit.checkpoint import (
    Checkpoint,
    PublicKey,
    note_body,
    parse_checkpoint_body,
    public_key_bytes,
    verify_cosignature,
    verify_note,
)
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
    CosignatureRecord,
    ExportHeader,
    ExportTrailer,
    parse_cosignature,
    parse_header,
    parse_trailer,
    raw_record,
)
from sigbus.audit.merkle import EMPTY_ROOT, RootAccumulator, new_leaf_hasher
from sigbus.audit.quarantine import QUARANTINE_CODE, Fault, named_quarantine
from sigbus.audit.trust import TrustAnchors, TrustedWitness, TrustError
from sigbus.audit.verify_report import (
    SELF_CONSISTENT_ONLY,
    VERIFIED,
    CosignatureCheck,
    RejectedCosignature,
    TrustFacts,
    VerifyReport,
)

#: What entry 0's ``prev_leaf_hash`` must be, as the bytes found in the line.
GENESIS = GENESIS_PREV_HASH.encode()
#: Only a line holding this can be a quarantine entry (a cheap test before parsing).
_QUARANTINE_MARK = f'"{QUARANTINE_CODE}:'.encode()


@dataclass(frozen=True)
class Preamble:
    """What is settled before the first entry: the header, the log keys, earlier checkpoints.

    ``trust`` None is the self-consistency check: the only log key is the one
    the header declares (:data:`SELF_CONSISTENT_ONLY`).
    """

    header: ExportHeader
    trust: TrustAnchors | None
    earlier: tuple[Checkpoint, ...]

    @property
    def earlier_sizes(self) -> frozenset[int]:
        """Tree sizes at which the verifier must record the root of the prefix."""
        return frozenset(c.size for c in self.earlier)

    @property
    def log_keys(self) -> tuple[tuple[str | None, PublicKey], ...]:
        """(key id, key) of each key that may sign the checkpoints: the directory's, by name."""
        if self.trust is None:
            return ((None, self.header.log_public_key),)
        return tuple((k.key_id, k.public_key) for k in self.trust.log_keys)


def verify_checkpoint(
    note: str, origin: str, keys: Sequence[tuple[str | None, PublicKey]]
) -> tuple[Checkpoint, str | None]:
    """The checkpoint in ``note`` and the id of the key that signed it under ``origin``."""
    failure: AuditError | None = None
    for key_id, key in keys:
        try:
            checkpoint = verify_note(note, origin, key)
        except AuditError as e:
            failure = e
            continue
        if checkpoint.origin != origin:
            raise ExportError("checkpoint origin differs from the header origin")
        return checkpoint, key_id
    trusted = keys[0][0] is not None
    signer = "a hub log key in the directory" if trusted else "the log key the file declares"
    raise ExportError(f"checkpoint is not validly signed by {signer}: {failure}") from failure


def read_preamble(
    header: ExportHeader,
    *,
    trust: TrustAnchors | None,
    earlier_checkpoints: Sequence[str],
) -> Preamble:
    """Check the earlier checkpoints the caller holds against the log keys.

    An earlier checkpoint larger than the export means the log was truncated
    or rolled back since; its root is compared with the prefix in :func:`finish`.
    """
    if trust is None and earlier_checkpoints:
        # An earlier checkpoint is only evidence if its signer is trusted.
        raise TrustError("earlier checkpoints need the trusted inputs (--directory and --root)")
    preamble = Preamble(header, trust, ())
    declared = public_key_bytes(header.log_public_key)
    if trust is not None and all(public_key_bytes(key) != declared for _, key in preamble.log_keys):
        # Unused when trusted, but a file that verifies must be the one the hub wrote.
        raise ExportError("the header declares a log key that is not the hub's in the directory")
    earlier = tuple(
        _earlier_checkpoint(position, note, preamble)
        for position, note in enumerate(earlier_checkpoints)
    )
    for checkpoint in earlier:
        if checkpoint.size > header.entries:
            raise ExportError(
                f"the log already published a checkpoint of size {checkpoint.size}, "
                f"but the export holds {header.entries} entries (truncated or rolled back)"
            )
    return dataclasses.replace(preamble, earlier=earlier)


def _earlier_checkpoint(position: int, note: str, preamble: Preamble) -> Checkpoint:
    try:
        return verify_checkpoint(note, preamble.header.origin, preamble.log_keys)[0]
    except ExportError as e:
        raise ExportError(f"earlier checkpoint {position}: {e}") from e


@dataclass(frozen=True)
class SignedTrailer:
    """The trailer, its checkpoint, and the id of the log key that signed it."""

    trailer: ExportTrailer
    checkpoint: Checkpoint
    log_key_id: str | None


def check_trailer(line: bytes | None, preamble: Preamble) -> SignedTrailer:
    """Decode the trailer and verify its checkpoint's signature and origin."""
    trailer = parse_trailer(line, preamble.header.entries)
    checkpoint, key_id = verify_checkpoint(
        trailer.checkpoint, preamble.header.origin, preamble.log_keys
    )
    return SignedTrailer(trailer, checkpoint, key_id)


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


def _self_declared_cosignatures(
    body: str, records: Sequence[object]
) -> tuple[CosignatureCheck, ...]:
    """Self-consistency only: every cosignature must verify under the key it declares."""
    checks: list[CosignatureCheck] = []
    for position, raw in enumerate(records):
        record = parse_cosignature(position, raw)
        try:
            timestamp = verify_cosignature(body, record.line, record.witness, record.public_key)
        except AuditError as e:
            raise ExportError(
                f"cosignature {position} by {record.witness!r} is invalid: {e}"
            ) from e
        checks.append(CosignatureCheck(record.witness, timestamp, record.line))
    return tuple(checks)


def _trusted_cosignature(
    body: str, record: CosignatureRecord, witness: TrustedWitness
) -> tuple[CosignatureCheck | None, str]:
    """The cosignature verified under one of the witness's directory keys, or why not.

    The key the file declares is never used: C2SP tlog-cosignature names the
    key by its key hash, which we match against the directory's keys only.
    """
    for key in witness.keys:
        try:
            timestamp = verify_cosignature(body, record.line, record.witness, key.public_key)
        except AuditError:
            continue
        if public_key_bytes(record.public_key) != public_key_bytes(key.public_key):
            return None, f"declares a key other than its directory key {key.key_id}"
        if not key.valid_at_unix(timestamp):
            return None, f"made at a time outside the validity of key {key.key_id}"
        check = CosignatureCheck(record.witness, timestamp, record.line, witness.agency, key.key_id)
        return check, ""
    return None, f"does not verify under any unrevoked signing key of {witness.agency}"


def _quorum_cosignatures(
    body: str, records: Sequence[object], trust: TrustAnchors
) -> tuple[tuple[CosignatureCheck, ...], TrustFacts]:
    """The cosignatures that count: distinct trusted witnesses under their directory keys."""
    counted: dict[str, CosignatureCheck] = {}
    rejected: list[RejectedCosignature] = []
    for position, raw in enumerate(records):
        record = parse_cosignature(position, raw)
        witness = trust.witnesses.get(record.witness)
        if witness is None:
            reason = "not a witness in the directory"
        elif record.witness in counted:
            reason = "a second cosignature by a witness already counted"
        else:
            check, reason = _trusted_cosignature(body, record, witness)
            if check is not None:
                counted[record.witness] = check
                continue
        rejected.append(RejectedCosignature(position, record.witness, reason))
    missing = tuple(
        witness.agency for name, witness in trust.witnesses.items() if name not in counted
    )
    facts = TrustFacts(
        root_key_id=trust.root_key_id,
        directory_serial=trust.directory_serial,
        log_key_id="",
        quorum=trust.quorum,
        witnesses=len(trust.witnesses),
        missing=missing,
        rejected=tuple(rejected),
    )
    return tuple(counted.values()), facts


def _require_quorum(checks: Sequence[CosignatureCheck], facts: TrustFacts, size: int) -> None:
    if len(checks) >= facts.quorum:
        return
    not_counted = "; ".join(f"{r.witness}: {r.reason}" for r in facts.rejected) or "none"
    raise ExportError(
        f"witness quorum not met: {len(checks)} of the {facts.quorum} required distinct "
        f"trusted witnesses cosigned the checkpoint of size {size} "
        f"(counted: {', '.join(c.agency or c.witness for c in checks) or 'none'}; "
        f"never cosigned: {', '.join(facts.missing) or 'none'}; not counted: {not_counted})"
    )


def quorum_cosigned(
    body: str, records: Sequence[object], trust: TrustAnchors
) -> tuple[CosignatureCheck, ...]:
    """The distinct trusted witnesses' cosignatures of ``body`` (trailer-shaped records);
    raises :class:`ExportError` when fewer than the quorum count (also for an extract)."""
    checks, facts = _quorum_cosignatures(body, records, trust)
    _require_quorum(checks, facts, parse_checkpoint_body(body).size)
    return checks


def verify_export(
    lines: Iterable[bytes],
    *,
    trust: TrustAnchors | None,
    earlier_checkpoints: Sequence[str] = (),
) -> VerifyReport:
    """Recompute and check everything in an export; raise :class:`ExportError` on the first fault.

    ``lines`` are the file's lines (e.g. a binary file object the caller
    opened). ``trust`` None checks the file only against itself
    (:data:`SELF_CONSISTENT_ONLY`): say so explicitly, it proves nothing about
    authenticity. See the module docstring for what is checked.
    """
    iterator = iter(lines)
    preamble = read_preamble(
        parse_header(next(iterator, None)),
        trust=trust,
        earlier_checkpoints=earlier_checkpoints,
    )
    chain = _Chain(preamble.header.entries, preamble.earlier_sizes)
    chain.run(iterator)
    try:
        signed = check_trailer(next(iterator, None), preamble)
    except ExportError:
        chain.resolve_final_break(None)
        raise
    chain.resolve_final_break(signed.checkpoint.root)

    if next(iterator, None) is not None:
        raise ExportError("unexpected data after the checkpoint line")
    report = finish(preamble, signed, root=chain.accumulator.root(), roots_at=chain.roots_at)
    return dataclasses.replace(report, quarantined=chain.quarantined)


def finish(
    preamble: Preamble,
    signed: SignedTrailer,
    *,
    root: bytes,
    roots_at: Mapping[int, bytes],
) -> VerifyReport:
    """The checks after the entries, given their recomputed ``root`` and prefix roots.

    ``roots_at`` maps each earlier checkpoint's size to the root of that many
    leading entries. Shared by the reference and the parallel verifier.
    """
    header, checkpoint = preamble.header, signed.checkpoint
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
        # RFC 9162 §2.1.4: the earlier tree must be a prefix of this one. With
        # every leaf at hand we recompute the prefix root itself, which is what
        # a consistency proof would establish without the leaves.
        prefix_root = roots_at.get(previous.size, EMPTY_ROOT)
        if previous.root != prefix_root:
            raise ExportError(
                f"fork: the earlier checkpoint of size {previous.size} does not match the "
                "export's first entries (history was rewritten)"
            )
    body = note_body(signed.trailer.checkpoint)
    report = VerifyReport(
        verdict=SELF_CONSISTENT_ONLY,
        origin=header.origin,
        entries=header.entries,
        root=root,
        checkpoint_note=signed.trailer.checkpoint,
        earlier_checkpoints=tuple(sorted(preamble.earlier_sizes)),
    )
    if preamble.trust is None:
        cosignatures = _self_declared_cosignatures(body, signed.trailer.cosignatures)
        return dataclasses.replace(report, cosignatures=cosignatures)
    checks, facts = _quorum_cosignatures(body, signed.trailer.cosignatures, preamble.trust)
    _require_quorum(checks, facts, checkpoint.size)
    assert signed.log_key_id is not None
    return dataclasses.replace(
        report,
        verdict=VERIFIED,
        cosignatures=checks,
        trust=dataclasses.replace(facts, log_key_id=signed.log_key_id),
    )
