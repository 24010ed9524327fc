"""Canonical, domain-separated encodings for everything that is signed or hashed.

RFC 8785 (JSON Canonicalization Scheme) gives one byte string per value, so a
signature made by one party verifies at every other. A domain tag in front of
each signed encoding keeps a signature over one kind of object from ever being
valid for another (cf. RFC 9180 §5.1 for the same reason on ``info``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Annotated, Any

import rfc8785
from pydantic import BaseModel, BeforeValidator, PlainSerializer

ENVELOPE_SIGNATURE_DOMAIN = b"sigbus/v1/envelope-signature\n"
RELEASE_RECORD_DOMAIN = b"sigbus/v1/release-record\n"
DECISION_NOTICE_DOMAIN = b"sigbus/v1/decision-notice\n"
DIRECTORY_DOMAIN = b"sigbus/v1/agency-directory\n"
ROOT_DOMAIN = b"sigbus/v1/root-metadata\n"
ENDORSEMENT_DOMAIN = b"sigbus/v1/directory-endorsement\n"
BODY_AAD_DOMAIN = b"sigbus/v1/body-aad\n"
DATA_KEY_INFO_DOMAIN = b"sigbus/v1/data-key\n"


def canonical_json(value: Any) -> bytes:
    """RFC 8785 bytes of a JSON-compatible value or a pydantic model."""
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    encoded: bytes = rfc8785.dumps(value)
    return encoded


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ValueError("not valid base64") from e


def _decode_b64_field(value: object) -> object:
    if isinstance(value, str):
        return b64decode(value)
    return value


#: bytes on the wire as standard base64 (RFC 4648 §4), strict on input.
B64Bytes = Annotated[
    bytes,
    BeforeValidator(_decode_b64_field),
    PlainSerializer(b64encode, return_type=str, when_used="json"),
]
