"""A three-node JetStream cluster survives a node (issue #12).

Three real nats-servers on loopback, routed with mutual TLS from the configuration
code docker-compose's nodes are rendered by; every stream has three replicas and
each node fsyncs every write. Under a steady load (police referrals to social
services, through the police adapter's outbox, handed on by a running
`sigbus social serve`), the test kills with SIGKILL, in turn: the log stream's
leader, a follower, and two nodes at once. Each comes back on its own store.

It asserts that nothing the bus acknowledged is lost, that each message is decided
once and handed to the case system once, that no publish is acknowledged while two
of three nodes are down (a write needs a majority), and prints the publish gap
each kill caused.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from nats.errors import Error as NatsError

from sigbus.agents.errors import PublishFailed
from sigbus.agents.outbox import Outbox
from sigbus.agents.runtime import Adapter
from sigbus.agents.setup import agency_setup
from sigbus.broker.service import Broker
from sigbus.broker.setup import hub_setup
from sigbus.protocol.ids import MessageType
from sigbus.protocol.subjects import LOG_STREAM
from sigbus.transport.bus import connect
from sigbus.transport.natsserver import EmbeddedCluster
from tests.integration.conftest import LUL6
from tests.integration.test_reconnect import SO, P, dropped, log_entries, referral, wait_for_drop
from tests.integration.test_serve import serve, stop

REPLICAS = 3
#: Between sends: a steady 20 msg/s, so a gap in the acks is the cluster's, not ours.
SEND_EVERY_S = 0.05
OUTAGE_S = 3.0


@pytest.fixture
def cluster(tmp_path: Path, keys_dir: Path) -> Iterator[EmbeddedCluster]:
    nodes = EmbeddedCluster(tmp_path / "cluster", keys_dir=keys_dir, size=REPLICAS)
    nodes.start()
    try:
        yield nodes
    finally:
        nodes.stop()


class Sender:
    """Queues a referral every :data:`SEND_EVERY_S` and flushes the outbox; notes when
    each publish was acknowledged."""


    def __init__(self, police: Adapter) -> None:
        self.police = police
        self.queued: list[str] = []
        self.acked_at: list[float] = []
        self.stopped = asyncio.Event()

    async def run(self) -> None:
        while not self.stopped.is_set():
            item = self.police.queue(
                MessageType.REFERRAL, referral(), recipients=(SO,), assertion=LUL6,
                message_id=f"msg-cluster-{len(self.queued):05d}",
            )  # fmt: skip
            self.queued.append(item.message_id)
            with contextlib.suppress(PublishFailed):
                delivered = await self.police.flush()
                now = time.monotonic()
                self.acked_at.extend([now] * delivered)
            await asyncio.sleep(SEND_EVERY_S)



def longest_gap(times: list[float], start: float, end: float) -> float:
    """The longest wait between two events around [start, end]."""
    inside = sorted(t for t in times if start - 1.0 <= t <= end)
    return max((b - a for a, b in itertools.pairwise(inside)), default=end - start)


async def watch_decisions(broker: Broker, seen: list[float], stopped: asyncio.Event) -> None:
    """Note when the hub's count of decided messages grows."""
    last = broker.processed
    while not stopped.is_set():
        await asyncio.sleep(0.05)
        if broker.processed > last:
            last = broker.processed
            seen.append(time.monotonic())


async def _log_peers(url: str, keys: Path) -> tuple[str, list[str]]:
    """The log stream's leader and followers, once all three are current again."""
    nc = await connect(url, name="test-cluster-probe", creds=hub_setup(keys).creds)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                info = await nc.jetstream().stream_info(LOG_STREAM)
                cluster = info.cluster
                assert cluster is not None
                peers = cluster.replicas or []
                if (
                    cluster.leader
                    and len(peers) == REPLICAS - 1
                    and all(p.current and not p.offline for p in peers)
                ):
                    return cluster.leader, [p.name for p in peers]
            except (NatsError, TimeoutError):
                pass
            assert time.monotonic() < deadline, "the log stream did not recover its replicas"
            await asyncio.sleep(0.3)
    finally:
        await nc.close()


