"""docker-compose.yml runs what the tests run, and could start (issue #12).

The build machines have no Docker engine, so the file is checked for everything that
made it fail to start before: a mounted path that does not exist, TLS files a node,
the hub or an adapter needs and does not get, a plaintext URL, no writable state, a
node configuration nats-server refuses, services started before what they need is
healthy. The cluster itself runs from the same rendered configuration in
tests/integration/test_cluster.py.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from sigbus.protocol.ids import HUB
from sigbus.transport.keystore import DEV_KEYS_DIR, load_directory
from sigbus.transport.natsserver import (
    COMPOSE_CERT_DIR,
    COMPOSE_NODES,
    compose_node,
    nats_server_binary,
    render_compose_configs,
)

REPO = Path(__file__).resolve().parents[1]
COMPOSE: dict[str, Any] = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
NODES = [compose_node(n) for n in range(1, COMPOSE_NODES + 1)]
#: Two hubs behind the lease (broker/failover.py): one decides, one stands by.
HUBS = ["broker-1", "broker-2"]


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path of a service's bind mounts."""
    out = {}
    for volume in service.get("volumes", []):
        host, target = volume.split(":")[:2]
        if host.startswith("./"):
            out[target] = host
    return out


def test_the_node_configurations_are_the_rendered_ones() -> None:
    rendered = render_compose_configs(DEV_KEYS_DIR)
    assert len(rendered) == COMPOSE_NODES == 3
    for path, text in rendered.items():
        stale = f"{path.name} is stale: run sigbus keys nats-config --compose-dir"
        assert path.read_text() == text, stale
        assert "sync_interval: always" in text
        routes = text.split("cluster {", 1)[1].split("\n}", 1)[0]
        assert "verify: true" in routes  # mutual TLS between the nodes


@pytest.mark.parametrize("node", NODES)
def test_every_node_configuration_parses(node: str, tmp_path: Path) -> None:
    """`nats-server -t`, with the container's paths pointed at the files they mount."""
    text = (REPO / "deploy" / "nats" / f"{node}.conf").read_text()
    mounts = _mounts(SERVICES[node])
    for target, host in mounts.items():
        if target.startswith(COMPOSE_CERT_DIR):
            text = text.replace(f'"{target}"', f'"{(REPO / host).resolve()}"')
    assert COMPOSE_CERT_DIR not in text, "a certificate the node reads is not mounted"
    text = text.replace('"/data/jetstream"', f'"{tmp_path / "js"}"')
    conf = tmp_path / f"{node}.conf"
    conf.write_text(text)
    done = subprocess.run(
        [str(nats_server_binary()), "-t", "-c", str(conf)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_mounted_path_exists_and_each_service_gets_its_tls_and_state() -> None:
    agencies = {e.agency for e in load_directory(DEV_KEYS_DIR).agencies if e.agency != HUB}
    assert {*HUBS, *agencies, *NODES} <= set(SERVICES)
    for name, service in SERVICES.items():
        mounts = _mounts(service)
        missing = [host for host in mounts.values() if not (REPO / host).exists()]
        assert not missing, (name, missing)
        # A standby hub serves no metrics: the hubs are the lease's to judge.
        assert "healthcheck" in service or name in HUBS, name
        if name in NODES:
            assert service["image"].startswith("nats:2.15"), name
            continue
        who = "hub" if name in HUBS else name
        for needed in (f"{who}.key.json", f"{who}.tls.crt", f"{who}.tls.key", "ca.crt",
                       "directory.json", "root.json"):  # fmt: skip
            assert f"/keys/{needed}" in mounts, (name, needed)
        assert service["environment"]["SIGBUS_STATE_DIR"] == "/state", name
        assert any(v.endswith(":/state") and not v.startswith("./") for v in service["volumes"])
        command = " ".join(service["command"])
        urls = re.search(r"--nats (\S+)", command)
        assert urls is not None, name
        assert urls.group(1) == ",".join(f"tls://{n}:4222" for n in NODES), name  # never nats://
        # Started only once every node answers its health check (an adapter then
        # waits for the hub's streams by itself).
        assert service["depends_on"] == {n: {"condition": "service_healthy"} for n in NODES}, name
    for hub in HUBS:
        assert "--replicas 3" in " ".join(SERVICES[hub]["command"])


def test_only_the_first_node_is_published_and_on_loopback() -> None:
    published = {n: s.get("ports", []) for n, s in SERVICES.items() if s.get("ports")}
    assert published == {NODES[0]: ["127.0.0.1:4222:4222"]}


def test_the_image_makes_the_state_volumes_the_service_users() -> None:
    """Docker copies a directory's ownership into a fresh named volume."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "--uid 10001" in dockerfile
    assert "chown sigbus /state /casesystem" in dockerfile
    assert "USER sigbus" in dockerfile
    copied = set(re.findall(r"^COPY (\S+) ", dockerfile, flags=re.M))
    packages = {p.name for p in (REPO / "sigbus").iterdir() if p.is_symlink()}
    assert packages <= copied, packages - copied  # every package the symlinks point at
