"""The hub's view of refusals at the bus: which agencies' backlogs are full.

The bus refuses an agency's message beyond ``transport.bus.INGRESS_BACKLOG``
(JetStream's per-subject limit, discard new) before the hub sees it, and tells
only the sender (``publish_refused``, reason ``backlog_full``). A refused
message must not become a log entry: a flood would then write the disclosure
log full, which is the attack of issue 9 §4. What the hub can and does record
is the condition that causes every such refusal: an agency's backlog reaching
the limit (``agency_backlog_full``, with the agency and the reason) and
draining again (``agency_backlog_drained``). Oversized messages and connection
or subscription caps are refused by nats-server itself, which logs each one with
the account's name in its own log (``run/nats-server.log`` under ``sigbus up``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import structlog
from nats.errors import Error as NatsError
from nats.js import JetStreamContext

from sigbus.protocol.subjects import INGRESS_ALL, INGRESS_STREAM, ingress_sender
from sigbus.transport.bus import INGRESS_BACKLOG

log = structlog.get_logger("sigbus.backlog")

#: How often the hub looks at the backlogs (one STREAM.INFO request).
WATCH_INTERVAL_S = 2.0


def full_backlogs(waiting: Mapping[str, int], limit: int) -> dict[str, int]:
    """Agencies whose ingress subject holds ``limit`` messages: their next is refused."""
    return {
        agency: n
        for subject, n in waiting.items()
        if n >= limit and (agency := ingress_sender(subject)) is not None
    }


class BacklogWatch:
    """Logs when an agency's backlog fills (its messages are being refused) and drains."""

    def __init__(self, *, limit: int = INGRESS_BACKLOG, interval_s: float = WATCH_INTERVAL_S):
        self._limit = limit
        self._interval_s = interval_s
        self._next = 0.0
        self.full: dict[str, int] = {}
        #: How many wait per agency at the last look (the metrics' queue depth).
        self.waiting: dict[str, int] = {}

    def observe(self, waiting: Mapping[str, int]) -> None:
        self.waiting = {
            agency: n for subject, n in waiting.items() if (agency := ingress_sender(subject))
        }
        full = full_backlogs(waiting, self._limit)
        for agency in sorted(full.keys() - self.full.keys()):
            log.warning(
                "agency_backlog_full",
                agency=agency,
                waiting=full[agency],
                limit=self._limit,
                reason="backlog_full",
            )
        for agency in sorted(self.full.keys() - full.keys()):
            log.info("agency_backlog_drained", agency=agency, limit=self._limit)
        self.full = full

    async def poll(self, js: JetStreamContext) -> None:
        """At most once per interval: ask the stream how many wait per agency."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._interval_s
        try:
            info = await js.stream_info(INGRESS_STREAM, subjects_filter=INGRESS_ALL)
        except (NatsError, TimeoutError) as e:
            log.warning("backlog_watch_failed", error=type(e).__name__)
            return
        self.observe(info.state.subjects or {})
