"""``--metrics-port``: the Prometheus endpoint beside a running hub or adapter (issue #14)."""

from __future__ import annotations

import asyncio
import contextlib

from sigbus.broker.metrics import serve_hub_metrics
from sigbus.broker.service import Broker
from sigbus.transport.metrics import DEFAULT_HOST


def hub_metrics_task(
    broker: Broker, port: int | None, host: str = DEFAULT_HOST
) -> asyncio.Task[None] | None:
    """The hub's metrics served while it runs; None when no port was asked for."""
    if port is None:
        return None
    return asyncio.create_task(serve_hub_metrics(broker.metrics, broker, port, host))


async def stop_metrics(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
