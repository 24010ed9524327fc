"""`sigbus bench --startup-sizes`: hub start-up time and peak RSS by log size (issue 11).

A generator fills the log of an embedded server (secured and fsynced as
deployed) with sound, chained entries: first one ``case_opened`` hub record per
case, each bound to its sealed state record (as the hub writes them), then
release decisions. Entries are a minute apart, so a log of 1,000,000 spans
about two years and the duplicate window (seven days) holds about 10,000 of
them. The generator then takes the hub's snapshot with the hub's own code
(``LogWriter.restore`` over the generated tree, ``SnapshotStore.write``), as a
hub would have on its clean stop.

Each measurement is a fresh process (``python -m sigbus.bench_startup``) that
starts the production hub (``hub_setup(keys).broker(url).start()``) and reports
the wall time of ``start()`` and its peak RSS (``ru_maxrss``, the interpreter
and its imports included). Publishing a million entries one fsync at a time
would take long, so the generator pipelines them (a window of appends in
flight, each fenced); the start-up itself runs against the same server.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sigbus.audit.checkpoint import DEFAULT_ORIGIN
from sigbus.audit.entry import GENESIS_PREV_HASH, EntryOutcome, LogEntry, leaf_hash
from sigbus.audit.merkle import MerkleTree
from sigbus.broker.log_writer import DEFAULT_KEEP_LAST, DEFAULT_WINDOW, LogWriter
from sigbus.broker.pipeline import EntryDraft
from sigbus.broker.setup import hub_setup
from sigbus.broker.snapshot import SnapshotStore
from sigbus.broker.state import CaseOpenedChange
from sigbus.broker.state_store import StateStore, seal_change
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import ConsentRef
from sigbus.protocol.subjects import LOG_ENTRY_SUBJECT, LOG_STREAM, STATE_STREAM, STATE_SUBJECT
from sigbus.transport.bus import connect, ensure_streams
from sigbus.transport.natsserver import EmbeddedNats

START = datetime(2024, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=1)
CASES = 10_000
_WINDOW = 512


def _draft(i: int, cases: int) -> EntryDraft:
    """Entry ``i``: a case opened (its state record is :func:`_case_record`) or a release."""
    at = START + STEP * i
    if i < cases:
        return EntryDraft(
                decision_id=f"dec-{i:012d}",
                decided_at=at,
                ingress_seq=i + 1,
                message_id=f"msg-{i:016d}",
                message_type=MessageType.CASE_OPENED,
                sender="social",
                recipient="hub",
                case_ref=f"case-{i:08d}",
                rules_hash="cd" * 32,
                ciphertext_sha256=hashlib.sha256(b"%d" % i).hexdigest(),
                outcome=EntryOutcome.RECORDED,
                reasons=(),
            )
    case = i % cases
    return EntryDraft(
            decision_id=f"dec-{i:012d}",
            decided_at=at,
            ingress_seq=i + 1,
            message_id=f"msg-{i:016d}",
            message_type=MessageType.COMMITMENT_STATUS,
            sender="police",
            recipient="social",
            subject_ref=f"sref-{case:020d}",
            case_ref=f"case-{case:08d}",
            legal_basis="consent",
            statutory=False,
            consent_refs=(ConsentRef(consent_id=f"consent-{case:06d}", revision=1),),
            rule_ids=("rule-consent-share",),
            rules_hash="cd" * 32,
            ciphertext_sha256=hashlib.sha256(b"%d" % i).hexdigest(),
            outcome=EntryOutcome.RELEASE,
            reasons=(),
            release_id=f"rel-{i:012d}",
        )


def _case_record(i: int, state_key: bytes) -> tuple[str, bytes]:
    change = CaseOpenedChange(
        message_id=f"msg-{i:016d}",
        case_ref=f"case-{i:08d}",
        subject_id=f"subj-{i:020d}",
        date_of_birth=date(2010, 1, 1) + timedelta(days=i % 2000),  # fictitious
        guardians_with_custody=("vh-1", "vh-2"),
        parties=("police", "school", "social"),
        opened_at=START + STEP * i,
    )
    return change.message_id, seal_change(change, state_key)


def _release_template(cases: int) -> str:
    """A release entry's canonical bytes as a %-template (built from a real entry).

    LogEntry's validation costs ~0.35 ms an entry, six minutes for a million: the
    filler formats the rest from this, and checks every 4,096th against LogEntry.
    """
    i = cases * 2 + 1
    draft = _draft(i, cases)
    fields = {k: getattr(draft, k) for k in draft.__dataclass_fields__}
    fields["reasons"] = draft.reason_codes()
    text = LogEntry(index=i, prev_leaf_hash=GENESIS_PREV_HASH, **fields).canonical_bytes().decode()
    case = i % cases
    at = _at(i)
    for value, slot in (
        (f'"case_ref":"case-{case:08d}"', '"case_ref":"case-%(case)08d"'),
        (f'"consent_id":"consent-{case:06d}"', '"consent_id":"consent-%(case)06d"'),
        (draft.ciphertext_sha256 or "", "%(ct)s"),
        (f'"decided_at":"{at}"', '"decided_at":"%(at)s"'),
        (f"dec-{i:012d}", "dec-%(i)012d"),
        (f'"index":{i},', '"index":%(i)d,'),
        (f'"ingress_seq":{i + 1},', '"ingress_seq":%(seq)d,'),
        (f"msg-{i:016d}", "msg-%(i)016d"),
        (GENESIS_PREV_HASH, "%(prev)s"),
        (f"rel-{i:012d}", "rel-%(i)012d"),
        (f"sref-{case:020d}", "sref-%(case)020d"),
    ):
        if text.count(value) != 1:
            raise ValueError(f"release template: {value!r} is not unique")
        text = text.replace(value, slot)
    return text


def _at(i: int) -> str:
    return (START + STEP * i).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class LogFiller:
    """Appends generated entries to the log (and the case records to the state)."""

    state_key: bytes
    cases: int = CASES
    leaves: list[bytes] = field(default_factory=list)
    prev: str = GENESIS_PREV_HASH
    _template: str = ""

    def __post_init__(self) -> None:
        self._template = _release_template(self.cases)

    def _release_bytes(self, i: int) -> bytes:
        values = {
            "case": i % self.cases,
            "ct": hashlib.sha256(b"%d" % i).hexdigest(),
            "at": _at(i),
            "i": i,
            "seq": i + 1,
            "prev": self.prev,
        }
        return (self._template % values).encode()

    async def fill_to(self, js: Any, size: int) -> None:
        while len(self.leaves) < size:
            first = len(self.leaves)
            batch: list[tuple[bytes, tuple[str, bytes] | None]] = []
            for i in range(first, min(first + _WINDOW, size)):
                if i >= self.cases and i % 4096:
                    data = self._release_bytes(i)
                    hashed = leaf_hash(data)
                    self.leaves.append(hashed)
                    self.prev = hashed.hex()
                    batch.append((data, None))
                    continue
                draft = _draft(i, self.cases)
                fields = {k: getattr(draft, k) for k in draft.__dataclass_fields__}
                fields["reasons"] = draft.reason_codes()
                record = _case_record(i, self.state_key) if i < self.cases else None
                if record is not None:
                    fields["state_sha256"] = hashlib.sha256(record[1]).hexdigest()
                entry = LogEntry(index=i, prev_leaf_hash=self.prev, **fields)
                data = entry.canonical_bytes()
                if i >= self.cases and data != self._release_bytes(i):
                    raise ValueError("the release template is not LogEntry's canonical form")
                hashed = leaf_hash(data)
                self.leaves.append(hashed)
                self.prev = hashed.hex()
                batch.append((data, record))
            await asyncio.gather(
                *(
                    js.publish(
                        LOG_ENTRY_SUBJECT,
                        data,
                        stream=LOG_STREAM,
                        headers={"Nats-Expected-Last-Sequence": str(first + n)},
                    )
                    for n, (data, _) in enumerate(batch)
                )
            )
            records = [r for _, r in batch if r is not None]
            await asyncio.gather(
                *(
                    js.publish(
                        STATE_SUBJECT, data, stream=STATE_STREAM, headers={"Nats-Msg-Id": mid}
                    )
                    for mid, data in records
                )
            )


async def fill_and_snapshot(url: str, keys: Path, filler: LogFiller, size: int) -> None:
    """Grow the log to ``size`` and store the hub's snapshot of it."""
    hub = hub_setup(keys)
    nc = await connect(url, name="bench-startup-fill", creds=hub.creds)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        await filler.fill_to(js, size)
        tree = MerkleTree(filler.leaves)
        writer = LogWriter(js)
        horizon = START + STEP * (size - 1) - DEFAULT_WINDOW
        in_window = next(i for i in range(size) if START + STEP * i >= horizon)
        start = max(0, min(in_window, size - DEFAULT_KEEP_LAST))
        await writer.restore(
            tree, window_start=start, quarantined={}, last_decided_at=START + STEP * (size - 1)
        )
        store = StateStore(js, hub.state_key)
        records = await store.read()
        snapshots = SnapshotStore(js, hub.log_key, hub.state_key, DEFAULT_ORIGIN)
        await snapshots.write(writer, records)
    finally:
        await nc.close()


