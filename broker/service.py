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
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, PubAck
from nats.js.errors import APIError, NotFoundError, ServiceUnavailableError

from sigbus.audit.checkpoint import DEFAULT_ORIGIN, PrivateKey
from sigbus.audit.entry import EntryOutcome, LogEntry
from sigbus.audit.state_check import check_state_against_log
from sigbus.broker.backlog import BacklogWatch
from sigbus.broker.checkpointer import Checkpointer
from sigbus.broker.errors import LeaseLostError, LogFencedError, StateCorruptError
from sigbus.broker.log_writer import LogWriter
from sigbus.broker.metrics import HubMetrics
from sigbus.broker.notices import NoticeService
from sigbus.broker.pipeline import EntryDraft, HubContext, Plan, ReleaseDraft, evaluate
from sigbus.broker.reminders import due_reminders, plan_reminder
from sigbus.broker.restore import SnapshotRestore
from sigbus.broker.retraction import RetractionIndex, SentRelease, retraction_draft
from sigbus.broker.snapshot import SnapshotStore
from sigbus.broker.state import ConsentRecordedChange, HubState
from sigbus.broker.state_store import SealedChange, StateStore
from sigbus.broker.vault import Vault, shredded_draft
from sigbus.policy.retention import due
from sigbus.protocol.canonical import sha256_hex
from sigbus.protocol.ids import HUB, AgencyId, agency_name
from sigbus.protocol.messages import NARROWING
from sigbus.protocol.notice import SignedNotice
from sigbus.protocol.reasons import ReasonCode
from sigbus.protocol.release import Release, ReleaseRecord, sign_record
from sigbus.protocol.signing import HybridPrivateKey
from sigbus.protocol.subjects import (
    INBOX_STREAM,
    INGRESS_ALL,
    INGRESS_STREAM,
    URGENT_ALL,
    inbox_consumer,
    inbox_subject,
    ingress_sender,
    is_urgent,
)
from sigbus.transport.bus import (
    INGRESS_BACKLOG,
    Backoff,
    close_connection,
    connect,
    ensure_agency_consumers,
    ensure_streams,
)
from sigbus.transport.errors import TransportError
from sigbus.transport.lease import HubLease
from sigbus.transport.metrics import tls_certs
from sigbus.transport.natsauth import NatsCredentials

log = structlog.get_logger("sigbus.broker")

REPLAYED = ReasonCode.REPLAYED_MESSAGE_ID.value

