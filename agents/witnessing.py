"""Every adapter is a witness of the hub's disclosure log, and checks its own releases.

Witness (C2SP tlog-witness semantics, over NATS): fetch each new signed
checkpoint from the checkpoint stream, ask the hub for a consistency proof
from the last checkpoint this agency cosigned, and cosign only if the log
stayed append-only (:class:`audit.witness.Witness`). An inconsistent
checkpoint is a fork or a rewrite: it is logged as a security event and kept
as evidence, and never cosigned.

Inclusion: a recipient asks the hub for the inclusion proof of a release it
received, against a checkpoint it verified itself. The hub answers with the
entry's leaf hash and audit path only, never the entry (need to know); the
recipient checks that leaf hash against the one the hub signed in the release
record, so the proof is about this release's entry without seeing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import structlog
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from pydantic import BaseModel, ValidationError

from sigbus.agents.errors import AdapterError
from sigbus.agents.runtime import Adapter, Delivered
from sigbus.audit.checkpoint import (
    DEFAULT_ORIGIN,
    Checkpoint,
    PublicKey,
    load_public_key,
    parse_checkpoint_body,
    parse_signed_note,
)
from sigbus.audit.errors import AuditError, ForkDetected, StaleCheckpoint
from sigbus.audit.merkle import verify_inclusion
from sigbus.audit.splitview import (
    ForkEvidence,
    QuorumResult,
    compare_views,
    cosigned_by_quorum,
    proof_sizes,
)
from sigbus.audit.trust import TrustAnchors, trust_from_directory, witness_name
from sigbus.audit.witness import Witness
from sigbus.protocol.directory import KeyUse
from sigbus.protocol.ids import HUB, AgencyId
from sigbus.protocol.proofs import (
    CheckpointGossip,
    CheckpointReply,
    ConsistencyRequest,
    Cosignature,
    InclusionRequest,
    ProofReply,
)
from sigbus.protocol.subjects import (
    CHECKPOINT_REQUEST,
    CHECKPOINT_STREAM,
    PROOF_CONSISTENCY,
    PROOF_INCLUSION,
    cosignature_subject,
    gossip_sender,
    gossip_subject,
    service_subject,
    witness_consumer,
)
from sigbus.transport.errors import ConfigError
from sigbus.transport.files import write_private

log = structlog.get_logger("sigbus.witness")

REQUEST_TIMEOUT_S = 5.0


class LogProofError(AdapterError):
    """The hub could not prove something about its log, or the proof failed."""


async def _request(adapter: Adapter, service: str, body: BaseModel | None) -> bytes:
    """Ask one of the hub's services on this agency's own subject for it."""
    payload = body.model_dump_json().encode() if body is not None else b""
    subject = service_subject(adapter.agency, service)
    try:
        reply = await adapter.nc.request(subject, payload, timeout=REQUEST_TIMEOUT_S)
    except (NatsError, TimeoutError, asyncio.TimeoutError) as e:  # noqa: UP041
        raise LogProofError(f"hub did not answer on {service}") from e
    return bytes(reply.data)


def log_public_key(adapter: Adapter) -> PublicKey:
    key = adapter.directory.key_by_use(HUB, KeyUse.LOG, at=adapter.now())
    return load_public_key(key.public_key)


@dataclass
class WitnessRunner:
    """One agency's witness: cosign the hub's checkpoints, gossip them, compare views.

    Gossip (core NATS, agency to agency, :func:`protocol.subjects.gossip_subject`):
    after every round the runner publishes the checkpoint it last cosigned, and
    compares every other witness's with its own (:func:`audit.splitview.compare_views`,
    with a consistency proof from the hub's proof service when the sizes differ).
    A fork, seen in its own checkpoint stream or in gossip, raises the
    ``log_fork_detected`` security event and saves :class:`ForkEvidence` next to
    the state file (``<state>.fork-<n>.json``), for ``sigbus audit fork-evidence``.
    """

    adapter: Adapter
    state_path: Path | None = None
    origin: str = DEFAULT_ORIGIN
    cosigned: list[int] = field(default_factory=list)
    alarms: list[ForkDetected] = field(default_factory=list)
    evidence: list[ForkEvidence] = field(default_factory=list)

    def __post_init__(self) -> None:
        agency = self.adapter.agency
        # A key of its own use (KeyUse.WITNESS), never the message-signing key.
        key = self.adapter.identity.witness_key
        if key is None:
            raise ConfigError(f"{agency}'s key file holds no witness key: it cannot witness")
        self.witness_public_key = key.public_key().public_bytes_raw()
        if self.state_path is not None and self.state_path.exists():
            self.witness = Witness.from_json(
                self.state_path.read_text(), key, log_public_key(self.adapter)
            )
        else:
            self.witness = Witness(
                witness_name(agency), key, log_public_key(self.adapter), self.origin
            )
        self.log = log.bind(agency=agency)
        self._sub: JetStreamContext.PullSubscription | None = None
        self._gossip_subs: dict[AgencyId, Subscription] = {}
        self._heard: dict[AgencyId, str] = {}  # peer -> the latest view it gossiped
        self._line: str | None = None  # our cosignature over witness.last_note
        self._alarmed: set[tuple[str, str]] = set()

    def peers(self) -> list[AgencyId]:
        """The other witnesses: every party agency of the directory but this one."""
        own = self.adapter.agency
        return [e.agency for e in self.adapter.directory.agencies if e.agency not in (HUB, own)]

    async def run_once(self, *, timeout: float = 0.5) -> int:
        """Process every checkpoint waiting for this witness, then gossip; returns how
        many were cosigned."""
        if self._sub is None:  # one subscription for the runner's lifetime
            # The hub made this consumer (transport.bus.ensure_agency_consumers); a
            # witness may only bind to it, never create or change one.
            self._sub = await self.adapter.js.pull_subscribe_bind(
                witness_consumer(self.adapter.agency), CHECKPOINT_STREAM
            )
        await self._listen()
        sub = self._sub
        done = 0
        while True:
            try:
                msgs = await sub.fetch(50, timeout=timeout)
            except (TimeoutError, asyncio.TimeoutError):  # noqa: UP041
                break
            for msg in msgs:
                done += await self._observe(msg.data.decode("utf-8", "replace"))
                await msg.ack_sync()
        await self._compare_heard()
        await self._gossip()
        return done

    async def close(self) -> None:
        for gossip in self._gossip_subs.values():
            with contextlib.suppress(NatsError):
                await gossip.unsubscribe()
        self._gossip_subs = {}

    async def _listen(self) -> None:
        """Subscribe to every peer's gossip not yet heard (a new agency joins the next round)."""

        async def heard(msg: Msg) -> None:
            peer = gossip_sender(msg.subject)
            try:
                gossip = CheckpointGossip.model_validate_json(msg.data)
            except ValidationError:
                self.log.warning("gossip_refused", peer=peer, reason="malformed")
                return
            # Only the peer's account can publish on its subject (transport/natsauth.py);
            # a view under another witness's name is not that peer's.
            if peer is None or gossip.witness != witness_name(peer):
                self.log.warning("gossip_refused", peer=peer, reason="witness_name")
                return
            self._heard[peer] = gossip.signed_checkpoint

        for peer in self.peers():
            if peer not in self._gossip_subs:
                subject = gossip_subject(peer)
                self._gossip_subs[peer] = await self.adapter.nc.subscribe(subject, cb=heard)

    async def _gossip(self) -> None:
        note, line = self.witness.last_note, self._line
        if note is None:
            return
        if line is None:  # restarted from its state file: cosign the same view again
            line = self._line = self.witness.observe(note, (), now=self.adapter.now())
        gossip = CheckpointGossip(
            witness=self.witness.name, signed_checkpoint=note, cosignature=line
        )
        try:
            await self.adapter.nc.publish(
                gossip_subject(self.adapter.agency), gossip.model_dump_json().encode()
            )
            await self.adapter.nc.flush(timeout=int(REQUEST_TIMEOUT_S))
        except (NatsError, TimeoutError, asyncio.TimeoutError) as e:  # noqa: UP041
            self.log.warning("gossip_not_sent", error=type(e).__name__)

    async def _compare_heard(self) -> None:
        own = self.witness.last_note
        if own is None:
            return  # nothing to compare with yet: keep what was heard
        for peer, note in list(self._heard.items()):
            try:
                proof = await self._proof_between(own, note)
                compare_views(
                    own, note, proof, log_key=log_public_key(self.adapter), log_key_name=self.origin
                )
            except ForkDetected as e:
                self._alarm(e, source="gossip", peer=peer)
            except LogProofError:
                continue  # the hub did not answer: ask again next round
            except AuditError as e:
                self.log.warning("gossip_refused", peer=peer, reason=type(e).__name__)
            del self._heard[peer]

    async def _proof_between(self, own: str, other: str) -> tuple[bytes, ...]:
        sizes = proof_sizes(_checkpoint_of(own), _checkpoint_of(other))
        if sizes is None:
            return ()
        reply = ProofReply.model_validate_json(
            await _request(
                self.adapter, PROOF_CONSISTENCY, ConsistencyRequest(size1=sizes[0], size2=sizes[1])
            )
        )
        # A refusal is no proof: the two then stand unproven, which is a fork alarm.
        return reply.proof

    async def _observe(self, note: str) -> int:
        try:
            size = _checkpoint_of(note).size
            last = self.witness.last_checkpoint
            proof: tuple[bytes, ...] = ()
            if last is not None and 0 < last.size < size:
                reply = ProofReply.model_validate_json(
                    await _request(
                        self.adapter,
                        PROOF_CONSISTENCY,
                        ConsistencyRequest(size1=last.size, size2=size),
                    )
                )
                proof = reply.proof
            line = self.witness.observe(note, proof, now=self.adapter.now())
        except StaleCheckpoint:
            return 0
        except ForkDetected as e:
            self._alarm(e, source="own_view", peer=None)
            return 0
        except (AuditError, LogProofError, ValueError) as e:
            self.log.error("security_event", kind="checkpoint_rejected", error=type(e).__name__)
            return 0
        cosignature = Cosignature(
            witness=self.witness.name,
            checkpoint_size=size,
            line=line,
            public_key=self.witness_public_key,
        )
        await self.adapter.js.publish(
            cosignature_subject(self.adapter.agency),
            cosignature.model_dump_json().encode(),
            stream=CHECKPOINT_STREAM,
        )
        if self.state_path is not None:
            write_private(self.state_path, self.witness.to_json().encode())
        self._line = line
        self.cosigned.append(size)
        self.log.info("checkpoint_cosigned", size=size)
        return 1

    def _alarm(
        self, fork: ForkDetected, *, source: Literal["own_view", "gossip"], peer: str | None
    ) -> None:
        pair = (fork.previous, fork.candidate)
        if pair in self._alarmed or pair[::-1] in self._alarmed:
            return  # the same two checkpoints heard again: one alarm is enough
        self._alarmed.add(pair)
        sizes = (_checkpoint_of(fork.previous).size, _checkpoint_of(fork.candidate).size)
        self.alarms.append(fork)
        # The two sizes and who disagreed: never the checkpoints' content or any entry.
        self.log.error(
            "security_event",
            kind="log_fork_detected",
            first_size=sizes[0],
            second_size=sizes[1],
            source=source,
            peer=peer,
        )
        evidence = ForkEvidence.of(
            fork,
            origin=self.origin,
            detected_by=self.witness.name,
            detected_at=self.adapter.now().isoformat(),
            source=source,
            peer=peer,
        )
        self.evidence.append(evidence)
        self._save_evidence(evidence)

    def _save_evidence(self, evidence: ForkEvidence) -> None:
        if self.state_path is None:
            return
        path = fork_evidence_path(self.state_path, len(self.evidence))
        write_private(path, evidence.model_dump_json(indent=2).encode())


