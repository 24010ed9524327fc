"""The disclosure-log export format ``sigbus-log-export/v1``: writing lines and reading them back.

Format: JSON Lines, UTF-8, every line ends with "\\n".

1. Header, RFC 8785 JSON::

       {"entries":N,"format":"sigbus-log-export/v1","log_public_key":"<base64 raw Ed25519>",
        "origin":"<checkpoint origin>"}

2. N record lines in index order 0..N-1, one per record the log stream
   holds. A record that is the canonical encoding of a ``LogEntry`` is written
   as itself: *exactly* its RFC 8785 bytes. Any other record (one the hub
   quarantined, :mod:`audit.quarantine`; it may hold any bytes, newlines
   included) is written as a raw-record line, RFC 8785 JSON::

       {"raw_record":"<base64 of the stored bytes>"}

   The record's bytes (the line, or the decoded base64) are its RFC 9162 leaf
   data. A raw-record line never holds a canonical entry (each record has one
   line shape), and no entry line can be mistaken for one (an entry's first
   key is ``case_ref``).
3. A trailer (RFC 8785 JSON)::

       {"checkpoint":"<C2SP signed note>",
        "cosignatures":[{"line":"— <witness> <base64>\\n","public_key":"<base64>",
                         "witness":"<name>"}]}

   The checkpoint's size is N and its root is the Merkle root of the N
   entries; it is signed under the key name ``origin``.

This module only encodes and decodes lines; it opens no file. Checking that
an export is intact is :mod:`audit.verify` (and, for large files, the
parallel verifier in :mod:`sigbus.parallel_verify`). Parse errors are
:class:`ExportError` and name the line kind, never its content.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import rfc8785

from sigbus.audit.checkpoint import (
    PublicKey,
    load_public_key,
    note_body,
    public_key_bytes,
    verify_cosignature,
    verify_note,
)
from sigbus.audit.entry_line import check_entry_line
from sigbus.audit.errors import ExportError
from sigbus.audit.merkle import RootAccumulator, hash_leaf

EXPORT_FORMAT = "sigbus-log-export/v1"
_HEADER_KEYS = {"entries", "format", "log_public_key", "origin"}
_TRAILER_KEYS = {"checkpoint", "cosignatures"}
_COSIGNATURE_KEYS = {"line", "public_key", "witness"}
_RAW_PREFIX = b'{"raw_record":"'
_RAW_SUFFIX = b'"}'


@dataclass(frozen=True)
class CosignatureRecord:
    """A witness's cosignature as stored in an export."""

    witness: str
    public_key: PublicKey
    line: str


@dataclass(frozen=True)
class ExportHeader:
    """The header line: which log, under which key, and how many entry lines follow."""

    origin: str
    log_public_key: PublicKey
    entries: int


