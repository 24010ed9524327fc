"""The bench's live world: an embedded nats-server as deployed, a hub, and three real
adapters, with one case whose consents cover every party.

The server is :class:`EmbeddedNats` secured as ``sigbus up`` runs it (mutual TLS,
nkeys and accounts from the keys directory, ``sync_interval: always``). For the
throughput and latency figures the hub runs in its own process
(:class:`HubProcess`), as deployed, and its CPU time is that process's. The
withdrawal figure needs to hold the hub and read its log in memory, so there it
runs on its own event loop in a thread of this process (:class:`HubThread`).
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from sigbus.agents.runtime import Adapter, Delivered
from sigbus.agents.setup import agency_setup
from sigbus.agents.social.consent import consents_of_everyone
from sigbus.broker.service import Broker
from sigbus.broker.setup import hub_setup
from sigbus.fixtures import birth_date_for_age, fictitious_personnummer
from sigbus.protocol.codes import NotDoneReason, StatusCode
from sigbus.protocol.envelope import Envelope
from sigbus.protocol.ids import AgencyId, MessageType, new_opaque_id
from sigbus.protocol.messages import CaseOpened, CommitmentStatus
from sigbus.protocol.release import ReleaseRecord
from sigbus.transport.bus import INGRESS_BACKLOG
from sigbus.transport.keystore import DEV_AGENCIES

_T = TypeVar("_T")

SENDER: AgencyId = "police"
RECIPIENTS: tuple[AgencyId, ...] = ("social", "school")
GUARDIANS = ("vh-1", "vh-2")
#: The one free-text field at its bound (messages.CommitmentStatus.note, 200 characters).
FULL_NOTE = ("uppföljning enligt plan " * 9)[:200]


def full_size_status() -> CommitmentStatus:
    """The largest message type at full size: a status with the longest note allowed."""
    return CommitmentStatus(
        commitment_id="cm-bench-" + "x" * 56,
        status=StatusCode.NOT_DONE,
        not_done_reason=NotDoneReason.OTHER_AGENCY_PENDING,
        as_of=datetime.now(UTC).date(),
        note=FULL_NOTE,
    )


def small_status() -> CommitmentStatus:
    """The smallest body the same type allows."""
    return CommitmentStatus(
        commitment_id="cm-bnch", status=StatusCode.DONE, as_of=datetime.now(UTC).date()
    )


class HubThread:
    """A hub (``broker/setup.py``) serving on its own event loop in its own thread."""

    def __init__(
        self,
        keys: Path,
        url: str,
        *,
        profile: cProfile.Profile | None,
        ingress_backlog: int = INGRESS_BACKLOG,
    ) -> None:
        self._keys, self._url, self._profile = keys, url, profile
        self._ingress_backlog = ingress_backlog
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Broker | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="sigbus-bench-hub", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        try:
            self._broker = hub_setup(self._keys).broker(
                self._url, ingress_backlog=self._ingress_backlog
            )
            await self._broker.start()
        except BaseException as e:  # noqa: BLE001 - handed to the starting thread
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        if self._profile is not None:
            self._profile.enable()  # this thread only: the hub's work, not the adapters'
        try:
            await self._broker.run()
        finally:
            if self._profile is not None:
                self._profile.disable()

    @property
    def broker(self) -> Broker:
        """The running hub; read its context and state only while it is idle."""
        assert self._broker is not None, "hub not started"
        return self._broker

    def call(self, coro: Coroutine[Any, Any, _T]) -> _T:
        assert self._loop is not None
        future: Future[_T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=30)

    def cpu_seconds(self) -> float:
        """CPU seconds the hub has used so far (user + system): its own thread and its
        worker threads, i.e. the whole process less the calling (adapters') thread.
        Call it from the adapters' thread only."""

        async def sample() -> float:
            return time.thread_time()

        self.call(sample())  # the hub's loop is responsive: a consistent point
        return time.process_time() - time.thread_time()

    def stop(self) -> None:
        if self._loop is not None and self._broker is not None:
            self._loop.call_soon_threadsafe(self._broker.request_stop)
        self._thread.join(timeout=15)


class HubProcess:
    """A hub in its own process (:mod:`sigbus.bench_hub`), as deployed: the hub and
    the adapters then run on separate cores instead of sharing one interpreter lock.
    Its CPU time is the process's user + system time, read from ``/proc``."""

    def __init__(self, keys: Path, url: str, *, profile: Path | None) -> None:
        self._args = [sys.executable, "-m", "sigbus.bench_hub", str(keys), url]
        if profile is not None:
            self._args.append(str(profile))
        self._proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self._proc = subprocess.Popen(  # noqa: S603 - our own module, our arguments
            self._args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()  # blocks until the hub serves, or dies
        if line.strip() != "ready":
            self._proc.kill()
            _, err = self._proc.communicate(timeout=10)
            said = err.strip().splitlines()
            raise RuntimeError(
                "the bench hub did not start: "
                + (said[-1] if said else f"exit {self._proc.returncode}")
            )

    def cpu_seconds(self) -> float:
        """CPU seconds the hub process has used so far (user + system, all its threads)."""
        assert self._proc is not None, "hub not started"
        stat = Path(f"/proc/{self._proc.pid}/stat").read_text()
        # Fields after the command name (which may hold spaces, inside parentheses):
        # utime and stime are fields 14 and 15 of proc(5).
        fields = stat[stat.rindex(")") + 2 :].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.send_signal(signal.SIGTERM)
        try:
            self._proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout=10)


class Hub(Protocol):
    def cpu_seconds(self) -> float: ...
    def stop(self) -> None: ...


@dataclass
class Handoffs:
    """When each recipient's handler got each message (perf_counter seconds)."""

    at: dict[str, dict[AgencyId, float]] = field(default_factory=dict)
    complete: dict[str, float] = field(default_factory=dict)
    waiters: dict[str, asyncio.Event] = field(default_factory=dict)
    #: A release record as the hub signed it (the pure-pipeline figure signs its like).
    last_record: ReleaseRecord | None = None

    def handler(self, agency: AgencyId) -> Callable[[Delivered], Coroutine[Any, Any, None]]:
        async def handle(delivered: Delivered) -> None:
            message_id = delivered.header.message_id
            self.last_record = delivered.record
            seen = self.at.setdefault(message_id, {})
            seen[agency] = time.perf_counter()
            if len(seen) == len(RECIPIENTS):
                self.complete[message_id] = max(seen.values())
                waiter = self.waiters.pop(message_id, None)
                if waiter is not None:
                    waiter.set()

        return handle


HubT = TypeVar("HubT", bound=Hub)


@dataclass
class World(Generic[HubT]):
    hub: HubT
    adapters: dict[AgencyId, Adapter]
    handoffs: Handoffs = field(default_factory=Handoffs)
    case_ref: str = ""
    _receivers: list[asyncio.Task[None]] = field(default_factory=list)

    @property
    def sender(self) -> Adapter:
        return self.adapters[SENDER]

    def seal_status(self, body: CommitmentStatus) -> Envelope:
        """The sender's envelope for ``body`` in the bench case, to both recipients."""
        return self.sender.seal(
            MessageType.COMMITMENT_STATUS, body, case_ref=self.case_ref, recipients=RECIPIENTS
        )

    def start_receivers(self) -> None:
        for agency in RECIPIENTS:
            self._receivers.append(asyncio.create_task(self._receive(agency)))

    async def _receive(self, agency: AgencyId) -> None:
        adapter, handle = self.adapters[agency], self.handoffs.handler(agency)
        while True:
            await adapter.receive(handle, max_messages=100, timeout=0.2)

    async def close(self) -> None:
        for task in self._receivers:
            task.cancel()
        await asyncio.gather(*self._receivers, return_exceptions=True)
        for adapter in self.adapters.values():
            await adapter.close()
        self.hub.stop()


async def open_world(keys: Path, url: str, *, profile: Path | None) -> World[HubProcess]:
    """The world with the hub in its own process, as deployed."""
    hub = HubProcess(keys, url, profile=profile)
    await asyncio.to_thread(hub.start)
    adapters = {a: await agency_setup(a, keys).connect(url) for a in DEV_AGENCIES}
    world = World(hub, adapters)
    world.start_receivers()
    await open_case(world)
    return world


async def open_case(world: World[Any]) -> str:
    """Open a case with consent from the young person and both guardians (as
    tests/integration/conftest.py does), and wait until a first release arrives."""
    social = world.adapters["social"]
    case = new_opaque_id("case", 12)
    youth = fictitious_personnummer(birth_date_for_age(datetime.now(UTC).date(), 16), 982)
    await social.send(
        MessageType.CASE_OPENED,
        CaseOpened(personnummer=youth, guardians_with_custody=GUARDIANS, parties=DEV_AGENCIES),
        case_ref=case,
    )
    events = consents_of_everyone(
        GUARDIANS,
        parties=DEV_AGENCIES,
        categories=(MessageType.COMMITMENT_STATUS,),
        now=datetime.now(UTC),
    )
    for event in events:
        await social.send(MessageType.CONSENT_EVENT, event, case_ref=case)
    world.case_ref = case
    return case
