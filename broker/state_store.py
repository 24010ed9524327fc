"""Durable hub state: each change encrypted under the hub state key, in ``SIGBUS_STATE``.

Case records hold a date of birth (personal data), so state records are
ciphertext like everything else on the bus; the associated data binds each
record to the message id that caused it.

The log commits to each record's bytes (``LogEntry.state_sha256``) and the log
entry is written first. Sealing is therefore deterministic: AES-SIV (RFC 5297),
a misuse-resistant AEAD, under a key derived from the state key. A hub that
crashed between the log append and the state write decides the message again
(same logged time, same state) and so writes the very bytes the log named;
with a random nonce it could not. Each record holds its own message id, so
equal ciphertexts reveal nothing beyond a retry.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nats.js import JetStreamContext
from pydantic import ValidationError

from sigbus.audit.state_check import StateRecordRef
from sigbus.broker.errors import StateCorruptError
from sigbus.broker.state import AnyChange, HubState, StateRecord
from sigbus.protocol.subjects import STATE_STREAM, STATE_SUBJECT
from sigbus.transport.bus import read_stream

_AAD = b"sigbus/v1/hub-state\n"


@functools.lru_cache(maxsize=4)
def _siv(key: bytes) -> AESSIV:
    """AES-SIV-256 needs a 512-bit key: HKDF-SHA-256 (RFC 5869) from the state key."""
    derived = HKDF(
        algorithm=hashes.SHA256(), length=64, salt=None, info=b"sigbus/v1/hub-state/aes-siv"
    ).derive(key)
    return AESSIV(derived)


def seal_change(change: AnyChange, key: bytes) -> bytes:
    plaintext = StateRecord(change=change).model_dump_json().encode()
    return _siv(key).encrypt(plaintext, [_AAD + change.message_id.encode()])


def open_change(
    data: bytes, message_id: str, key: bytes
) -> AnyChange:
    try:
        plaintext = _siv(key).decrypt(data, [_AAD + message_id.encode()])
        return StateRecord.model_validate_json(plaintext).change
    except (InvalidTag, ValidationError, ValueError) as e:
        raise StateCorruptError("hub state record does not open") from e


@dataclass(frozen=True)
class SealedChange:
    """A state change sealed once: the log names ``sha256`` before the bytes are stored."""

    change: AnyChange
    data: bytes

    @property
    def sha256(self) -> str:
        return StateRecordRef.of(0, self.change.message_id, self.data).sha256


class StateStore:
    """The state stream, and every record stored on it (bounded by live state, not
    by the log: one record per case opened and per consent event)."""

    def __init__(self, js: JetStreamContext, key: bytes) -> None:
        self._js = js
        self._key = key
        #: Every stored record with its digest, in stream order (what a snapshot holds).
        self.records: list[tuple[StateRecordRef, bytes]] = []

    def seal(self, change: AnyChange) -> SealedChange:
        return SealedChange(change, seal_change(change, self._key))

    async def persist(self, sealed: SealedChange) -> None:
        ack = await self._js.publish(
            STATE_SUBJECT,
            sealed.data,
            stream=STATE_STREAM,
            headers={"Nats-Msg-Id": sealed.change.message_id},
        )
        last = self.records[-1][0].seq if self.records else 0
        if ack.seq > last:  # not a duplicate of a record already known
            ref = StateRecordRef.of(ack.seq, sealed.change.message_id, sealed.data)
            self.records.append((ref, sealed.data))

    async def read(self, *, from_seq: int = 1) -> list[tuple[StateRecordRef, bytes]]:
        """The stored records from ``from_seq`` on with their digests, unopened (checked
        against the log first)."""
        records: list[tuple[StateRecordRef, bytes]] = []
        async for msg in read_stream(self._js, STATE_STREAM, STATE_SUBJECT, from_seq=from_seq):
            message_id = (msg.headers or {}).get("Nats-Msg-Id", "")
            records.append(
                (StateRecordRef.of(msg.metadata.sequence.stream, message_id, msg.data), msg.data)
            )
        return records

    def state_of(self, records: list[tuple[StateRecordRef, bytes]]) -> HubState:
        state = HubState()
        for ref, data in records:
            state.apply(open_change(data, ref.message_id, self._key))
        return state