HUB_CONSUMER = "hub"
#: JetStream's "no suitable peers for placement"; how long a forming cluster may say it.
_NO_PLACEMENT = 10005
PLACEMENT_WAIT_S = 60.0
#: The fast lane's consumer: withdrawals, decided ahead of the queue (issue 11).
URGENT_CONSUMER = "hub-urgent"
#: Ingress messages decided together: their log entries, releases and acks are
#: pipelined, so a batch costs a few round trips instead of six per message.
BATCH = 64
#: Messages evaluated side by side on the worker threads, then kept in order.
SPECULATE = 4
#: Deciding time per round (seconds): what is fetched beyond it waits for the next
#: round, so a withdrawal waits at most about this long plus one round's I/O.
ROUND_BUDGET_S = 0.03
#: How often the retraction index forgets what recipients fetched (seconds).
PRUNE_INTERVAL_S = 2.0
#: How often an idle hub runs its retention pass (seconds; issue 13).
RETENTION_INTERVAL_S = 3600.0
#: How often an idle hub looks for overdue plan commitments to remind (seconds; issue 13).
REMINDER_INTERVAL_S = 600.0
#: How long a round waits for the messages the first one said are queued behind it
#: (seconds): they are in the stream, so this bounds one round trip on a loaded machine.
_GATHER_S = 0.05
#: How long a batch's pipelined publishes may take before it is retried.
PUBLISH_TIMEOUT_S = 10.0
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
        log_key: PrivateKey,
        creds: NatsCredentials,
        *,
        clock: Callable[[], datetime] = utc_now,
        ack_wait: timedelta = timedelta(seconds=30),
        replicas: int = 1,
        ingress_backlog: int = INGRESS_BACKLOG,
        context_source: Callable[[HubContext], HubContext] | None = None,
        snapshot_every: int = SNAPSHOT_EVERY,
    ) -> None:
        self.url = url
        self.ctx = ctx
        self._state_key = state_key
        self._log_key = log_key
        self._creds = creds
        self._replicas = replicas
        self._ingress_backlog = ingress_backlog
        self._held = False
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
        self._urgent_sub: JetStreamContext.PullSubscription | None = None
        #: Fetched from the fast lane, waiting for the next round.
        self._urgent: list[Msg] = []
        self._urgent_arrived = asyncio.Event()
        self._urgent_task: asyncio.Task[None] | None = None
        #: Fetched, not decided yet: a withdrawal arrived first (kept in order).
        self._carry: list[Msg] = []
        #: Fast-lane withdrawals refused ahead of the queue (their consent or case may
        #: be in it, not recorded yet): decided again in ingress order, then final.
        self._deferred: list[Msg] = []
        self._in_order: set[int] = set()
        #: Highest regular-lane sequence fetched, and whether that lane ran dry.
        self._regular_high = 0
        self._regular_idle = False
        self.retractions = RetractionIndex()
        self._signers = ThreadPoolExecutor(
            max_workers=os.cpu_count() or 2, thread_name_prefix="sigbus-sign"
        )
        self._next_prune = 0.0
        self._next_retention = 0.0
        self._next_reminders = 0.0
        #: State changes applied so far: a plan made beside others checks it is still valid.
        self._state_changes = 0
        self._stopping = asyncio.Event()
        self._latest_now = datetime.min.replace(tzinfo=UTC)
        self._served: frozenset[AgencyId] = frozenset()
        self.backlog = BacklogWatch(limit=ingress_backlog)
        self.metrics = HubMetrics(clock)
        self.metrics.certs = tls_certs(creds, server=True)
        self._paused = False
        self._snapshot_every = snapshot_every
        self._snapshots: SnapshotStore | None = None
        self.vault: Vault | None = None
        #: How the last start found its state: "snapshot" or "replay".
        self.started_from = ""
        #: The hub lease (issue 12), asked before every append round; None: no standby.
        self.lease: HubLease | None = None
        #: The cause of the last transport or resource fault, until a round succeeds.
        self._fault: str | None = None
        #: Log and state views to re-read before deciding on (a resync failed).
        self._stale = False

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
        backoff = Backoff()
        placement_deadline = time.monotonic() + PLACEMENT_WAIT_S
        while True:
            try:
                await ensure_streams(
                    self._js, replicas=self._replicas, ingress_backlog=self._ingress_backlog
                )
                break
            except (ServiceUnavailableError, TimeoutError, asyncio.TimeoutError) as e:  # noqa: UP041
                # A cluster still electing its JetStream leader answers nothing yet.
                delay = backoff.next()
                log.warning("waiting_for_jetstream", error=type(e).__name__, retry_in_s=delay)
                await asyncio.sleep(delay)
            except APIError as e:
                # A forming cluster knows too few of its peers for a while; past that,
                # too few servers for the replicas is a configuration error: refused.
                if e.err_code != _NO_PLACEMENT or time.monotonic() > placement_deadline:
                    raise
                delay = backoff.next()
                log.warning("waiting_for_jetstream", error="no_suitable_peers", retry_in_s=delay)
                await asyncio.sleep(delay)
        await self._ensure_consumers()
        # The writer dates its own quarantine entries: with the broker's clock. It
        # keeps the entries of the duplicate window (an older message is too old).
        config = self.ctx.config
        self._writer = LogWriter(
            self._js, clock=self._clock, window=config.max_age + config.max_future_skew
        )
        self._store = StateStore(self._js, self._state_key)
        self.vault = Vault(self._js, self._state_key)
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
        self._sub = await self._subscribe_ingress(HUB_CONSUMER, INGRESS_ALL)
        self._urgent_sub = await self._subscribe_ingress(URGENT_CONSUMER, URGENT_ALL)
        # What the fast lane holds now is decided before anything else: after a
        # crash, a withdrawal that was decided first must be decided first again.
        await self._fetch_urgent(timeout=0.2)
        self._urgent_task = asyncio.create_task(self._watch_urgent())
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
        if self.lease is not None and not self.lease.still_held():
            return  # another hub may be writing by now
        if self._store is None:
            return
        grown = self._writer.size - self._snapshots.last_size
        if grown <= 0 or (grown < self._snapshot_every and not force):
            return
        try:
            await self._snapshots.write(self._writer, self._store.records)
        except (NatsError, TimeoutError, asyncio.TimeoutError) as e:  # noqa: UP041
            log.error("snapshot_failed", size=self._writer.size, error=type(e).__name__)

    async def _subscribe_ingress(
        self, name: str, subjects: str
    ) -> JetStreamContext.PullSubscription:
        """One of the hub's ingress consumers, made afresh when a previous hub left work unacked.

        A batch (at most :data:`BATCH` unacked) is decided in ingress order. After
        a crash the unacked messages would come back only after the ack wait; the
        consumer is made anew instead, so they are delivered at once, in order
        (the stream is a work queue: what was acked is gone, the rest waits). The
        log fences a second writer, so a hub that wrongly took over cannot append.
        """
        config = ConsumerConfig(
            durable_name=name,
            filter_subject=subjects,
            ack_policy=AckPolicy.EXPLICIT,
            max_ack_pending=BATCH,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=self._ack_wait.total_seconds(),
        )
        try:
            info = await self.js.consumer_info(INGRESS_STREAM, name)
        except NotFoundError:
            info = None
        if info is not None and (info.num_ack_pending > 0 or info.config.max_ack_pending != BATCH):
            log.warning(
                "ingress_consumer_renewed",
                consumer=name,
                unacked=info.num_ack_pending,
                ack_floor=info.ack_floor.stream_seq,
            )
            await self.js.delete_consumer(INGRESS_STREAM, name)
            info = None
        if info is None:
            await self.js.add_consumer(INGRESS_STREAM, config)
        return await self.js.pull_subscribe_bind(name, stream=INGRESS_STREAM)

    async def _fetch_urgent(self, *, timeout: float) -> None:
        assert self._urgent_sub is not None
        try:
            msgs = await _fetch_available(self._urgent_sub, BATCH, timeout=timeout)
        except (TimeoutError, asyncio.TimeoutError):  # noqa: UP041 - nats-py raises both
            return
        self._urgent.extend(msgs)
        self._urgent_arrived.set()

    async def _watch_urgent(self) -> None:
        """Long-poll the fast lane beside the main loop; a round in progress stops
        deciding as soon as a withdrawal is here (:meth:`_handle`)."""
        while not self._stopping.is_set():
            try:
                await self._fetch_urgent(timeout=1.0)
            except NatsError as e:
                log.warning("urgent_lane_fetch_failed", error=type(e).__name__)
                await asyncio.sleep(0.5)

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
        """The lowest ingress sequence either lane may still redeliver.

        The ingress stream is a work queue: a message leaves it when the hub acks
        it, so what is stored is exactly what is not acknowledged (on any lane,
        delivered or not, also after a consumer was made anew)."""
        info = await self.js.stream_info(INGRESS_STREAM)
        return info.state.first_seq if info.state.messages else None

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

    def hold(self, held: bool) -> None:
        """Stop deciding (messages wait at the bus, none is lost), or go on: maintenance,
        and the bench's way of building a backlog."""
        if held != self._held:
            log.warning("hub_held" if held else "hub_released")
        self._held = held

    def request_stop(self) -> None:
        """Ask :meth:`run` to finish the message in hand and return (signal handlers)."""
        self._stopping.set()

    async def stop(self) -> None:
        self._stopping.set()
        self._signers.shutdown(wait=False, cancel_futures=True)
        if self._urgent_task is not None:
            self._urgent_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, NatsError):
                await self._urgent_task
        if self._nc is not None and not self._nc.is_closed:
            await self._maybe_snapshot(force=True)  # a clean stop: the next start is quick
            await close_connection(self._nc)
        log.info("broker_stopped", processed=self.processed)

    async def run(self) -> None:
        """Serve until :meth:`request_stop`, then close the connection cleanly.

        Transport trouble (a node's death, a stream's leader election, an outage)
        never ends the hub: the round is given up (nothing of it was acked, so
        JetStream delivers it again), and the next one starts from the log's tail
        and the stored state, with bounded backoff until the bus answers again."""
        backoff = Backoff()
        while not self._stopping.is_set():
            try:
                await self.process_batch(timeout=1.0)
            except (NatsError, TimeoutError, asyncio.TimeoutError) as e:  # noqa: UP041
                self._stale = True  # the round may have decided in memory: start over
                delay = backoff.next()
                log.warning("hub_round_failed", error=type(e).__name__, retry_in_s=delay)
                await asyncio.sleep(delay)
            else:
                backoff.reset()
        await self.stop()

    async def process_batch(self, *, timeout: float) -> int:
        """One round: the fast lane first, then up to :data:`BATCH` queued messages.

        Returns how many messages were decided."""
        assert self._sub is not None
        if self._stale and not await self._resynced():
            await asyncio.sleep(min(timeout, 1.0))  # fail closed: nothing is decided
            return 0
        await self.backlog.poll(self.js)
        if self._held or self._paused_for_expired_directory():
            await asyncio.sleep(min(timeout, 0.05 if self._held else 1.0))  # they wait at the bus
            await self._refresh_context()
            return 0
        room = BATCH - len(self._carry)
        fetched: list[Msg] = []
        if room > 0:
            waiting = bool(self._carry or self._urgent or self._deferred)
            try:
                fetched = await _fetch_available(
                    self._sub, room, timeout=0.001 if waiting else timeout
                )
            except (TimeoutError, asyncio.TimeoutError):  # noqa: UP041 - nats-py raises both
                self._regular_idle = not self._carry
                if not (waiting or self._urgent):  # a withdrawal may have come meanwhile
                    await self.checkpointer.publish()  # idle: make the latest witnessable
                    await self._refresh_context()
                    await self._maybe_retention()
                    await self._maybe_reminders()
                    return 0
        if fetched:
            self._regular_idle = False
            self._regular_high = max(self._regular_high, *(_seq(m) for m in fetched))
        urgent, self._urgent = self._urgent, []
        self._urgent_arrived.clear()
        ready = [m for m in self._deferred if self._regular_idle or self._regular_high > _seq(m)]
        self._deferred = [m for m in self._deferred if m not in ready]
        queued, self._carry = [*self._carry, *fetched, *ready], []
        decided = await self._process(self._round_order(urgent, queued))
        await self.checkpointer.maybe_publish()
        await self._prune_retractions()
        return decided

    async def _prune_retractions(self) -> None:
        """Now and then, forget the releases their recipients have fetched."""
        now = time.monotonic()
        if now < self._next_prune:
            return
        self._next_prune = now + PRUNE_INTERVAL_S
        for recipient in sorted(self.retractions.recipients()):
            try:
                info = await self.js.consumer_info(INBOX_STREAM, inbox_consumer(recipient))
            except (NatsError, TimeoutError) as e:
                log.warning("retraction_prune_failed", error=type(e).__name__)
                return
            self.retractions.fetched(recipient, info.delivered.stream_seq)

    def _round_order(self, urgent: Sequence[Msg], queued: Sequence[Msg]) -> list[Msg]:
        """Redone work first, in log order; then the fast lane; then the queue.

        A message the log already holds decisions for was decided before the
        crash, ahead of everything not decided yet: deciding it again first gives
        every later decision the state it saw the first time."""

        def key(msg: Msg) -> tuple[int, int]:
            seq = msg.metadata.sequence.stream
            existing = self.writer.entries_for_ingress(seq)
            if existing:
                return (0, existing[0].index)
            return (1 if is_urgent(msg.subject) and seq not in self._in_order else 2, seq)

        unique = {m.metadata.sequence.stream: m for m in (*urgent, *queued)}
        return sorted(unique.values(), key=key)

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

    async def _process(self, msgs: Sequence[Msg]) -> int:
        if not msgs:
            return 0
        try:
            decided = await self._handle(msgs)
        except (LogFencedError, LeaseLostError) as e:
            event = "log_fenced" if isinstance(e, LogFencedError) else "hub_lease_lapsed"
            log.critical(event, ingress_seq=msgs[0].metadata.sequence.stream)
            for msg in msgs:  # for the hub that holds the lease now
                with contextlib.suppress(NatsError):
                    await msg.nak()
            raise
        except (NatsError, TimeoutError, asyncio.TimeoutError) as e:  # noqa: UP041
            # Transport trouble or a resource fault (a full stream or disk): ack nothing
            # more, say the server's own words, resync the views of log and state
            # (decisions of this batch may be in memory only) and let JetStream redeliver.
            self._fault = str(e)[:300] or type(e).__name__
            log.error(
                "ingress_processing_retry",
                ingress_seq=msgs[0].metadata.sequence.stream,
                batch=len(msgs),
                error=type(e).__name__,
                cause=self._fault,
            )
            for msg in msgs:
                with contextlib.suppress(NatsError):
                    await msg.nak(delay=1.0)
            self._stale = True
            await self._resynced()
            return 0
        if self._fault is not None and decided:
            log.warning("hub_fault_cleared", cause=self._fault)
            self._fault = None
        return decided

    async def _resynced(self) -> bool:
        """Re-read log tail and state after a fault; False (fail closed, no crash) while
        the server cannot even be read."""
        try:
            await self._resync()
        except (NatsError, TransportError, TimeoutError, asyncio.TimeoutError) as e:  # noqa: UP041
            log.error("hub_fault_persists", error=type(e).__name__, cause=str(e)[:300])
            return False
        self._stale = False
        return True

    async def _resync(self) -> None:
        """After a transport error: the log's tail and the stored state, never a full replay."""
        await self.writer.resume()  # the log's tail: an append may have landed, its ack lost
        self._latest_now = max(self._latest_now, self.writer.last_decided_at)
        assert self._store is not None
        # The round's decisions were applied in memory only: back to the stored state.
        self.state = self._store.state_of(self._store.records)

    async def _handle(self, msgs: Sequence[Msg]) -> int:
        """Decide the round in order in memory, then log, store, release, ack.

        Every decision sees every earlier state change (applied in memory as it is
        decided); nothing leaves the hub before the whole round's entries are
        durable (log before release), and nothing is acked before its releases
        are. A withdrawal arriving meanwhile stops the deciding: the rest waits
        for the next round, behind it.
        """
        await self._refresh_context()
        seen: dict[str, int] = {}
        items: list[_Item] = []
        budget_ends = time.monotonic() + ROUND_BUDGET_S
        for start in range(0, len(msgs), SPECULATE):
            msg = msgs[start]
            if (
                items
                and not is_urgent(msg.subject)
                and (
                    is_urgent(items[-1].msg.subject)  # a withdrawal's round is logged at once
                    or self._urgent_arrived.is_set()
                    or time.monotonic() > budget_ends
                )
            ):
                self._carry = list(msgs[start:])
                break
            chunk = msgs[start : start + SPECULATE]
            changes = self._state_changes
            nows = [self._decision_time(m) for m in chunk]
            plans = await self._speculate(chunk, nows)
            for msg, now, plan in zip(chunk, nows, plans, strict=True):
                # A plan made beside the others holds unless an earlier decision of
                # this chunk changed the state or decided the same message id.
                valid = plan is not None and (
                    self._state_changes == changes and plan.message_id not in seen
                )
                item = self._decide(msg, seen, now, plan if valid else None)
                if item is None:
                    self._deferred.append(msg)
                    self._in_order.add(_seq(msg))
                    log.info("withdrawal_deferred", ingress_seq=_seq(msg))
                else:
                    self._in_order.discard(item.seq)
                    items.append(item)
            await asyncio.sleep(0)  # the fast-lane watcher reads between chunks
        if not items:
            return len(msgs) - len(self._carry)
        items = [await self._retract_for(item) for item in items]
        if self.lease is not None and not self.lease.still_held():
            raise LeaseLostError("the hub lease lapsed: another hub may decide now")
        logged = await self._log_batch(items)
        if os.environ.get(CRASH_AFTER_LOG_ENV) == "1" and any(i.drafts for i in items):
            log.critical("fault_injected_crash_after_log", ingress_seq=items[0].seq)
            os._exit(70)
        assert self._store is not None
        for item in items:
            if item.sealed is not None:
                self._check_redone_state(item.sealed, item.existing)
                # One by one, in log order: the state check requires the records
                # in the order of their entries (hub records are rare).
                await self._store.persist(item.sealed)
        await self._keep_in_vault(items, logged)
        drafts = [d for item in items for d in item.plan.releases]
        records = [self._release_record(d, logged) for d in drafts]
        # The hybrid signatures (about 1 ms each) are made on worker threads, which
        # cryptography lets run beside each other; order and I/O stay on this loop.
        loop = asyncio.get_running_loop()
        key = self.ctx.identity.signing_key
        wires, signed_notices = await asyncio.gather(
            asyncio.gather(
                *(
                    loop.run_in_executor(self._signers, _release_wire, d, r, key)
                    for d, r in zip(drafts, records, strict=True)
                )
            ),
            asyncio.gather(
                *(loop.run_in_executor(self._signers, self._signed_notice, i.seq) for i in items)
            ),
        )
        releases = [
            (logged[(d.entry.decision_id, d.recipient)], await self._publish_release(r, wire))
            for d, r, wire in zip(drafts, records, wires, strict=True)
        ]
        notices = [
            await self._notify_sender(item, signed)
            for item, signed in zip(items, signed_notices, strict=True)
        ]
        await _all_acked([*(f for _, f in releases), *notices])
        for entry, future in releases:
            self.retractions.released(entry, future.result().seq)
        for item in items[:-1]:
            await item.msg.ack()
        await items[-1].msg.ack_sync()  # after every earlier ack, on the same connection
        for item in items:
            self._count(item)
        return len(items)

    async def _keep_in_vault(
        self, items: Sequence[_Item], logged: dict[tuple[str, AgencyId | None], LogEntry]
    ) -> None:
        """What the hub released, kept until its retention period ends (broker/vault.py)."""
        assert self.vault is not None
        for item in items:
            first = item.plan.releases[0] if item.plan.releases else None
            if first is None or item.plan.data_key is None:
                continue
            entry = logged[(first.entry.decision_id, first.recipient)]
            await self.vault.keep(first.envelope, item.plan.data_key, entry)

    async def _maybe_retention(self) -> None:
        """When idle, at most every :data:`RETENTION_INTERVAL_S`: the retention pass."""
        if time.monotonic() < self._next_retention:
            return
        self._next_retention = time.monotonic() + RETENTION_INTERVAL_S
        try:
            await self.retention_pass()
        except (NatsError, TimeoutError, asyncio.TimeoutError) as e:  # noqa: UP041
            log.error("retention_pass_failed", error=type(e).__name__)  # tried again later

    async def retention_pass(self, now: datetime | None = None) -> list[LogEntry]:
        """Shred the data keys whose retention period ended at ``now`` (issue 13).

        Each shredding is logged first (fenced, as every entry), then the key is
        erased: a crash between the two leaves a logged shredding whose key the
        next pass erases (the entry is not written twice)."""
        assert self.vault is not None
        at = now if now is not None else self._monotonic_now()
        entries = self.writer.entries()
        logged = {e.decision_id for e in entries if e.outcome is EntryOutcome.SHREDDED}
        done: list[LogEntry] = []
        for held in due(self.ctx.rules, await self.vault.held(), at):
            draft = shredded_draft(held, at)
            if draft.decision_id not in logged:
                done.append(await self.writer.append(draft))
            await self.vault.shred(held)
        if done:
            log.info("retention_pass", shredded=len(done), log_size=self.writer.size)
        return done

    async def _maybe_reminders(self) -> None:
        """When idle, at most every :data:`REMINDER_INTERVAL_S`: the reminder pass."""
        if time.monotonic() < self._next_reminders:
            return
        self._next_reminders = time.monotonic() + REMINDER_INTERVAL_S
        try:
            await self.reminder_pass()
        except (NatsError, TimeoutError, asyncio.TimeoutError) as e:  # noqa: UP041
            self._stale = True  # the state may hold a reminder the store does not
            log.error("reminder_pass_failed", error=type(e).__name__)  # tried again later

    async def reminder_pass(self, now: datetime | None = None) -> list[LogEntry]:
        """Remind each responsible agency, once, of its overdue commitments (issue 13).

        For each reminder, in this order (log before state and release, as for any
        message): its decision is logged (fenced), its state change stored and
        applied (so it is never decided again), then, if released, it is published
        to the agency's inbox. Returns the entries logged."""
        assert self._store is not None
        assert self.vault is not None
        at = now if now is not None else self._monotonic_now()
        done: list[LogEntry] = []
        for overdue in due_reminders(self.state, at):
            sealed, plan = self._seal_state_change(plan_reminder(overdue, self.ctx, at))
            assert sealed is not None
            if self.lease is not None and not self.lease.still_held():
                raise LeaseLostError("the hub lease lapsed: another hub may decide now")
            appended = await self.writer.append_batch(plan.entries)
            await self._store.persist(sealed)
            self.state.apply(sealed.change)
            self._state_changes += 1
            logged = {(e.decision_id, e.recipient): e for e in appended}
            for draft in plan.releases:
                entry = logged[(draft.entry.decision_id, draft.recipient)]
                if plan.data_key is not None:
                    await self.vault.keep(draft.envelope, plan.data_key, entry)
                record = self._release_record(draft, logged)
                wire = _release_wire(draft, record, self.ctx.identity.signing_key)
                future = await self._publish_release(record, wire)
                await _all_acked([future])
                self.retractions.released(entry, future.result().seq)
            # A reminder is a decision like any message's: counted where operators look.
            self.metrics.decided(plan.entries)
            for e in appended:
                log.info(
                    "commitment_reminder",
                    message_id=e.message_id,
                    recipient=e.recipient,
                    outcome=e.outcome.value,
                    reasons=",".join(e.reasons),
                    log_index=e.index,
                )
            done.extend(appended)
        return done

    async def _retract_for(self, item: _Item) -> _Item:
        """A withdrawal or expiry pulls back what was released under that consent and
        still sits unfetched in an inbox, before the withdrawal is logged: nothing
        reaches a recipient after it is recorded. Each retraction is logged after it."""
        change = item.sealed.change if item.sealed is not None else None
        if not isinstance(change, ConsentRecordedChange) or change.event.action not in NARROWING:
            return item
        sent = self.retractions.under(change.event.consent_id)
        self.retractions.forget(change.event.consent_id)
        retracted: list[EntryDraft] = []
        for recipient in sorted({s.entry.recipient for s in sent if s.entry.recipient}):
            mine = [s for s in sent if s.entry.recipient == recipient]
            for pulled in await self._pull_back(recipient, mine):
                retracted.append(
                    retraction_draft(pulled.entry, item.seq, change.message_id, item.now)
                )
        if not retracted:
            return item
        return dataclasses.replace(item, drafts=(*item.drafts, *retracted))

    async def _pull_back(
        self, recipient: AgencyId, sent: Sequence[SentRelease]
    ) -> list[SentRelease]:
        """Delete from one inbox the releases its recipient has not fetched.

        Deleted first, then checked: one the recipient's consumer had delivered by
        then reached the recipient before the withdrawal, and is not a retraction
        (it stays a release in the log). Two consumer lookups per recipient."""
        consumer = inbox_consumer(recipient)
        delivered = (await self.js.consumer_info(INBOX_STREAM, consumer)).delivered.stream_seq
        deleted: list[SentRelease] = []
        for s in sent:
            if s.seq <= delivered:
                continue
            try:
                await self.js.delete_msg(INBOX_STREAM, s.seq)
            except NotFoundError:
                continue
            deleted.append(s)
        if not deleted:
            return []
        delivered = (await self.js.consumer_info(INBOX_STREAM, consumer)).delivered.stream_seq
        return [s for s in deleted if s.seq > delivered]

    def _decision_time(self, msg: Msg) -> datetime:
        """The logged time of a message decided before a crash, else now (monotonic)."""
        existing = self.writer.entries_for_ingress(_seq(msg))
        return existing[0].decided_at if existing else self._monotonic_now()

    async def _speculate(self, chunk: Sequence[Msg], nows: Sequence[datetime]) -> list[Plan | None]:
        """Evaluate a few messages side by side on the worker threads, each on the
        state as it is now (the verify, open and re-seal run beside each other).

        :func:`evaluate` is pure and nothing changes the state while they run;
        :meth:`_decide` keeps a plan only if no earlier one changed the state."""
        if len(chunk) == 1:
            return [None]  # nothing to run beside: decided on the loop
        loop = asyncio.get_running_loop()
        state, ctx, first_seen = self.state, self.ctx, self.writer.first_seen_seq

        def one(msg: Msg, now: datetime) -> Plan:
            return evaluate(
                msg.data,
                subject_agency=_agency_of(msg.subject),
                ingress_seq=_seq(msg),
                first_seen=first_seen,
                state=state,
                ctx=ctx,
                now=now,
                urgent=is_urgent(msg.subject),
            )

        plans = await asyncio.gather(
            *(
                loop.run_in_executor(self._signers, one, m, n)
                for m, n in zip(chunk, nows, strict=True)
            )
        )
        return list(plans)

    def _decide(
        self, msg: Msg, seen: dict[str, int], now: datetime, plan: Plan | None
    ) -> _Item | None:
        """One message's plan, with its state change applied in memory at once.

        ``seen`` holds the first sighting of each message id decided earlier in
        this batch but not logged yet, so a replay inside one batch is a replay.
        """
        seq = msg.metadata.sequence.stream
        existing = tuple(self.writer.entries_for_ingress(seq))
        if existing and existing[0].message_id in self.state.applied:
            # Finished before a crash; the notice may not have been stored (de-duplicated
            # if it was), and only the ack was lost.
            return _Item(
                msg,
                seq,
                Plan(existing[0].message_id, ()),
                None,
                existing,
                (),
                existing[0].decided_at,
            )
        # Resuming after a crash: decided again with the logged time (``now``). The
        # state is the one the first attempt saw: the round is redone in log order.

        def first_seen(message_id: str) -> int | None:
            logged = self.writer.first_seen_seq(message_id)
            return logged if logged is not None else seen.get(message_id)

        if plan is None:
            plan = evaluate(
                msg.data,
                subject_agency=_agency_of(msg.subject),
                ingress_seq=seq,
                first_seen=first_seen,
                state=self.state,
                ctx=self.ctx,
                now=now,
                urgent=is_urgent(msg.subject),
            )
        deferrable = not existing and seq not in self._in_order
        if plan.refused_withdrawal and is_urgent(msg.subject) and deferrable:
            # Ahead of the queue its consent (or case) may not be recorded yet: it is
            # decided again in its ingress order before it is refused for good.
            return None
        sealed, plan = self._seal_state_change(plan)
        if sealed is not None:
            self.state.apply(sealed.change)
            self._state_changes += 1
        done = {(e.decision_id, e.recipient) for e in existing}
        drafts = tuple(d for d in plan.entries if (d.decision_id, d.recipient) not in done)
        for d in drafts:
            # As the writer counts a first sighting: a replay's deny is not one.
            if d.outcome is not EntryOutcome.DENY or d.reason_codes()[:1] != (REPLAYED,):
                seen.setdefault(d.message_id, seq)
        return _Item(msg, seq, plan, sealed, existing, drafts, now)

    def _monotonic_now(self) -> datetime:
        """Never earlier than a time already decided: a clock stepping back must not
        make a recorded withdrawal (recorded_at > now) look not yet in effect."""
        now = max(self._clock(), self._latest_now)
        self._latest_now = now
        return now

    def _seal_state_change(self, plan: Plan) -> tuple[SealedChange | None, Plan]:
        """Seal the state change once and put its digest into the entry that commits to
        it (a hub record's entry, a followed-up plan item's first release)."""
        if plan.state_change is None:
            return None, plan
        assert self._store is not None
        sealed = self._store.seal(plan.state_change)
        entries = tuple(
            dataclasses.replace(d, state_sha256=sealed.sha256) if i == plan.bound else d
            for i, d in enumerate(plan.entries)
        )
        return sealed, dataclasses.replace(plan, entries=entries)

    @staticmethod
    def _check_redone_state(sealed: SealedChange, existing: Sequence[LogEntry]) -> None:
        """After a crash the state write is redone: it must be the record the log named."""
        named = {e.state_sha256 for e in existing if e.state_sha256 is not None}
        if named and named != {sealed.sha256}:
            log.critical("hub_state_redo_mismatch", message_id=sealed.change.message_id)
            raise StateCorruptError(
                "the state change decided again after a crash is not the one the log "
                "recorded; the hub stops rather than store another"
            )

    async def _log_batch(
        self, items: Sequence[_Item]
    ) -> dict[tuple[str, AgencyId | None], LogEntry]:
        """Append the batch's new entries, pipelined and fenced; all entries by key."""
        appended = await self.writer.append_batch([d for item in items for d in item.drafts])
        return {
            (e.decision_id, e.recipient): e
            for e in (*(e for item in items for e in item.existing), *appended)
        }

    def _release_record(
        self, draft: ReleaseDraft, logged: dict[tuple[str, AgencyId | None], LogEntry]
    ) -> ReleaseRecord:
        """The record of one release, from its entry as logged (durable by now)."""
        entry = logged[(draft.entry.decision_id, draft.recipient)]
        assert entry.release_id is not None
        assert entry.legal_basis is not None
        return ReleaseRecord(
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
            sealed_key_sha256=sha256_hex(draft.sealed_key),
            released_at=entry.decided_at,
            hub_key_id=self.ctx.identity.signing_key_id,
        )

    async def _publish_release(self, record: ReleaseRecord, wire: bytes) -> asyncio.Future[PubAck]:
        """Publish one release (pipelined); the future resolves when the inbox stored it."""
        return await self.js.publish_async(
            inbox_subject(record.recipient),
            wire,
            stream=INBOX_STREAM,
            headers={"Nats-Msg-Id": record.release_id},
        )

    def _signed_notice(self, seq: int) -> SignedNotice | None:
        assert self._notices is not None
        return self._notices.signed(self.writer.entries_for_ingress(seq))

    async def _notify_sender(
        self, item: _Item, signed: SignedNotice | None
    ) -> asyncio.Future[PubAck] | None:
        """The sender's receipt, from the entries as logged (durable by now)."""
        seq, plan = item.seq, item.plan
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
        return await self._store_notice(signed)

    async def _store_notice(self, signed: SignedNotice | None) -> asyncio.Future[PubAck] | None:
        """Into the sender's inbox, where it waits for an adapter that is offline."""
        if signed is None:
            return None
        return await self.js.publish_async(
            inbox_subject(signed.notice.sender),
            signed.to_wire(),
            stream=INBOX_STREAM,
            headers={"Nats-Msg-Id": signed.notice.notice_id},
        )

    def _count(self, item: _Item) -> None:
        """One event per decision (ids and codes only); the counts live in the log."""
        self.processed += 1
        self.metrics.decided(item.plan.entries)
        resumed = bool(item.existing)
        for e in item.plan.entries:
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


