"""The hub's and an adapter's Prometheus endpoints on a real hub (issue #14).

Scraped over HTTP on 127.0.0.1 after a release and a deny: the decision counters
count them, every label value is from its closed set, and no personnummer, case
ref, message id, decision id or subject pseudonym appears in the scrape. The
sample Grafana dashboard uses only metric names the endpoints expose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml
from cryptography import x509
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from sigbus.agents.metrics import NOTICE_OUTCOMES
from sigbus.broker.metrics import OUTCOMES, REASONS, agencies_of, serve_hub_metrics
from sigbus.protocol.ids import MessageType
from sigbus.transport.metrics import MESSAGE_TYPES, NONE, OTHER, serve_metrics
from tests.integration.conftest import LUL6, World
from tests.integration.test_flow import referral

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "sigbus-dashboard.json"
ALERTS = REPO / "deploy" / "prometheus" / "sigbus-alerts.yml"
P, S, SO = "police", "school", "social"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def hub_endpoint(world: World) -> AsyncIterator[str]:
    port = _free_port()
    task = asyncio.create_task(serve_hub_metrics(world.broker.metrics, world.broker, port))
    url = f"http://127.0.0.1:{port}/metrics"
    try:
        for _ in range(100):
            with contextlib.suppress(httpx.TransportError):
                async with httpx.AsyncClient() as client:
                    await client.get(url)
                break
            await asyncio.sleep(0.05)
        yield url
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def scrape(url: str) -> str:
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200
    return response.text


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def metric_names(text: str) -> set[str]:
    return {name for name, _ in samples(text)}


async def test_hub_scrape_counts_decisions_and_carries_no_personal_data(world: World) -> None:
    case = await world.open_case_with_consents()
    mid = await world.adapters[P].send(
        MessageType.REFERRAL, referral(world), recipients=(SO, S), assertion=LUL6
    )
    await world.settle()
    async with hub_endpoint(world) as url:
        text = await scrape(url)
        got = samples(text)

        def decisions(outcome: str, reason: str) -> float:
            key = (("message_type", "referral"), ("outcome", outcome), ("reason", reason))
            return got.get(("sigbus_hub_decisions_total", key), 0.0)

        assert decisions("release", NONE) == 1.0
        assert decisions("deny", "policy:statute_recipient_not_allowed") == 1.0
        recorded = sum(
            v
            for (name, labels), v in got.items()
            if name == "sigbus_hub_decisions_total" and ("outcome", "recorded") in labels
        )
        assert recorded == 4.0  # the case opened, consent of the young person and two guardians
        messages = 1 + 4  # the referral, the case and its three consent events
        assert got[("sigbus_hub_decision_latency_seconds_count", ())] == messages
        assert got[("sigbus_hub_log_entries", ())] == world.broker.writer.size == 6
        expires = world.broker.ctx.directory.expires_at - datetime.now(UTC)
        assert abs(got[("sigbus_hub_directory_expiry_seconds", ())] - expires.total_seconds()) < 60
        depth = {
            dict(labels)["agency"]: v
            for (name, labels), v in got.items()
            if name == "sigbus_hub_ingress_queue_depth"
        }
        assert set(depth) == set(agencies_of(world.broker.ctx))
        keys = {
            dict(labels)["agency"]: v
            for (name, labels), v in got.items()
            if name == "sigbus_hub_agency_key_expiry_seconds"
        }
        assert set(keys) == set(agencies_of(world.broker.ctx))
        assert min(keys.values()) > 0  # the dev keys are valid
        assert "sigbus_hub_witness_lag_entries" not in metric_names(text)  # not known yet
        # The certificates the hub presents: its client one and the nats-server's.
        certs = {
            dict(labels)["cert"]: v
            for (name, labels), v in got.items()
            if name == "sigbus_hub_tls_cert_expiry_seconds"
        }
        assert set(certs) == {"client", "server"}
        keys_dir = world.broker.metrics.certs["client"].parent
        pem = (keys_dir / "hub.tls.crt").read_bytes()
        until = x509.load_pem_x509_certificate(pem).not_valid_after_utc - datetime.now(UTC)
        assert abs(certs["client"] - until.total_seconds()) < 60

        # Every label value from its closed set.
        allowed = {
            "outcome": OUTCOMES,
            "reason": REASONS,
            "message_type": MESSAGE_TYPES | {NONE, OTHER},
            "agency": set(agencies_of(world.broker.ctx)),
            "cert": {"client", "server"},
            "le": None,  # the histogram's bucket bounds
        }
        for (name, labels), _ in got.items():
            for key, value in labels:
                assert key in allowed, (name, key)
                values = allowed[key]
                assert values is None or value in values, (name, key, value)

        # Nothing that names a person, a case or a message.
        entries = await world.log_entries()
        secrets = {world.youth, world.youth[2:], world.youth.replace("-", ""), case, mid}
        secrets |= {e.decision_id for e in entries} | {e.message_id for e in entries}
        secrets |= {e.subject_ref for e in entries if e.subject_ref}
        for secret in secrets:
            assert secret not in text, secret
        # No number in any label value (but the histogram's bounds): no pseudonym or date.
        assert not [v for (_, labels), _ in got.items() for k, v in labels if k != "le" and
                    re.search(r"\d", v)]  # fmt: skip

        # Witness lag: once a witness's cosigned size is known, the log's lead over it.
        world.broker.metrics.cosigned_size = 2
        lag = samples(await scrape(url))[("sigbus_hub_witness_lag_entries", ())]
        assert lag == world.broker.writer.size - 2


async def test_adapter_scrape_counts_releases_and_notices(world: World) -> None:
    mid = await world.adapters[P].send(
        MessageType.REFERRAL, referral(world), recipients=(SO, S), assertion=LUL6
    )
    await world.settle()
    social, police = world.adapters[SO], world.adapters[P]
    port = _free_port()
    server = serve_metrics(social.metrics.registry, port)
    assert server is not None
    try:
        got = samples(await scrape(f"http://127.0.0.1:{port}/metrics"))
    finally:
        server.close()
    key = (("message_type", "referral"),)
    assert got[("sigbus_adapter_releases_received_total", key)] == 1.0
    assert not [k for k, v in got.items() if k[0] == "sigbus_adapter_handler_failures_total" and v]
    police.metrics.outbox(police.outbox)
    text = _exposition(police.metrics.registry)
    notice = samples(text)
    assert notice[("sigbus_adapter_notice_items_total", (("outcome", "released"),))] == 1.0
    assert notice[("sigbus_adapter_notice_items_total", (("outcome", "denied"),))] == 1.0
    assert notice[("sigbus_adapter_outbox_pending", ())] == 0.0
    assert mid not in text
    assert notice[("sigbus_adapter_tls_cert_expiry_seconds", (("cert", "client"),))] > 0
    allowed = {"message_type": MESSAGE_TYPES, "outcome": NOTICE_OUTCOMES, "cert": {"client"}}
    for (_, labels), _ in notice.items():
        for k, v in labels:
            assert v in allowed[k]


def _exposition(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def test_a_taken_port_costs_the_metrics_only(world: World) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert serve_metrics(world.broker.metrics.registry, taken.getsockname()[1]) is None


async def test_dashboard_uses_only_exposed_metrics(world: World) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    rules = [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]
    assert {"SigbusTlsCertificateExpiresSoon", "SigbusDirectoryExpiresSoon"} <= {
        r["alert"] for r in rules
    }
    exprs += [str(r["expr"]) for r in rules]
    used = {m for e in exprs for m in re.findall(r"\bsigbus_[a-z_]+", e)}
    assert used, "the dashboard queries no sigbus metric"
    assert "sigbus_adapter_tls_cert_expiry_seconds" in used
    await world.adapters[P].send(
        MessageType.REFERRAL, referral(world), recipients=(SO, S), assertion=LUL6
    )
    await world.settle()
    world.broker.metrics.cosigned_size = 0
    async with hub_endpoint(world) as url:
        exposed = metric_names(await scrape(url))
    exposed |= metric_names(_exposition(world.adapters[SO].metrics.registry))
    missing = {m for m in used if m not in exposed}
    assert not missing, missing
