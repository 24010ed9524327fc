"""Hash-chained records signed by the hub: the console's access log and the reviewers'
findings (issue #14). Pure: the caller stores and reads the records.

Each record is a JSON object carrying ``seq`` (0, 1, ...), ``prev`` (the ``hash``
of the record before, ``"0" * 64`` first), ``key_id`` (the hub signing key's id
in the signed directory), ``hash`` = SHA-256 of the RFC 8785 form of the record
without ``hash`` and ``sig``, and ``sig`` = the hub's hybrid signature
(Ed25519 + ML-DSA-65, ``protocol.signing``) over ``<domain>\\n<hash>``.

So an edited record fails its hash and its signature; a dropped or reordered one
breaks ``seq``/``prev``; a record forged by whoever can write the store, but
without the hub's key, fails the signature; and the domain keeps an access record
from passing as a finding. What a chain cannot show by itself is a dropped *tail*:
every record's signature covers the whole chain before it, so the head noted
elsewhere (the review report, a later record) pins it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import rfc8785
from cryptography.exceptions import InvalidSignature

from sigbus.audit.errors import AuditError
from sigbus.protocol.signing import HybridPrivateKey, HybridPublicKey

GENESIS = "0" * 64
#: Domains of the two chains: a record of one never verifies as the other's.
ACCESS_DOMAIN = "sigbus/v1/console-access"
FINDING_DOMAIN = "sigbus/v1/review-finding"
CHAIN_FIELDS = frozenset({"seq", "prev", "key_id", "hash", "sig"})


class ChainError(AuditError):
    """A chain is broken at ``position`` (0-based), or a record is refused."""

    def __init__(self, message: str, position: int | None = None) -> None:
        super().__init__(message)
        self.position = position


def _digest(record: Mapping[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k not in ("hash", "sig")}
    return hashlib.sha256(rfc8785.dumps(body)).hexdigest()


def _message(domain: str, digest: str) -> bytes:
    return f"{domain}\n{digest}".encode()


def seal(
    previous: Mapping[str, Any] | None,
    body: Mapping[str, Any],
    *,
    signer: HybridPrivateKey,
    key_id: str,
    domain: str,
) -> dict[str, Any]:
    """``body`` (JSON values, none of :data:`CHAIN_FIELDS`) as the next signed record."""
    if CHAIN_FIELDS & body.keys():
        raise ChainError(f"a record's body may not set {sorted(CHAIN_FIELDS & body.keys())}")
    record: dict[str, Any] = {
        **body,
        "seq": 0 if previous is None else int(previous["seq"]) + 1,
        "prev": GENESIS if previous is None else str(previous["hash"]),
        "key_id": key_id,
    }
    record["hash"] = _digest(record)
    record["sig"] = base64.b64encode(signer.sign(_message(domain, record["hash"]))).decode()
    return record


def check_chain(
    records: Sequence[Mapping[str, Any]],
    keys: Mapping[str, HybridPublicKey],
    *,
    domain: str,
) -> str:
    """The chain's head hash (:data:`GENESIS` when empty); raises :class:`ChainError` at
    the first record that does not follow, was altered, or is not signed by one of
    ``keys`` (key id -> the hub's signing key)."""
    prev = GENESIS
    for position, record in enumerate(records):
        if record.get("seq") != position or record.get("prev") != prev:
            raise ChainError(f"record {position} does not follow the one before", position)
        digest = record.get("hash")
        if digest != _digest(record):
            raise ChainError(f"record {position} was altered", position)
        key = keys.get(str(record.get("key_id")))
        if key is None:
            raise ChainError(f"record {position} names no hub signing key", position)
        try:
            signature = base64.b64decode(str(record.get("sig")), validate=True)
            key.verify(signature, _message(domain, digest))
        except (binascii.Error, ValueError, InvalidSignature) as e:
            raise ChainError(f"record {position} is not signed by the hub", position) from e
        prev = digest
    return prev