def measure_in_child(url: str, keys: Path) -> dict[str, Any]:
    """Start the hub in a fresh process; its start-up seconds and peak RSS."""
    out = subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "sigbus.bench_startup", url, str(keys)],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def _peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: ru_maxrss may carry the forking parent's)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _start_hub(url: str, keys: Path) -> dict[str, Any]:
    before = _peak_rss_mb()
    broker = hub_setup(keys).broker(url)
    t0 = time.perf_counter()
    await broker.start()
    seconds = time.perf_counter() - t0
    result = {
        "seconds": seconds,
        "peak_rss_mb": _peak_rss_mb(),
        "rss_before_start_mb": before,
        "started_from": broker.started_from,
        "log_size": broker.writer.size,
        "cases": len(broker.state.cases),
        "window_entries": len(broker.writer.entries()),
    }
    await broker.stop()
    return result


def main() -> None:
    url, keys = sys.argv[1], Path(sys.argv[2])
    result = asyncio.run(_start_hub(url, keys))
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()


def startup_bench(keys: Path, sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    """For each size, ascending: fill the log to it, snapshot, measure a hub start.

    The log is filled on a server without fsync (fast, throwaway), which is then
    stopped; the start is measured on the same store under the production
    settings (``sync_interval: always``, mutual TLS, accounts).
    """
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="sigbus-bench-startup-") as tmp:
        filler = LogFiller(hub_setup(keys).state_key, cases=min(CASES, min(sizes)))
        for size in sorted(sizes):
            fill = EmbeddedNats(Path(tmp), server_name="sigbus-bench", keys_dir=keys,
                                sync_always=False)  # fmt: skip
            fill.start()
            try:
                t0 = time.perf_counter()
                asyncio.run(fill_and_snapshot(fill.url, keys, filler, size))
                fill_s = time.perf_counter() - t0
            finally:
                fill.stop()
            server = EmbeddedNats(Path(tmp), server_name="sigbus-bench", keys_dir=keys)
            server.start()
            try:
                measured = measure_in_child(server.url, keys)
            finally:
                server.stop()
            results.append({"entries": size, "fill_s": fill_s, **measured})
    return results
