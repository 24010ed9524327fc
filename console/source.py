"""What the console reads from the bus: the log up to its checkpoint, and the hub state.

The same reads as ``sigbus audit export`` (``export.latest_checkpoint``,
``cosignatures_for``, ``read_by_sequence``) and the hub's recovery
(``StateStore.load``), with the hub's credentials; nothing is written to disk.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from nats.js.errors import NotFoundError

from sigbus.audit.checkpoint import (
    PublicKey,
    load_public_key,
    parse_checkpoint_body,
    parse_signed_note,
)
from sigbus.broker.setup import hub_setup
from sigbus.broker.state import CaseRecord
from sigbus.broker.state_store import StateStore
from sigbus.console.records import AccessLog, FindingsLog, StreamStore, hub_signing_keys
from sigbus.console.status import LogStatus, log_status
from sigbus.export import ExportFailed, cosignatures_for, latest_checkpoint
from sigbus.protocol.directory import KeyUse
from sigbus.protocol.ids import HUB
from sigbus.protocol.proofs import Cosignature
from sigbus.protocol.signing import HybridPrivateKey, HybridPublicKey
from sigbus.protocol.subjects import (
    ACCESS_STREAM,
    ACCESS_SUBJECT,
    FINDINGS_STREAM,
    FINDINGS_SUBJECT,
    LOG_STREAM,
)
from sigbus.transport.bus import connect, read_by_sequence
from sigbus.transport.keystore import load_directory


@dataclass(frozen=True)
class Snapshot:
    entries: list[dict[str, Any]]
    cases: dict[str, CaseRecord]
    status: LogStatus
    agencies: tuple[str, ...] = field(default=())
    #: What an extract is built from: the signed checkpoint, the records up to it, the
    #: witnesses' cosignatures (as in an export trailer) and the log key.
    note: str | None = None
    leaves: tuple[bytes, ...] = ()
    cosignatures: tuple[dict[str, str], ...] = ()
    log_key: PublicKey | None = None


class Source(Protocol):
    async def snapshot(self) -> Snapshot: ...


class NatsSource:
    """Reads a running hub's streams as the hub (its state key opens the case records)."""

    def __init__(self, nats_url: str, keys: Path) -> None:
        self._url = nats_url
        self._keys = keys
        self._hub = hub_setup(keys)

    @property
    def pseudonym_key(self) -> bytes:
        return self._hub.ctx.pseudonym_key

    @property
    def log_signer(self) -> HybridPrivateKey:
        """The hub's log key: it signs an extract's completeness statement."""
        return self._hub.log_key

    def access_log(self) -> AccessLog:
        return AccessLog(*self._chain(ACCESS_STREAM, ACCESS_SUBJECT))

    def findings_log(self) -> FindingsLog:
        return FindingsLog(*self._chain(FINDINGS_STREAM, FINDINGS_SUBJECT))

    def _chain(
        self, stream: str, subject: str
    ) -> tuple[StreamStore, HybridPrivateKey, str, dict[str, HybridPublicKey]]:
        identity = self._hub.ctx.identity
        keys = hub_signing_keys(self._hub.ctx.directory)
        return (
            StreamStore(self._url, self._hub.creds, stream, subject),
            identity.signing_key,
            identity.signing_key_id,
            keys,
        )

    async def snapshot(self) -> Snapshot:
        directory = load_directory(self._keys)
        now = datetime.now(UTC)
        log_key = load_public_key(
            directory.key_by_use(HUB, KeyUse.LOG, at=now).public_key
        )
        witnesses = [e.agency for e in directory.agencies if e.agency != HUB]
        nc = await connect(self._url, name="console", creds=self._hub.creds)
        try:
            js = nc.jetstream()
            try:
                note: str | None = await latest_checkpoint(js)
            except ExportFailed:
                note = None
            size = parse_checkpoint_body(parse_signed_note(note).body).size if note else 0
            records = await cosignatures_for(js, size, witnesses) if note else []
            cosigs = [
                Cosignature(
                    witness=r.witness,
                    public_key=r.public_key.public_bytes_raw(),
                    checkpoint_size=size,
                    line=r.line,
                )
                for r in records
            ]
            try:
                leaves = [b async for b in read_by_sequence(js, LOG_STREAM, size)]
            except NotFoundError:
                leaves = []
            store = StateStore(js, self._hub.state_key)
            state = store.state_of(await store.read())
        finally:
            await nc.close()
        status = log_status(note, leaves, cosigs, log_key=log_key, witnesses=witnesses)
        return Snapshot(
            entries=[json.loads(b) for b in leaves],
            cases=dict(state.cases),
            status=status,
            agencies=tuple(sorted({e.agency for e in directory.agencies})),
            note=note,
            leaves=tuple(leaves),
            cosignatures=tuple(
                {
                    "line": c.line,
                    "public_key": base64.b64encode(c.public_key).decode(),
                    "witness": c.witness,
                }
                for c in cosigs
            ),
            log_key=log_key,
        )
