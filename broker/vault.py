"""The hub's retention vault and crypto-shredding (issue 13).

For each message it released, the hub keeps two records in ``SIGBUS_VAULT``
(hub-private): the **copy** (the envelope's header and body ciphertext, without
the data key sealed to the hub, so the hub's long-term key cannot open it) and
the **key** (the message's own data key, sealed under the hub state key). While
the key is there the hub can open its copy (:meth:`Vault.open`); when the
message's retention period ends (:mod:`sigbus.policy.retention`) the retention
pass deletes the key record (JetStream erases a deleted message's bytes) and
logs a ``shredded`` entry. The copy stays: its digest is the
``ciphertext_sha256`` the log names, so the log keeps its integrity, and no one
can decrypt it any more. Copies the recipients already took are theirs: the
adapters delete them on the same schedule (agents/retention.py).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from sigbus.audit.entry import EntryOutcome, LogEntry
from sigbus.broker.errors import BrokerError
from sigbus.broker.pipeline import EntryDraft
from sigbus.protocol.envelope import Envelope, Header, body_aad
from sigbus.protocol.ids import MessageType
from sigbus.protocol.reasons import HubReason, ReasonCode
from sigbus.protocol.subjects import VAULT_KEYS, VAULT_STREAM
from sigbus.transport.bus import read_stream

log = structlog.get_logger("sigbus.broker.vault")

_AAD = b"sigbus/v1/vault-key\n"


class VaultError(BrokerError):
    """The hub cannot open a message from its vault; ``reason`` says why."""

    def __init__(self, reason: ReasonCode, message_id: str) -> None:
        super().__init__(f"{reason.value}: message {message_id}")
        self.reason = reason


def _token(message_id: str) -> str:
    return hashlib.sha256(message_id.encode()).hexdigest()[:32]


def copy_subject(message_id: str) -> str:
    return f"sigbus.vault.copy.{_token(message_id)}"


def key_subject(message_id: str) -> str:
    return f"sigbus.vault.key.{_token(message_id)}"


def _kek(state_key: bytes) -> AESGCM:
    return AESGCM(
        HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"sigbus/v1/vault-key/aes-gcm"
        ).derive(state_key)
    )


@dataclass(frozen=True)
class HeldKey:
    """A data key the hub still holds: what the schedule needs (ids and codes only)."""

    seq: int
    message_id: str
    category: MessageType
    decided_at: datetime
    entry: LogEntry


class Vault:
    def __init__(self, js: JetStreamContext, state_key: bytes) -> None:
        self._js = js
        self._kek = _kek(state_key)

    async def keep(self, envelope: Envelope, data_key: bytes, entry: LogEntry) -> None:
        """Keep the copy, then the key (a redo writes the same copy and an equal key)."""
        message_id = envelope.header.message_id
        copy = {
            "header": envelope.header.model_dump_json(),
            "nonce": base64.b64encode(envelope.nonce).decode(),
            "ciphertext": base64.b64encode(envelope.ciphertext).decode(),
        }
        await self._js.publish(
            copy_subject(message_id), json.dumps(copy).encode(), stream=VAULT_STREAM
        )
        nonce = os.urandom(12)
        sealed = nonce + self._kek.encrypt(nonce, data_key, _AAD + message_id.encode())
        meta = {"entry": entry.model_dump_json(), "key": base64.b64encode(sealed).decode()}
        await self._js.publish(
            key_subject(message_id), json.dumps(meta).encode(), stream=VAULT_STREAM
        )

    async def open(self, message_id: str) -> bytes:
        """The message's plaintext body, while its key is held; else a precise refusal."""
        try:
            raw_copy = await self._js.get_last_msg(VAULT_STREAM, copy_subject(message_id))
        except NotFoundError as e:
            raise VaultError(ReasonCode.NOT_RETAINED, message_id) from e
        try:
            raw_key = await self._js.get_last_msg(VAULT_STREAM, key_subject(message_id))
        except NotFoundError as e:
            raise VaultError(ReasonCode.CONTENT_SHREDDED, message_id) from e
        copy = json.loads(raw_copy.data or b"{}")
        sealed = base64.b64decode(json.loads(raw_key.data or b"{}")["key"])
        header = Header.model_validate_json(copy["header"])
        try:
            data_key = self._kek.decrypt(sealed[:12], sealed[12:], _AAD + message_id.encode())
            return AESGCM(data_key).decrypt(
                base64.b64decode(copy["nonce"]),
                base64.b64decode(copy["ciphertext"]),
                body_aad(header),
            )
        except (InvalidTag, ValueError) as e:
            raise VaultError(ReasonCode.SEAL_OPEN_FAILED, message_id) from e

    async def copy_digest(self, message_id: str) -> str:
        """SHA-256 of the kept ciphertext (nonce || ciphertext): the log's ``ciphertext_sha256``."""
        raw = await self._js.get_last_msg(VAULT_STREAM, copy_subject(message_id))
        copy = json.loads(raw.data or b"{}")
        blob = base64.b64decode(copy["nonce"]) + base64.b64decode(copy["ciphertext"])
        return hashlib.sha256(blob).hexdigest()

    async def held(self) -> list[HeldKey]:
        """Every data key the hub still holds, oldest first."""
        out: list[HeldKey] = []
        async for msg in read_stream(self._js, VAULT_STREAM, VAULT_KEYS):
            entry = LogEntry.model_validate_json(json.loads(msg.data)["entry"])
            assert entry.message_type is not None
            out.append(
                HeldKey(
                    msg.metadata.sequence.stream,
                    entry.message_id,
                    entry.message_type,
                    entry.decided_at,
                    entry,
                )
            )
        return out

    async def shred(self, held: HeldKey) -> None:
        """Delete the key record; the server erases its bytes (no ``no_erase``)."""
        with contextlib.suppress(NotFoundError):  # shredded already (a pass redone)
            await self._js.delete_msg(VAULT_STREAM, held.seq)
        log.info("data_key_shredded", message_id=held.message_id, category=held.category.value)


def shredded_draft(held: HeldKey, now: datetime) -> EntryDraft:
    """The log entry of one shredding: the message, its category and case, and why."""
    e = held.entry
    digest = hashlib.sha256(f"shredded\n{e.message_id}".encode()).hexdigest()[:32]
    return EntryDraft(
        decision_id=f"dec-{digest}",
        decided_at=now,
        ingress_seq=e.ingress_seq,
        message_id=e.message_id,
        message_type=e.message_type,
        sender=e.sender,
        case_ref=e.case_ref,
        rules_hash=e.rules_hash or "",
        ciphertext_sha256=e.ciphertext_sha256,
        outcome=EntryOutcome.SHREDDED,
        reasons=(HubReason(ReasonCode.RETENTION_EXPIRED),),
    )
