"""A release: the original envelope, the data key re-sealed to the recipient,
and a hub-signed release record proving the release was lawful and logged.

The recipient verifies both signatures before opening anything: the sender's
(end-to-end provenance; the hub cannot forge content) and the hub's (which
decision, legal basis, consent revision and log index this release rests on).
Both are hybrid (Ed25519 + ML-DSA-65, :mod:`protocol.signing`). The envelope is
passed on exactly as the sender signed it, its key still sealed to the hub, so
the sender's signature (which covers that sealed key and its id) verifies; the
key re-sealed to the recipient travels beside it and the hub's record covers
its digest and key id.
"""

from __future__ import annotations

import hashlib
from typing import Annotated, Literal

from cryptography.exceptions import InvalidSignature
from pydantic import AwareDatetime, Field, ValidationError

from sigbus.protocol.canonical import RELEASE_RECORD_DOMAIN, B64Bytes, canonical_json, sha256_hex
from sigbus.protocol.envelope import MAX_ENVELOPE_BYTES, Envelope, error_locations
from sigbus.protocol.errors import EnvelopeFormatError, ReleaseError
from sigbus.protocol.ids import AgencyId
from sigbus.protocol.messages import ConsentRef, StrictModel
from sigbus.protocol.signing import HybridPrivateKey, HybridPublicKey


class ReleaseRecord(StrictModel):
    #: 2: ``leaf_hash`` added (the recipient proves inclusion without the entry).
    #: 3: ``sealed_key_sha256`` added; hybrid signature.
    version: Literal[3] = 3
    release_id: str
    decision_id: str
    message_id: str
    recipient: AgencyId
    recipient_key_id: str
    legal_basis: str
    statutory: bool
    consent_refs: tuple[ConsentRef, ...] = ()
    rules_hash: str
    log_index: Annotated[int, Field(ge=0)]
    #: RFC 9162 leaf hash (hex) of the log entry at ``log_index``: binds the release to
    #: that entry, so an inclusion proof needs only this hash, never the entry's bytes.
    leaf_hash: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    ciphertext_sha256: str
    #: SHA-256 (hex) of the data key as re-sealed to ``recipient_key_id``.
    sealed_key_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    released_at: AwareDatetime
    hub_key_id: str


class Release(StrictModel):
    #: exactly as the sender made and signed it (its data key sealed to the hub)
    envelope: Envelope
    #: the data key re-sealed to the recipient (HPKE), and that recipient key's id
    sealed_key: B64Bytes
    sealed_key_id: str
    record: ReleaseRecord
    record_signature: B64Bytes

    def to_wire(self) -> bytes:
        return self.model_dump_json().encode()


def release_id_for(message_id: str, recipient: AgencyId) -> str:
    """Deterministic, so a re-published release after a crash is de-duplicated."""
    digest = hashlib.sha256(f"{message_id}\n{recipient}".encode()).hexdigest()[:32]
    return f"rel-{digest}"


def sign_record(record: ReleaseRecord, hub_key: HybridPrivateKey) -> bytes:
    return hub_key.sign(RELEASE_RECORD_DOMAIN + canonical_json(record))


def parse_release(raw: bytes) -> Release:
    if len(raw) > 2 * MAX_ENVELOPE_BYTES:
        raise EnvelopeFormatError("release exceeds the size limit")
    try:
        return Release.model_validate_json(raw)
    except ValidationError as e:
        raise EnvelopeFormatError(f"release is malformed at {error_locations(e)}") from e


def verify_release_record(release: Release, hub_public: HybridPublicKey, *, me: AgencyId) -> None:
    """Check the hub's signature and that the record is bound to this envelope and to us."""
    record = release.record
    try:
        hub_public.verify(release.record_signature, RELEASE_RECORD_DOMAIN + canonical_json(record))
    except InvalidSignature as e:
        raise ReleaseError("release record signature does not verify") from e
    if record.message_id != release.envelope.header.message_id:
        raise ReleaseError("release record names another message")
    if record.ciphertext_sha256 != release.envelope.ciphertext_digest():
        raise ReleaseError("release record names another ciphertext")
    if record.recipient != me or release.sealed_key_id != record.recipient_key_id:
        raise ReleaseError("release is addressed to another recipient")
    if record.sealed_key_sha256 != sha256_hex(release.sealed_key):
        raise ReleaseError("release record names another sealed key")
    if record.release_id != release_id_for(record.message_id, me):
        raise ReleaseError("release id does not match message and recipient")
