"""The embedded nats-server's store: fail closed on a full or read-only disk, and come back.

nats-server (2.15) latches a store write error per stream: after one
``write ...: no space left on device`` (or ``read-only file system``) it refuses
every later write to that stream with the same error, also once the disk has
room again, until the server restarts (measured on the real binary: freeing the
space changed nothing in minutes). So nothing recovers by itself unless the
process that owns the server restarts it, which is what :class:`StoreWatch` does
under `sigbus up`.

How the fault is noticed, and why not through the monitoring endpoint: ``/jsz``
shows no trace of a latched write error (streams, bytes and limits only), so it
cannot tell a stuck stream from an idle one. ``/healthz`` does (503 with the
stream and the error; ``?js-enabled-only=true`` still says ok), but it would mean
an unauthenticated HTTP port beside a server that otherwise only speaks mutual
TLS, and it still needs a server that answers. Two signals are used instead:

- **a probe write** in the store directory (create, write, fsync, remove a small
  file) and the free space it reports (``statvfs``): the kernel's own answer,
  ``ENOSPC``/``EROFS``/``EDQUOT``/``EIO``, and the only one that still works when
  the server's log sits on the same full disk (its log lines are then lost);
- **the server's log** (``run/nats-server.log``, read from where it ended when
  the watch began), for a write error the probe did not see: a fault shorter than
  one probe interval, or a write larger than the free space the probe needed.

On a fault, ``nats_store_fault cause=no_space|read_only|quota|io_error`` is logged
once (no payload, no subject), and the server is **stopped**: a server that
cannot write its store can only refuse, a read-only file system can only be
repaired (unmounted, checked) once nothing holds it open, and clients see the
stop as the outage they already ride out (bounded backoff, outboxes). It is
stopped by SIGKILL, not SIGTERM: a clean shutdown writes each stream's state file
(``index.db``) on the way out, and on a full disk that leaves them empty (measured:
"Stream state too short (0 bytes)" at the next start). Killed, the store stays as
its last fsynced write left it (``sync_interval: always``), which is what a power
cut leaves and what JetStream recovers from. When the
store takes a probe write again with :data:`RESUME_FREE_BYTES` free, the server
is started once, on the same port, store and configuration; ``up``'s lock on the
data directory is held throughout. JetStream checks its block files when it
starts and drops a record that a failed write left torn, so nothing half-written
stays. An exhausted *stream limit* (a backlog's maximum, a stream's
``max_bytes``) is not a store fault: it is reported by whoever is refused and
clears without a restart (``transport/bus.py``, ``broker/backlog.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import time
from pathlib import Path
from typing import Protocol

import structlog

from sigbus.transport.errors import ServerError

log = structlog.get_logger("sigbus.storewatch")

#: How often the store is probed (and the server's log read).
PROBE_INTERVAL_S = 0.5
#: Free space below which the store counts as full: the largest message twice over,
#: since a probe of a few bytes can succeed where the server's next block write fails.
LOW_FREE_BYTES = 512 * 1024
#: Free space the store needs before the server starts again (above the low mark,
#: so the server does not start only to fill the disk at once and stop again).
RESUME_FREE_BYTES = 1024 * 1024
#: Wait between attempts when the server will not start on a repaired store.
START_RETRY_S = 5.0
PROBE_FILE = ".sigbus-store-probe"

_ERRNO_CAUSES = {
    errno.ENOSPC: "no_space",
    errno.EROFS: "read_only",
    errno.EDQUOT: "quota",
    errno.EIO: "io_error",
}
#: The OS error texts as Go prints them in nats-server's log, by cause.
_LOG_CAUSES = {os.strerror(code).lower(): cause for code, cause in _ERRNO_CAUSES.items()}


class Server(Protocol):
    """What the watch needs of :class:`sigbus.transport.natsserver.EmbeddedNats`."""

    data_dir: Path

    def kill(self) -> int: ...

    def start_again(self, port: int) -> str: ...


def probe(store_dir: Path, *, low_free: int = LOW_FREE_BYTES) -> str | None:
    """The store's fault, as a cause, or ``None`` if it takes a write and has ``low_free``."""
    target = store_dir if store_dir.exists() else store_dir.parent
    path = target / PROBE_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"sigbus store probe\n")
            os.fsync(fd)
        finally:
            os.close(fd)
        os.unlink(path)
        stat = os.statvfs(target)
    except OSError as e:
        with contextlib.suppress(OSError):
            path.unlink()
        return _ERRNO_CAUSES.get(e.errno or 0, "write_error")
    return "no_space" if stat.f_bavail * stat.f_frsize < low_free else None


