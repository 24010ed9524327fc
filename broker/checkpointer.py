"""Signed checkpoints and the proof service: the hub's side of the witness protocol.

The hub signs a C2SP ``tlog-checkpoint`` in a ``signed-note`` (Ed25519, key
name = origin) whenever the log has grown — at most once per interval while
busy, and at once when idle or asked — and publishes it to the checkpoint
stream. Witnesses (every agency adapter) fetch consistency proofs from it by
request/reply; recipients fetch inclusion proofs for their releases, against
the checkpoint the hub serves on request *with the cosignatures the witnesses
published* (each witness's latest, for the size most of them cosigned): a
recipient trusts only a checkpoint a quorum of witnesses cosigned.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Iterable

import structlog
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import BaseModel, ValidationError

from sigbus.audit.checkpoint import (
    DEFAULT_ORIGIN,
    PrivateKey,
    add_signature_lines,
    load_public_key,
    make_checkpoint_body,
    note_body,
    sign_note,
    verify_cosignature,
)
from sigbus.audit.entry import EntryOutcome, LogEntry
from sigbus.audit.errors import AuditError
from sigbus.broker.log_writer import LogWriter
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
    CHECKPOINT_SUBJECT,
    LOG_STREAM,
    PROOF_CONSISTENCY,
    PROOF_INCLUSION,
    cosignature_subject,
    service_requester,
    service_subject,
)

log = structlog.get_logger("sigbus.broker.checkpoint")

CHECKPOINT_INTERVAL_S = 1.0
#: Signed checkpoints kept in memory by size, to serve with their cosignatures.
_NOTES_KEPT = 64


async def latest_cosignatures(
    js: JetStreamContext, witnesses: Iterable[AgencyId]
) -> dict[AgencyId, Cosignature]:
    """Each witness's latest published cosignature (a witness cosigns in order)."""
    found: dict[AgencyId, Cosignature] = {}
    for agency in witnesses:
        try:
            msg = await js.get_last_msg(CHECKPOINT_STREAM, cosignature_subject(agency))
            found[agency] = Cosignature.model_validate_json(msg.data or b"")
        except (NotFoundError, ValidationError):
            continue
    return found


#: Where a reply may go: a server-mapped reply of a request that crossed from an
#: agency's account (``_R_.``), or a reply inbox. Never a stream's subject.
_REPLY = re.compile(r"(_R_|_INBOX_[a-z][a-z0-9_]{1,30})\.[A-Za-z0-9.]{1,128}")


def requester(subject: str) -> str | None:
    """The agency that asked: the subject the bus delivered the request on is that
    agency's own (``sigbus.hub.<agency>.<service>``), which the hub account exports
    to that agency's account alone. Whatever the message says is not consulted."""
    agency = service_requester(subject)
    return None if agency is None or agency == HUB else agency


def may_see(agency: str | None, entry: LogEntry) -> bool:
    """An entry's metadata (who was told what, about which subject, on what basis) is
    itself what the policy guards: its sender sees it, and its recipient only when the
    message was released to it. A denied recipient never learns the message existed."""
    if agency is None:
        return False
    if agency == entry.sender:
        return True
    return agency == entry.recipient and entry.outcome is EntryOutcome.RELEASE


async def reply_to_agency(msg: Msg, reply: BaseModel) -> None:
    """Answer only an agency, and only on a reply subject (every hub service).

    Across accounts the server maps every reply to an ``_R_`` subject that
    leads back to the requester alone. The check is kept as a second wall: the
    hub publishes with wide rights, and a reply naming ``sigbus.log.entry``
    would write into the append-only disclosure log and fence the hub.
    """
    if not msg.reply:
        return
    if requester(msg.subject) is None or _REPLY.fullmatch(msg.reply) is None:
        log.error("security_event", kind="reply_subject_refused", subject=msg.subject)
        return
    await msg.respond(reply.model_dump_json().encode())


