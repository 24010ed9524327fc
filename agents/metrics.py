"""An adapter's Prometheus metrics (issue #14): what it received, was told, failed on.

Labels only from closed sets: the message type and the notice outcome. No message
id, release id, case ref or personnummer is ever a label value. ``sigbus <agency>
serve --metrics-port`` serves them (``sigbus/cli_metrics.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from sigbus.agents.outbox import Outbox
from sigbus.protocol.ids import MessageType
from sigbus.protocol.notice import DecisionNotice, NoticeOutcome
from sigbus.transport.metrics import MESSAGE_TYPES, cert_expiry_gauge, label

NOTICE_OUTCOMES = frozenset(o.value for o in NoticeOutcome)


class AdapterMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._releases = Counter(
            "sigbus_adapter_releases_received",
            "Releases verified, opened and handed to the case system, by message type",
            ["message_type"],
            registry=self.registry,
        )
        self._notices = Counter(
            "sigbus_adapter_notice_items",
            "Decision notice items about this agency's own messages, by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self._failures = Counter(
            "sigbus_adapter_handler_failures",
            "Releases or notices the case system's handler failed on (retried), by type",
            ["message_type"],
            registry=self.registry,
        )
        self._rejected = Counter(
            "sigbus_adapter_items_rejected",
            "Inbox items refused (bad signature, not ours): security events",
            registry=self.registry,
        )
        self._pending = Gauge(
            "sigbus_adapter_outbox_pending",
            "Messages in the durable outbox the bus has not taken yet",
            registry=self.registry,
        )
        for kind in sorted(MESSAGE_TYPES):  # every series present from the first scrape
            self._releases.labels(message_type=kind)
            self._failures.labels(message_type=kind)
        for outcome in sorted(NOTICE_OUTCOMES):
            self._notices.labels(outcome=outcome)
        #: The adapter's TLS client certificate (``transport.metrics.tls_certs``).
        self.certs: dict[str, Path] = {}
        self.registry.register(_CertGauge(self))

    def received(self, message_type: MessageType) -> None:
        self._releases.labels(message_type=label(message_type, MESSAGE_TYPES)).inc()

    def noticed(self, notice: DecisionNotice) -> None:
        for item in notice.items:
            self._notices.labels(outcome=label(item.outcome, NOTICE_OUTCOMES)).inc()

    def handler_failed(self, message_type: MessageType | None) -> None:
        self._failures.labels(message_type=label(message_type, MESSAGE_TYPES)).inc()

    def rejected(self) -> None:
        self._rejected.inc()

    def outbox(self, outbox: Outbox | None) -> None:
        """Read on the adapter's own thread (the outbox is SQLite, not shared)."""
        self._pending.set(0 if outbox is None else len(outbox.pending()))


class _CertGauge(Collector):
    def __init__(self, metrics: AdapterMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        return cert_expiry_gauge(
            "sigbus_adapter_tls_cert_expiry_seconds", self._metrics.certs, datetime.now(UTC)
        )
