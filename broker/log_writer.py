"""The disclosure-log writer: the only code that appends to ``SIGBUS_LOG``.

Single writer, fenced: every append carries ``Nats-Expected-Last-Sequence``
equal to the current log size, so JetStream refuses it if any other process
appended in between (a second broker can never interleave entries). Entry
``index`` is the stream sequence minus one, and each entry chains to the
leaf hash of the one before. The RFC 9162 tree grows incrementally.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime

import structlog
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import APIError

from sigbus.audit.entry import GENESIS_PREV_HASH, EntryOutcome, LogEntry, leaf_hash
from sigbus.audit.merkle import MerkleTree
from sigbus.broker.errors import LogCorruptError, LogFencedError
from sigbus.broker.pipeline import EntryDraft
from sigbus.protocol.reasons import ReasonCode
from sigbus.protocol.subjects import LOG_ENTRY_SUBJECT, LOG_STREAM
from sigbus.transport.bus import read_stream

REPLAYED = ReasonCode.REPLAYED_MESSAGE_ID.value

log = structlog.get_logger("sigbus.broker.log")

#: JetStream's error code for a failed Nats-Expected-Last-Sequence check.
_WRONG_LAST_SEQUENCE = 10071


class LogWriter:
    def __init__(self, js: JetStreamContext) -> None:
        self._js = js
        self.tree = MerkleTree()
        self._last_leaf_hash = GENESIS_PREV_HASH
        self._by_ingress: dict[int, list[LogEntry]] = defaultdict(list)
        self._first_seq_of_message: dict[str, int] = {}
        self.last_decided_at = datetime.min.replace(tzinfo=UTC)

    @property
    def size(self) -> int:
        return self.tree.size

    def entries_for_ingress(self, ingress_seq: int) -> Sequence[LogEntry]:
        return self._by_ingress.get(ingress_seq, ())

    def first_seen_seq(self, message_id: str) -> int | None:
        return self._first_seq_of_message.get(message_id)

    async def recover(self) -> None:
        """Rebuild tree and indexes from the stream, checking the chain as it goes."""
        self.tree = MerkleTree()
        self._last_leaf_hash = GENESIS_PREV_HASH
        self._by_ingress.clear()
        self._first_seq_of_message.clear()
        self.last_decided_at = datetime.min.replace(tzinfo=UTC)
        async for msg in read_stream(self._js, LOG_STREAM, LOG_ENTRY_SUBJECT):
            seq = msg.metadata.sequence.stream
            try:
                entry = LogEntry.model_validate_json(msg.data)
            except ValueError as e:
                raise LogCorruptError(f"log entry at sequence {seq} does not parse") from e
            if entry.index != seq - 1 or entry.prev_leaf_hash != self._last_leaf_hash:
                raise LogCorruptError(f"log chain breaks at index {seq - 1}")
            self._remember(entry, leaf_hash(msg.data))
        log.info("log_recovered", size=self.size)

    def _remember(self, entry: LogEntry, hashed: bytes) -> None:
        self.last_decided_at = max(self.last_decided_at, entry.decided_at)
        self.tree.append(hashed)
        self._last_leaf_hash = hashed.hex()
        self._by_ingress[entry.ingress_seq].append(entry)
        # A replay's deny must not become the message id's first sighting.
        if entry.outcome is not EntryOutcome.DENY or entry.reasons[:1] != (REPLAYED,):
            self._first_seq_of_message.setdefault(entry.message_id, entry.ingress_seq)

    async def append(self, draft: EntryDraft) -> LogEntry:
        """Append one entry durably; returns it with its index. Raises on fencing."""
        # A draft is an entry without its position: the writer alone assigns that.
        fields = {f.name: getattr(draft, f.name) for f in dataclasses.fields(draft)}
        fields["reasons"] = draft.reason_codes()
        entry = LogEntry(index=self.size, prev_leaf_hash=self._last_leaf_hash, **fields)
        data = entry.canonical_bytes()
        headers = {
            "Nats-Expected-Last-Sequence": str(self.size),
            "Nats-Msg-Id": f"{draft.decision_id}:{draft.recipient or '-'}:{entry.index}",
        }
        try:
            ack = await self._js.publish(
                LOG_ENTRY_SUBJECT, data, stream=LOG_STREAM, headers=headers
            )
        except APIError as e:
            if e.err_code == _WRONG_LAST_SEQUENCE:
                raise LogFencedError("another writer appended to the disclosure log") from e
            raise
        except NatsError:
            raise
        if ack.seq != entry.index + 1:
            raise LogFencedError(
                f"log append landed at sequence {ack.seq}, expected {entry.index + 1}"
            )
        self._remember(entry, leaf_hash(data))
        return entry
