"""The hub lease (issue 12): of two hub processes, one decides, the other stands by.

The lease is one key in a JetStream KV bucket whose entries live :data:`LEASE_TTL_S`
seconds (the bucket's ``max_age``). A hub takes it with a create (refused while
the key exists) and renews it every :data:`RENEW_EVERY_S` with an update checked
against the revision it holds, so two hubs can never both hold it: the loser's
update is refused. A hub that stops renewing (killed, stalled, cut off) loses
the key when the server ages it out; a standby polling for it then takes it.

What the lease guarantees is timed on the holder's own monotonic clock:
:meth:`HubLease.still_held` is true only until ``ttl - renew_every`` after the
send of the last renewal that the server confirmed, which is before the server
can age that renewal out. So a hub stops deciding before anyone else can take
the lease. The log's expected-sequence append (broker/log_writer.py) fences
whatever the lease cannot (a paused process whose clock jumped): a second writer's
append is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable

import structlog
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from sigbus.protocol.subjects import LEASE_BUCKET, LEASE_KEY

log = structlog.get_logger("sigbus.lease")

#: How long an unrenewed lease lives on the server (seconds).
LEASE_TTL_S = 5.0
#: How often the holder renews it, and how often a standby looks for it (seconds).
RENEW_EVERY_S = 1.0
STANDBY_POLL_S = 0.25


def holder_name() -> str:
    """Who holds the lease: host and pid (logged; never personal data)."""
    return f"{socket.gethostname()}:{os.getpid()}"


async def ensure_lease_bucket(js: JetStreamContext, *, replicas: int = 1) -> KeyValue:
    """The lease bucket (idempotent): one value per key, entries age out after the TTL."""
    return await js.create_key_value(
        KeyValueConfig(
            bucket=LEASE_BUCKET,
            history=1,
            ttl=LEASE_TTL_S,
            storage=StorageType.FILE,
            replicas=replicas,
        )
    )


class HubLease:
    def __init__(
        self,
        kv: KeyValue,
        holder: str,
        *,
        ttl: float = LEASE_TTL_S,
        renew_every: float = RENEW_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kv = kv
        self.holder = holder
        self._ttl = ttl
        self._renew_every = renew_every
        self._clock = clock
        self._revision: int | None = None
        self._valid_until = 0.0

    def still_held(self) -> bool:
        """True while no other hub can have taken the lease (asked before each append)."""
        return self._revision is not None and self._clock() < self._valid_until

    def _confirmed(self, revision: int, sent_at: float) -> None:
        self._revision = revision
        self._valid_until = sent_at + self._ttl - self._renew_every

    async def try_acquire(self) -> bool:
        """Take the lease if nobody holds it (a create: refused while the key exists)."""
        sent_at = self._clock()
        try:
            revision = await self._kv.create(LEASE_KEY, self.holder.encode())
        except KeyWrongLastSequenceError:
            return False
        self._confirmed(revision, sent_at)
        log.warning("hub_lease_acquired", holder=self.holder)
        return True

    async def acquire(self, stopping: asyncio.Event) -> bool:
        """Stand by until the lease is free, then take it; False if asked to stop first."""
        announced = False
        while not stopping.is_set():
            try:
                if await self.try_acquire():
                    return True
            except (NatsError, TimeoutError, asyncio.TimeoutError) as e:  # noqa: UP041
                log.warning("hub_lease_unreachable", error=type(e).__name__, detail=str(e)[:200])
            if not announced:
                log.warning("hub_standby", holder=self.holder)
                announced = True
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), timeout=STANDBY_POLL_S)
        return False

    async def renew(self) -> bool:
        """One renewal, checked against the revision held; False once the lease is lost."""
        if self._revision is None:
            return False
        sent_at = self._clock()
        try:
            revision = await self._kv.update(LEASE_KEY, self.holder.encode(), last=self._revision)
        except KeyWrongLastSequenceError:
            self._lost("taken_over")
            return False
        except (NatsError, TimeoutError, asyncio.TimeoutError) as e:  # noqa: UP041
            if not self.still_held():
                self._lost(type(e).__name__)
                return False
            log.warning("hub_lease_renew_failed", error=type(e).__name__, detail=str(e)[:200])
            return True
        # Accepted against our revision: nobody took the key since (an expired key
        # has no revision to match), so the lease is ours for another ttl.
        self._confirmed(revision, sent_at)
        return True

    def _lost(self, reason: str) -> None:
        if self._revision is not None:
            log.error("hub_lease_lost", holder=self.holder, reason=reason)
        self._revision = None

    async def keep(self) -> None:
        """Renew until the lease is lost (run beside the broker; cancelled on stop)."""
        while await self.renew():
            await asyncio.sleep(self._renew_every)

    async def release(self) -> None:
        """Give the lease up at a clean stop, so a standby takes over at once."""
        if self._revision is None:
            return
        revision, self._revision = self._revision, None
        with contextlib.suppress(NatsError, TimeoutError, asyncio.TimeoutError):
            await self._kv.delete(LEASE_KEY, last=revision)
            log.info("hub_lease_released", holder=self.holder)
