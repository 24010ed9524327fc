"""Hub snapshots: restart in seconds at any log size (issue 11).

A snapshot is what start-up needs instead of the whole log and state stream:

- the packed Merkle tree (every level, :meth:`audit.merkle.MerkleTree.packed_levels`),
  so proofs still work for any index; the levels are append-only, so a full
  piece of a level is written once (``sigbus.snapshot.tree.<level>.<piece>``)
  and only each level's last, partial piece goes out with every snapshot;
- the hub state: every stored state record (ciphertext, each already sealed
  under the state key) with its stream sequence, sealed once more as a whole
  (AES-256-GCM under a key derived from the state key: the records name message
  ids and their number); its stream position ``state_seq``;
- where the log must be read from (``window_start``: the duplicate window and
  the unacknowledged ingress, :class:`broker.log_writer.LogWriter`), the
  quarantined records, and the hub records logged whose state record was not
  stored yet (``pending_bound``: the state check goes on from there).

The manifest names every piece by stream sequence and SHA-256 and carries the
log size and root (the checkpoint it is tied to); it is signed with the hub's
log key. Start-up (:meth:`SnapshotStore.candidates`, newest first) takes the
first that verifies: signature, every piece's digest, the rebuilt tree's root,
then the log itself (its entries from ``window_start`` hash to the snapshot's
leaves, it is not shorter than the snapshot) and the latest checkpoint the hub
signed (its root is the tree's at its size). Anything else raises
``security_event kind=snapshot_rejected`` and the next one, or the full
replay, is used: an unverified snapshot is never trusted.

The stream ``SIGBUS_SNAPSHOT`` lives in the hub account, which exports nothing
of it: no agency can read it (transport/natsauth.py).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import structlog
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError
from pydantic import AwareDatetime, BaseModel, ConfigDict, ValidationError

from sigbus.audit.checkpoint import PrivateKey
from sigbus.audit.errors import AuditError
from sigbus.audit.merkle import HASH_SIZE, MerkleTree
from sigbus.audit.quarantine import Fault
from sigbus.audit.state_check import StateRecordRef
from sigbus.broker.errors import SnapshotRejectedError
from sigbus.broker.log_writer import LogWriter
from sigbus.protocol.subjects import SNAPSHOT_MANIFEST_SUBJECT, SNAPSHOT_STREAM

log = structlog.get_logger("sigbus.broker.snapshot")

FORMAT = "sigbus-hub-snapshot/v1"
_SIGNED = b"sigbus/v1/hub-snapshot\n"
_SEALED = b"sigbus/v1/hub-snapshot/state\n"
#: One stored piece: 4,096 node hashes, well under the server's max_payload.
PIECE_BYTES = 4096 * HASH_SIZE
#: Lookups and publishes in flight at once.
_WINDOW = 32
#: Test hook: die after the pieces, before the manifest (tests/integration).
CRASH_IN_SNAPSHOT_ENV = "SIGBUS_FAULT_CRASH_IN_SNAPSHOT"


class PieceRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    seq: int
    sha256: str


class PendingBound(BaseModel):
    """A hub record logged (index) whose state record was not stored at snapshot time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    index: int
    message_id: str


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    format: str
    origin: str
    size: int
    root: str
    last_decided_at: AwareDatetime
    window_start: int
    quarantined: tuple[tuple[int, Fault], ...]
    tree: tuple[tuple[PieceRef, ...], ...]
    state_seq: int
    state: tuple[PieceRef, ...]
    state_nonce: str
    pending_bound: tuple[PendingBound, ...]

    def signed_bytes(self) -> bytes:
        return _SIGNED + self.model_dump_json().encode()


class SignedManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    manifest: Manifest
    signature: str


@dataclass(frozen=True)
class Restored:
    """A verified snapshot: the tree, and the state records as they were stored."""

    manifest: Manifest
    tree: MerkleTree
    records: list[tuple[StateRecordRef, bytes]]
    stream_seq: int


def _seal_key(state_key: bytes) -> AESGCM:
    return AESGCM(
        HKDF(
            algorithm=hashes.SHA256(), length=32, salt=None, info=b"sigbus/v1/hub-snapshot/seal"
        ).derive(state_key)
    )


def pack_records(records: Sequence[tuple[StateRecordRef, bytes]]) -> bytes:
    out = bytearray()
    for ref, data in records:
        mid = ref.message_id.encode()
        out += struct.pack(">QHI", ref.seq, len(mid), len(data)) + mid + data
    return bytes(out)


