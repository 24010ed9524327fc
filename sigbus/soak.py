"""`sigbus soak`: a bounded soak with faults, and an exact account at the end (issue #12).

A three-node JetStream cluster on loopback (the configuration docker-compose's nodes
are rendered from), two hubs behind the lease and the three adapters as their own
processes (`sigbus broker run --replicas 3`, `sigbus <agency> serve`), and steady load:
referrals and commitment updates queued into the police and school adapters'
durable outboxes, which their `serve` processes deliver. Meanwhile random SIGKILLs
of a hub, of an adapter, or of one NATS node, each brought back after a short
while on its own store.

At the end every message id is accounted for, from the log the hub wrote and
the hand-offs the case systems received (an append-only file per agency, so a
second hand-off would show): decided once, handed on once, nothing lost. The log
is exported as the auditor and verified offline against the pinned root, the
signed directory and the witness quorum, as a compliance officer would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.errors import Error as NatsError

from sigbus.agents.outbox import Outbox
from sigbus.agents.runtime import Adapter
from sigbus.agents.setup import agency_setup
from sigbus.agents.social.consent import consents_of_everyone
from sigbus.audit.entry import LogEntry
from sigbus.broker.setup import hub_setup
from sigbus.fixtures import birth_date_for_age, fictitious_personnummer, lul6_referral
from sigbus.protocol.codes import StatusCode
from sigbus.protocol.ids import AgencyId, MessageType, new_opaque_id
from sigbus.protocol.messages import (
    CaseOpened,
    CommitmentStatus,
    StatutoryAssertion,
)
from sigbus.protocol.subjects import LOG_STREAM
from sigbus.transport.bus import connect, read_by_sequence
from sigbus.transport.errors import TransportError
from sigbus.transport.natsserver import EmbeddedCluster, EmbeddedNats

FAULTS = ("hub", "adapter", "nats")
#: Who queues load: the police (LUL 6 § referrals to social services, a statutory
#: basis), the school (commitment updates to police and social services, under the
#: case's consent), and social services (the case and its consents first).
SENDERS: tuple[AgencyId, ...] = ("police", "school", "social")
GUARDIANS = ("vh-1", "vh-2")
HUBS = ("hub-a", "hub-b")
AGENCIES: tuple[AgencyId, ...] = ("police", "school", "social")
#: The police's own reference for a LUL 6 § notification (fictitious).
LUL6 = StatutoryAssertion(basis="lul_6", evidence_id="dnr-polis-soak")
#: Queued messages per second, all senders together.
RATE = 10.0
#: How long a killed process or node stays down.
DOWN_S = (0.5, 2.5)
SETTLE_TIMEOUT_S = 240.0
LOG_READ_TRIES = 15


def progress(event: str, **values: object) -> None:
    """One line per step on stderr; the account goes to stdout."""
    detail = " ".join(f"{k}={v}" for k, v in values.items())
    print(f"soak: {event} {detail}".rstrip(), file=sys.stderr, flush=True)


@dataclass
class SoakSettings:
    keys: Path
    work: Path
    minutes: float
    faults: tuple[str, ...]
    #: Mean seconds between kills (uniform from half to one and a half of it).
    kill_every_s: float = 9.0
    seed: int | None = None


@dataclass
class Proc:
    """One sigbus process the soak runs, kills and starts again."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(  # noqa: S603 - our own interpreter and module
                self.argv, env=self.env, stdout=subprocess.DEVNULL, stderr=out,
                start_new_session=True,
            )  # fmt: skip

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Account:
    kills: Counter[str] = field(default_factory=Counter)
    queued: list[str] = field(default_factory=list)


def _sigbus(*args: str) -> list[str]:
    return [sys.executable, "-m", "sigbus", "--dev", "--log-level", "info", *args]


