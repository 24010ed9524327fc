"""The Prometheus endpoint shared by the hub and the adapters (issue #14).

Served from its own thread (``prometheus_client``'s HTTP server), bound to
127.0.0.1 unless told otherwise: the figures are operational, but where an agency
sends and how much is still nobody else's business. A port in use costs the
metrics, never the service (as with the console). Every label value comes from a
closed set (outcome, reason code, agency, message type): :func:`label` maps
anything else to ``other``, so an id, a case ref or a personnummer cannot become
a time series even by mistake.
"""

from __future__ import annotations

import threading
from collections.abc import Set
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import CollectorRegistry, start_http_server

from sigbus.protocol.ids import MessageType

log = structlog.get_logger("sigbus.metrics")

DEFAULT_HOST = "127.0.0.1"
#: The label value of anything outside a label's closed set.
OTHER = "other"
#: The label value where a decision has no reason (a release) or no message type.
NONE = "none"
#: The message-type label's values (the hub's and the adapters').
MESSAGE_TYPES = frozenset(t.value for t in MessageType)


def label(value: str | None, allowed: Set[str]) -> str:
    """``value`` if it is one of ``allowed``, ``none`` if absent, else ``other``."""
    if value is None:
        return NONE
    return value if value in allowed else OTHER


@dataclass
class MetricsServer:
    server: WSGIServer
    thread: threading.Thread

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def serve_metrics(
    registry: CollectorRegistry, port: int, host: str = DEFAULT_HOST
) -> MetricsServer | None:
    """Serve ``registry`` on http://host:port/metrics; None (logged) if the port is taken."""
    try:
        server, thread = start_http_server(port, addr=host, registry=registry)
    except OSError as e:
        log.error("metrics_not_served", host=host, port=port, error=type(e).__name__)
        return None
    log.info("metrics_served", host=host, port=int(server.server_address[1]))
    return MetricsServer(server, thread)
