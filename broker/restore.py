"""Start-up from a hub snapshot (issue 11): verify it, then read only the tails.

:class:`SnapshotRestore` takes the newest snapshot that verifies
(:meth:`broker.snapshot.SnapshotStore.load`), restores the log writer from its
tree and reads the log from the window's start (``LogWriter.restore``), checks
the tree against the latest checkpoint the hub signed and the state stream
against the snapshot, and checks the state records stored after the snapshot
against the hub records logged after it. Fail closed: anything else raises
``security_event kind=snapshot_rejected`` and the next snapshot is tried; None
means the caller replays everything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from sigbus.audit.checkpoint import DEFAULT_ORIGIN, PublicKey, verify_note
from sigbus.audit.errors import AuditError
from sigbus.audit.state_check import StateRecordRef, check_state_tail
from sigbus.broker.errors import SnapshotRejectedError, StateCorruptError
from sigbus.broker.log_writer import LogWriter
from sigbus.broker.snapshot import Restored, SnapshotStore
from sigbus.broker.state import HubState
from sigbus.broker.state_store import StateStore
from sigbus.protocol.subjects import CHECKPOINT_STREAM, CHECKPOINT_SUBJECT, STATE_STREAM
from sigbus.transport.errors import TransportError

log = structlog.get_logger("sigbus.broker")


class SnapshotRestore:
    def __init__(
        self,
        js: JetStreamContext,
        snapshots: SnapshotStore,
        writer: LogWriter,
        store: StateStore,
        log_public: PublicKey,
        first_unacked: Callable[[], Awaitable[int | None]],
    ) -> None:
        self._js = js
        self._snapshots = snapshots
        self._writer = writer
        self._store = store
        self._log_public = log_public
        self._first_unacked = first_unacked

    async def run(self) -> HubState | None:
        """The newest snapshot that verifies, then the log and state tails after it.

        Fail closed: a snapshot that does not verify raises an alarm and is not
        used (the one before it is tried, then the full replay)."""
        try:
            candidates = await self._snapshots.candidates()
        except (NatsError, TransportError) as e:
            log.error("snapshot_unreadable", error=type(e).__name__)
            return None
        for seq, raw in candidates:
            try:
                restored = await self._snapshots.load(raw)
                manifest = restored.manifest
                await self._writer.restore(
                    restored.tree,
                    window_start=manifest.window_start,
                    quarantined=dict(manifest.quarantined),
                    last_decided_at=manifest.last_decided_at,
                )
                await self._check_latest_checkpoint()
                state = await self._state_after_snapshot(restored)
            except (SnapshotRejectedError, StateCorruptError, TransportError) as e:
                log.critical(
                    "security_event", kind="snapshot_rejected", snapshot_seq=seq, reason=str(e)
                )
                continue
            log.info(
                "snapshot_used", snapshot_seq=seq, size=manifest.size, log_size=self._writer.size
            )
            return state
        return None

    async def _check_latest_checkpoint(self) -> None:
        """The latest checkpoint the hub signed must be a checkpoint of this tree."""
        try:
            stored = await self._js.get_last_msg(CHECKPOINT_STREAM, CHECKPOINT_SUBJECT)
        except NotFoundError:
            return  # nothing signed yet: the log's leaves tie the snapshot
        except NatsError as e:
            raise SnapshotRejectedError("the latest checkpoint cannot be read") from e
        try:
            note = (stored.data or b"").decode()
            checkpoint = verify_note(note, DEFAULT_ORIGIN, self._log_public)
        except (AuditError, UnicodeDecodeError) as e:
            raise SnapshotRejectedError("the latest checkpoint does not verify") from e
        tree = self._writer.tree
        if checkpoint.size > tree.size or tree.root(checkpoint.size) != checkpoint.root:
            raise SnapshotRejectedError(
                f"the tree from the snapshot is not the one of checkpoint {checkpoint.size}"
            )

    async def _state_after_snapshot(self, restored: Restored) -> HubState:
        """The snapshot's state records and those stored after, checked against the log."""
        await self._check_state_stream(restored)
        tail = await self._store.read(from_seq=restored.stream_seq + 1)
        window = {e.index: e for e in self._writer.entries()}
        pending = []
        for bound in restored.manifest.pending_bound:
            entry = window.get(bound.index)
            if entry is None or entry.message_id != bound.message_id:
                raise SnapshotRejectedError("a hub record the snapshot names is not in the log")
            pending.append(entry)
        findings = check_state_tail(
            [*pending, *self._writer.state_bound],
            [ref for ref, _ in tail],
            earlier=(ref.message_id for ref, _ in restored.records),
            pending_ingress_from=await self._first_unacked(),
        )
        if findings:
            # The full replay that follows names every finding (and refuses to start).
            raise SnapshotRejectedError(
                f"the state after the snapshot does not match the log ({findings[0].describe()})"
            )
        records = [*restored.records, *tail]
        state = self._store.state_of(records)
        self._store.records = records
        return state

    async def _check_state_stream(self, restored: Restored) -> None:
        """The state stream is the one the snapshot was taken of: nothing removed (a
        stream deleted and written again renumbers it), its last record in place.

        The hub decides on the snapshot's records, which its signature covers; an
        edit in the middle of the stream that keeps every sequence is for the full
        check (``sigbus audit check-state``, or a start with no snapshot)."""
        try:
            info = await self._js.stream_info(STATE_STREAM)
            last = restored.records[-1][0] if restored.records else None
            stored = await self._js.get_msg(STATE_STREAM, last.seq) if last else None
        except NatsError as e:
            raise SnapshotRejectedError("the state stream lacks the snapshot's records") from e
        state = info.state
        complete = state.messages == state.last_seq and state.first_seq <= 1
        if not complete or state.last_seq < restored.stream_seq:
            raise SnapshotRejectedError("the state stream is not the one of the snapshot")
        if last is not None and stored is not None:
            message_id = (stored.headers or {}).get("Nats-Msg-Id", "")
            if StateRecordRef.of(last.seq, message_id, stored.data or b"") != last:
                raise SnapshotRejectedError("the state stream is not the one of the snapshot")