def log_cause(line: str, store_dir: str) -> str | None:
    """The cause of a store write error in one line of nats-server's log, if it is one."""
    if "[ERR]" not in line or store_dir not in line:
        return None
    lower = line.lower()
    return next((cause for text, cause in _LOG_CAUSES.items() if text in lower), None)


class StoreWatch:
    """Watches one embedded server's JetStream store; stops it on a fault, starts it after."""

    def __init__(self, server: Server, *, interval_s: float = PROBE_INTERVAL_S) -> None:
        self.server = server
        self.store_dir = server.data_dir / "jetstream"
        self.log_file = server.data_dir / "run" / "nats-server.log"
        self.interval_s = interval_s
        self._log_offset = self._log_size()
        #: The store's own directory, which the server created: a writable store without
        #: it is another (an unmounted mount point, an empty new disk), never resumed on.
        self._streams_dir = self.store_dir / "jetstream"
        self._had_streams = self._streams_dir.is_dir()
        #: The current fault's cause, while the server is stopped for it.
        self.fault: str | None = None

    def _log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except OSError:
            return 0

    def _from_log(self) -> str | None:
        """A store write error the server logged since the last look."""
        size = self._log_size()
        if size < self._log_offset:  # replaced: read it from the start
            self._log_offset = 0
        if size == self._log_offset:
            return None
        try:
            with self.log_file.open("rb") as f:
                f.seek(self._log_offset)
                chunk = f.read(size - self._log_offset)
        except OSError:
            return None
        # Only whole lines; a line still being written is read next time.
        end = chunk.rfind(b"\n") + 1
        self._log_offset += end
        store = str(self.store_dir)
        lines = chunk[:end].decode(errors="replace").splitlines()
        return next((c for line in lines if (c := log_cause(line, store)) is not None), None)

    def check(self) -> str | None:
        """The store's fault now (a probe first, then the server's log), or ``None``."""
        from_log = self._from_log()
        return probe(self.store_dir) or from_log

    async def run(self) -> None:
        """Until cancelled: on a fault, stop the server, wait for the store, start it once."""
        while True:
            await asyncio.sleep(self.interval_s)
            cause = await asyncio.to_thread(self.check)
            if cause is not None:
                await self._ride_out(cause)

    async def _until_repaired(self, cause: str) -> None:
        missing_said = False
        while True:
            if await asyncio.to_thread(probe, self.store_dir, low_free=RESUME_FREE_BYTES) is None:
                if not self._had_streams or self._streams_dir.is_dir():
                    return
                if not missing_said:  # e.g. unmounted for a repair: the mount point is empty
                    log.error("nats_store_missing", cause=cause, store_dir=str(self.store_dir))
                    missing_said = True
            await asyncio.sleep(self.interval_s)

    async def _ride_out(self, cause: str) -> None:
        self.fault = cause
        began = time.monotonic()
        log.error("nats_store_fault", cause=cause, store_dir=str(self.store_dir),
                  action="nats_server_stopped_until_the_store_is_writable")  # fmt: skip
        port = await asyncio.to_thread(self.server.kill)
        await self._until_repaired(cause)
        while True:
            try:
                await asyncio.to_thread(self.server.start_again, port)
                break
            except ServerError as e:
                # Not a crash loop: one attempt per START_RETRY_S, the process stays up.
                log.error("nats_store_restart_failed", cause=cause, error=str(e),
                          retry_in_s=START_RETRY_S)  # fmt: skip
                await asyncio.sleep(START_RETRY_S)
        self._log_offset = self._log_size()  # what the stopped server logged is old news
        self.fault = None
        log.info("nats_store_fault_cleared", cause=cause,
                 down_s=round(time.monotonic() - began, 1))  # fmt: skip