def unpack_records(blob: bytes) -> list[tuple[StateRecordRef, bytes]]:
    records: list[tuple[StateRecordRef, bytes]] = []
    at, head = 0, struct.calcsize(">QHI")
    while at < len(blob):
        if at + head > len(blob):
            raise SnapshotRejectedError("snapshot state is truncated")
        seq, mid_len, data_len = struct.unpack_from(">QHI", blob, at)
        at += head
        if at + mid_len + data_len > len(blob):
            raise SnapshotRejectedError("snapshot state is truncated")
        mid = blob[at : at + mid_len].decode()
        data = blob[at + mid_len : at + mid_len + data_len]
        at += mid_len + data_len
        records.append((StateRecordRef.of(seq, mid, data), data))
    return records


def _piece_subject(level: int, piece: int, *, full: bool) -> str:
    """A full piece never changes (its own subject); a level's last one is rewritten."""
    return f"sigbus.snapshot.tree.{level}.{piece}" if full else f"sigbus.snapshot.partial.{level}"


def _pieces(data: bytes | bytearray) -> list[bytes]:
    return [bytes(data[i : i + PIECE_BYTES]) for i in range(0, len(data), PIECE_BYTES)] or [b""]


class SnapshotStore:
    def __init__(
        self, js: JetStreamContext, log_key: PrivateKey, state_key: bytes, origin: str
    ) -> None:
        self._js = js
        self._key = log_key
        self._seal = _seal_key(state_key)
        self._origin = origin
        #: (level, piece) -> the stored full piece (written once: levels only grow).
        self._full: dict[tuple[int, int], PieceRef] = {}
        self.last_size = 0
        self._busy = False

    async def _put(self, subject: str, data: bytes) -> PieceRef:
        ack = await self._js.publish(subject, data, stream=SNAPSHOT_STREAM)
        return PieceRef(seq=ack.seq, sha256=hashlib.sha256(data).hexdigest())

    async def write(
        self, writer: LogWriter, records: Sequence[tuple[StateRecordRef, bytes]]
    ) -> Manifest | None:
        """Take a snapshot of the writer and the stored state records; None if busy.

        Everything is captured before the first await, so a snapshot taken while a
        message is half done is still one consistent point: a hub record already
        logged whose state record is not among ``records`` is ``pending_bound``.
        """
        if self._busy or writer.size == 0:
            return None
        self._busy = True
        try:
            return await self._write(writer, list(records))
        finally:
            self._busy = False

    async def _write(
        self, writer: LogWriter, records: list[tuple[StateRecordRef, bytes]]
    ) -> Manifest:
        size = writer.size
        levels = writer.tree.packed_levels()
        lengths = [len(level) for level in levels]
        stored = {ref.message_id for ref, _ in records}
        window = writer.entries()
        pending = tuple(
            PendingBound(index=e.index, message_id=e.message_id)
            for e in window
            if e.state_sha256 is not None and e.message_id not in stored
        )
        frozen: list[tuple[int, int, bytes, bool]] = []  # level, piece, bytes, full?
        for level, (nodes, length) in enumerate(zip(levels, lengths, strict=True)):
            full = length // PIECE_BYTES
            for piece in range(full):
                if (level, piece) not in self._full:
                    start = piece * PIECE_BYTES
                    frozen.append((level, piece, bytes(nodes[start : start + PIECE_BYTES]), True))
            frozen.append((level, full, bytes(nodes[full * PIECE_BYTES : length]), False))
        root = writer.tree.root(size).hex()
        window_start = writer.window_start if window else size - 1
        state_seq = max((ref.seq for ref, _ in records), default=0)
        last_decided_at = writer.last_decided_at
        quarantined = tuple(sorted(writer.quarantined.items()))
        nonce = os.urandom(12)
        sealed = self._seal.encrypt(nonce, pack_records(records), _SEALED + str(size).encode())
        # Publish every piece, a window at a time.
        refs: dict[tuple[int, int], PieceRef] = {}
        for at in range(0, len(frozen), _WINDOW):
            batch = frozen[at : at + _WINDOW]
            done = await asyncio.gather(
                *(
                    self._put(_piece_subject(lv, pc, full=full), data)
                    for lv, pc, data, full in batch
                )
            )
            for (lv, pc, _, full), ref in zip(batch, done, strict=True):
                refs[(lv, pc)] = ref
                if full:
                    self._full[(lv, pc)] = ref
        state_refs = []
        for part, data in enumerate(_pieces(sealed)):
            state_refs.append(await self._put(f"sigbus.snapshot.state.{part}", data))
        tree_refs = tuple(
            tuple(refs.get((lv, pc)) or self._full[(lv, pc)] for pc in range(n // PIECE_BYTES + 1))
            for lv, n in enumerate(lengths)
        )
        if os.environ.get(CRASH_IN_SNAPSHOT_ENV) == "1":
            log.critical("fault_injected_crash_in_snapshot", size=size)
            os._exit(71)
        manifest = Manifest(
            format=FORMAT,
            origin=self._origin,
            size=size,
            root=root,
            last_decided_at=last_decided_at,
            window_start=min(window_start, size - 1),
            quarantined=quarantined,
            state_seq=state_seq,
            pending_bound=pending,
            tree=tree_refs,
            state=tuple(state_refs),
            state_nonce=base64.b64encode(nonce).decode(),
        )
        signature = self._key.sign(manifest.signed_bytes())
        signed = SignedManifest(manifest=manifest, signature=base64.b64encode(signature).decode())
        await self._js.publish(
            SNAPSHOT_MANIFEST_SUBJECT, signed.model_dump_json().encode(), stream=SNAPSHOT_STREAM
        )
        self.last_size = size
        log.info("snapshot_written", size=size, pieces=len(frozen) + len(state_refs))
        return manifest

    async def candidates(self) -> list[tuple[int, bytes]]:
        """Every stored manifest (stream sequence, bytes), newest first.

        By "next message on the subject from sequence n" lookups: a few (the stream
        keeps ``SNAPSHOT_KEEP`` of them), and unlike a filtered consumer they do not
        wait for the stream's last message to be a manifest (after a crash it is not).
        """
        found: list[tuple[int, bytes]] = []
        seq = 1
        while True:
            try:
                msg = await self._js.get_msg(
                    SNAPSHOT_STREAM, seq, subject=SNAPSHOT_MANIFEST_SUBJECT, next=True
                )
            except NotFoundError:
                break
            if msg.seq is None:
                break
            found.append((msg.seq, bytes(msg.data or b"")))
            seq = msg.seq + 1
        return sorted(found, reverse=True)

    async def load(self, raw: bytes) -> Restored:
        """Verify a manifest and its pieces; SnapshotRejectedError with the reason if not."""
        try:
            signed = SignedManifest.model_validate_json(raw)
            manifest = signed.manifest
            self._key.public_key().verify(
                base64.b64decode(signed.signature, validate=True), manifest.signed_bytes()
            )
        except (ValidationError, ValueError, InvalidSignature) as e:
            raise SnapshotRejectedError("snapshot manifest is not signed by the log key") from e
        if manifest.format != FORMAT or manifest.origin != self._origin:
            raise SnapshotRejectedError("snapshot is of another format or log")
        try:
            levels = [await self._fetch(refs) for refs in manifest.tree]
            tree = MerkleTree.from_levels(levels)  # takes the bytearrays: no copy
            sealed = bytes(await self._fetch(manifest.state))
            blob = self._seal.decrypt(
                base64.b64decode(manifest.state_nonce, validate=True),
                sealed,
                _SEALED + str(manifest.size).encode(),
            )
        except (AuditError, InvalidTag, ValueError) as e:
            reason = f"snapshot content does not verify ({type(e).__name__})"
            raise SnapshotRejectedError(reason) from e
        if tree.size != manifest.size or tree.root().hex() != manifest.root:
            raise SnapshotRejectedError("snapshot tree is not of its signed size and root")
        for level, refs in enumerate(manifest.tree):
            for piece, ref in enumerate(refs[:-1]):
                self._full[(level, piece)] = ref
        self.last_size = manifest.size
        records = unpack_records(blob)
        return Restored(manifest, tree, records, manifest.state_seq)

    async def _fetch(self, refs: Sequence[PieceRef]) -> bytearray:
        """The pieces back to back, each checked against its digest."""
        out = bytearray()
        for at in range(0, len(refs), _WINDOW):
            batch = refs[at : at + _WINDOW]
            try:
                got = await asyncio.gather(
                    *(self._js.get_msg(SNAPSHOT_STREAM, ref.seq) for ref in batch)
                )
            except NatsError as e:
                raise SnapshotRejectedError("a snapshot piece is missing") from e
            for ref, msg in zip(batch, got, strict=True):
                data = bytes(msg.data or b"")
                if hashlib.sha256(data).hexdigest() != ref.sha256:
                    raise SnapshotRejectedError(f"snapshot piece {ref.seq} was altered")
                out += data
        return out
