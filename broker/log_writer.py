"""The disclosure-log writer: the only code that appends to ``SIGBUS_LOG``.

Single writer, fenced: every append carries ``Nats-Expected-Last-Sequence``
equal to the current log size, so JetStream refuses it if any other process
appended in between (a second broker can never interleave entries). Entry
``index`` is the stream sequence minus one, and each entry chains to the
leaf hash of the one before. The RFC 9162 tree grows incrementally.

A stored record that is not a sound entry (it does not parse, or its index or
chain link is wrong) cannot be deleted from the append-only stream, so
refusing to start on it would stop the hub for good. It is quarantined
instead (:mod:`audit.quarantine`): it keeps its index and its raw bytes stay
its leaf, its content is never used, the hub raises a ``security_event``
alarm and appends one hub entry naming it, and then goes on deciding.

Memory is bounded by the duplicate window, not by history: the writer keeps
the tree (packed, 64 bytes a leaf) and, of the entries, only those the hub
still uses: every entry decided within ``window`` of the latest decision (a
message id first seen there can still come back with a ``created_at`` young
enough to pass the age check, so it must still be denied as a replay; an
older one is denied as too old), and at least the last ``keep_last`` entries
(the ingress messages not acknowledged yet are among them). Start-up reads
the log from a snapshot's window start (:mod:`broker.snapshot`), and a
transport error re-reads only the entries after the last durable size.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import deque
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import structlog
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import PubAck
from nats.js.errors import APIError

from sigbus.audit.entry import GENESIS_PREV_HASH, EntryOutcome, LogEntry, leaf_hash
from sigbus.audit.merkle import MerkleTree
from sigbus.audit.quarantine import (
    Fault,
    classify,
    named_quarantine,
    quarantine_entry,
)
from sigbus.broker.errors import LogFencedError, SnapshotRejectedError
from sigbus.broker.pipeline import EntryDraft
from sigbus.protocol.reasons import ReasonCode
from sigbus.protocol.subjects import LOG_ENTRY_SUBJECT, LOG_STREAM
from sigbus.transport.bus import read_stream

REPLAYED = ReasonCode.REPLAYED_MESSAGE_ID.value

log = structlog.get_logger("sigbus.broker.log")

#: JetStream's error code for a failed Nats-Expected-Last-Sequence check.
_WRONG_LAST_SEQUENCE = 10071
#: How long a pipelined append may wait for its ack before the batch is retried.
_APPEND_TIMEOUT_S = 5.0


#: The duplicate window: the envelope's maximum age and future skew (HubConfig defaults).
DEFAULT_WINDOW = timedelta(days=7, minutes=5)
#: Entries always kept, whatever their age: more than the hub ever has unacknowledged.
DEFAULT_KEEP_LAST = 4096


def _utc_now() -> datetime:
    return datetime.now(UTC)


class LogWriter:
    def __init__(
        self,
        js: JetStreamContext,
        *,
        clock: Callable[[], datetime] = _utc_now,
        window: timedelta = DEFAULT_WINDOW,
        keep_last: int = DEFAULT_KEEP_LAST,
    ) -> None:
        self._js = js
        self._clock = clock
        self._window = window
        self._keep_last = keep_last
        self.tree = MerkleTree()
        self._reset()

    def _reset(self) -> None:
        self.tree = MerkleTree()
        self._last_leaf_hash = GENESIS_PREV_HASH
        self._by_ingress: dict[int, list[LogEntry]] = {}
        self._first_seq_of_message: dict[str, int] = {}
        #: (decided_at, message_id) of every id in _first_seq_of_message, in log order.
        self._seen: deque[tuple[datetime, str]] = deque()
        self._recent: deque[LogEntry] = deque()
        self.last_decided_at = datetime.min.replace(tzinfo=UTC)
        #: index -> fault of every quarantined record in the log.
        self.quarantined: dict[int, Fault] = {}
        #: The hub records read by the last recovery that commit to a state record,
        #: in log order (the start-up state check); not kept while running.
        self.state_bound: list[LogEntry] = []
        self._recovering = False

    @property
    def size(self) -> int:
        return self.tree.size

    @property
    def window_start(self) -> int:
        """Index of the oldest entry kept (a snapshot's restart reads the log from here)."""
        return self._recent[0].index if self._recent else self.size

    def entries_for_ingress(self, ingress_seq: int) -> Sequence[LogEntry]:
        return self._by_ingress.get(ingress_seq, ())

    def entries(self) -> Sequence[LogEntry]:
        """The sound entries kept (the duplicate window), in log order."""
        return tuple(self._recent)

    def first_seen_seq(self, message_id: str) -> int | None:
        return self._first_seq_of_message.get(message_id)

    async def recover(self) -> None:
        """Rebuild tree and indexes from the whole stream, quarantining unsound records.

        Every record found unsound that no quarantine entry names yet gets one
        now (appended after the last record), so the log states it before the
        hub decides anything on top of it.
        """
        self._reset()
        await self._read_tail(0, named=set())

    async def restore(
        self,
        tree: MerkleTree,
        *,
        window_start: int,
        quarantined: dict[int, Fault],
        last_decided_at: datetime,
    ) -> None:
        """Start from a verified snapshot's tree: read only the log from ``window_start``.

        Entries before the snapshot's size re-index the window and must hash to
        the snapshot's leaves (at least the last one is read, which ties the
        snapshot to this log); later ones extend the tree as in :meth:`recover`.
        Raises :class:`SnapshotRejectedError` if a leaf differs or the log is
        shorter than the snapshot (rolled forward).
        """
        if tree.size == 0 or not 0 <= window_start < tree.size:
            raise SnapshotRejectedError("snapshot window does not lie inside its tree")
        self._reset()
        self.tree = tree
        self.quarantined = dict(quarantined)
        self.last_decided_at = last_decided_at
        self._last_leaf_hash = tree.leaf_hash(tree.size - 1).hex()
        # The faults the snapshot knew were named (it was taken after recovery).
        named = set(quarantined.items())
        await self._read_tail(window_start, named=named)
        self._prune()

    async def resume(self) -> None:
        """After a transport error: read only what landed after the last durable size."""
        before = self.size
        await self._read_tail(self.size, named=set(self.quarantined.items()), announce=False)
        log.info("log_resumed", size=self.size, read=self.size - before)

    async def _read_tail(
        self, start: int, *, named: set[tuple[int, Fault]], announce: bool = True
    ) -> None:
        """Read the log from index ``start``; ``announce`` the quarantines known already."""
        prefix = self.tree.size
        known = set(self.quarantined)
        seen_to = start
        self._recovering = True
        try:
            async for msg in read_stream(
                self._js, LOG_STREAM, LOG_ENTRY_SUBJECT, from_seq=start + 1
            ):
                data = msg.data
                index = msg.metadata.sequence.stream - 1
                seen_to = index + 1
                if index < prefix:
                    self._reindex(data, index)
                    continue
                fault = classify(data, index, self._last_leaf_hash)
                if fault is None:
                    entry = LogEntry.model_validate_json(data)  # canonical, hence valid
                    self._remember(entry, leaf_hash(data))
                    quarantine = named_quarantine(
                        outcome=entry.outcome,
                        sender=entry.sender,
                        recipient=entry.recipient,
                        reasons=entry.reasons,
                    )
                    # Only a later entry can name a record (as the verifier requires).
                    if quarantine is not None and quarantine[0] < index:
                        named.add(quarantine)
                else:
                    self._quarantine(data, index, fault)
        finally:
            self._recovering = False
        if seen_to < prefix:
            raise SnapshotRejectedError(
                f"the log ends at {seen_to} entries, before the snapshot's {prefix}"
            )
        for index, fault in self.quarantined.items():
            if (index, fault) in named:
                if announce or index not in known:
                    log.warning(
                        "log_record_quarantined_earlier", seq=index + 1, reason=fault.value
                    )
            else:
                # The alarm names the position and the fault, never the bytes:
                # a stray record could hold anything, personal data included.
                log.critical(
                    "security_event",
                    kind="log_record_quarantined",
                    seq=index + 1,
                    index=index,
                    reason=fault.value,
                )
                await self._publish(self._quarantine_entry(index, fault))
        log.info(
            "log_recovered", size=self.size, read_from=start, quarantined=len(self.quarantined)
        )

    def _reindex(self, data: bytes, index: int) -> None:
        """An entry the snapshot's tree already holds: check its leaf, index it again."""
        if leaf_hash(data) != self.tree.leaf_hash(index):
            raise SnapshotRejectedError(f"log entry {index} is not the snapshot's leaf")
        if index in self.quarantined:
            if self.quarantined[index] is not Fault.NOT_AN_ENTRY:
                self._see(LogEntry.model_validate_json(data))
            return
        entry = LogEntry.model_validate_json(data)
        self._index(entry)

    def _quarantine(self, data: bytes, index: int, fault: Fault) -> None:
        """Keep the record's place in the tree (its raw bytes are the leaf), use nothing else."""
        hashed = leaf_hash(data)
        self.tree.append(hashed)
        self._last_leaf_hash = hashed.hex()
        self.quarantined[index] = fault
        if fault is not Fault.NOT_AN_ENTRY:
            # Its message id, if it ever was one, must not look unseen: another
            # message with that id is then denied as a replay (fails closed). Its
            # claimed decisions are not reused, so its ingress message, if not
            # acknowledged, is decided and logged afresh.
            self._see(LogEntry.model_validate_json(data))

    def _see(self, entry: LogEntry) -> None:
        """Record the first sighting of the entry's message id (the replay check)."""
        if entry.message_id not in self._first_seq_of_message:
            self._first_seq_of_message[entry.message_id] = entry.ingress_seq
            self._seen.append((entry.decided_at, entry.message_id))

    def _quarantine_entry(self, index: int, fault: Fault) -> LogEntry:
        return quarantine_entry(
            index=self.size,
            prev_leaf_hash=self._last_leaf_hash,
            # Never before a time already decided (as the broker's own clock).
            decided_at=max(self._clock(), self.last_decided_at),
            quarantined=index,
            fault=fault,
        )

    def _remember(self, entry: LogEntry, hashed: bytes) -> None:
        self.last_decided_at = max(self.last_decided_at, entry.decided_at)
        self.tree.append(hashed)
        self._last_leaf_hash = hashed.hex()
        if entry.state_sha256 is not None and self._recovering:
            self.state_bound.append(entry)
        self._index(entry)
        self._prune()

    def _index(self, entry: LogEntry) -> None:
        self._by_ingress.setdefault(entry.ingress_seq, []).append(entry)
        self._recent.append(entry)
        # A replay's deny must not become the message id's first sighting.
        if entry.outcome is not EntryOutcome.DENY or entry.reasons[:1] != (REPLAYED,):
            self._see(entry)

    def _prune(self) -> None:
        """Forget what has left the duplicate window (keeping the last ``keep_last``)."""
        horizon = self.last_decided_at - self._window
        recent, seen = self._recent, self._seen
        while len(recent) > self._keep_last and recent[0].decided_at < horizon:
            old = recent.popleft()
            same = self._by_ingress.get(old.ingress_seq)
            if same is not None:
                same.pop(0)  # the oldest of its ingress message's entries
                if not same:
                    del self._by_ingress[old.ingress_seq]
        while len(seen) > self._keep_last and seen[0][0] < horizon:
            _, message_id = seen.popleft()
            self._first_seq_of_message.pop(message_id, None)

    async def append(self, draft: EntryDraft) -> LogEntry:
        """Append one entry durably; returns it with its index. Raises on fencing."""
        entry = self._entry_at(draft, self.size, self._last_leaf_hash)
        await self._publish(entry)
        return entry

    async def append_batch(self, drafts: Sequence[EntryDraft]) -> list[LogEntry]:
        """Append many entries durably, pipelined: one round trip for the lot.

        Entry i carries ``Nats-Expected-Last-Sequence: i`` and they are written to
        the one connection in order, so JetStream stores them in order or refuses
        from the first one another writer got ahead of (fenced as :meth:`append`).
        The writer's view takes an entry only once its ack confirms its position;
        after any failure the caller resyncs (:meth:`recover`) before deciding on.
        """
        entries: list[LogEntry] = []
        size, prev = self.size, self._last_leaf_hash
        pending: list[tuple[LogEntry, bytes, asyncio.Future[PubAck]]] = []
        for draft in drafts:
            entry = self._entry_at(draft, size, prev)
            data = entry.canonical_bytes()
            pending.append((entry, data, await self._publish_async(entry, data)))
            size, prev = size + 1, leaf_hash(data).hex()
        if not pending:
            return entries
        # One wait for the lot; the acks are then taken in order, so the view takes
        # exactly the prefix that is durable before the first failure is raised.
        acks = await asyncio.wait_for(
            asyncio.gather(*(f for _, _, f in pending), return_exceptions=True),
            timeout=_APPEND_TIMEOUT_S,
        )
        for (entry, data, _), ack in zip(pending, acks, strict=True):
            if isinstance(ack, APIError) and ack.err_code == _WRONG_LAST_SEQUENCE:
                raise LogFencedError("another writer appended to the disclosure log") from ack
            if isinstance(ack, BaseException):
                raise ack
            self._check_position(entry, ack.seq)
            self._remember(entry, leaf_hash(data))
            entries.append(entry)
        return entries

    def _entry_at(self, draft: EntryDraft, index: int, prev_leaf_hash: str) -> LogEntry:
        # A draft is an entry without its position: the writer alone assigns that.
        fields = {f.name: getattr(draft, f.name) for f in dataclasses.fields(draft)}
        fields["reasons"] = draft.reason_codes()
        return LogEntry(index=index, prev_leaf_hash=prev_leaf_hash, **fields)

    async def _publish_async(self, entry: LogEntry, data: bytes) -> asyncio.Future[PubAck]:
        return await self._js.publish_async(
            LOG_ENTRY_SUBJECT, data, stream=LOG_STREAM, headers=self._headers(entry)
        )

    @staticmethod
    def _headers(entry: LogEntry) -> dict[str, str]:
        return {
            "Nats-Expected-Last-Sequence": str(entry.index),
            "Nats-Msg-Id": f"{entry.decision_id}:{entry.recipient or '-'}:{entry.index}",
        }

    @staticmethod
    def _check_position(entry: LogEntry, seq: int) -> None:
        if seq != entry.index + 1:
            raise LogFencedError(f"log append landed at sequence {seq}, expected {entry.index + 1}")

    async def _publish(self, entry: LogEntry) -> None:
        data = entry.canonical_bytes()
        try:
            ack = await self._js.publish(
                LOG_ENTRY_SUBJECT, data, stream=LOG_STREAM, headers=self._headers(entry)
            )
        except APIError as e:
            if e.err_code == _WRONG_LAST_SEQUENCE:
                raise LogFencedError("another writer appended to the disclosure log") from e
            raise
        except NatsError:
            raise
        self._check_position(entry, ack.seq)
        self._remember(entry, leaf_hash(data))
