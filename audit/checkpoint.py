"""Checkpoints (C2SP tlog-checkpoint) in signed notes (C2SP signed-note), and cosignatures.

- ``tlog-checkpoint``: the note body is the origin line, the tree size in
  decimal, the base64 root hash, then optional extension lines; every line
  ends with "\\n".
- ``signed-note``: body, one empty line, then signature lines
  ``— <name> <base64(key hash || signature)>``. For Ed25519 (signature type
  0x01) the 4-byte key hash is SHA-256(name || "\\n" || 0x01 || public key)[:4]
  and the signature is over the body bytes.
- ``tlog-cosignature`` (cosignature/v1, signature type 0x04): a witness signs
  "cosignature/v1\\ntime <unix seconds>\\n" || body; the signature line carries
  key hash || 8-byte big-endian timestamp || 64-byte Ed25519 signature.

Hybrid keys (``protocol.signing.HybridPrivateKey`` / ``HybridPublicKey``,
Ed25519 + ML-DSA-65) sign with both halves: the Ed25519 line above keeps its
exact C2SP form (a standard verifier holding the Ed25519 key accepts it), and
the ML-DSA-65 signature is an ADDITIONAL line under the distinct key name
``<name>/mldsa65`` with a key hash of signature type 0xff (SHA-256(name || "\\n"
|| 0xff || "sigbus-mldsa65" || ML-DSA public key)[:4]); standard verifiers skip
it as a key they do not know. It signs the same bytes (the body, or the
cosignature/v1 message) with the FIPS 204 context ``sigbus/v1/hybrid``; a
cosignature's ML-DSA line carries the same 8-byte timestamp before the
signature. Our verifier, given a hybrid key, requires both lines to verify.

Keys are ``cryptography`` Ed25519 objects or sigbus hybrids; all functions are pure.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass
from typing import Annotated

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel, ConfigDict, Field

from sigbus.audit.errors import CheckpointError, SignatureError
from sigbus.audit.merkle import HASH_SIZE
from sigbus.protocol.signing import (
    ED25519_PUBLIC_BYTES,
    ML_DSA_CONTEXT,
    MLDSA65_SIGNATURE_BYTES,
    HybridPrivateKey,
    HybridPublicKey,
)

DEFAULT_ORIGIN = "sigbus/dev/disclosure-log"

#: C2SP signed-note signature types (the byte hashed into the key hash).
ED25519_SIGNATURE_TYPE = 0x01
COSIGNATURE_V1_SIGNATURE_TYPE = 0x04
#: signed-note reserves 0xff for signature types identified by a string after it.
MLDSA65_SIGNATURE_TYPE = 0xFF
_MLDSA65_TYPE_ID = b"sigbus-mldsa65"
#: The key name of the additional ML-DSA-65 line: ``<name>`` + this suffix.
MLDSA65_NAME_SUFFIX = "/mldsa65"

PrivateKey = Ed25519PrivateKey | HybridPrivateKey
PublicKey = Ed25519PublicKey | HybridPublicKey

_SIGNATURE_DASH = "\u2014"  # C2SP signed-note: an em dash starts every signature line
_KEY_HASH_SIZE = 4
_ED25519_SIGNATURE_SIZE = 64
_TIMESTAMP_SIZE = 8
_MAX_SIGNATURES = 100  # signed-note lets verifiers bound the work an untrusted note causes
_COSIGNATURE_HEADER = "cosignature/v1\ntime {timestamp}\n"

# signed-note: key names are non-empty and contain no whitespace and no "+".
_KEY_NAME = re.compile(r"[^\s+]+")
# tlog-checkpoint: origin is a non-empty line; size is decimal without leading zeros.
_ORIGIN = re.compile(r"[^\n]+")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


class Checkpoint(BaseModel):
    """A parsed ``tlog-checkpoint`` body."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    origin: Annotated[str, Field(pattern=r"^[^\n]+$")]
    size: Annotated[int, Field(ge=0)]
    root: Annotated[bytes, Field(min_length=HASH_SIZE, max_length=HASH_SIZE)]
    extensions: tuple[str, ...] = ()

    def body(self) -> str:
        lines = [self.origin, str(self.size), base64.b64encode(self.root).decode("ascii")]
        return "".join(f"{line}\n" for line in (*lines, *self.extensions))


@dataclass(frozen=True)
class NoteSignature:
    """One signature line of a signed note, decoded but not verified."""

    name: str
    key_hash: bytes
    signature: bytes

    def line(self) -> str:
        encoded = base64.b64encode(self.key_hash + self.signature).decode("ascii")
        return f"{_SIGNATURE_DASH} {self.name} {encoded}\n"