class Soak:
    def __init__(self, settings: SoakSettings) -> None:
        self.s = settings
        self.rng = random.Random(settings.seed)  # noqa: S311 - fault timing, not secrets
        self.data = settings.work / "data"
        self.data.mkdir(parents=True, exist_ok=True)
        self.cluster = EmbeddedCluster(settings.work / "cluster", keys_dir=settings.keys)
        self.account = Account()
        self.env = {
            **os.environ,
            "SIGBUS_DEV": "1",
            "SIGBUS_DATA_DIR": str(self.data),
            "SIGBUS_STATE_DIR": str(self.data),
        }
        self.procs: dict[str, Proc] = {}
        self.senders: dict[AgencyId, Adapter] = {}
        self.youth = fictitious_personnummer(birth_date_for_age(datetime.now(UTC).date(), 16), 982)

    def handoffs_file(self, agency: AgencyId) -> Path:
        return self.data / f"handoffs-{agency}.jsonl"

    def _procs(self, url: str) -> dict[str, Proc]:
        keys = str(self.s.keys)
        # Two hubs behind the lease: a kill of the active one is a takeover.
        procs = {
            hub: Proc(
                hub,
                _sigbus("broker", "run", "--nats", url, "--keys", keys, "--replicas", "3"),
                self.env,
                self.s.work / f"{hub}.log",
            )
            for hub in HUBS
        }
        for agency in AGENCIES:
            procs[agency] = Proc(
                agency,
                _sigbus(
                    agency, "serve", "--nats", url, "--keys", keys,
                    "--sink", "sigbus.agents.casesystem:JsonlCaseSystem",
                    "--out", str(self.handoffs_file(agency)),
                ),
                self.env,
                self.s.work / f"{agency}.log",
            )
        return procs

    async def run(self) -> dict[str, Any]:
        url = self.cluster.start()
        try:
            self.procs = self._procs(url)
            for proc in self.procs.values():
                proc.start()
            for agency in SENDERS:
                adapter = await agency_setup(agency, self.s.keys).connect(url)
                adapter.outbox = Outbox(self.data / f"outbox-{agency}.sqlite")
                self.senders[agency] = adapter
            self._open_case()
            stop = asyncio.Event()
            load = asyncio.ensure_future(self._load(stop))
            await self._faults(time.monotonic() + self.s.minutes * 60)
            stop.set()
            await load
            progress("settling", queued=len(self.account.queued))
            await self._settle(url)
            return await self._report(url)
        finally:
            for proc in self.procs.values():
                proc.stop()
            for adapter in self.senders.values():
                if adapter.outbox is not None:
                    adapter.outbox.close()
                with contextlib.suppress(Exception):
                    await adapter.close()
            self.cluster.stop()


    def _open_case(self) -> None:
        """A case with everyone's consent, queued by social services like all else."""
        social = self.senders["social"]
        self.case = new_opaque_id("case", 12)
        opened = social.queue(
            MessageType.CASE_OPENED,
            CaseOpened(
                personnummer=self.youth, guardians_with_custody=GUARDIANS, parties=AGENCIES
            ),
            case_ref=self.case,
        )
        self.account.queued.append(opened.message_id)
        categories = (MessageType.COMMITMENT_STATUS,)
        for event in consents_of_everyone(
            GUARDIANS, parties=AGENCIES, categories=categories, now=datetime.now(UTC)
        ):
            item = social.queue(MessageType.CONSENT_EVENT, event, case_ref=self.case)
            self.account.queued.append(item.message_id)

    async def _load(self, stop: asyncio.Event) -> None:
        """Queue into the senders' outboxes (on disk when queued); their serve
        processes deliver them, across their own kills."""
        police, school = self.senders["police"], self.senders["school"]
        while not stop.is_set():
            referral = police.queue(
                MessageType.REFERRAL,
                lul6_referral(self.youth, datetime.now(UTC).date()),
                recipients=("social",),
                assertion=LUL6,
            )
            status = school.queue(
                MessageType.COMMITMENT_STATUS,
                CommitmentStatus(
                    commitment_id="cm-soakattendance",
                    status=StatusCode.IN_PROGRESS,
                    as_of=datetime.now(UTC).date(),
                ),
                case_ref=self.case,
                recipients=("police", "social"),
            )
            self.account.queued += [referral.message_id, status.message_id]
            await asyncio.sleep(2 / RATE)

    async def _faults(self, deadline: float) -> None:
        last = time.monotonic()
        bag: list[str] = []
        while (now := time.monotonic()) < deadline:
            wait = self.rng.uniform(0.5, 1.5) * self.s.kill_every_s
            await asyncio.sleep(min(wait, max(0.0, deadline - now)))
            if time.monotonic() >= deadline or not self.s.faults:
                break
            if not bag:  # every kind of fault once per round, in a random order
                bag = self.rng.sample(self.s.faults, len(self.s.faults))
            await self._kill(bag.pop())
            if time.monotonic() - last > 30:
                last = time.monotonic()
                progress(
                    "running", left_s=int(deadline - time.monotonic()),
                    kills=sum(self.account.kills.values()), queued=len(self.account.queued),
                )  # fmt: skip

    async def _kill(self, kind: str) -> None:
        down = self.rng.uniform(*DOWN_S)
        if kind == "nats":
            node: EmbeddedNats = self.rng.choice(self.cluster.nodes)
            port = node.kill()
            await asyncio.sleep(down)
            node.start_again(port)
        else:
            name = self.rng.choice(HUBS if kind == "hub" else AGENCIES)
            proc = self.procs[name]
            proc.kill()
            await asyncio.sleep(down)
            proc.start()
        self.account.kills[kind] += 1

    def _handoffs(self, agency: AgencyId) -> Counter[str]:
        path = self.handoffs_file(agency)
        if not path.exists():
            return Counter()
        return Counter(
            json.loads(line)["header"]["message_id"]
            for line in path.read_text().splitlines()
            if line.strip()
        )

    async def _settle(self, url: str) -> None:
        """Until every queued message was delivered, decided and every release handed
        on (or the time is up: then the account shows what is missing)."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while time.monotonic() < deadline:
            pending = sum(len(a.outbox.pending()) for a in self.senders.values() if a.outbox)
            if not pending:
                entries = await self._log(url)
                if not self._missing(entries):
                    return
            await asyncio.sleep(1.0)

    def _missing(self, entries: list[LogEntry]) -> list[str]:
        """Queued ids not decided, or released to an agency that never got them."""
        decided = {e.message_id for e in entries}
        handoffs = {a: self._handoffs(a) for a in AGENCIES}
        unhanded = {
            e.message_id
            for e in entries
            if e.outcome == "release" and e.recipient and handoffs[e.recipient][e.message_id] == 0
        }
        return [m for m in self.account.queued if m not in decided or m in unhanded]

    async def _log(self, url: str) -> list[LogEntry]:
        """The whole log; a node that was just restarted may still be electing a
        leader, so transport faults are retried for a while, then named."""
        last: Exception | None = None
        for _ in range(LOG_READ_TRIES):
            try:
                return await self._read_log(url)
            except (NatsError, TimeoutError, asyncio.TimeoutError) as e:  # noqa: UP041
                last = e
                await asyncio.sleep(2.0)
        raise TransportError(
            f"the log could not be read for the account after {LOG_READ_TRIES} tries: "
            f"{type(last).__name__}"
        ) from last

    async def _read_log(self, url: str) -> list[LogEntry]:
        nc = await connect(url, name="soak-account", creds=hub_setup(self.s.keys).creds)
        try:
            info = await nc.jetstream().stream_info(LOG_STREAM)
            return [
                LogEntry.model_validate_json(raw)
                async for raw in read_by_sequence(nc.jetstream(), LOG_STREAM, info.state.last_seq)
            ]
        finally:
            await nc.close()

    async def _verify(self, url: str) -> tuple[bool, str]:
        """Export as the auditor and verify against the trusted inputs; the witnesses
        cosign the latest checkpoint within seconds, so a few tries."""
        export = self.s.work / "log-export.jsonl"
        keys = self.s.keys
        last = ""
        for _ in range(10):
            done = await asyncio.to_thread(
                subprocess.run,
                [
                    *_sigbus("audit", "export", "--out", str(export), "--nats", url,
                             "--keys", str(keys)),
                ],
                env=self.env, capture_output=True, text=True, timeout=120, check=False,
            )
            if done.returncode == 0:
                done = await asyncio.to_thread(
                    subprocess.run,
                    _sigbus(
                        "audit", "verify", str(export), "--directory",
                        str(keys / "directory.json"), "--root", str(keys / "root.json"),
                    ),
                    env=self.env, capture_output=True, text=True, timeout=300, check=False,
                )
                if done.returncode == 0:
                    return True, done.stdout.splitlines()[0] if done.stdout else ""
            said = (done.stdout + done.stderr).strip().splitlines()
            last = said[-1] if said else f"exit {done.returncode}"
            await asyncio.sleep(3)
        return False, last

    async def _report(self, url: str) -> dict[str, Any]:
        entries = await self._log(url)
        # One entry per message and recipient (a hub record has none): more is a
        # duplicate decision.
        decisions = Counter((e.message_id, e.recipient) for e in entries)
        decided = {m for m, _ in decisions}
        released = [e for e in entries if e.outcome == "release"]
        handoffs = {a: self._handoffs(a) for a in AGENCIES}
        queued = self.account.queued
        lost = self._missing(entries)
        progress("verifying", log_size=len(entries))
        verified, verdict = await self._verify(url)
        return {
            "minutes": self.s.minutes,
            "faults": list(self.s.faults),
            "kills": sum(self.account.kills.values()),
            "kills_by_kind": dict(self.account.kills),
            "queued": len(queued),
            "decided": len(decided & set(queued)),
            "releases": len(released),
            "handed_off": sum(
                1 for e in released if e.recipient and handoffs[e.recipient][e.message_id]
            ),
            "lost": len(lost),
            "lost_ids": lost[:20],
            "duplicate_decisions": sum(n - 1 for n in decisions.values() if n > 1),
            "duplicate_handoffs": sum(
                n - 1 for per in handoffs.values() for n in per.values() if n > 1
            ),
            "log_size": len(entries),
            "log_verified": verified,
            "verification": verdict,
        }


def account_ok(account: dict[str, Any]) -> bool:
    return bool(
        account["lost"] == 0
        and account["duplicate_decisions"] == 0
        and account["duplicate_handoffs"] == 0
        and account["log_verified"]
    )


def render(account: dict[str, Any]) -> str:
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(account["kills_by_kind"].items())) or "none"
    lines = [
        f"soak: {account['minutes']} min, faults {','.join(account['faults']) or 'none'}",
        f"  kills:               {account['kills']} ({kinds})",
        f"  messages queued:     {account['queued']}",
        f"  decided:             {account['decided']}",
        f"  releases handed off: {account['handed_off']} of {account['releases']}",
        f"  lost:                {account['lost']}",
        f"  duplicate decisions: {account['duplicate_decisions']}",
        f"  duplicate hand-offs: {account['duplicate_handoffs']}",
        f"  log ({account['log_size']} entries): "
        + ("verified against the pinned root and the witness quorum"
           if account["log_verified"] else f"NOT verified: {account['verification']}"),
    ]  # fmt: skip
    return "\n".join(lines)


def run_soak(settings: SoakSettings) -> dict[str, Any]:
    return asyncio.run(Soak(settings).run())
