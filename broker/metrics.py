"""The hub's Prometheus metrics (issue #14): decisions, latency, queues, the log.

Labels come only from closed sets: the outcome (:class:`EntryOutcome`), the
reason *code* (a :class:`ReasonCode`, or ``policy:`` and a :class:`DenyCode`;
never its detail, which may name a consenter), the agency (one in the signed
directory) and the message type (:class:`MessageType`). No id, case ref, subject
or personnummer is ever a label value (``tests/integration/test_metrics.py``).

The counters are counted as the hub acks (``Broker._count``); the gauges are read
at scrape time from what the hub already holds: the log's size, the expiry of the
directory and of each agency's keys, the ingress backlog per agency
(``BacklogWatch``'s last look) and the witnesses' latest cosigned checkpoint (read
from the checkpoint stream every :data:`WITNESS_POLL_S`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

import structlog
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sigbus.audit.entry import EntryOutcome
from sigbus.broker.backlog import BacklogWatch
from sigbus.broker.checkpointer import latest_cosignatures
from sigbus.broker.log_writer import LogWriter
from sigbus.broker.pipeline import EntryDraft, HubContext, LogReason
from sigbus.policy.model import DenyCode, DenyReason
from sigbus.protocol.directory import AgencyEntry
from sigbus.protocol.ids import HUB, AgencyId
from sigbus.protocol.reasons import ReasonCode
from sigbus.transport.metrics import (
    DEFAULT_HOST,
    MESSAGE_TYPES,
    NONE,
    OTHER,
    cert_expiry_gauge,
    label,
    serve_metrics,
)

log = structlog.get_logger("sigbus.broker.metrics")

#: How often the witnesses' latest cosignatures are read (one request per witness).
WITNESS_POLL_S = 5.0

OUTCOMES = frozenset(o.value for o in EntryOutcome)
#: Every reason label value: the hub's own codes, and the policy's with ``policy:``.
REASONS = frozenset(
    {c.value for c in ReasonCode} | {f"policy:{c.value}" for c in DenyCode} | {NONE, OTHER}
)
#: Seconds from a decision to its round's ack: sub-second when the hub keeps up.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def reason_label(reason: LogReason) -> str:
    """The code of a reason, without its detail (which may name a consenter)."""
    if isinstance(reason, DenyReason):
        return f"policy:{reason.code.value}"
    return reason.code.value


class HubSource(Protocol):
    """What the gauges read (the broker)."""

    @property
    def ctx(self) -> HubContext: ...

    @property
    def writer(self) -> LogWriter: ...

    @property
    def js(self) -> JetStreamContext: ...

    @property
    def backlog(self) -> BacklogWatch: ...


def key_expiry(entry: AgencyEntry, now: datetime) -> float:
    """Seconds until the first of the agency's key uses has no unrevoked key left
    (a successor already in the directory counts); 0 if one has none now."""
    last: dict[str, datetime] = {}
    for key in entry.keys:
        if not key.revoked_by(now):
            last[key.use] = max(last.get(key.use, key.not_after), key.not_after)
    uses = {key.use for key in entry.keys}
    if not uses or uses - last.keys():
        return 0.0
    return max(0.0, min((t - now).total_seconds() for t in last.values()))


def agencies_of(ctx: HubContext) -> list[AgencyId]:
    return sorted(e.agency for e in ctx.directory.agencies if e.agency != HUB)


class HubMetrics:
    """The hub's registry: counters fed by :meth:`decided`, gauges read at scrape."""

    def __init__(self, clock: Callable[[], datetime]) -> None:
        self._clock = clock
        self.registry = CollectorRegistry()
        self._decisions = Counter(
            "sigbus_hub_decisions",
            "Decisions logged and acked, by outcome, first reason code and message type",
            ["outcome", "reason", "message_type"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "sigbus_hub_decision_latency_seconds",
            "Seconds from a message's decision to the ack of its round",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.source: HubSource | None = None
        #: The TLS certificates the hub presents (``transport.metrics.tls_certs``).
        self.certs: dict[str, Path] = {}
        #: The largest checkpoint size any witness cosigned, when known.
        self.cosigned_size: int | None = None
        self.registry.register(_HubGauges(self))

    def decided(self, entries: Sequence[EntryDraft]) -> None:
        """One message decided, logged, released and acked: its entries counted."""
        for e in entries:
            first = reason_label(e.reasons[0]) if e.reasons else NONE
            self._decisions.labels(
                outcome=label(e.outcome.value, OUTCOMES),
                reason=label(first, REASONS),
                message_type=label(e.message_type, MESSAGE_TYPES),
            ).inc()
        if entries:
            waited = (self._clock() - entries[0].decided_at).total_seconds()
            self._latency.observe(max(0.0, waited))

    def gauges(self) -> Iterator[Metric]:
        source = self.source
        if source is None:
            return
        ctx = source.ctx
        size = source.writer.size
        yield GaugeMetricFamily("sigbus_hub_log_entries", "Entries in the disclosure log", size)
        expires = (ctx.directory.expires_at - self._clock()).total_seconds()
        yield GaugeMetricFamily(
            "sigbus_hub_directory_expiry_seconds",
            "Seconds until the signed directory expires (the hub pauses then)",
            expires,
        )
        keys = GaugeMetricFamily(
            "sigbus_hub_agency_key_expiry_seconds",
            "Seconds until an agency has no unrevoked key for one of its uses (sign, seal)",
            labels=["agency"],
        )
        now = self._clock()
        for entry in sorted(ctx.directory.agencies, key=lambda e: e.agency):
            if entry.agency != HUB:
                keys.add_metric([entry.agency], key_expiry(entry, now))
        yield keys
        cosigned = self.cosigned_size
        if cosigned is not None:
            yield GaugeMetricFamily(
                "sigbus_hub_witness_lag_entries",
                "Log entries beyond the latest checkpoint a witness cosigned",
                max(0, size - cosigned),
            )
        depth = GaugeMetricFamily(
            "sigbus_hub_ingress_queue_depth",
            "Messages waiting at the bus per sending agency (the hub's last look)",
            labels=["agency"],
        )
        waiting = dict(source.backlog.waiting)
        for agency in agencies_of(ctx):
            depth.add_metric([agency], waiting.get(agency, 0))
        yield depth
        yield from cert_expiry_gauge("sigbus_hub_tls_cert_expiry_seconds", self.certs, now)

    async def watch_witnesses(self, source: HubSource) -> None:
        """Reads the witnesses' latest cosignatures until cancelled."""
        while True:
            try:
                found = await latest_cosignatures(source.js, agencies_of(source.ctx))
            except (NatsError, TimeoutError) as e:
                log.warning("witness_lag_unknown", error=type(e).__name__)
            else:
                if found:
                    self.cosigned_size = max(c.checkpoint_size for c in found.values())
            await asyncio.sleep(WITNESS_POLL_S)


class _HubGauges(Collector):
    def __init__(self, metrics: HubMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return self._metrics.gauges()


async def serve_hub_metrics(
    metrics: HubMetrics, source: HubSource, port: int, host: str = DEFAULT_HOST
) -> None:
    """Serve the hub's metrics until cancelled; a port in use is logged and costs
    only the metrics."""
    metrics.source = source
    server = serve_metrics(metrics.registry, port, host)
    if server is None:
        return
    try:
        await metrics.watch_witnesses(source)
    finally:
        await asyncio.to_thread(server.close)