@dataclass(frozen=True)
class SignedNote:
    body: str
    signatures: tuple[NoteSignature, ...]


def public_key_bytes(public_key: PublicKey) -> bytes:
    """Raw bytes: 32 for Ed25519, 1,984 for a hybrid (Ed25519 || ML-DSA-65)."""
    return public_key.public_bytes_raw()


def load_public_key(raw: bytes) -> PublicKey:
    """A log or witness public key from its raw bytes: 32 (Ed25519) or 1,984 (hybrid).

    Raises ``ValueError`` for any other length or a malformed key."""
    if len(raw) == ED25519_PUBLIC_BYTES:
        return Ed25519PublicKey.from_public_bytes(raw)
    return HybridPublicKey.from_public_bytes(raw)


def key_hash(name: str, signature_type: int, public_key: Ed25519PublicKey) -> bytes:
    """C2SP signed-note key ID: SHA-256(name || "\\n" || type || key)[:4]."""
    material = name.encode() + b"\n" + bytes([signature_type]) + public_key.public_bytes_raw()
    return hashlib.sha256(material).digest()[:_KEY_HASH_SIZE]


def mldsa_key_name(name: str) -> str:
    """The key name of the ML-DSA-65 line that goes with ``name``'s Ed25519 line."""
    return name + MLDSA65_NAME_SUFFIX


def mldsa_key_hash(name: str, public_key: HybridPublicKey) -> bytes:
    """Key hash of the ML-DSA-65 line (signature type 0xff, then its identifier)."""
    material = (
        mldsa_key_name(name).encode()
        + b"\n"
        + bytes([MLDSA65_SIGNATURE_TYPE])
        + _MLDSA65_TYPE_ID
        + public_key.mldsa.public_bytes_raw()
    )
    return hashlib.sha256(material).digest()[:_KEY_HASH_SIZE]


def _ed25519_of(key: PublicKey) -> Ed25519PublicKey:
    return key.ed25519 if isinstance(key, HybridPublicKey) else key


