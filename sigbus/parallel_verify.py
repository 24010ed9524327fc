"""Verify an export *file*, across several processes when it is large.

The pure package ``audit`` does no I/O; this module is the part that opens
files and starts processes. :func:`verify_export_file` gives exactly the
result of the reference :func:`audit.verify.verify_export` over the file's
lines: the same report for an intact file, the same :class:`ExportError`
(message and first bad entry) otherwise.

How (files of :data:`PARALLEL_MIN_ENTRIES` entries or more, more than one
worker): the header and the trailer (the last line) are read and checked here
with the reference's own functions; the entry lines between them are split by
byte range into one chunk per worker, each cut just after a newline; each
worker reads its chunk in blocks of whole lines and checks them with an
:class:`audit.verify_chunks.ChunkScanner`; the parent joins the chunks into the
RFC 9162 root (:func:`audit.verify_chunks.join_chunks`, over the Merkle code
of :mod:`audit.merkle`) and runs the reference's checks after the entries.
The fast path only ever accepts: on any fault at all it falls back to the
single-process reference over the file, whose error is the one raised.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import BinaryIO

from sigbus.audit.errors import AuditError, ExportError
from sigbus.audit.export_format import parse_header
from sigbus.audit.trust import TrustAnchors
from sigbus.audit.verify import (
    check_trailer,
    finish,
    read_preamble,
    verify_export,
)
from sigbus.audit.verify_chunks import ChunkResult, ChunkScanner, join_chunks
from sigbus.audit.verify_report import VerifyReport

#: Below this many entries the reference path is used (process start-up is not free).
PARALLEL_MIN_ENTRIES = 50_000
#: A checkpoint line longer than 4 MiB: use the reference.
_TRAILER_SEARCH_LIMIT = 1 << 22
#: A worker reads its chunk in blocks of about this size, so memory is reused
#: rather than touched afresh.
_BLOCK_BYTES = 1 << 23


def _scan_chunk(path: str, start: int, end: int, sizes: frozenset[int]) -> ChunkResult | None:
    """Check the entry lines in bytes [start, end) of ``path`` (runs in a worker process).

    Only cuts the chunk into blocks of whole lines (a line longer than a block
    is read on until its newline); the checks are :class:`ChunkScanner`'s.
    """
    scanner = ChunkScanner()
    pending = b""
    with open(path, "rb") as file:
        file.seek(start)
        remaining = end - start
        while remaining > 0:
            data = file.read(min(_BLOCK_BYTES, remaining))
            if not data:
                return None
            remaining -= len(data)
            buf = pending + data if pending else data
            if remaining:
                cut = buf.rfind(b"\n") + 1
                if not cut:  # a line longer than a block: read on
                    pending = buf
                    continue
                pending = buf[cut:]
            elif not buf.endswith(b"\n"):
                return None
            else:
                cut, pending = len(buf), b""
            if not scanner.feed(buf, cut):
                return None
    return scanner.result(sizes)


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
    trust: TrustAnchors | None,
    earlier_checkpoints: Sequence[str],
) -> VerifyReport | None:
    """The fast path: a report when the file is intact, None on anything else."""
    try:
        with path.open("rb") as file:
            header = parse_header(file.readline())
            if header.entries < PARALLEL_MIN_ENTRIES:
                return None
            preamble = read_preamble(header, trust=trust, earlier_checkpoints=earlier_checkpoints)
            body_start, size = file.tell(), os.fstat(file.fileno()).st_size
            trailer_at = _trailer_start(file, size, body_start)
            if trailer_at is None or trailer_at <= body_start:
                return None
            file.seek(trailer_at)
            trailer_line = file.read()
            bounds = _chunk_bounds(file, body_start, trailer_at, workers)
        signed = check_trailer(trailer_line, preamble)
    except (AuditError, OSError):
        return None

    joined = join_chunks(_run_chunks(str(path), bounds, preamble.earlier_sizes), header.entries)
    if joined is None:
        return None
    root, roots_at = joined
    try:
        return finish(preamble, signed, root=root, roots_at=roots_at)
    except ExportError:
        return None


def _run_chunks(
    path: str, bounds: list[tuple[int, int]], sizes: frozenset[int]
) -> list[ChunkResult | None]:
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
    trust: TrustAnchors | None,
    earlier_checkpoints: Sequence[str] = (),
    workers: int | None = None,
) -> VerifyReport:
    """:func:`audit.verify.verify_export` for a file, across ``workers`` processes when large.

    Same checks and same result as the reference: an intact file gives the same
    report; on any fault the reference re-runs (single process) and raises its
    :class:`ExportError`, naming the same first bad entry.
    """
    workers = _default_workers() if workers is None else workers
    if workers > 1:
        report = _verify_parallel(path, workers, trust, earlier_checkpoints)
        if report is not None:
            return report
    with path.open("rb") as lines:
        return verify_export(lines, trust=trust, earlier_checkpoints=earlier_checkpoints)
