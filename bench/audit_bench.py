"""Disclosure-log benchmark: offline export verification vs hashlib's SHA-256, same run.

    python bench/audit_bench.py [--entries N] [--repeats R]

Prints the SHA-256 baseline (hashes/s on entry-sized input), the incremental
Merkle append rate, and the time and rate to verify an N-entry export file
offline, plus verify-rate / sha256-rate. Figures are medians over R repeats.
(The JetStream append comparison lives with the broker benchmarks.)
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit.checkpoint import DEFAULT_ORIGIN, make_checkpoint_body, sign_note
from audit.export import verify_export, verify_export_file, write_export
from audit.merkle import MerkleTree, root_from_leaf_hashes

# A realistic release entry (~700 bytes) with the varying fields as placeholders;
# tests/audit/test_entry_line.py shows such lines are canonical LogEntry encodings.
_TEMPLATE = (
    b'{"case_ref":"case-%06d","ciphertext_sha256":"%064x","consent_refs":'
    b'[{"consent_id":"consent-%06d","revision":1}],'
    b'"decided_at":"2026-11-23T%02d:%02d:%02d.%06dZ","decision_id":"dec-%012d",'
    b'"index":%d,"ingress_seq":%d,"legal_basis":"consent","message_id":"msg-%016d",'
    b'"message_type":"referral","outcome":"release","prev_leaf_hash":"%s","reasons":[],'
    b'"recipient":"social","release_id":"rel-%012d","rule_ids":["rule-consent-share"],'
    b'"rules_hash":"' + b"cd" * 32 + b'","sender":"police","statutory":false,'
    b'"subject_id":"subj-%020d","version":1}'
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    count, repeats = args.entries, args.repeats

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

        def verify_file() -> None:
            with path.open("rb") as lines:
                verify_export(lines)

        verify_seconds = median_seconds(verify_file, repeats)
    verify_rate = count / verify_seconds

    print(f"entries: {count:,} (median entry {entry_size:.0f} bytes, file {size_mb:.0f} MB)")
    print(f"hashlib sha256 baseline:      {sha_rate:12,.0f} hashes/s ({entry_size:.0f}-byte input)")
    print(f"merkle append (incremental):  {append_rate:12,.0f} leaves/s")
    print(
        f"offline export verification:  {verify_seconds:8.2f} s for {count:,} entries "
        f"= {verify_rate:,.0f} entries/s  (goal: < 5 s for 1,000,000)"
    )
    print(f"verify rate / sha256 rate:    {verify_rate / sha_rate:8.3f}")


if __name__ == "__main__":
    main()