def _verify_mldsa(public_key: HybridPublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public_key.mldsa.verify(signature, message, ML_DSA_CONTEXT)
    except InvalidSignature:
        return False
    return True


def _require_key_name(name: str) -> None:
    if not _KEY_NAME.fullmatch(name):
        raise CheckpointError("key name must be non-empty, without whitespace or '+'")


def _decode_base64(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as e:
        raise CheckpointError(f"{what} is not valid base64") from e


def make_checkpoint_body(origin: str, size: int, root: bytes) -> str:
    """C2SP tlog-checkpoint body for a tree of ``size`` leaves with ``root``."""
    if not _ORIGIN.fullmatch(origin):
        raise CheckpointError("origin must be one non-empty line")
    if size < 0:
        raise CheckpointError("tree size must not be negative")
    if len(root) != HASH_SIZE:
        raise CheckpointError(f"root hash must be {HASH_SIZE} bytes")
    return Checkpoint(origin=origin, size=size, root=root).body()


def parse_checkpoint_body(body: str) -> Checkpoint:
    """Parse a tlog-checkpoint body (which must end with a newline)."""
    if not body.endswith("\n"):
        raise CheckpointError("checkpoint body must end with a newline")
    lines = body[:-1].split("\n")
    if len(lines) < 3:
        raise CheckpointError("checkpoint body needs origin, size and root lines")
    origin, size_text, root_text, *extensions = lines
    if not origin:
        raise CheckpointError("checkpoint origin line is empty")
    if not _DECIMAL.fullmatch(size_text):
        raise CheckpointError("checkpoint size is not a canonical decimal number")
    root = _decode_base64(root_text, "checkpoint root hash")
    if len(root) != HASH_SIZE:
        raise CheckpointError(f"checkpoint root hash must be {HASH_SIZE} bytes")
    if any(not line for line in extensions):
        raise CheckpointError("checkpoint extension lines must not be empty")
    return Checkpoint(origin=origin, size=int(size_text), root=root, extensions=tuple(extensions))


def _require_note_text(body: str) -> None:
    # signed-note: the text is non-empty, ends with a newline, and has no other
    # control characters, so it round-trips through any line-based transport.
    if not body.endswith("\n"):
        raise CheckpointError("note text must end with a newline")
    if any(ord(ch) < 0x20 and ch != "\n" for ch in body):
        raise CheckpointError("note text contains a control character")


def sign_note(body: str, name: str, private_key: PrivateKey) -> str:
    """A C2SP signed note: ``body``, an empty line, one Ed25519 signature line, and
    for a hybrid key the additional ML-DSA-65 line."""
    _require_note_text(body)
    _require_key_name(name)
    ed = private_key.ed25519 if isinstance(private_key, HybridPrivateKey) else private_key
    signature = NoteSignature(
        name=name,
        key_hash=key_hash(name, ED25519_SIGNATURE_TYPE, ed.public_key()),
        signature=ed.sign(body.encode()),
    )
    lines = signature.line()
    if isinstance(private_key, HybridPrivateKey):
        lines += NoteSignature(
            name=mldsa_key_name(name),
            key_hash=mldsa_key_hash(name, private_key.public_key()),
            signature=private_key.mldsa.sign(body.encode(), ML_DSA_CONTEXT),
        ).line()
    return body + "\n" + lines


def _parse_signature_line(line: str) -> NoteSignature:
    dash, _, rest = line.partition(" ")
    name, _, encoded = rest.partition(" ")
    if dash != _SIGNATURE_DASH or not name or not encoded:
        raise CheckpointError("signature line is not '— <name> <base64>'")
    _require_key_name(name)
    raw = _decode_base64(encoded, "signature")
    if len(raw) <= _KEY_HASH_SIZE:
        raise CheckpointError("signature is too short to hold a key hash")
    return NoteSignature(name=name, key_hash=raw[:_KEY_HASH_SIZE], signature=raw[_KEY_HASH_SIZE:])


def parse_signed_note(text: str) -> SignedNote:
    """Split a signed note into its body and signature lines (nothing is verified here)."""
    # signed-note: the signature block follows the *last* empty line.
    split = text.rfind("\n\n")
    if split < 0 or not text.endswith("\n"):
        raise CheckpointError("signed note needs a body, an empty line and signature lines")
    body, block = text[: split + 1], text[split + 2 :]
    _require_note_text(body)
    signature_lines = block[:-1].split("\n") if block else []
    if not signature_lines:
        raise CheckpointError("signed note has no signature lines")
    if len(signature_lines) > _MAX_SIGNATURES:
        raise CheckpointError(f"signed note has more than {_MAX_SIGNATURES} signatures")
    signatures = tuple(_parse_signature_line(line) for line in signature_lines)
    return SignedNote(body=body, signatures=signatures)


def _verify_ed25519(public_key: Ed25519PublicKey, signature: bytes, message: bytes) -> bool:
    try:
        public_key.verify(signature, message)
    except InvalidSignature:
        return False
    return True


def verify_note(text: str, name: str, public_key: PublicKey) -> Checkpoint:
    """Verify the signature of ``name`` on a signed checkpoint and parse its body.

    Per signed-note, lines from other keys are ignored; at least one line with
    this key's name and key hash must verify, otherwise :class:`SignatureError`.
    A hybrid key needs both its Ed25519 line and its ML-DSA-65 line to verify.
    """
    note = parse_signed_note(text)
    ed = _ed25519_of(public_key)
    expected_hash = key_hash(name, ED25519_SIGNATURE_TYPE, ed)
    candidates = [
        sig for sig in note.signatures if sig.name == name and sig.key_hash == expected_hash
    ]
    if not candidates:
        raise SignatureError(f"checkpoint carries no signature by key {name!r}")
    message = note.body.encode()
    if not any(_verify_ed25519(ed, sig.signature, message) for sig in candidates):
        raise SignatureError(f"checkpoint signature by {name!r} does not verify")
    if isinstance(public_key, HybridPublicKey):
        pq_name, pq_hash = mldsa_key_name(name), mldsa_key_hash(name, public_key)
        pq = [s for s in note.signatures if s.name == pq_name and s.key_hash == pq_hash]
        if not pq:
            raise SignatureError(f"checkpoint carries no ML-DSA-65 signature by key {name!r}")
        if not any(_verify_mldsa(public_key, sig.signature, message) for sig in pq):
            raise SignatureError(f"checkpoint ML-DSA-65 signature by {name!r} does not verify")
    return parse_checkpoint_body(note.body)


def _cosigned_message(checkpoint_body: str, timestamp: int) -> bytes:
    return (_COSIGNATURE_HEADER.format(timestamp=timestamp) + checkpoint_body).encode()


def cosign(
    checkpoint_body: str,
    witness_name: str,
    private_key: PrivateKey,
    *,
    timestamp: int,
) -> str:
    """A C2SP tlog-cosignature/v1 signature line (ending in "\\n") over ``checkpoint_body``;
    for a hybrid key, followed by the additional ML-DSA-65 line.

    ``timestamp`` is the witness's time in unix seconds, passed in (pure code
    reads no clock). Append the line(s) to the signed note to add the cosignature.
    """
    _require_key_name(witness_name)
    parse_checkpoint_body(checkpoint_body)  # a witness only ever cosigns checkpoints
    if not 0 <= timestamp < 1 << 63:
        raise CheckpointError("cosignature timestamp out of range")
    ed = private_key.ed25519 if isinstance(private_key, HybridPrivateKey) else private_key
    message = _cosigned_message(checkpoint_body, timestamp)
    stamp = timestamp.to_bytes(_TIMESTAMP_SIZE, "big")
    line = NoteSignature(
        name=witness_name,
        key_hash=key_hash(witness_name, COSIGNATURE_V1_SIGNATURE_TYPE, ed.public_key()),
        signature=stamp + ed.sign(message),
    ).line()
    if isinstance(private_key, HybridPrivateKey):
        line += NoteSignature(
            name=mldsa_key_name(witness_name),
            key_hash=mldsa_key_hash(witness_name, private_key.public_key()),
            signature=stamp + private_key.mldsa.sign(message, ML_DSA_CONTEXT),
        ).line()
    return line


def verify_cosignature(
    checkpoint_body: str,
    line: str,
    witness_name: str,
    public_key: PublicKey,
) -> int:
    """Verify one cosignature over ``checkpoint_body``; returns its unix timestamp.

    ``line``: the cosignature/v1 line; for a hybrid key, followed by its ML-DSA-65
    line, which must verify too, over the same message and with the same timestamp.
    """
    lines = line.removesuffix("\n").split("\n")
    if isinstance(public_key, HybridPublicKey):
        if len(lines) != 2:
            raise SignatureError(
                f"hybrid cosignature by {witness_name!r} needs its Ed25519 and ML-DSA-65 lines"
            )
        ed = public_key.ed25519
        timestamp = _verify_cosignature_v1(checkpoint_body, lines[0], witness_name, ed)
        _verify_mldsa_cosignature(checkpoint_body, lines[1], witness_name, public_key, timestamp)
        return timestamp
    if len(lines) != 1:
        raise SignatureError("a cosignature/v1 cosignature is one line")
    return _verify_cosignature_v1(checkpoint_body, lines[0], witness_name, public_key)


def _verify_mldsa_cosignature(
    checkpoint_body: str, line: str, witness_name: str, public_key: HybridPublicKey, timestamp: int
) -> None:
    signature = _parse_signature_line(line)
    if signature.name != mldsa_key_name(witness_name):
        raise SignatureError(f"ML-DSA-65 cosignature line is not {witness_name!r}'s")
    if signature.key_hash != mldsa_key_hash(witness_name, public_key):
        raise SignatureError(f"ML-DSA-65 cosignature key hash does not match {witness_name!r}")
    if len(signature.signature) != _TIMESTAMP_SIZE + MLDSA65_SIGNATURE_BYTES:
        raise SignatureError("ML-DSA-65 cosignature has the wrong length")
    if int.from_bytes(signature.signature[:_TIMESTAMP_SIZE], "big") != timestamp:
        raise SignatureError("ML-DSA-65 cosignature carries another timestamp")
    message = _cosigned_message(checkpoint_body, timestamp)
    if not _verify_mldsa(public_key, signature.signature[_TIMESTAMP_SIZE:], message):
        raise SignatureError(f"ML-DSA-65 cosignature by {witness_name!r} does not verify")


def _verify_cosignature_v1(
    checkpoint_body: str, line: str, witness_name: str, public_key: Ed25519PublicKey
) -> int:
    signature = _parse_signature_line(line)
    if signature.name != witness_name:
        raise SignatureError(f"cosignature is by {signature.name!r}, not {witness_name!r}")
    if signature.key_hash != key_hash(witness_name, COSIGNATURE_V1_SIGNATURE_TYPE, public_key):
        raise SignatureError(f"cosignature key hash does not match the key of {witness_name!r}")
    if len(signature.signature) != _TIMESTAMP_SIZE + _ED25519_SIGNATURE_SIZE:
        raise SignatureError("cosignature has the wrong length for cosignature/v1")
    timestamp = int.from_bytes(signature.signature[:_TIMESTAMP_SIZE], "big")
    message = _cosigned_message(checkpoint_body, timestamp)
    if not _verify_ed25519(public_key, signature.signature[_TIMESTAMP_SIZE:], message):
        raise SignatureError(f"cosignature by {witness_name!r} does not verify")
    return timestamp


def note_body(text: str) -> str:
    """The body (checkpoint) of a signed note, without its signature lines."""
    return parse_signed_note(text).body


def add_signature_lines(text: str, lines: list[str]) -> str:
    """Append signature lines (e.g. cosignatures) to a signed note."""
    parse_signed_note(text)
    return text + "".join(line if line.endswith("\n") else line + "\n" for line in lines)