class Checkpointer:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        writer: LogWriter,
        log_key: PrivateKey,
        *,
        origin: str = DEFAULT_ORIGIN,
        witnesses: Callable[[], Iterable[AgencyId]] = tuple,
        after_publish: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._nc = nc
        self._js = js
        self._writer = writer
        self._key = log_key
        self.origin = origin
        self.last_size = -1
        self.last_note = ""
        self._last_at = 0.0
        self._subs: list[Subscription] = []
        self._witnesses = witnesses
        self._notes: dict[int, str] = {}
        #: Called after each checkpoint published (the hub's snapshots, tied to it).
        self._after_publish = after_publish

    def sign(self) -> str:
        tree = self._writer.tree
        body = make_checkpoint_body(self.origin, tree.size, tree.root())
        return sign_note(body, self.origin, self._key)

    async def publish(self, *, force: bool = False) -> str | None:
        """Sign and publish a checkpoint if the log grew (or ``force``)."""
        size = self._writer.size
        # An empty log has nothing to witness, and RFC 9162 has no consistency
        # proof from size 0, so a witness could never move on from it.
        if size == 0 or (size == self.last_size and not force):
            return None
        note = self.sign()
        await self._js.publish(CHECKPOINT_SUBJECT, note.encode(), stream=CHECKPOINT_STREAM)
        self.last_size, self.last_note, self._last_at = size, note, time.monotonic()
        self._notes[size] = note
        for old in sorted(self._notes)[:-_NOTES_KEPT]:
            del self._notes[old]
        log.info("checkpoint_published", size=size)
        if self._after_publish is not None:
            await self._after_publish()
        return note

    async def maybe_publish(self) -> None:
        """While busy: at most one checkpoint per interval."""
        if time.monotonic() - self._last_at >= CHECKPOINT_INTERVAL_S:
            await self.publish()

    async def serve(self) -> None:
        self._subs = [
            await self._nc.subscribe(service_subject("*", service), cb=handler)
            for service, handler in (
                (PROOF_INCLUSION, self._on_inclusion),
                (PROOF_CONSISTENCY, self._on_consistency),
                (CHECKPOINT_REQUEST, self._on_checkpoint),
            )
        ]

    async def _reply(self, msg: Msg, reply: BaseModel) -> None:
        await reply_to_agency(msg, reply)

    async def _on_inclusion(self, msg: Msg) -> None:
        try:
            req = InclusionRequest.model_validate_json(msg.data)
            proof = tuple(self._writer.tree.inclusion_proof(req.index, req.size))
            stored = await self._js.get_msg(LOG_STREAM, req.index + 1)
            entry = LogEntry.model_validate_json(stored.data or b"")
            if not may_see(requester(msg.subject), entry):
                log.warning("proof_refused", index=req.index, kind="not_a_party_to_entry")
                reply = ProofReply(error="not_a_party_to_entry")
            else:
                # The leaf hash only: the entry stays at the hub (need to know).
                reply = ProofReply(proof=proof, leaf_hash=self._writer.tree.leaf_hash(req.index))
        except (ValidationError, AuditError, ValueError, IndexError, NatsError) as e:
            reply = ProofReply(error=type(e).__name__)
        await self._reply(msg, reply)

    async def _on_consistency(self, msg: Msg) -> None:
        try:
            req = ConsistencyRequest.model_validate_json(msg.data)
            reply = ProofReply(
                proof=tuple(self._writer.tree.consistency_proof(req.size1, req.size2))
            )
        except (ValidationError, AuditError, ValueError, IndexError) as e:
            reply = ProofReply(error=type(e).__name__)
        await self._reply(msg, reply)

    async def cosigned_note(self) -> str:
        """The checkpoint most witnesses last cosigned (the largest on a tie), with
        their cosignature lines; the latest checkpoint alone if none is known.

        Lines are only checked to verify under the key their witness declared, so a
        malformed one cannot break the note for everyone; whether they are by trusted
        witnesses is the recipient's check (:func:`audit.splitview.cosigned_by_quorum`).
        """
        by_size: dict[int, list[str]] = {}
        for cosig in (await latest_cosignatures(self._js, self._witnesses())).values():
            note = self._notes.get(cosig.checkpoint_size)
            if note is None:
                continue
            try:
                public = load_public_key(cosig.public_key)
                verify_cosignature(note_body(note), cosig.line, cosig.witness, public)
            except (AuditError, ValueError):
                continue
            by_size.setdefault(cosig.checkpoint_size, []).append(cosig.line)
        if not by_size:
            return self.last_note
        size = max(by_size, key=lambda s: (len(by_size[s]), s))
        return add_signature_lines(self._notes[size], by_size[size])

    async def _on_checkpoint(self, msg: Msg) -> None:
        await self.publish()  # a grown log gets a new checkpoint for the witnesses
        if self.last_note:
            note = await self.cosigned_note()
            await self._reply(msg, CheckpointReply(signed_checkpoint=note))
