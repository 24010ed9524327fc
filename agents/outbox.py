"""The adapter's durable outbox and processed-release store (issue 12).

One SQLite file per adapter, WAL mode, ``synchronous=FULL``: a row is on disk
when :meth:`Outbox.put` returns. The outbox holds each sealed envelope under its
message id until the bus acknowledged it; the processed store holds the id of
each release handed to the case system, so a redelivery is acked, not handed on.

Content identity: a message id names one content. :func:`content_digest` is an
HMAC-SHA-256 (RFC 2104) of the message's type, case, recipients, assertion and
body, leaving out only the time stamps a command fills in when it runs
(``acted_at``, ``as_of``), so a retry of the same command is the same content.
It is keyed because a body can hold a personnummer: a plain hash of it in the
outbox file could be reversed by guessing, and the digest would be personal
data outside ciphertext.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sigbus.agents.errors import AdapterError
from sigbus.protocol.ids import AgencyId, MessageType
from sigbus.protocol.messages import Body, StatutoryAssertion

#: Body fields a command stamps with the time of the call: not part of the content.
CALL_TIME_FIELDS = frozenset({"acted_at", "as_of"})

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    message_id TEXT PRIMARY KEY,
    subject TEXT NOT NULL,
    content_sha256 TEXT NOT NULL,
    envelope BLOB NOT NULL,
    queued_at TEXT NOT NULL,
    delivered_at TEXT,
    stream_seq INTEGER
);
CREATE TABLE IF NOT EXISTS processed (
    release_id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL,
    handed_at TEXT NOT NULL
);
"""
#: Added for retention (issue 13): the category of a handed-on release. A row made
#: before it has none and is kept for the default period.
_PROCESSED_CATEGORY = "ALTER TABLE processed ADD COLUMN category TEXT"


class OutboxError(AdapterError):
    """The outbox cannot be opened or written."""


class MessageIdConflict(OutboxError):
    """A message id already names another content: refused, nothing queued."""