def fork_evidence_path(state_path: Path, number: int) -> Path:
    """Where a witness with state ``state_path`` keeps its ``number``-th fork evidence."""
    return state_path.with_suffix(f".fork-{number}.json")


def saved_fork_evidence(state_path: Path) -> list[Path]:
    """Every fork evidence file a witness saved, in order."""
    found = state_path.parent.glob(f"{state_path.stem}.fork-*.json")
    numbered = []
    for path in found:
        number = path.stem.rpartition("-")[2]
        if number.isdigit():
            numbered.append((int(number), path))
    return [path for _, path in sorted(numbered)]


def _checkpoint_of(note: str) -> Checkpoint:
    return parse_checkpoint_body(parse_signed_note(note).body)


@dataclass(frozen=True)
class InclusionEvidence:
    """A release's entry is leaf ``log_index`` (hash ``leaf_hash``) of ``checkpoint``'s tree,
    a checkpoint cosigned by ``witnesses``."""

    log_index: int
    leaf_hash: bytes
    checkpoint: Checkpoint
    witnesses: tuple[AgencyId, ...] = ()  # the agencies whose cosignatures made the quorum


class UnprovenRelease(LogProofError):
    """No checkpoint covering the release reached the witness quorum in time: the
    release stays unproven (never silently accepted)."""