async def test_a_three_node_cluster_loses_nothing_when_nodes_die(
    cluster: EmbeddedCluster, tmp_path: Path, keys_dir: Path
) -> None:
    url = cluster.url
    data = tmp_path / "data"
    drop = tmp_path / "social-drop"
    env = {**os.environ, "SIGBUS_DATA_DIR": str(data)}
    broker = hub_setup(keys_dir).broker(url, replicas=REPLICAS)
    await broker.start()  # waits for the cluster's JetStream (waiting_for_jetstream)
    hub = asyncio.ensure_future(broker.run())
    social = await serve(SO, url, keys_dir, env, "--out", str(drop))
    police = await agency_setup(P, keys_dir).connect(url)
    police.outbox = Outbox(data / f"outbox-{P}.sqlite")
    sender = Sender(police)
    sending = asyncio.ensure_future(sender.run())
    decided_at: list[float] = []
    watching = asyncio.ensure_future(watch_decisions(broker, decided_at, sender.stopped))
    gaps: dict[str, float] = {}
    hub_gaps: dict[str, float] = {}
    try:
        await asyncio.sleep(2)  # steady state first
        for phase in ("leader", "follower", "two_nodes"):
            leader, followers = await _log_peers(url, keys_dir)
            victims = {
                "leader": [leader],
                "follower": [followers[0]],
                "two_nodes": [leader, followers[0]],
            }[phase]
            killed_at = time.monotonic()
            ports = {name: cluster.node(name).kill() for name in victims}
            await asyncio.sleep(OUTAGE_S)
            if phase == "two_nodes":
                # One node of three is no majority: nothing may be acknowledged now,
                # since an acknowledged write must survive the loss of any node.
                quiet = [t for t in sender.acked_at if killed_at + 1.0 < t]
                assert not quiet, f"{len(quiet)} publishes acknowledged without a majority"
            for name, port in ports.items():
                cluster.node(name).start_again(port)
            back_at = time.monotonic()
            await _log_peers(url, keys_dir)
            while not [t for t in sender.acked_at if t > back_at]:  # acks flow again
                assert time.monotonic() < back_at + 60, f"no publish acknowledged after {phase}"
                await asyncio.sleep(0.1)
            while not [t for t in decided_at if t > back_at]:  # and the hub decides again
                assert time.monotonic() < back_at + 60, f"the hub stalled after {phase}"
                await asyncio.sleep(0.1)
            gaps[phase] = longest_gap(sender.acked_at, killed_at, time.monotonic())
            hub_gaps[phase] = longest_gap(decided_at, killed_at, time.monotonic())
        sender.stopped.set()
        await sending
        await watching
        while police.outbox.pending():  # the rest, as the hub makes room in the backlog
            with contextlib.suppress(PublishFailed):
                await police.flush()
            await asyncio.sleep(0.1)
        await wait_for_drop(drop, sender.queued, 120)
        assert not hub.done(), "the hub's loop ended"
        print("publish_gap_s", {k: round(v, 2) for k, v in gaps.items()})
        print("decision_gap_s", {k: round(v, 2) for k, v in hub_gaps.items()})
        # A single node's death costs a leader election and a timed-out append or
        # two (broker/log_writer.py: 5 s), never an outage (it used to stop the hub).
        # Measured 0.1-2 s for publishes, 5-12 s for decisions (docs/operations.md);
        # the bound leaves room for a loaded machine.
        assert max(gaps["follower"], gaps["leader"]) < 30, gaps
        assert max(hub_gaps["follower"], hub_gaps["leader"]) < 30, hub_gaps
        # Nothing lost, nothing decided twice, nothing handed on twice.
        counts: dict[str, int] = {}
        for entry in await log_entries(broker):
            counts[entry.message_id] = counts.get(entry.message_id, 0) + 1
        assert counts == {m: 1 for m in sender.queued}
        assert dropped(drop) == sorted(sender.queued)
        assert len(sender.queued) > 100
    finally:
        sender.stopped.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(sending, 10)
        broker.request_stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(hub, 10)
        await stop(social)
        police.outbox.close()
        await police.close()