def content_digest(
    key: bytes,
    message_type: MessageType,
    body: Body,
    *,
    case_ref: str | None,
    recipients: tuple[AgencyId, ...],
    assertion: StatutoryAssertion | None,
) -> str:
    fields = {k: v for k, v in body.model_dump(mode="json").items() if k not in CALL_TIME_FIELDS}
    content = {
        "type": message_type.value,
        "case_ref": case_ref,
        "recipients": sorted(recipients),
        "assertion": assertion.model_dump(mode="json") if assertion else None,
        "body": fields,
    }
    encoded = json.dumps(content, sort_keys=True).encode()
    return hmac.new(key, encoded, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class OutboxItem:
    message_id: str
    subject: str
    content_sha256: str
    envelope: bytes
    delivered: bool
    stream_seq: int | None = None


class Outbox:
    """A durable outbox and processed-release store in one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            columns = {r[1] for r in self._db.execute("PRAGMA table_info(processed)")}
            if "category" not in columns:
                self._db.execute(_PROCESSED_CATEGORY)
        except (OSError, sqlite3.Error) as e:
            raise OutboxError(f"cannot open the outbox {path}: {e}") from e

    def close(self) -> None:
        self._db.close()

    def get(self, message_id: str) -> OutboxItem | None:
        row = self._db.execute(
            "SELECT message_id, subject, content_sha256, envelope, delivered_at, stream_seq "
            "FROM outbox WHERE message_id = ?",
            (message_id,),
        ).fetchone()
        return _item(row) if row else None

    def check(self, message_id: str, digest: str) -> OutboxItem | None:
        """The queued item of this id if its content is ``digest``; None if unknown;
        :class:`MessageIdConflict` if the id names another content."""
        item = self.get(message_id)
        if item is not None and item.content_sha256 != digest:
            raise MessageIdConflict(
                f"message id {message_id} was already used for a different message; "
                "a retry must repeat the same content, a new message needs a new id"
            )
        return item

    def put(
        self, message_id: str, subject: str, digest: str, envelope: bytes, now: datetime
    ) -> OutboxItem:
        """Queue the sealed envelope; on disk when this returns. Idempotent per id and
        content; another content under a queued id is :class:`MessageIdConflict`."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                existing = self.check(message_id, digest)
                if existing is None:
                    self._db.execute(
                        "INSERT INTO outbox (message_id, subject, content_sha256, envelope, "
                        "queued_at) VALUES (?, ?, ?, ?, ?)",
                        (message_id, subject, digest, envelope, now.isoformat()),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as e:
            raise OutboxError(f"cannot write the outbox {self.path}: {e}") from e
        if existing is not None:
            return existing
        return OutboxItem(message_id, subject, digest, envelope, delivered=False)

    def pending(self) -> list[OutboxItem]:
        rows = self._db.execute(
            "SELECT message_id, subject, content_sha256, envelope, delivered_at, stream_seq "
            "FROM outbox WHERE delivered_at IS NULL ORDER BY rowid"
        ).fetchall()
        return [_item(r) for r in rows]

    def mark_delivered(self, message_id: str, stream_seq: int, now: datetime) -> None:
        self._write(
            "UPDATE outbox SET delivered_at = ?, stream_seq = ? "
            "WHERE message_id = ? AND delivered_at IS NULL",
            (now.isoformat(), stream_seq, message_id),
        )

    # -- the receiving side ------------------------------------------------

    def is_processed(self, release_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM processed WHERE release_id = ?", (release_id,)
        ).fetchone()
        return row is not None

    def mark_processed(
        self,
        release_id: str,
        message_id: str,
        now: datetime,
        category: MessageType | None = None,
    ) -> None:
        self._write(
            "INSERT OR IGNORE INTO processed (release_id, message_id, handed_at, category) "
            "VALUES (?, ?, ?, ?)",
            (release_id, message_id, now.isoformat(), category.value if category else None),
        )

    # -- retention (issue 13) ------------------------------------------------

    def kept(self) -> list[Kept]:
        """What this file keeps about each message: its category and since when."""
        out: list[Kept] = []
        for message_id, envelope, queued_at in self._db.execute(
            "SELECT message_id, envelope, queued_at FROM outbox WHERE delivered_at IS NOT NULL"
        ):
            category = _envelope_type(bytes(envelope))
            out.append(Kept("outbox", message_id, category, datetime.fromisoformat(queued_at)))
        for release_id, category, handed_at in self._db.execute(
            "SELECT release_id, category, handed_at FROM processed"
        ):
            kind = MessageType(category) if category else None
            out.append(Kept("processed", release_id, kind, datetime.fromisoformat(handed_at)))
        return out

    def forget(self, items: list[Kept]) -> int:
        """Delete these rows (their period ended), then reclaim the freed pages."""
        for item in items:
            table, key = (
                ("outbox", "message_id")
                if item.table == "outbox"
                else (
                    "processed",
                    "release_id",
                )
            )
            self._write(f"DELETE FROM {table} WHERE {key} = ?", (item.key,))  # noqa: S608
        if items:
            self._write("PRAGMA wal_checkpoint(TRUNCATE)", ())
            self._write("VACUUM", ())
        return len(items)

    def _write(self, sql: str, args: tuple[object, ...]) -> None:
        try:
            self._db.execute(sql, args)
        except sqlite3.Error as e:
            raise OutboxError(f"cannot write the outbox {self.path}: {e}") from e


@dataclass(frozen=True)
class Kept:
    """One outbox or processed row, for the retention schedule (ids and codes only).

    ``category`` None: unknown (a row from before retention), kept for the default."""

    table: str
    key: str
    kind: MessageType | None
    decided_at: datetime

    @property
    def category(self) -> MessageType:
        # Hub-record types have no period of their own: they fall to the default.
        return self.kind if self.kind is not None else MessageType.CASE_OPENED


def _envelope_type(envelope: bytes) -> MessageType | None:
    try:
        return MessageType(json.loads(envelope)["header"]["type"])
    except (ValueError, KeyError, TypeError):
        return None


def _item(row: tuple[str, str, str, bytes, str | None, int | None]) -> OutboxItem:
    return OutboxItem(
        message_id=row[0],
        subject=row[1],
        content_sha256=row[2],
        envelope=bytes(row[3]),
        delivered=row[4] is not None,
        stream_seq=row[5],
    )