@dataclass(frozen=True)
class ExportTrailer:
    """The trailer line, with its cosignature records still undecoded.

    Records are decoded one at a time by :func:`parse_cosignature`, so that a
    verifier reports the first bad record whether it is malformed or wrongly
    signed.
    """

    checkpoint: str
    cosignatures: tuple[object, ...]


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
    log_public_key: PublicKey,
    origin: str,
) -> Iterator[bytes]:
    """Yield the lines (each ending in "\\n") of an export of ``entries``.

    ``entries`` are the stored records in index order (:func:`record_line`
    chooses each one's line shape); there must be
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
        accumulator.add(hash_leaf(entry))
        yield record_line(entry) + b"\n"
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


def record_line(record: bytes) -> bytes:
    """The export line (without "\\n") of one stored record: itself if a canonical entry."""
    if check_entry_line(record) is not None:
        return record
    return _RAW_PREFIX + base64.b64encode(record) + _RAW_SUFFIX


def raw_record(line: bytes) -> bytes | None:
    """The stored bytes of a raw-record line (without "\\n"); None if ``line`` is not one.

    :class:`ExportError` (no index: the caller knows it) if the line has the
    raw-record shape but is not the one encoding :func:`record_line` writes.
    """
    if not (line.startswith(_RAW_PREFIX) and line.endswith(_RAW_SUFFIX)):
        return None
    text = line[len(_RAW_PREFIX) : len(line) - len(_RAW_SUFFIX)]
    try:
        record = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ExportError("raw record is not valid base64") from e
    if base64.b64encode(record) != text:
        raise ExportError("raw record is not in canonical base64")
    if check_entry_line(record) is not None:
        raise ExportError("raw record holds a canonical entry (it must be written as itself)")
    return record


def leaf_data(line: bytes) -> bytes:
    """The RFC 9162 leaf data of a record line (without "\\n"), unverified."""
    record = raw_record(line) if line.startswith(_RAW_PREFIX) else None
    return line if record is None else record


def strip_newline(line: bytes) -> bytes:
    """``line`` without its terminating "\\n" (a last line may lack one)."""
    return line[:-1] if line[-1:] == b"\n" else line


def _decode_key(text: object, what: str) -> PublicKey:
    if not isinstance(text, str):
        raise ExportError(f"{what} is not a base64 string")
    try:
        return load_public_key(base64.b64decode(text, validate=True))
    except (binascii.Error, ValueError) as e:
        raise ExportError(f"{what} is not a base64 raw Ed25519 or hybrid public key") from e


def _parse_json_object(line: bytes, keys: set[str], what: str) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ExportError(f"{what} is not valid JSON") from e
    if not isinstance(value, dict) or set(value) != keys:
        raise ExportError(f"{what} must be an object with exactly the keys {sorted(keys)}")
    # One encoding per value (RFC 8785), as for entries: a file that verifies
    # is byte for byte the one written, so no byte can change unnoticed.
    try:
        canonical = _json_line(value)
    except (rfc8785.CanonicalizationError, ValueError) as e:
        raise ExportError(f"{what} cannot be put in canonical form (RFC 8785)") from e
    if line != canonical:
        raise ExportError(f"{what} is not in canonical form (RFC 8785), or lacks its newline")
    return value


def parse_header(line: bytes | None) -> ExportHeader:
    """Decode the header line (None: the file has no line at all)."""
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
    return ExportHeader(
        origin, _decode_key(header["log_public_key"], "header log_public_key"), entries
    )


def parse_trailer(line: bytes | None, expected: int) -> ExportTrailer:
    """Decode the line after the ``expected`` entries (None: the file ended before it).

    An entry line where the trailer belongs is reported as an extra entry
    (index ``expected``) rather than as a malformed trailer: that is what it is.
    """
    if line is None:
        raise ExportError("the checkpoint line is missing (truncated)")
    stripped = strip_newline(line)
    if check_entry_line(stripped) is not None or _is_raw_shape(stripped):
        raise ExportError(
            f"entry {expected}: unexpected extra entry after the {expected} the header announces",
            entry_index=expected,
        )
    trailer = _parse_json_object(line, _TRAILER_KEYS, "checkpoint line")
    checkpoint, cosignatures = trailer["checkpoint"], trailer["cosignatures"]
    if not isinstance(checkpoint, str) or not isinstance(cosignatures, list):
        raise ExportError("checkpoint line has the wrong types")
    return ExportTrailer(checkpoint, tuple(cosignatures))


def _is_raw_shape(line: bytes) -> bool:
    return line.startswith(_RAW_PREFIX) and line.endswith(_RAW_SUFFIX)


def parse_cosignature(position: int, record: object) -> CosignatureRecord:
    """Decode trailer cosignature number ``position`` (its key as the file declares it)."""
    if not isinstance(record, dict) or set(record) != _COSIGNATURE_KEYS:
        raise ExportError(f"cosignature {position} is malformed")
    witness, line = record["witness"], record["line"]
    if not isinstance(witness, str) or not isinstance(line, str):
        raise ExportError(f"cosignature {position} is malformed")
    declared = _decode_key(record["public_key"], f"cosignature {position} public_key")
    return CosignatureRecord(witness=witness, public_key=declared, line=line)


def read_entry_lines(lines: Iterable[bytes]) -> Iterator[bytes]:
    """The leaf data of each record of an export, header and trailer skipped, unverified.

    That is each entry line without its "\\n", and a raw-record line's stored
    bytes (:func:`leaf_data`); :func:`check_entry_line` tells entries apart.
    """
    iterator = iter(lines)
    header = parse_header(next(iterator, None))
    for _ in range(header.entries):
        raw = next(iterator, None)
        if raw is None:
            return
        yield leaf_data(strip_newline(raw))
