"""`sigbus audit export`: write the disclosure log and its latest checkpoint to a file.

Reads the log stream up to the size of the latest signed checkpoint (entries
appended after it are not yet signed, so they wait for the next export), adds
each witness's cosignature of exactly that checkpoint, and writes the
``sigbus-log-export/v1`` file through a temporary file and an atomic rename,
so a failed export never leaves a half-written file behind.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from sigbus.audit.checkpoint import (
    DEFAULT_ORIGIN,
    PublicKey,
    load_public_key,
    parse_checkpoint_body,
    parse_signed_note,
)
from sigbus.audit.export_format import CosignatureRecord, write_export
from sigbus.audit.state_check import state_dump_lines
from sigbus.broker.checkpointer import latest_cosignatures
from sigbus.protocol.ids import AgencyId
from sigbus.protocol.subjects import (
    CHECKPOINT_STREAM,
    CHECKPOINT_SUBJECT,
    LOG_STREAM,
    STATE_STREAM,
)
from sigbus.transport.bus import read_by_sequence
from sigbus.transport.errors import SigbusError


class ExportFailed(SigbusError):
    """The log could not be exported."""


@dataclass(frozen=True)
class ExportSummary:
    path: Path
    entries: int
    witnesses: tuple[str, ...]


async def latest_checkpoint(js: JetStreamContext) -> str:
    try:
        msg = await js.get_last_msg(CHECKPOINT_STREAM, CHECKPOINT_SUBJECT)
    except NotFoundError as e:
        raise ExportFailed("the hub has not published a checkpoint yet") from e
    assert msg.data is not None
    return msg.data.decode()


async def cosignatures_for(
    js: JetStreamContext, size: int, witnesses: Iterable[AgencyId]
) -> list[CosignatureRecord]:
    """Each witness's latest cosignature, if it is of the checkpoint of ``size``."""
    return [
        CosignatureRecord(
            witness=cosig.witness,
            line=cosig.line,
            public_key=load_public_key(cosig.public_key),
        )
        for cosig in (await latest_cosignatures(js, witnesses)).values()
        if cosig.checkpoint_size == size
    ]


async def export_log(
    js: JetStreamContext,
    out: Path,
    log_public_key: PublicKey,
    *,
    witnesses: Iterable[AgencyId],
    origin: str = DEFAULT_ORIGIN,
) -> ExportSummary:
    note = await latest_checkpoint(js)
    size = parse_checkpoint_body(parse_signed_note(note).body).size
    cosignatures = await cosignatures_for(js, size, witnesses)
    entries = [data async for data in read_by_sequence(js, LOG_STREAM, size)]
    if len(entries) != size:
        raise ExportFailed(f"log stream holds {len(entries)} entries, checkpoint says {size}")
    tmp = out.with_name(out.name + ".partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            for line in write_export(
                entries, note, cosignatures, log_public_key=log_public_key, origin=origin
            ):
                f.write(line)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, out)
    return ExportSummary(path=out, entries=size, witnesses=tuple(c.witness for c in cosignatures))


async def export_state(js: JetStreamContext, out: Path) -> int:
    """Dump the hub state stream (ciphertext) for ``audit check-state``; the record count.

    Read by sequence lookups; a deleted record is a gap, left out, for the check
    to name.
    """
    info = await js.stream_info(STATE_STREAM)
    last_seq = info.state.last_seq
    records: list[tuple[int, str, bytes]] = []
    for seq in range(1, last_seq + 1):
        try:
            msg = await js.get_msg(STATE_STREAM, seq)
        except NotFoundError:
            continue
        records.append((seq, (msg.headers or {}).get("Nats-Msg-Id", ""), bytes(msg.data or b"")))
    tmp = out.with_name(out.name + ".partial")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        for line in state_dump_lines(last_seq, records):
            f.write(line)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    return len(records)
