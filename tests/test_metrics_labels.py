"""Hub and adapter metrics without a bus: key expiry, label closing, the endpoint (issue #14)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from prometheus_client import generate_latest

from sigbus.agents.metrics import AdapterMetrics
from sigbus.broker.metrics import key_expiry
from sigbus.protocol.directory import KeyUse
from sigbus.transport.keystore import DEV_KEYS_DIR, load_directory
from sigbus.transport.metrics import NONE, OTHER, label, serve_metrics

NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)


def test_key_expiry_is_the_first_use_to_run_out_and_ignores_revoked_keys() -> None:
    entry = load_directory(DEV_KEYS_DIR, now=NOW).entry("police")
    by_use: dict[str, datetime] = {}
    for k in entry.keys:
        by_use[k.use] = max(by_use.get(k.use, k.not_after), k.not_after)
    assert key_expiry(entry, NOW) == min((t - NOW).total_seconds() for t in by_use.values())
    revoked = entry.model_copy(
        update={
            "keys": tuple(
                k.model_copy(update={"revoked_at": NOW - timedelta(seconds=1)})
                if k.use is KeyUse.SIGNING
                else k
                for k in entry.keys
            )
        }
    )
    assert key_expiry(revoked, NOW) == 0.0


def test_label_values_outside_the_closed_set_become_other() -> None:
    allowed = {"referral"}
    assert label("referral", allowed) == "referral"
    assert label("19121212-1212", allowed) == OTHER
    assert label(None, allowed) == NONE


def test_adapter_endpoint_serves_zeroed_series_on_loopback() -> None:
    metrics = AdapterMetrics()
    server = serve_metrics(metrics.registry, 0)
    assert server is not None
    try:
        assert server.server.server_address[0] == "127.0.0.1"
        text = httpx.get(f"http://127.0.0.1:{server.port}/metrics").text
    finally:
        server.close()
    assert 'sigbus_adapter_releases_received_total{message_type="referral"} 0.0' in text
    assert text == generate_latest(metrics.registry).decode()
