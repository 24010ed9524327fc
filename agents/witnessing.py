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
from dataclasses import dataclass, field
from pathlib import Path

import structlog
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from pydantic import BaseModel

from sigbus.agents.errors import AdapterError
from sigbus.agents.runtime import Adapter, Delivered
from sigbus.audit.checkpoint import (
    DEFAULT_ORIGIN,
    Checkpoint,
    PublicKey,
    load_public_key,
    parse_checkpoint_body,
    parse_signed_note,
    verify_note,
)
from sigbus.audit.errors import AuditError, ForkDetected, StaleCheckpoint
from sigbus.audit.merkle import verify_inclusion
from sigbus.audit.witness import Witness
from sigbus.protocol.canonical import b64encode
from sigbus.protocol.directory import KeyUse
from sigbus.protocol.ids import HUB, AgencyId
from sigbus.protocol.proofs import (
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
    service_subject,
    witness_consumer,
)
from sigbus.transport.errors import ConfigError
from sigbus.transport.files import write_private

log = structlog.get_logger("sigbus.witness")

REQUEST_TIMEOUT_S = 5.0


class LogProofError(AdapterError):
    """The hub could not prove something about its log, or the proof failed."""


def witness_name(agency: AgencyId) -> str:
    return f"sigbus/witness/{agency}"


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
    adapter: Adapter
    state_path: Path | None = None
    origin: str = DEFAULT_ORIGIN
    cosigned: list[int] = field(default_factory=list)
    alarms: list[ForkDetected] = field(default_factory=list)

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

    async def run_once(self, *, timeout: float = 0.5) -> int:
        """Process every checkpoint waiting for this witness; returns how many were cosigned."""
        if self._sub is None:  # one subscription for the runner's lifetime
            # The hub made this consumer (transport.bus.ensure_agency_consumers); a
            # witness may only bind to it, never create or change one.
            self._sub = await self.adapter.js.pull_subscribe_bind(
                witness_consumer(self.adapter.agency), CHECKPOINT_STREAM
            )
        sub = self._sub
        done = 0
        while True:
            try:
                msgs = await sub.fetch(50, timeout=timeout)
            except (TimeoutError, asyncio.TimeoutError):  # noqa: UP041
                return done
            for msg in msgs:
                done += await self._observe(msg.data.decode("utf-8", "replace"))
                await msg.ack_sync()

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
            self.alarms.append(e)
            self.log.error("security_event", kind="log_fork_detected", detail=str(e)[:200])
            self._save_evidence(e)
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
        self.cosigned.append(size)
        self.log.info("checkpoint_cosigned", size=size)
        return 1

    def _save_evidence(self, fork: ForkDetected) -> None:
        if self.state_path is None:
            return
        evidence = self.state_path.with_suffix(f".fork-{len(self.alarms)}.txt")
        write_private(
            evidence,
            (
                f"previous:\n{fork.previous}\ncandidate:\n{fork.candidate}\n"
                f"proof:{','.join(b64encode(p) for p in fork.consistency_proof)}\n"
            ).encode(),
        )


def _checkpoint_of(note: str) -> Checkpoint:
    return parse_checkpoint_body(parse_signed_note(note).body)


@dataclass(frozen=True)
class InclusionEvidence:
    """A release's entry is leaf ``log_index`` (hash ``leaf_hash``) of ``checkpoint``'s tree."""

    log_index: int
    leaf_hash: bytes
    checkpoint: Checkpoint


async def prove_release(
    adapter: Adapter, delivered: Delivered, *, origin: str = DEFAULT_ORIGIN
) -> InclusionEvidence:
    """Verify that a received release's log entry is in the hub's signed log.

    The release record (hub-signed, verified when the release was opened) names
    the entry by ``log_index`` and ``leaf_hash``; the hub's reply must carry that
    same leaf hash and an RFC 9162 audit path from it to the root of a checkpoint
    verified here.
    """
    checkpoint_reply = CheckpointReply.model_validate_json(
        await _request(adapter, CHECKPOINT_REQUEST, None)
    )
    try:
        checkpoint = verify_note(
            checkpoint_reply.signed_checkpoint, origin, log_public_key(adapter)
        )
    except AuditError as e:
        raise LogProofError("checkpoint signature does not verify") from e
    record = delivered.record
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
    return InclusionEvidence(log_index=record.log_index, leaf_hash=signed, checkpoint=checkpoint)
