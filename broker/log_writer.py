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
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

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
from sigbus.broker.errors import LogFencedError
from sigbus.broker.pipeline import EntryDraft
from sigbus.protocol.reasons import ReasonCode
from sigbus.protocol.subjects import LOG_ENTRY_SUBJECT, LOG_STREAM
from sigbus.transport.bus import read_stream

REPLAYED = ReasonCode.REPLAYED_MESSAGE_ID.value

log = structlog.get_logger("sigbus.broker.log")

#: JetStream's error code for a failed Nats-Expected-Last-Sequence check.
_WRONG_LAST_SEQUENCE = 10071
#: How long a pipelined append may wait for its ack before the batch is retried.
_APPEND_TIMEOUT_S = 10.0


def _utc_now() -> datetime:
    return datetime.now(UTC)


class LogWriter:
    def __init__(self, js: JetStreamContext, *, clock: Callable[[], datetime] = _utc_now) -> None:
        self._js = js
        self._clock = clock
        self.tree = MerkleTree()
        self._last_leaf_hash = GENESIS_PREV_HASH
        self._by_ingress: dict[int, list[LogEntry]] = defaultdict(list)
        self._first_seq_of_message: dict[str, int] = {}
        self._entries: list[LogEntry] = []
        self.last_decided_at = datetime.min.replace(tzinfo=UTC)
        #: index -> fault of every quarantined record in the log.
        self.quarantined: dict[int, Fault] = {}
        #: The hub records that commit to a state record, in log order (start-up check).
        self.state_bound: list[LogEntry] = []

    @property
    def size(self) -> int:
        return self.tree.size

    def entries_for_ingress(self, ingress_seq: int) -> Sequence[LogEntry]:
        return self._by_ingress.get(ingress_seq, ())

    def entries(self) -> Sequence[LogEntry]:
        """Every sound entry in log order (quarantined records are not entries)."""
        return self._entries

    def first_seen_seq(self, message_id: str) -> int | None:
        return self._first_seq_of_message.get(message_id)

    async def recover(self) -> None:
        """Rebuild tree and indexes from the stream, quarantining unsound records.

        Every record found unsound that no quarantine entry names yet gets one
        now (appended after the last record), so the log states it before the
        hub decides anything on top of it.
        """
        self.tree = MerkleTree()
        self._last_leaf_hash = GENESIS_PREV_HASH
        self._by_ingress.clear()
        self._first_seq_of_message.clear()
        self._entries.clear()
        self.last_decided_at = datetime.min.replace(tzinfo=UTC)
        self.quarantined.clear()
        named: set[tuple[int, Fault]] = set()
        async for msg in read_stream(self._js, LOG_STREAM, LOG_ENTRY_SUBJECT):
            data = msg.data
            index = msg.metadata.sequence.stream - 1
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
        for index, fault in self.quarantined.items():
            if (index, fault) in named:
                log.warning("log_record_quarantined_earlier", seq=index + 1, reason=fault.value)
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
        log.info("log_recovered", size=self.size, quarantined=len(self.quarantined))

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
            entry = LogEntry.model_validate_json(data)
            self._first_seq_of_message.setdefault(entry.message_id, entry.ingress_seq)

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
        self._by_ingress[entry.ingress_seq].append(entry)
        if entry.state_sha256 is not None:
            self.state_bound.append(entry)
        self._entries.append(entry)
        # A replay's deny must not become the message id's first sighting.
        if entry.outcome is not EntryOutcome.DENY or entry.reasons[:1] != (REPLAYED,):
            self._first_seq_of_message.setdefault(entry.message_id, entry.ingress_seq)

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
        for entry, data, future in pending:
            try:
                ack = await asyncio.wait_for(future, timeout=_APPEND_TIMEOUT_S)
            except APIError as e:
                if e.err_code == _WRONG_LAST_SEQUENCE:
                    raise LogFencedError("another writer appended to the disclosure log") from e
                raise
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
