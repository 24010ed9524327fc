"""Disclosure-log benchmark: offline verification and durable append, each beside its baseline.

    python bench/audit_bench.py [--entries N] [--repeats R] [--append M] [--workers W]

Offline verification (``--entries``, default 1,000,000; 0 skips it): the
SHA-256 baseline (hashes/s on entry-sized input), the incremental Merkle
append rate, and the time to verify an N-entry export file offline, both with
the single-process reference verifier and with the parallel one
(:func:`sigbus.parallel_verify.verify_export_file`, W processes, default: the CPUs this
process may use).

Durable append (``--append``, default 5,000; 0 skips it): a real nats-server
(``EmbeddedNats``, ``sync_interval: always``) on loopback in a temporary
directory, secured as deployed (mutual TLS and the hub's nkey, from the dev
keys in ``keys/dev``); on a fresh ``SIGBUS_LOG`` stream each time, (a) the raw JetStream
publish rate of the same entry bytes to the log subject, sequential (one
publish awaited at a time, as the fenced writer must) and pipelined (up to
256 in flight), and (b) ``LogWriter.append`` with realistic ``EntryDraft``s
(opaque ids only), plus the ratio (b) / (a, sequential).

Every figure is the median over R repeats; the load average is printed
because other processes on the machine change the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from sigbus.audit.checkpoint import DEFAULT_ORIGIN, make_checkpoint_body, sign_note
from sigbus.audit.entry import GENESIS_PREV_HASH, ConsentRef, EntryOutcome, LogEntry
from sigbus.audit.export_format import write_export
from sigbus.audit.merkle import MerkleTree, root_from_leaf_hashes
from sigbus.broker.log_writer import LogWriter
from sigbus.broker.pipeline import EntryDraft
from sigbus.broker.setup import hub_setup
from sigbus.parallel_verify import verify_export_file
from sigbus.protocol.ids import MessageType
from sigbus.protocol.subjects import LOG_ENTRY_SUBJECT, LOG_STREAM
from sigbus.transport.bus import connect, ensure_streams
from sigbus.transport.keystore import DEV_KEYS_DIR
from sigbus.transport.natsserver import EmbeddedNats

# A realistic release entry (~700 bytes) with the varying fields as placeholders;
# tests/audit/test_entry_line.py shows such lines are canonical LogEntry encodings.
_TEMPLATE = (
    b'{"case_ref":"case-%06d","ciphertext_sha256":"%064x","consent_action":null,"consent_refs":'
    b'[{"consent_id":"consent-%06d","revision":1}],"consenter_role":null,'
    b'"decided_at":"2026-11-23T%02d:%02d:%02d.%06dZ","decision_id":"dec-%012d",'
    b'"index":%d,"ingress_seq":%d,"legal_basis":"consent","message_id":"msg-%016d",'
    b'"message_type":"referral","outcome":"release","prev_leaf_hash":"%s","reasons":[],'
    b'"recipient":"social","release_id":"rel-%012d","rule_ids":["rule-consent-share"],'
    b'"rules_hash":"' + b"cd" * 32 + b'","sender":"police","state_sha256":null,'
    b'"statutory":false,"subject_ref":"sref-%020d","version":3}'
)


def synthetic_entries(count: int) -> Iterator[bytes]:
    prev = b"0" * 64
    for index in range(count):
        seconds = index % 86_400
        line = _TEMPLATE % (
            index % 5000,
            index,
            index % 5000,
            seconds // 3600,
            seconds // 60 % 60,
            seconds % 60,
            index % 999_999 + 1,
            index,
            index,
            index + 7,
            index,
            prev,
            index,
            index % 100_000,
        )
        prev = hashlib.sha256(b"\x00" + line).hexdigest().encode()
        yield line


def median_seconds(action: Callable[[], object], repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def write_export_file(path: Path, entries: list[bytes]) -> None:
    key = Ed25519PrivateKey.generate()
    root = root_from_leaf_hashes(hashlib.sha256(b"\x00" + e).digest() for e in entries)
    note = sign_note(make_checkpoint_body(DEFAULT_ORIGIN, len(entries), root), DEFAULT_ORIGIN, key)
    with path.open("wb") as out:
        out.writelines(
            write_export(entries, note, [], log_public_key=key.public_key(), origin=DEFAULT_ORIGIN)
        )


def verification_section(count: int, repeats: int, workers: int | None) -> None:
    entries = list(synthetic_entries(count))
    entry_size = statistics.median(len(e) for e in entries[:1000])
    sample = entries[: min(count, 200_000)]
    sha256 = hashlib.sha256

    def hash_sample() -> None:
        for line in sample:
            sha256(line).digest()

    sha_rate = len(sample) / median_seconds(hash_sample, repeats)
    leaves = [sha256(b"\x00" + line).digest() for line in sample]
    append_rate = len(leaves) / median_seconds(lambda: MerkleTree(leaves), repeats)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "export.jsonl"
        write_export_file(path, entries)
        del entries
        size_mb = path.stat().st_size / 1e6
        # The entry checks are the cost that grows with the log; the trusted
        # form adds only a constant (one log and k witness signatures), so the
        # file is checked against itself here (trust=None).
        reference = verify_export_file(path, trust=None, workers=1)
        parallel = verify_export_file(path, trust=None, workers=workers)
        assert parallel == reference, "parallel and reference reports differ"
        reference_seconds = median_seconds(
            lambda: verify_export_file(path, trust=None, workers=1), repeats
        )
        parallel_seconds = median_seconds(
            lambda: verify_export_file(path, trust=None, workers=workers), repeats
        )

    used = workers if workers is not None else len(os.sched_getaffinity(0))
    print(f"entries: {count:,} (median entry {entry_size:.0f} bytes, file {size_mb:.0f} MB)")
    print(f"hashlib sha256 baseline:      {sha_rate:12,.0f} hashes/s ({entry_size:.0f}-byte input)")
    print(f"merkle append (incremental):  {append_rate:12,.0f} leaves/s")
    for label, seconds in (
        ("verify, reference (1 proc):", reference_seconds),
        (f"verify, parallel ({used} procs):", parallel_seconds),
    ):
        rate = count / seconds
        print(
            f"{label:30s}{seconds:8.2f} s = {rate:12,.0f} entries/s  "
            f"(rate / sha256 rate {rate / sha_rate:.3f})"
        )
    print("goal: verify 1,000,000 entries in < 5 s")


def bench_drafts(count: int) -> list[EntryDraft]:
    """Realistic release decisions: opaque ids and codes only, never personal data."""
    start = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    return [
        EntryDraft(
            decision_id=f"dec-{i:012d}",
            decided_at=start + timedelta(milliseconds=37 * i),
            ingress_seq=i + 1,
            message_id=f"msg-{i:016d}",
            message_type=MessageType.REFERRAL,
            sender="police",
            recipient="social",
            subject_ref=f"sref-{i % 977:020d}",
            case_ref=f"case-{i % 211:06d}",
            legal_basis="consent",
            statutory=False,
            consent_refs=(ConsentRef(consent_id=f"consent-{i % 211:06d}", revision=1),),
            rule_ids=("rule-consent-share",),
            rules_hash="cd" * 32,
            ciphertext_sha256=hashlib.sha256(b"%d" % i).hexdigest(),
            outcome=EntryOutcome.RELEASE,
            reasons=(),
            release_id=f"rel-{i:012d}",
        )
        for i in range(count)
    ]


def entry_payloads(drafts: list[EntryDraft]) -> list[bytes]:
    """The bytes LogWriter would publish for ``drafts`` (same size and shape)."""
    payloads, prev = [], GENESIS_PREV_HASH
    for index, draft in enumerate(drafts):
        data = LogEntry(index=index, prev_leaf_hash=prev, **vars(draft)).canonical_bytes()
        payloads.append(data)
        prev = hashlib.sha256(b"\x00" + data).hexdigest()
    return payloads


async def fresh_log_stream(js: JetStreamContext) -> None:
    """Delete the log stream and create it again, so every measurement starts empty."""
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(LOG_STREAM)
    await ensure_streams(js)
    info = await js.stream_info(LOG_STREAM)
    assert info.state.messages == 0


async def median_rate(
    js: JetStreamContext, count: int, repeats: int, run: Callable[[], Awaitable[None]]
) -> float:
    rates = []
    for _ in range(repeats):
        await fresh_log_stream(js)
        started = time.perf_counter()
        await run()
        rates.append(count / (time.perf_counter() - started))
        info = await js.stream_info(LOG_STREAM)
        assert info.state.messages == count, "not every publish was stored"
    return statistics.median(rates)


async def append_section(count: int, repeats: int) -> None:
    drafts = bench_drafts(count)
    payloads = entry_payloads(drafts)
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmbeddedNats(Path(tmp) / "nats", keys_dir=DEV_KEYS_DIR) as server,
    ):
        # Secured as deployed: mutual TLS plus the hub's nkey (dev keys, loopback).
        assert server.url.startswith(("nats://127.0.0.1:", "tls://127.0.0.1:")), server.url
        nc = await connect(server.url, name="audit-bench", creds=hub_setup(DEV_KEYS_DIR).creds)
        try:
            js = nc.jetstream()
            await ensure_streams(js)

            async def raw_sequential() -> None:
                for data in payloads:
                    await js.publish(LOG_ENTRY_SUBJECT, data, stream=LOG_STREAM)

            async def raw_pipelined(window: int = 256) -> None:
                for at in range(0, count, window):
                    await asyncio.gather(
                        *(
                            js.publish(LOG_ENTRY_SUBJECT, data, stream=LOG_STREAM)
                            for data in payloads[at : at + window]
                        )
                    )

            async def raw_pipelined_fenced(window: int = 256) -> None:
                # The same publishes with the log's headers: the fence and the msg id.
                for at in range(0, count, window):
                    await asyncio.gather(
                        *(
                            js.publish(
                                LOG_ENTRY_SUBJECT,
                                data,
                                stream=LOG_STREAM,
                                headers={
                                    "Nats-Expected-Last-Sequence": str(at + i),
                                    "Nats-Msg-Id": f"bench-{at + i}",
                                },
                            )
                            for i, data in enumerate(payloads[at : at + window])
                        )
                    )

            async def log_writer() -> None:
                writer = LogWriter(js)
                for draft in drafts:
                    await writer.append(draft)

            async def log_writer_batched(window: int = 256) -> None:
                # As the hub appends a round's entries: pipelined, fenced, chained.
                writer = LogWriter(js)
                for at in range(0, count, window):
                    await writer.append_batch(drafts[at : at + window])

            sequential = await median_rate(js, count, repeats, raw_sequential)
            pipelined = await median_rate(js, count, repeats, raw_pipelined)
            appended = await median_rate(js, count, repeats, log_writer)
            batched = await median_rate(js, count, repeats, log_writer_batched)
            fenced = await median_rate(js, count, repeats, raw_pipelined_fenced)
        finally:
            await nc.close()
    size = statistics.median(len(p) for p in payloads)
    print(
        f"durable append: {count:,} entries of ~{size:.0f} bytes, nats-server with "
        "sync_interval: always, loopback, mutual TLS + nkey, fresh stream per run"
    )
    print(f"raw JetStream publish, sequential:  {sequential:10,.0f} msgs/s")
    print(f"raw JetStream publish, pipelined:   {pipelined:10,.0f} msgs/s  (256 in flight)")
    print(f"LogWriter.append (fenced, chained): {appended:10,.0f} entries/s")
    print(f"LogWriter.append_batch (256):       {batched:10,.0f} entries/s")
    print(
        f"LogWriter / raw sequential:         {appended / sequential:10.2f}  (goal >= 0.50); "
        f"LogWriter / raw pipelined: {appended / pipelined:.2f}"
    )
    print(f"raw pipelined, fenced + msg id:     {fenced:10,.0f} msgs/s  (the log's headers)")
    print(
        f"append_batch / raw pipelined:       {batched / pipelined:10.2f}  (goal >= 0.80, "
        f"issue 11); append_batch / raw pipelined with the log's headers: {batched / fenced:.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--append", type=int, default=5_000)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    # asyncio logs "returning true from eof_received() has no effect when using ssl"
    # when the TLS connection closes: harmless, and it interleaves with the figures.
    logging.getLogger("asyncio").setLevel(logging.ERROR)
    print("load average at start: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    if args.entries:
        verification_section(args.entries, args.repeats, args.workers)
    if args.append:
        asyncio.run(append_section(args.append, args.repeats))
    print("load average at end:   {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