#: How long a recipient waits for a quorum-cosigned checkpoint covering its release.
QUORUM_WAIT_S = 10.0
QUORUM_POLL_S = 0.2


def trusted_witnesses(adapter: Adapter, quorum: int | None = None) -> TrustAnchors:
    """The log key and the witnesses of the adapter's verified directory (by name)."""
    try:
        return trust_from_directory(
            adapter.directory, root_public=b"", witness_name=witness_name, quorum=quorum
        )
    except AuditError as e:
        raise LogProofError(f"the directory cannot support a witness quorum: {e}") from e


async def quorum_checkpoint(
    adapter: Adapter,
    *,
    covering: int,
    quorum: int | None = None,
    origin: str = DEFAULT_ORIGIN,
    wait_s: float = QUORUM_WAIT_S,
    poll_s: float = QUORUM_POLL_S,
) -> QuorumResult:
    """A log-signed checkpoint of more than ``covering`` entries that a quorum of
    distinct trusted witnesses cosigned, asked of the hub until ``wait_s`` is up.

    Raises :class:`UnprovenRelease` if none came in time (the hub withheld the
    cosignatures, the witnesses are down, or they refused a fork).
    """
    trust = trusted_witnesses(adapter, quorum)
    deadline = time.monotonic() + wait_s
    best: QuorumResult | None = None
    while True:
        reply = CheckpointReply.model_validate_json(
            await _request(adapter, CHECKPOINT_REQUEST, None)
        )
        try:
            result = cosigned_by_quorum(reply.signed_checkpoint, trust, log_key_name=origin)
        except AuditError as e:
            raise LogProofError("checkpoint signature does not verify") from e
        if result.reached and result.checkpoint.size > covering:
            return result
        best = result
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(poll_s)
    raise UnprovenRelease(
        f"no checkpoint covering entry {covering} carries the witness quorum: "
        f"{len(best.witnesses)} of {best.quorum} distinct trusted witnesses cosigned the "
        f"checkpoint of size {best.checkpoint.size}"
    )


