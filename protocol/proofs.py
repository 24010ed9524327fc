"""Request/reply shapes for the hub's log-proof service (witnesses, recipients)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from sigbus.protocol.canonical import B64Bytes
from sigbus.protocol.messages import StrictModel


class InclusionRequest(StrictModel):
    index: Annotated[int, Field(ge=0)]
    size: Annotated[int, Field(ge=1)]


class ConsistencyRequest(StrictModel):
    size1: Annotated[int, Field(ge=1)]
    size2: Annotated[int, Field(ge=1)]


class ProofReply(StrictModel):
    """``proof`` on success; ``error`` (a short code) when the request cannot be served."""

    proof: tuple[B64Bytes, ...] = ()
    #: Inclusion only: the entry's RFC 9162 leaf hash, never the entry itself. The
    #: entry names parties, basis and case, which the recipient need not see to check
    #: its release: the hub-signed ``ReleaseRecord.leaf_hash`` is what it must match.
    leaf_hash: B64Bytes | None = None
    error: str | None = None


class CheckpointReply(StrictModel):
    signed_checkpoint: str


class Cosignature(StrictModel):
    """What a witness publishes on ``sigbus.log.cosignature.<agency>``."""

    witness: str
    public_key: B64Bytes
    checkpoint_size: Annotated[int, Field(ge=0)]
    line: str


class CheckpointGossip(StrictModel):
    """What a witness publishes on ``sigbus.log.gossip.<agency>``: its current view."""

    witness: str
    signed_checkpoint: str  # the log-signed note this witness last cosigned
    cosignature: str  # its own cosignature line over that note
