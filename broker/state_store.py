"""Durable hub state: each change encrypted under the hub state key, in ``SIGBUS_STATE``.

Case records hold a date of birth (personal data), so state records are
AES-256-GCM ciphertext like everything else on the bus; the associated data
binds each record to the message id that caused it.
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from nats.js import JetStreamContext
from pydantic import ValidationError

from sigbus.broker.errors import StateCorruptError
from sigbus.broker.state import CaseOpenedChange, ConsentRecordedChange, HubState, StateRecord
from sigbus.protocol.subjects import STATE_STREAM, STATE_SUBJECT
from sigbus.transport.bus import read_stream

_AAD = b"sigbus/v1/hub-state\n"
_NONCE = 12


def seal_change(change: CaseOpenedChange | ConsentRecordedChange, key: bytes) -> bytes:
    nonce = os.urandom(_NONCE)
    plaintext = StateRecord(change=change).model_dump_json().encode()
    return nonce + AESGCM(key).encrypt(nonce, plaintext, _AAD + change.message_id.encode())


def open_change(
    data: bytes, message_id: str, key: bytes
) -> CaseOpenedChange | ConsentRecordedChange:
    try:
        plaintext = AESGCM(key).decrypt(data[:_NONCE], data[_NONCE:], _AAD + message_id.encode())
        return StateRecord.model_validate_json(plaintext).change
    except (InvalidTag, ValidationError, ValueError) as e:
        raise StateCorruptError("hub state record does not open") from e


class StateStore:
    def __init__(self, js: JetStreamContext, key: bytes) -> None:
        self._js = js
        self._key = key

    async def persist(self, change: CaseOpenedChange | ConsentRecordedChange) -> None:
        await self._js.publish(
            STATE_SUBJECT,
            seal_change(change, self._key),
            stream=STATE_STREAM,
            headers={"Nats-Msg-Id": change.message_id},
        )

    async def load(self) -> HubState:
        state = HubState()
        async for msg in read_stream(self._js, STATE_STREAM, STATE_SUBJECT):
            message_id = (msg.headers or {}).get("Nats-Msg-Id", "")
            state.apply(open_change(msg.data, message_id, self._key))
        return state
