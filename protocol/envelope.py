"""The envelope: authenticated cleartext header + AEAD body + sealed data key + signature.

Order of checks on receipt (the hub, and a recipient of a release):
1. parse the envelope (size-bounded, strict schema) — :func:`parse_envelope`;
2. verify the sender's hybrid signature (Ed25519 + ML-DSA-65, both halves,
   :mod:`protocol.signing`) over the domain-separated RFC 8785 encoding of the
   header, the ciphertext digest, the sealed key's digest and the sealed key's id
   — *before* anything is decrypted, so forgeries cost one signature check, and a
   sealed key swapped or altered in transit is refused as a bad signature —
   :func:`verify_sender`;
3. open the sealed data key (HPKE, RFC 9180) and the body (AES-256-GCM with
   the canonical header as associated data, so a body cannot be moved under
   another header) — :func:`open_body`;
4. validate the body against the model the header's type names.
"""

from __future__ import annotations

import json
import os
import re
from typing import Annotated, Literal

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import AwareDatetime, Field, ValidationError

from sigbus.protocol.canonical import (
    BODY_AAD_DOMAIN,
    ENVELOPE_SIGNATURE_DOMAIN,
    B64Bytes,
    canonical_json,
    sha256_hex,
)
from sigbus.protocol.errors import (
    BodyValidationError,
    EnvelopeFormatError,
    OpenError,
    SignatureError,
)
from sigbus.protocol.identity import AgencyIdentity
from sigbus.protocol.ids import AgencyId, CaseRefStr, KeyIdStr, MessageIdStr, MessageType
from sigbus.protocol.messages import BODY_MODELS, Body, StatutoryAssertion, StrictModel
from sigbus.protocol.personnummer import PersonnummerError
from sigbus.protocol.reasons import ReasonCode
from sigbus.protocol.sealing import (
    STRICT_SUITES,
    SuiteId,
    SuitePolicy,
    data_key_info,
    new_data_key,
    open_data_key,
    seal_data_key,
)
from sigbus.protocol.signing import HybridPublicKey

PROTOCOL_VERSION: Literal[1] = 1
#: Largest envelope the hub accepts on the wire. A minimal body is < 1 KiB; the
#: hybrid sealed key is 1,168 bytes; 64 KiB leaves ample room and bounds memory.
MAX_ENVELOPE_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024
NONCE_BYTES = 12


class Header(StrictModel):
    """Cleartext, authenticated, and free of personal data by construction."""

    version: Literal[1] = PROTOCOL_VERSION
    message_id: MessageIdStr
    type: MessageType
    sender: AgencyId
    sender_key_id: KeyIdStr
    case_ref: CaseRefStr | None = None
    created_at: AwareDatetime
    recipients: Annotated[tuple[AgencyId, ...], Field(max_length=8)] = ()
    #: A statutory basis the sender asserts, with its own evidence id (e.g. LUL 6 §).
    assertion: StatutoryAssertion | None = None
    suite: SuiteId


class Envelope(StrictModel):
    header: Header
    nonce: B64Bytes
    ciphertext: B64Bytes
    sealed_key: B64Bytes
    sealed_key_id: str
    signature: B64Bytes

    def ciphertext_digest(self) -> str:
        return sha256_hex(self.nonce + self.ciphertext)

    def sealed_key_digest(self) -> str:
        return sha256_hex(self.sealed_key)

    def to_wire(self) -> bytes:
        return self.model_dump_json().encode()


def signed_message(
    header: Header, ciphertext_sha256: str, sealed_key_sha256: str, sealed_key_id: str
) -> bytes:
    """What the sender signs: domain tag || RFC 8785({ciphertext_sha256, header,
    sealed_key_id, sealed_key_sha256}). The sealed key and its id are covered, so
    nobody on the way can swap the data key the hub opens for one of their own."""
    return ENVELOPE_SIGNATURE_DOMAIN + canonical_json(
        {
            "header": header.model_dump(mode="json"),
            "ciphertext_sha256": ciphertext_sha256,
            "sealed_key_sha256": sealed_key_sha256,
            "sealed_key_id": sealed_key_id,
        }
    )


def body_aad(header: Header) -> bytes:
    return BODY_AAD_DOMAIN + canonical_json(header)


def seal_envelope(
    header: Header,
    body: Body,
    sender: AgencyIdentity,
    *,
    recipient: AgencyId,
    recipient_key_id: str,
    recipient_public: bytes,
    policy: SuitePolicy = STRICT_SUITES,
) -> Envelope:
    """Encrypt ``body`` under a fresh data key, seal the key, sign. Used by every sender."""
    if type(body) is not BODY_MODELS[header.type]:
        raise EnvelopeFormatError(
            "body model does not match header type", reason=ReasonCode.UNKNOWN_TYPE
        )
    plaintext = body.model_dump_json().encode()
    if len(plaintext) > MAX_BODY_BYTES:
        raise EnvelopeFormatError("body exceeds the size limit", reason=ReasonCode.OVERSIZE)
    data_key = new_data_key()
    nonce = os.urandom(NONCE_BYTES)
    ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, body_aad(header))
    sealed = seal_data_key(
        header.suite,
        recipient_public,
        data_key,
        data_key_info(header.message_id, recipient, recipient_key_id),
        policy=policy,
    )
    digest = sha256_hex(nonce + ciphertext)
    signature = sender.signing_key.sign(
        signed_message(header, digest, sha256_hex(sealed), recipient_key_id)
    )
    return Envelope(
        header=header,
        nonce=nonce,
        ciphertext=ciphertext,
        sealed_key=sealed,
        sealed_key_id=recipient_key_id,
        signature=signature,
    )


