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
from collections.abc import Iterator, Mapping, Set
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from wsgiref.simple_server import WSGIServer

import structlog
from cryptography import x509
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily

from sigbus.protocol.ids import MessageType
from sigbus.transport.natsauth import SERVER_CERT, NatsCredentials, client_cert

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


def tls_certs(creds: NatsCredentials, *, server: bool = False) -> dict[str, Path]:
    """The certificates this process presents: its client certificate, and with
    ``server`` the nats-server's (the hub runs it under ``sigbus up``). Empty in
    ``insecure_dev``. Label values are the closed set ``client``, ``server``."""
    if creds.insecure_dev or creds.keys_dir is None:
        return {}
    certs = {"client": creds.keys_dir / client_cert(creds.agency)}
    if server and (creds.keys_dir / SERVER_CERT).exists():
        certs["server"] = creds.keys_dir / SERVER_CERT
    return certs


def cert_expiry_seconds(path: Path, now: datetime) -> float | None:
    """Seconds until the PEM certificate at ``path`` expires (negative once it has);
    None if it cannot be read (the gauge is then absent, which the alert also catches)."""
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except (OSError, ValueError) as e:
        log.warning("tls_cert_unreadable", cert=path.name, error=type(e).__name__)
        return None
    return (cert.not_valid_after_utc - now).total_seconds()


def cert_expiry_gauge(
    name: str, certs: Mapping[str, Path], now: datetime
) -> Iterator[GaugeMetricFamily]:
    """``name``{cert="client"|"server"}: seconds until each certificate in use expires."""
    gauge = GaugeMetricFamily(
        name, "Seconds until the TLS certificate in use expires", labels=["cert"]
    )
    for kind, path in sorted(certs.items()):
        seconds = cert_expiry_seconds(path, now)
        if seconds is not None:
            gauge.add_metric([kind], seconds)
    yield gauge
