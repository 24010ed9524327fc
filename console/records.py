"""The console's own records, held by the hub: the access log and the reviewers' findings.

Each is a chain of records signed by the hub's signing key
(``audit.signed_chain``), appended to its own JetStream stream in the hub's
account (``SIGBUS_ACCESS``, ``SIGBUS_FINDINGS``: file storage, deletes and purges
refused, like the disclosure log). An append names the stream's last sequence
(``Nats-Expected-Last-Sequence``), so two writers can never fork a chain: the
second is refused and nothing is shown. The signature is checked against the
hub's signing keys in the signed directory (``sigbus console verify``).

A view of personal data is recorded *before* it is shown; if the record cannot
be appended, the view is refused (:class:`RecordsError`, a 503 page).

:class:`FileStore` keeps a chain in a local JSON Lines file (0600, fsynced) for
the unit tests and for a console without a bus; the served console always
uses :class:`StreamStore`.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from nats.errors import Error as NatsError
from nats.js.errors import APIError, NotFoundError

from sigbus.audit.signed_chain import ACCESS_DOMAIN, FINDING_DOMAIN, ChainError, check_chain, seal
from sigbus.console.auth import ConsoleError
from sigbus.protocol.directory import Directory, KeyUse
from sigbus.protocol.ids import HUB
from sigbus.protocol.signing import HybridPrivateKey, HybridPublicKey
from sigbus.transport.bus import connect
from sigbus.transport.errors import TransportError
from sigbus.transport.natsauth import NatsCredentials

#: Longest reviewer's note; it is free text, so a personnummer in it is refused.
MAX_NOTE = 500


class RecordsError(ConsoleError):
    """A console record cannot be appended or read (the view it guards is refused)."""


class RecordStore(Protocol):
    async def last(self) -> tuple[int, dict[str, Any] | None]:
        """The store's position and its last record (0, None when empty)."""
        ...

    async def append(self, record: Mapping[str, Any], after: int) -> None:
        """Append ``record`` if the store is still at ``after``; else RecordsError."""
        ...

    async def read(self) -> list[dict[str, Any]]: ...


class FileStore:
    def __init__(self, path: Path) -> None:
        self.path = path

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(x) for x in self.path.read_text().splitlines() if x]

    async def last(self) -> tuple[int, dict[str, Any] | None]:
        records = self._read()
        return len(records), (records[-1] if records else None)

    async def append(self, record: Mapping[str, Any], after: int) -> None:
        if len(self._read()) != after:
            raise RecordsError(f"{self.path.name} grew meanwhile: not appended")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, (json.dumps(record, sort_keys=True) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    async def read(self) -> list[dict[str, Any]]:
        return self._read()


class StreamStore:
    """A chain in a hub stream of one subject; one short connection per call."""

    def __init__(self, nats_url: str, creds: NatsCredentials, stream: str, subject: str) -> None:
        self._url, self._creds = nats_url, creds
        self.stream, self.subject = stream, subject

    async def last(self) -> tuple[int, dict[str, Any] | None]:
        try:
            nc = await connect(self._url, name="console-records", creds=self._creds)
            try:
                js = nc.jetstream()
                seq = (await js.stream_info(self.stream)).state.last_seq
                if seq == 0:
                    return 0, None
                msg = await js.get_msg(self.stream, seq)
            finally:
                await nc.close()
        except (NatsError, TransportError, TimeoutError) as e:
            raise RecordsError(f"{self.stream} unreadable ({type(e).__name__})") from e
        return seq, json.loads(msg.data or b"{}")

    async def append(self, record: Mapping[str, Any], after: int) -> None:
        data = json.dumps(record, sort_keys=True).encode()
        try:
            nc = await connect(self._url, name="console-records", creds=self._creds)
            try:
                await nc.jetstream().publish(
                    self.subject,
                    data,
                    stream=self.stream,
                    headers={"Nats-Expected-Last-Sequence": str(after)},
                )
            finally:
                await nc.close()
        except APIError as e:
            raise RecordsError(f"{self.stream} refused the record ({e.description})") from e
        except (NatsError, TransportError, TimeoutError) as e:
            raise RecordsError(f"{self.stream} unreachable ({type(e).__name__})") from e

    async def read(self) -> list[dict[str, Any]]:
        try:
            nc = await connect(self._url, name="console-records", creds=self._creds)
            try:
                js = nc.jetstream()
                last = (await js.stream_info(self.stream)).state.last_seq
                msgs = await asyncio.gather(
                    *(js.get_msg(self.stream, n) for n in range(1, last + 1))
                )
            finally:
                await nc.close()
        except NotFoundError as e:
            raise RecordsError(f"{self.stream} has a gap") from e
        except (NatsError, TransportError, TimeoutError) as e:
            raise RecordsError(f"{self.stream} unreadable ({type(e).__name__})") from e
        return [json.loads(m.data or b"{}") for m in msgs]


def hub_signing_keys(directory: Directory) -> dict[str, HybridPublicKey]:
    """Every signing key the directory lists for the hub (current and retired): a
    record stays verifiable after the key that signed it was rotated."""
    hub = next((e for e in directory.agencies if e.agency == HUB), None)
    if hub is None:
        return {}
    return {
        k.key_id: HybridPublicKey.from_public_bytes(k.public_key)
        for k in hub.keys
        if k.use is KeyUse.SIGNING
    }


class SignedLog:
    """One signed chain over a store; appends are serialised in this process and
    refused by the store if another process appended meanwhile."""

    domain: str = ""
    #: Check the whole chain before extending it (never extend a broken chain); the
    #: access log, appended on every view, leaves that to ``head`` and the verifier.
    check_before_append: bool = False

    def __init__(
        self,
        store: RecordStore,
        signer: HybridPrivateKey,
        key_id: str,
        keys: Mapping[str, HybridPublicKey] | None = None,
    ) -> None:
        self.store = store
        self._signer, self._key_id = signer, key_id
        self.keys = dict(keys) if keys is not None else {key_id: signer.public_key()}
        self._lock = asyncio.Lock()

    async def append(self, body: Mapping[str, Any]) -> dict[str, Any]:
        async with self._lock:
            if self.check_before_append:
                await self.head()
            position, previous = await self.store.last()
            try:
                record = seal(
                    previous, body, signer=self._signer, key_id=self._key_id, domain=self.domain
                )
            except ChainError as e:
                raise RecordsError(str(e)) from e
            await self.store.append(record, position)
        return record

    async def read(self) -> list[dict[str, Any]]:
        return await self.store.read()

    async def head(self) -> str:
        """The chain's head; raises ``ChainError`` where it is broken or not the hub's."""
        return check_chain(await self.read(), self.keys, domain=self.domain)


class AccessLog(SignedLog):
    """Who looked at what, when: the console user, role, view kind and the opaque case or
    subject ref (never a personnummer)."""

    domain = ACCESS_DOMAIN

    async def record(self, *, user: str, role: str, view: str, case_ref: str, at: datetime) -> None:
        await self.append(
            {"at": at.isoformat(), "user": user, "role": role, "view": view, "case_ref": case_ref}
        )


class FindingsLog(SignedLog):
    """The reviewers' findings (loggkontroll), each signed by the hub."""

    domain = FINDING_DOMAIN
    check_before_append = True