async def prove_release(
    adapter: Adapter,
    delivered: Delivered,
    *,
    origin: str = DEFAULT_ORIGIN,
    quorum: int | None = None,
    wait_s: float = QUORUM_WAIT_S,
) -> InclusionEvidence:
    """Verify that a received release's log entry is in the hub's witnessed log.

    The release record (hub-signed, verified when the release was opened) names
    the entry by ``log_index`` and ``leaf_hash``; the hub's reply must carry that
    same leaf hash and an RFC 9162 audit path from it to the root of a checkpoint
    that a quorum of distinct trusted witnesses cosigned (default: every party
    agency of the directory). A checkpoint only the hub signed could be a view
    shown to this recipient alone (split view). Without the quorum in ``wait_s``
    the ``release_unproven`` security event is logged and :class:`UnprovenRelease`
    raised: the caller keeps the release marked unproven.
    """
    record = delivered.record
    try:
        witnessed = await quorum_checkpoint(
            adapter, covering=record.log_index, quorum=quorum, origin=origin, wait_s=wait_s
        )
    except UnprovenRelease:
        log.error(
            "security_event",
            kind="release_unproven",
            agency=adapter.agency,
            log_index=record.log_index,
            reason="witness_quorum_not_reached",
        )
        raise
    checkpoint = witnessed.checkpoint
    reply = ProofReply.model_validate_json(
        await _request(
            adapter,
            PROOF_INCLUSION,
            InclusionRequest(index=record.log_index, size=checkpoint.size),
        )
    )
    if reply.leaf_hash is None:
        raise LogProofError(f"hub refused the inclusion proof: {reply.error}")
    signed = bytes.fromhex(record.leaf_hash)
    # A reply about another leaf would prove some other entry: the proof must be for
    # the entry the hub signed for this release, whatever the hub says now.
    if reply.leaf_hash != signed:
        raise LogProofError("hub's leaf hash is not the one its release record signs")
    try:
        verify_inclusion(
            signed, record.log_index, checkpoint.size, list(reply.proof), checkpoint.root
        )
    except AuditError as e:
        raise LogProofError("inclusion proof does not verify") from e
    return InclusionEvidence(
        log_index=record.log_index,
        leaf_hash=signed,
        checkpoint=checkpoint,
        witnesses=witnessed.witnesses,
    )