def _peek_header(raw: bytes) -> tuple[object, object]:
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise EnvelopeFormatError("envelope is not JSON", reason=ReasonCode.NOT_JSON) from e
    except RecursionError as e:  # deep nesting exhausts the stack long before 64 KiB
        raise EnvelopeFormatError("envelope nests too deeply") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("header"), dict):
        raise EnvelopeFormatError("envelope has no header object")
    return doc["header"].get("version"), doc["header"].get("type")


def parse_envelope(raw: bytes) -> Envelope:
    """Parse wire bytes into an :class:`Envelope`, with a specific reason on failure.

    Version and type are checked first so that each gets its own reason code.
    """
    if len(raw) > MAX_ENVELOPE_BYTES:
        raise EnvelopeFormatError("envelope exceeds the size limit", reason=ReasonCode.OVERSIZE)
    version, msg_type = _peek_header(raw)
    if version != PROTOCOL_VERSION:
        raise EnvelopeFormatError(
            "unsupported protocol version", reason=ReasonCode.UNSUPPORTED_VERSION
        )
    if not isinstance(msg_type, str) or msg_type not in set(MessageType):
        raise EnvelopeFormatError("unknown message type", reason=ReasonCode.UNKNOWN_TYPE)
    try:
        return Envelope.model_validate_json(raw)
    except ValidationError as e:
        raise EnvelopeFormatError(f"envelope is malformed at {error_locations(e)}") from e


def verify_sender(envelope: Envelope, public_key: HybridPublicKey) -> None:
    """Both halves of the sender's hybrid signature, over header, ciphertext and sealed key."""
    message = signed_message(
        envelope.header,
        envelope.ciphertext_digest(),
        envelope.sealed_key_digest(),
        envelope.sealed_key_id,
    )
    try:
        public_key.verify(envelope.signature, message)
    except InvalidSignature as e:
        raise SignatureError("sender signature does not verify") from e


def open_body(
    envelope: Envelope,
    *,
    recipient: AgencyId,
    suite_private: bytes,
    sealed_key: tuple[bytes, str] | None = None,
) -> bytes:
    """Open the data key sealed to ``recipient`` and decrypt the body bytes.

    ``sealed_key``: (sealed key, key id) to open instead of the envelope's own, for a
    release, whose envelope keeps the key sealed to the hub as the sender signed it."""
    header = envelope.header
    sealed, key_id = sealed_key or (envelope.sealed_key, envelope.sealed_key_id)
    data_key = open_data_key(
        header.suite,
        suite_private,
        sealed,
        data_key_info(header.message_id, recipient, key_id),
    )
    return decrypt_body(envelope, data_key)


def decrypt_body(envelope: Envelope, data_key: bytes) -> bytes:
    """Decrypt the body with an already opened data key (the hub opens it once and
    re-seals the same key to each recipient)."""
    try:
        return AESGCM(data_key).decrypt(
            envelope.nonce, envelope.ciphertext, body_aad(envelope.header)
        )
    except InvalidTag as e:
        raise OpenError("body does not authenticate", reason=ReasonCode.DECRYPT_FAILED) from e


def error_locations(e: ValidationError) -> str:
    """Where validation failed, never what the input was (it may hold a personnummer).

    A location can itself come from input (the name of an unexpected field), so any
    run of digits in it is masked too.
    """
    return ",".join(
        _DIGIT_RUN.sub("#", ".".join(str(p) for p in err["loc"])) or "<root>"
        for err in e.errors(include_input=False)
    )


_DIGIT_RUN = re.compile(r"\d{6,}")


def describe_invalid(e: ValidationError) -> str:
    """``where: which rule`` for an error message: pydantic's own text repeats the
    input, which may be a personnummer, so only locations and rule texts are used."""
    rules = "; ".join(sorted({err["msg"] for err in e.errors(include_input=False)}))
    return f"{error_locations(e)}: {rules}"


def parse_body(message_type: MessageType, plaintext: bytes) -> Body:
    """Validate a decrypted body against the model the signed header names."""
    if len(plaintext) > MAX_BODY_BYTES:
        raise BodyValidationError("body exceeds the size limit", reason=ReasonCode.OVERSIZE)
    try:
        return BODY_MODELS[message_type].model_validate_json(plaintext)
    except ValidationError as e:
        reason = ReasonCode.SCHEMA_INVALID
        for err in e.errors(include_input=False):
            cause = err.get("ctx", {}).get("error")
            if isinstance(cause, PersonnummerError):
                reason = ReasonCode.PERSONNUMMER_INVALID
            elif "personnummer pattern" in err["msg"]:
                reason = ReasonCode.PERSONNUMMER_IN_FREE_TEXT
        raise BodyValidationError(f"body is invalid at {error_locations(e)}", reason=reason) from e