@dataclasses.dataclass(frozen=True)
class _Item:
    """One ingress message of a batch, decided, with what the log already holds of it."""

    msg: Msg
    seq: int
    plan: Plan
    sealed: SealedChange | None
    #: Entries logged before a crash (a redelivered message).
    existing: tuple[LogEntry, ...]
    #: The plan's entries not in the log yet, in order.
    drafts: tuple[EntryDraft, ...]
    #: The decision time (logged time when redone).
    now: datetime


def _seq(msg: Msg) -> int:
    return int(msg.metadata.sequence.stream)


async def _fetch_available(
    sub: JetStreamContext.PullSubscription, most: int, *, timeout: float
) -> list[Msg]:
    """Wait up to ``timeout`` for one message, then take what else is there now.

    A pull for ``most`` at once would wait until ``most`` arrived or the request
    expired: a trickle of messages (or one withdrawal) would wait the whole time.
    Raises TimeoutError when nothing came."""
    first = await sub.fetch(1, timeout=timeout)
    # The first message says how many wait behind it for this consumer: none, and the
    # round is this one (a trickle pays no second round trip); some, and they are
    # taken at once, as many as there are.
    pending = first[-1].metadata.num_pending if first else 0
    if most <= len(first) or not pending:
        return first
    try:
        more = await sub.fetch(min(most - len(first), pending), timeout=_GATHER_S)
    except (TimeoutError, asyncio.TimeoutError):  # noqa: UP041 - nats-py raises both
        more = []
    return [*first, *more]


def _release_wire(draft: ReleaseDraft, record: ReleaseRecord, key: HybridPrivateKey) -> bytes:
    """The signed release on the wire (runs on a worker thread: pure)."""
    release = Release(
        envelope=draft.envelope,
        sealed_key=draft.sealed_key,
        sealed_key_id=draft.recipient_key_id,
        record=record,
        record_signature=sign_record(record, key),
    )
    return release.to_wire()


async def _all_acked(pending: Sequence[asyncio.Future[PubAck] | None]) -> None:
    """Wait for every pipelined publish; the first failure is raised (then redelivery)."""
    futures = [f for f in pending if f is not None]
    if futures:
        await asyncio.wait_for(asyncio.gather(*futures), timeout=PUBLISH_TIMEOUT_S)


def _agencies(ctx: HubContext) -> frozenset[AgencyId]:
    return frozenset(e.agency for e in ctx.directory.agencies if e.agency != HUB)


def _agency_of(subject: str) -> AgencyId | None:
    sender = ingress_sender(subject)
    if sender is None:
        return None
    try:
        return agency_name(sender)
    except ValueError:
        return None
