"""The hub service: consume the ingress stream in order, decide, log, then release.

For each message, strictly in this order (log before release):
1. evaluate it (:func:`broker.pipeline.evaluate`, pure);
2. seal any hub-state change, then append every decision to the disclosure log
   and wait for the acks (durable); a hub record's entry names the sealed state
   record's digest, so the log commits to the hub state;
3. persist and apply that state change;
4. publish each release to its recipient's inbox (``Nats-Msg-Id`` = the
   deterministic release id);
5. store the sender's signed decision notice in the sender's inbox (made from
   the logged entries, ``Nats-Msg-Id`` = the deterministic notice id);
6. ack the ingress message.

A crash anywhere before 6 redelivers the message. The log then already holds
its decisions, so the broker re-derives the same plan (same ``now``, same
state) and completes exactly the missing steps; a release or notice published
twice is dropped by the inbox stream's de-duplication.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from sigbus.audit.checkpoint import DEFAULT_ORIGIN
from sigbus.audit.entry import LogEntry
from sigbus.audit.state_check import check_state_against_log
from sigbus.broker.backlog import BacklogWatch
from sigbus.broker.checkpointer import Checkpointer
from sigbus.broker.errors import LogFencedError, StateCorruptError
from sigbus.broker.log_writer import LogWriter
from sigbus.broker.notices import NoticeService
from sigbus.broker.pipeline import HubContext, Plan, ReleaseDraft, evaluate
from sigbus.broker.restore import SnapshotRestore
from sigbus.broker.snapshot import SnapshotStore
from sigbus.broker.state import HubState
from sigbus.broker.state_store import SealedChange, StateStore
from sigbus.protocol.ids import HUB, AgencyId, agency_name
from sigbus.protocol.release import Release, ReleaseRecord, sign_record
from sigbus.protocol.subjects import INBOX_STREAM, INGRESS_ALL, INGRESS_STREAM, inbox_subject
from sigbus.transport.bus import connect, ensure_agency_consumers, ensure_streams
from sigbus.transport.natsauth import NatsCredentials

log = structlog.get_logger("sigbus.broker")

HUB_CONSUMER = "hub"
#: Test hook for the crash-between-log-and-release proof (tests/integration).
CRASH_AFTER_LOG_ENV = "SIGBUS_FAULT_CRASH_AFTER_LOG"
#: A snapshot every this many log entries (and on a clean stop).
SNAPSHOT_EVERY = 10_000


def utc_now() -> datetime:
    return datetime.now(UTC)


class Broker:
    def __init__(
        self,
        url: str,
        ctx: HubContext,
        state_key: bytes,
        log_key: Ed25519PrivateKey,
        creds: NatsCredentials,
        *,
        clock: Callable[[], datetime] = utc_now,
        ack_wait: timedelta = timedelta(seconds=30),
        replicas: int = 1,
        context_source: Callable[[HubContext], HubContext] | None = None,
        snapshot_every: int = SNAPSHOT_EVERY,
    ) -> None:
        self.url = url
        self.ctx = ctx
        self._state_key = state_key
        self._log_key = log_key
        self._creds = creds
        self._replicas = replicas
        self._context_source = context_source
        self._checkpointer: Checkpointer | None = None
        self._notices: NoticeService | None = None
        self._clock = clock
        self._ack_wait = ack_wait
        self.processed = 0
        self.state = HubState()
        self._nc: Client | None = None
        self._js: JetStreamContext | None = None
        self._writer: LogWriter | None = None
        self._store: StateStore | None = None
        self._sub: JetStreamContext.PullSubscription | None = None
        self._stopping = asyncio.Event()
        self._latest_now = datetime.min.replace(tzinfo=UTC)
        self._served: frozenset[AgencyId] = frozenset()
        self.backlog = BacklogWatch()
        self._paused = False
        self._snapshot_every = snapshot_every
        self._snapshots: SnapshotStore | None = None
        #: How the last start found its state: "snapshot" or "replay".
        self.started_from = ""

    @property
    def writer(self) -> LogWriter:
        assert self._writer is not None, "broker not started"
        return self._writer

    @property
    def checkpointer(self) -> Checkpointer:
        assert self._checkpointer is not None, "broker not started"
        return self._checkpointer

    @property
    def js(self) -> JetStreamContext:
        assert self._js is not None, "broker not started"
        return self._js

    async def start(self) -> None:
        self._nc = await connect(self.url, name="hub", creds=self._creds)
        self._js = self._nc.jetstream()
        await ensure_streams(self._js, replicas=self._replicas)
        await self._ensure_consumers()
        # The writer dates its own quarantine entries: with the broker's clock. It
        # keeps the entries of the duplicate window (an older message is too old).
        config = self.ctx.config
        self._writer = LogWriter(
            self._js, clock=self._clock, window=config.max_age + config.max_future_skew
        )
        self._store = StateStore(self._js, self._state_key)
        self._snapshots = SnapshotStore(self._js, self._log_key, self._state_key, DEFAULT_ORIGIN)
        restored = await SnapshotRestore(
            self._js,
            self._snapshots,
            self._writer,
            self._store,
            self._log_key.public_key(),
            self._first_unacked_ingress,
        ).run()
        if restored is None:
            await self._writer.recover()
            self.state = await self._load_state_bound_to_log()
            self.started_from = "replay"
        else:
            self.state = restored
            self.started_from = "snapshot"
        self._latest_now = self._writer.last_decided_at
        self._checkpointer = Checkpointer(
            self._nc,
            self._js,
            self._writer,
            self._log_key,
            witnesses=lambda: _agencies(self.ctx),
            after_publish=self._maybe_snapshot,
        )
        await self._checkpointer.serve()
        await self._checkpointer.publish()
        if restored is None:
            await self._maybe_snapshot(force=True)  # the next start reads only the tail
        self._notices = NoticeService(
            self._nc, self._writer, self.ctx.identity.signing_key, self.ctx.identity.signing_key_id
        )
        await self._notices.serve()
        # One in flight at a time: a withdrawal always takes effect before every
        # later message, and a message that failed is retried before the next.
        self._sub = await self._js.pull_subscribe(
            INGRESS_ALL,
            durable=HUB_CONSUMER,
            stream=INGRESS_STREAM,
            config=ConsumerConfig(
                ack_policy=AckPolicy.EXPLICIT,
                max_ack_pending=1,
                deliver_policy=DeliverPolicy.ALL,
                ack_wait=self._ack_wait.total_seconds(),
            ),
        )
        log.info(
            "broker_started",
            log_size=self._writer.size,
            cases=len(self.state.cases),
            started_from=self.started_from,
        )

    async def _maybe_snapshot(self, *, force: bool = False) -> None:
        """Every ``snapshot_every`` entries (or ``force``, if the log grew): a snapshot."""
        if not self.started_from or self._snapshots is None or self._writer is None:
            return  # never of a hub whose start failed (its state was refused)
        if self._store is None:
            return
        grown = self._writer.size - self._snapshots.last_size
        if grown <= 0 or (grown < self._snapshot_every and not force):
            return
        try:
            await self._snapshots.write(self._writer, self._store.records)
        except (NatsError, TimeoutError, asyncio.TimeoutError) as e:  # noqa: UP041
            log.error("snapshot_failed", size=self._writer.size, error=type(e).__name__)

    async def _load_state_bound_to_log(self) -> HubState:
        """The hub state, refused unless it is the one the log committed to (issue 10).

        Anyone who can edit the store could otherwise drop a withdrawal and sharing
        would go on; the log is witnessed, the state stream is not. Only the message
        in flight at a crash may lack its state record: it is redelivered and the
        write redone (log before state)."""
        assert self._store is not None
        records = await self._store.read()
        pending_from = await self._first_unacked_ingress()
        findings = check_state_against_log(
            self.writer.state_bound, [ref for ref, _ in records], pending_ingress_from=pending_from
        )
        if findings:
            for finding in findings[:10]:
                log.critical(
                    "security_event",
                    kind="hub_state_not_bound_to_log",
                    fault=finding.fault.value,
                    message_id=finding.message_id,
                    log_index=finding.log_index,
                    state_seq=finding.state_seq,
                )
            raise StateCorruptError(
                f"the hub state does not match the disclosure log ({len(findings)} "
                f"finding(s), first: {findings[0].describe()}); the hub will not decide "
                "on it: see docs/operations.md, 'The hub refuses to start: state not "
                "bound to the log'"
            )
        state = self._store.state_of(records)
        self._store.records = records
        return state

    async def _first_unacked_ingress(self) -> int | None:
        try:
            info = await self.js.consumer_info(INGRESS_STREAM, HUB_CONSUMER)
        except NotFoundError:
            return None  # first start: nothing was ever acknowledged
        floor: int = info.ack_floor.stream_seq
        return floor + 1

    async def _refresh_context(self) -> None:
        """Revocations, rotations and new agencies take effect without a restart; a
        new agency gets its consumers as soon as the hub sees it in the directory."""
        if self._context_source is None:
            return
        self.ctx = self._context_source(self.ctx)
        if _agencies(self.ctx) != self._served:
            await self._ensure_consumers()

    async def _ensure_consumers(self) -> None:
        """The hub, not the agency, makes each agency's consumers (filters fixed)."""
        agencies = _agencies(self.ctx)
        await ensure_agency_consumers(self.js, agencies)
        self._served = agencies

    def request_stop(self) -> None:
        """Ask :meth:`run` to finish the message in hand and return (signal handlers)."""
        self._stopping.set()

    async def stop(self) -> None:
        self._stopping.set()
        if self._nc is not None and not self._nc.is_closed:
            await self._maybe_snapshot(force=True)  # a clean stop: the next start is quick
            with contextlib.suppress(NatsError):
                await self._nc.close()
        log.info("broker_stopped", processed=self.processed)

    async def run(self) -> None:
        """Serve until :meth:`request_stop`, then close the connection cleanly."""
        while not self._stopping.is_set():
            await self.process_batch(timeout=1.0)
        await self.stop()

    async def process_batch(self, *, timeout: float) -> int:
        """Fetch and process what is waiting (one at a time); returns how many."""
        assert self._sub is not None
        await self.backlog.poll(self.js)
        if self._paused_for_expired_directory():
            await asyncio.sleep(min(timeout, 1.0))  # messages wait at the bus; none is lost
            await self._refresh_context()
            return 0
        try:
            msgs = await self._sub.fetch(1, timeout=timeout)
        except (TimeoutError, asyncio.TimeoutError):  # noqa: UP041 - nats-py raises both
            await self.checkpointer.publish()  # idle: make the latest entries witnessable
            await self._refresh_context()
            return 0
        for msg in msgs:
            await self._process(msg)
        await self.checkpointer.maybe_publish()
        return len(msgs)

    def _paused_for_expired_directory(self) -> bool:
        """Fail closed on a frozen directory (issue 10): past its expiry nothing is decided,
        since a revocation may be withheld; deciding resumes when a fresh one is in force."""
        serial = self.ctx.directory.serial
        expired = self.ctx.directory.expired_at(self._clock())
        if expired != self._paused:
            self._paused = expired
            if expired:
                log.error("hub_paused", reason="directory_expired", serial=serial)
            else:
                log.info("hub_resumed", serial=serial)
        return expired

    async def drain_ingress(self, *, idle_timeout: float = 0.5) -> int:
        """Process until nothing arrives for ``idle_timeout`` seconds (demo, tests)."""
        total = 0
        while (n := await self.process_batch(timeout=idle_timeout)) > 0:
            total += n
        return total

    async def _process(self, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        try:
            await self._handle(msg, seq)
        except LogFencedError:
            log.critical("log_fenced", ingress_seq=seq)
            raise
        except (NatsError, TimeoutError, asyncio.TimeoutError) as e:  # noqa: UP041
            # Transport trouble: do not ack; re-read the log's tail (an append may have
            # landed although its ack was lost) and let JetStream redeliver.
            log.error("ingress_processing_retry", ingress_seq=seq, error=type(e).__name__)
            with contextlib.suppress(NatsError):
                await msg.nak(delay=1.0)
            await self.writer.resume()

    async def _handle(self, msg: Msg, seq: int) -> None:
        existing = tuple(self.writer.entries_for_ingress(seq))
        if existing and existing[0].message_id in self.state.applied:
            # Finished before a crash; the notice may not have been stored (de-duplicated
            # if it was), and only the ack was lost.
            await self._store_notice(seq)
            await msg.ack_sync()
            return
        # Resuming after a crash: decide again with the logged time. The state is
        # the one the first attempt saw (nothing later was processed: one in flight).
        now = existing[0].decided_at if existing else self._monotonic_now()
        await self._refresh_context()
        plan = evaluate(
            msg.data,
            subject_agency=_agency_of(msg.subject),
            ingress_seq=seq,
            first_seen=self.writer.first_seen_seq,
            state=self.state,
            ctx=self.ctx,
            now=now,
        )
        sealed, plan = self._seal_state_change(plan)
        logged = await self._log_plan(plan, existing)
        if os.environ.get(CRASH_AFTER_LOG_ENV) == "1" and not existing:
            log.critical("fault_injected_crash_after_log", ingress_seq=seq)
            os._exit(70)
        if sealed is not None:
            self._check_redone_state(sealed, logged)
            assert self._store is not None
            await self._store.persist(sealed)
            self.state.apply(sealed.change)
        for draft in plan.releases:
            await self._release(draft, logged)
        await self._notify_sender(plan, seq)
        await msg.ack_sync()
        self._count(plan, resumed=bool(existing))

    def _monotonic_now(self) -> datetime:
        """Never earlier than a time already decided: a clock stepping back must not
        make a recorded withdrawal (recorded_at > now) look not yet in effect."""
        now = max(self._clock(), self._latest_now)
        self._latest_now = now
        return now

    def _seal_state_change(self, plan: Plan) -> tuple[SealedChange | None, Plan]:
        """Seal the state change once and put its digest into the hub record's entry."""
        if plan.state_change is None:
            return None, plan
        assert self._store is not None
        sealed = self._store.seal(plan.state_change)
        entries = tuple(
            dataclasses.replace(d, state_sha256=sealed.sha256)
            if d.message_id == plan.message_id and d.recipient == HUB
            else d
            for d in plan.entries
        )
        return sealed, dataclasses.replace(plan, entries=entries)

    @staticmethod
    def _check_redone_state(
        sealed: SealedChange, logged: dict[tuple[str, AgencyId | None], LogEntry]
    ) -> None:
        """After a crash the state write is redone: it must be the record the log named."""
        named = {e.state_sha256 for e in logged.values() if e.state_sha256 is not None}
        if named and named != {sealed.sha256}:
            log.critical("hub_state_redo_mismatch", message_id=sealed.change.message_id)
            raise StateCorruptError(
                "the state change decided again after a crash is not the one the log "
                "recorded; the hub stops rather than store another"
            )

    async def _log_plan(
        self, plan: Plan, existing: Sequence[LogEntry]
    ) -> dict[tuple[str, AgencyId | None], LogEntry]:
        """Append the plan's entries that are not in the log yet; all entries by key."""
        logged = {(e.decision_id, e.recipient): e for e in existing}
        for draft in plan.entries:
            key = (draft.decision_id, draft.recipient)
            if key not in logged:
                logged[key] = await self.writer.append(draft)
        return logged

    async def _release(
        self, draft: ReleaseDraft, logged: dict[tuple[str, AgencyId | None], LogEntry]
    ) -> None:
        entry = logged[(draft.entry.decision_id, draft.recipient)]
        assert entry.release_id is not None
        assert entry.legal_basis is not None
        record = ReleaseRecord(
            release_id=entry.release_id,
            decision_id=entry.decision_id,
            message_id=entry.message_id,
            recipient=draft.recipient,
            recipient_key_id=draft.recipient_key_id,
            legal_basis=entry.legal_basis,
            statutory=entry.statutory,
            consent_refs=entry.consent_refs,
            rules_hash=entry.rules_hash or "",
            log_index=entry.index,
            leaf_hash=self.writer.tree.leaf_hash(entry.index).hex(),
            ciphertext_sha256=entry.ciphertext_sha256 or "",
            released_at=entry.decided_at,
            hub_key_id=self.ctx.identity.signing_key_id,
        )
        release = Release(
            envelope=draft.envelope,
            record=record,
            record_signature=sign_record(record, self.ctx.identity.signing_key),
        )
        await self.js.publish(
            inbox_subject(draft.recipient),
            release.to_wire(),
            stream=INBOX_STREAM,
            headers={"Nats-Msg-Id": record.release_id},
        )

    async def _notify_sender(self, plan: Plan, seq: int) -> None:
        """The sender's receipt, from the entries as logged (durable by now)."""
        entries = self.writer.entries_for_ingress(seq)
        if plan.refused_withdrawal:
            # Sharing under the consent goes on although the consenter withdrew it
            # (OSL 12 kap. 2 §: the samtycke no longer holds): a person must act now.
            log.error(
                "consent_withdrawal_refused",
                ingress_seq=seq,
                message_id=plan.message_id,
                sender=entries[0].sender if entries else None,
                reasons=",".join(r for e in entries for r in e.reasons),
                log_index=entries[0].index if entries else None,
            )
        await self._store_notice(seq)

    async def _store_notice(self, seq: int) -> None:
        """Into the sender's inbox, where it waits for an adapter that is offline."""
        assert self._notices is not None
        signed = self._notices.signed(self.writer.entries_for_ingress(seq))
        if signed is None:
            return
        await self.js.publish(
            inbox_subject(signed.notice.sender),
            signed.to_wire(),
            stream=INBOX_STREAM,
            headers={"Nats-Msg-Id": signed.notice.notice_id},
        )

    def _count(self, plan: Plan, *, resumed: bool) -> None:
        """One event per decision (ids and codes only); the counts live in the log."""
        self.processed += 1
        for e in plan.entries:
            log.info(
                "decision",
                ingress_seq=e.ingress_seq,
                message_id=e.message_id,
                type=e.message_type,
                sender=e.sender,
                recipient=e.recipient,
                outcome=e.outcome.value,
                reasons=",".join(e.reason_codes()),
                resumed=resumed,
            )


def _agencies(ctx: HubContext) -> frozenset[AgencyId]:
    return frozenset(e.agency for e in ctx.directory.agencies if e.agency != HUB)


def _agency_of(subject: str) -> AgencyId | None:
    parts = subject.split(".")
    if len(parts) != 3:
        return None
    try:
        return agency_name(parts[2])
    except ValueError:
        return None
