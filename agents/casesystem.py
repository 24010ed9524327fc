"""Where an adapter hands verified messages: the agency's own case system (a sink).

Agency IT implements :class:`CaseSystem` against their case-management system, or
uses a shipped sink (`sigbus <agency> serve`, docs/operations.md "Sinks"):

- :class:`DirectoryCaseSystem` (``--out DIR``): one 0600 JSON file per release;
- :class:`WebhookCaseSystem` (``--webhook URL``): an HTTP POST per release, retried;
- your own class (``--sink module:Class``), loaded by import path;
- :class:`JsonlCaseSystem` (``inbox --out FILE``) and :class:`MemoryCaseSystem` (tests).

These are inside the agency's own environment: the only place outside ciphertext
where a body may live.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import structlog

from sigbus.agents.errors import CaseSystemError
from sigbus.agents.runtime import Delivered
from sigbus.policy.retention import expires_at
from sigbus.policy.rules import Rules
from sigbus.protocol.ids import MessageType
from sigbus.transport.files import write_private

log = structlog.get_logger("sigbus.adapter")


class CaseSystem(Protocol):
    """A sink: what the adapter hands each verified, opened release to.

    The contract (exactly once, issue 12):

    - ``deliver`` returns only when the release is durably taken (on disk, committed,
      a 2xx answer): the adapter records the release id in its processed store and
      acks only after that, so a redelivery after the ack is never handed on.
    - It raises to refuse: nothing is acked, the release comes again later (a
      ``handler_failed`` event, redelivered after a delay).
    - It is idempotent by ``delivered.record.release_id``: a SIGKILL between the
      hand-off and the processed-store record hands the same release once more, and
      the case system must then keep one (the shipped sinks do: one file per release
      id, a webhook ``Idempotency-Key`` header).
    - The class is built with ``--out`` (a path) if that is given, else with no
      argument.
    """

    async def deliver(self, delivered: Delivered) -> None: ...


def release_document(delivered: Delivered) -> bytes:
    """The opened release as one JSON object: header, hub release record and body."""
    return json.dumps(
        {
            "header": delivered.header.model_dump(mode="json"),
            "release": delivered.record.model_dump(mode="json"),
            "body": delivered.body.model_dump(mode="json"),
        },
        sort_keys=True,
    ).encode()


def document_expired(document: bytes, rules: Rules, now: datetime) -> bool:
    """A stored release document (:func:`release_document`) whose retention period ended
    at ``now``: its category's period from the hub's decision (``released_at``). A
    document that cannot be read is kept (and reported), never silently dropped."""
    try:
        doc = json.loads(document)
        category = MessageType(doc["header"]["type"])
        released_at = datetime.fromisoformat(doc["release"]["released_at"])
    except (ValueError, KeyError, TypeError):
        log.warning("retention_unreadable_document")
        return False
    return expires_at(rules, category, released_at) <= now


@dataclass
class MemoryCaseSystem:
    received: list[Delivered] = field(default_factory=list)

    async def deliver(self, delivered: Delivered) -> None:
        self.received.append(delivered)


@dataclass
class JsonlCaseSystem:
    """One JSON line per release, appended and fsynced; idempotent by release id like
    every sink: the ids already in the file are skipped, so a SIGKILL between the
    append and the processed-release store leaves one line, not two (the soak found
    that window: `sigbus soak`)."""

    path: Path
    _written: set[str] | None = field(default=None, init=False, repr=False)

    def _ids(self) -> set[str]:
        if self._written is None:
            self._written = set()
            if self.path.exists():
                for line in self.path.read_bytes().splitlines():
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        self._written.add(json.loads(line)["release"]["release_id"])
        return self._written

    async def deliver(self, delivered: Delivered) -> None:
        release_id = delivered.record.release_id
        if release_id in self._ids():
            return
        line = release_document(delivered) + b"\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)  # the adapter acks only after this returns
        finally:
            os.close(fd)
        self._ids().add(release_id)

    def expire(self, rules: Rules, now: datetime) -> int:
        """Rewrite the file without the releases whose period ended (whole or absent)."""
        if not self.path.exists():
            return 0
        lines = self.path.read_bytes().splitlines(keepends=True)
        kept = [line for line in lines if not document_expired(line, rules, now)]
        if len(kept) != len(lines):
            write_private(self.path, b"".join(kept))
            self._written = None  # read again: an expired release is no longer here
        return len(lines) - len(kept)


@dataclass
class DirectoryCaseSystem:
    """A directory drop: one 0600 JSON file per release, named by its release id.

    Written to a temporary name, fsynced and renamed into place, so a file is
    either whole or absent; a release already dropped is not written again, so a
    redelivery (a crash between the hand-off and the ack) leaves exactly one file.
    """

    path: Path

    def __post_init__(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)

    async def deliver(self, delivered: Delivered) -> None:
        release_id = delivered.record.release_id
        final = self.path / f"{release_id}.json"
        if final.exists():
            return
        write_private(final, release_document(delivered))  # whole or absent, durable first

    def expire(self, rules: Rules, now: datetime) -> int:
        """Delete the files of the releases whose period ended."""
        gone = 0
        for path in sorted(self.path.glob("*.json")):
            if document_expired(path.read_bytes(), rules, now):
                path.unlink()
                gone += 1
        return gone


#: Headers a webhook receiver de-duplicates on: the release id, the same on every retry.
RELEASE_ID_HEADER = "Sigbus-Release-Id"
IDEMPOTENCY_HEADER = "Idempotency-Key"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass
class WebhookCaseSystem:
    """An HTTP webhook: each release POSTed as JSON (:func:`release_document`).

    A 2xx answer is the hand-off. Anything else (a refused connection, a timeout, a
    5xx or 4xx) is retried ``attempts`` times with exponential backoff from
    ``backoff_s``, then the release is refused (:class:`CaseSystemError`) and comes
    again later. Every attempt carries the release id in ``Sigbus-Release-Id`` and
    ``Idempotency-Key``: the receiver keeps one per id. A body is personal data, so
    plain ``http://`` is refused except to a loopback address (a receiver on the
    same host); anywhere else it takes ``https://`` (certificates verified).
    """

    url: str
    attempts: int = 5
    backoff_s: float = 0.5
    timeout_s: float = 10.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise CaseSystemError("the webhook takes an http(s):// URL")
        if parts.scheme == "http" and not _loopback(parts.hostname):
            raise CaseSystemError(
                "refusing a plain http:// webhook off this host (bodies hold personal "
                "data): use https://"
            )

    def _post(self, data: bytes, release_id: str) -> int:
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
            self.url,
            data=data,
            method="POST",
            headers={
                "Content-Type": "application/json",
                RELEASE_ID_HEADER: release_id,
                IDEMPOTENCY_HEADER: release_id,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as answer:  # noqa: S310
                return int(answer.status)
        except urllib.error.HTTPError as e:
            return int(e.code)

    async def deliver(self, delivered: Delivered) -> None:
        release_id = delivered.record.release_id
        data = release_document(delivered)
        for attempt in range(1, self.attempts + 1):
            status: int | None
            try:
                status = await asyncio.to_thread(self._post, data, release_id)
            except (OSError, TimeoutError) as e:  # URLError is an OSError
                status, error = None, type(e).__name__
            else:
                if 200 <= status < 300:
                    return
                error = "http_status"
            log.warning(
                "webhook_retry",
                release_id=release_id,
                attempt=attempt,
                status=status,
                error=error,
            )
            if attempt < self.attempts:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
        raise CaseSystemError(
            f"the webhook did not take release {release_id} after {self.attempts} tries"
        )
