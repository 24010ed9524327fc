"""A hub process behind the lease (issue 12): stand by, take over, and step down.

`sigbus broker run` serves through :func:`serve_with_lease`: any number of hub
processes may run against one NATS; the one holding the lease decides, the
others stand by. A hub whose lease lapses (it could not renew in time) stops
before its next append (:attr:`Broker.lease`), closes its broker without a
snapshot, and stands by again; a fenced append does the same. Each active term
is a fresh :class:`Broker`, started from the log and state as stored.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import structlog
from nats.errors import Error as NatsError

from sigbus.broker.errors import LeaseLostError, LogFencedError
from sigbus.broker.service import Broker
from sigbus.transport.bus import Backoff, connect
from sigbus.transport.lease import HubLease, ensure_lease_bucket, holder_name
from sigbus.transport.natsauth import NatsCredentials

log = structlog.get_logger("sigbus.broker.failover")


async def serve_with_lease(
    url: str,
    creds: NatsCredentials,
    make_broker: Callable[[], Broker],
    stopping: asyncio.Event,
    *,
    replicas: int = 1,
    on_active: Callable[[Broker], None] | None = None,
) -> None:
    """Stand by for the lease, decide while it is held, until ``stopping`` is set."""
    nc = await connect(url, name="hub-lease", creds=creds)
    backoff = Backoff()
    try:
        lease: HubLease | None = None
        while not stopping.is_set():
            # Transport trouble (a node's death, a leader election) while standing by,
            # taking the lease or starting a term never ends the process: it stands
            # by again, with bounded backoff (the soak found hubs that died here).
            try:
                if lease is None:
                    kv = await ensure_lease_bucket(nc.jetstream(), replicas=replicas)
                    lease = HubLease(kv, holder_name())
                if not await lease.acquire(stopping):
                    return
                await _active_term(lease, make_broker(), stopping, on_active)
                backoff.reset()
            except (NatsError, TimeoutError, asyncio.TimeoutError) as e:  # noqa: UP041
                delay = backoff.next()
                log.warning("hub_term_failed", error=type(e).__name__, retry_in_s=delay)
                if lease is not None:
                    with contextlib.suppress(NatsError, TimeoutError, asyncio.TimeoutError):
                        await lease.release()
                await asyncio.sleep(delay)
    finally:
        with contextlib.suppress(NatsError):
            await nc.close()


async def _active_term(
    lease: HubLease,
    broker: Broker,
    stopping: asyncio.Event,
    on_active: Callable[[Broker], None] | None,
) -> None:
    broker.lease = lease
    keeper = asyncio.create_task(lease.keep())
    forward = asyncio.create_task(_forward_stop(stopping, broker))
    try:
        await broker.start()
        if on_active is not None:
            on_active(broker)
        log.warning("hub_active", holder=lease.holder)
        await broker.run()  # until a stop is asked: then a clean stop with a snapshot
    except (LeaseLostError, LogFencedError) as e:
        log.error("hub_stepped_down", holder=lease.holder, reason=type(e).__name__)
        keeper.cancel()
        await lease.release()  # first: the stop below then writes no snapshot
        await broker.stop()
    except (NatsError, TimeoutError, asyncio.TimeoutError):  # noqa: UP041
        keeper.cancel()
        with contextlib.suppress(Exception):  # its connection, whatever state it is in
            await broker.stop()
        raise  # serve_with_lease stands by again
    finally:
        forward.cancel()
        keeper.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await keeper
    await lease.release()  # a clean stop hands over at once


async def _forward_stop(stopping: asyncio.Event, broker: Broker) -> None:
    await stopping.wait()
    broker.request_stop()
