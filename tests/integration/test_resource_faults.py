"""A full or read-only store under `sigbus up`: fail closed, say why, come back (issue 12).

Real processes on a real file system: `sigbus up` (hub + embedded nats-server) with
its store on a small tmpfs or a loop-mounted ext4 image, a sending adapter
(`sigbus police serve` flushing its outbox) and a receiving one (`sigbus social
serve --out`). The store breaks under load; nothing is released while it is broken,
`up` logs the cause once and stays up; once the store is fixed everything resumes
without anyone restarting anything, each message is released exactly once and the
exported log verifies. The recovery time (fix to the last held message handed over)
is printed; docs/operations.md "Resource faults" quotes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

from sigbus.agents.outbox import Outbox
from sigbus.agents.setup import agency_setup
from sigbus.broker.setup import hub_setup
from sigbus.protocol.subjects import LOG_STREAM
from sigbus.transport.bus import connect
from sigbus.transport.storewatch import StoreWatch, log_cause, probe
from tests.integration.test_no_personnummer import TRUSTED, Session, witnesses_cosign
from tests.integration.test_reconnect import dropped, queue, wait_for_drop
from tests.integration.test_serve import serve, stop

P, SO = "police", "social"
#: Fix to the last held message handed over; measured ~ see docs/operations.md.
RECOVERY_BOUND_S = 30.0


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"mount not permitted on this machine: {done.stderr.strip()}")


def _umount(path: Path) -> None:
    deadline = time.monotonic() + 30
    while subprocess.run(["umount", str(path)], capture_output=True, check=False).returncode:
        assert time.monotonic() < deadline, f"{path} stayed busy"
        time.sleep(0.2)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[None]:
    path.mkdir(parents=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield
    finally:
        _umount(path)


@contextlib.contextmanager
def ext4(path: Path, image: Path) -> Iterator[str]:
    """An ext4 image loop-mounted at ``path`` that the kernel remounts read-only on an
    error (``errors=remount-ro``, as on a failing disk); yields its sysfs name."""
    missing = [tool for tool in ("mkfs.ext4", "e2fsck") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"no {', '.join(missing)} on this machine (e2fsprogs)")
    path.mkdir(parents=True)
    subprocess.run(["truncate", "-s", "64M", str(image)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    _mount("-o", "loop,errors=remount-ro", str(image), str(path))
    try:
        yield _loop_device(path)
    finally:
        with contextlib.suppress(AssertionError):
            _umount(path)


def _loop_device(path: Path) -> str:
    for line in Path("/proc/mounts").read_text().splitlines():
        device, mountpoint, *_ = line.split()
        if mountpoint == str(path):
            return Path(device).name
    raise AssertionError(f"{path} is not mounted")


def fill(store: Path) -> Path:
    """Write one file until the store's file system is full."""
    filler = store / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with pytest.raises(OSError) as full:
            while True:
                os.write(fd, b"\0" * 65536)
    finally:
        os.close(fd)
    assert full.value.errno == errno.ENOSPC, full.value
    return filler


def _events(path: Path, event: str) -> list[dict[str, object]]:
    found = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict) and record.get("event") == event:
                found.append(record)
    return found


def _fault_events(up_log: Path, store_fault: bool) -> list[dict[str, object]]:
    if store_fault:
        return _events(up_log, "nats_store_fault")
    return _events(up_log, "ingress_processing_retry")


async def _maybe(result: object) -> None:
    if inspect.isawaitable(result):
        await result


async def _until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.2)


async def _ride_out(
    tmp_path: Path,
    keys_dir: Path,
    *,
    cause: str,
    break_store: Callable[[str], object],
    fix_store: Callable[[str], object],
    store_fault: bool = True,
) -> float:
    """Send before, during and after a fault under `sigbus up`; returns the recovery time
    in seconds (fix to the last held message handed over). ``break_store`` and
    ``fix_store`` get the NATS URL and may be coroutine functions. ``store_fault``:
    the store watch restarts the server once; otherwise (a stream limit) never."""
    data, outputs = tmp_path / "data", tmp_path / "out"
    outputs.mkdir()
    session = Session(data, outputs)
    tag = cause.replace(" ", "_")  # in the message ids
    up_log = outputs / "up.stderr"
    drop = tmp_path / "social-drop"
    with session.up() as up:
        url = json.loads((data / "sigbus-up.json").read_text())["nats_url"]
        env = session.env()
        procs = [
            await serve(P, url, keys_dir, env, "--out", str(tmp_path / "police-drop")),
            await serve(SO, url, keys_dir, env, "--out", str(drop)),
        ]
        police = await agency_setup(P, keys_dir).connect(url)
        police.outbox = Outbox(data / f"outbox-{P}.sqlite")
        sent: list[str] = []
        try:
            sent += [queue(police, f"{tag}-before-{n}") for n in range(3)]
            await wait_for_drop(drop, sent, 60)

            await _maybe(break_store(url))
            held = [queue(police, f"{tag}-during-{n}") for n in range(3)]
            sent += held
            await _until(lambda: bool(_fault_events(up_log, store_fault)), 30,
                         "up did not report the fault")  # fmt: skip
            await asyncio.sleep(5)  # fail closed: nothing of what waits is released
            assert not set(held) & set(dropped(drop))
            assert up.poll() is None, "sigbus up died on the store fault"

            await _maybe(fix_store(url))
            fixed = time.monotonic()
            await wait_for_drop(drop, sent, 90)
            recovery_s = time.monotonic() - fixed
            sent += [queue(police, f"{tag}-after-{n}") for n in range(2)]
            await wait_for_drop(drop, sent, 60)
            assert up.poll() is None
            assert all(p.returncode is None for p in procs), "an adapter died"
        finally:
            for p in procs:
                await stop(p)
            police.outbox.close()
            await police.close()
        # Each message released once (one file per release), and the log verifies.
        assert dropped(drop) == sorted(sent)
        witnesses_cosign(session, tmp_path / "case-systems", len(sent))
        export = tmp_path / "log-export.jsonl"
        session.run("audit", "export", "--out", str(export))
        verified = json.loads(session.run("audit", "verify", "--json", str(export), *TRUSTED))
        assert (verified["verdict"], verified["entries"]) == ("verified", len(sent))
    faults = _events(up_log, "nats_store_fault")
    started = _events(up_log, "nats_server_started")
    if not store_fault:  # reported by the hub with the server's words; no restart
        assert all(cause in str(e["cause"]) for e in _fault_events(up_log, False))
        assert _events(up_log, "hub_fault_cleared")
        assert (faults, len(started)) == ([], 1)
        print(f"stream limit: recovery_s={recovery_s:.1f} (limit lifted to every held released)")
        assert recovery_s <= RECOVERY_BOUND_S
        return recovery_s
    assert [f["cause"] for f in faults] == [cause], faults  # said once, with its cause
    assert len(_events(up_log, "nats_store_fault_cleared")) == 1
    assert len(started) == 2  # the start and one restart
    assert "Traceback" not in up_log.read_text()
    # Nothing half-written: the restarted server found its store whole (no torn or
    # empty state file to recover from, no error).
    server_log = (data / "nats" / "run" / "nats-server.log").read_text().splitlines()
    again = [line for line in server_log if line.startswith(f"[{started[1]['pid']}]")]
    assert again
    assert not [line for line in again if "[ERR]" in line or "[WRN]" in line], again
    print(f"{cause}: recovery_s={recovery_s:.1f} (store fixed to every held message released)")
    assert recovery_s <= RECOVERY_BOUND_S
    return recovery_s


async def test_a_full_store_fails_closed_and_recovers_when_space_is_freed(
    tmp_path: Path, keys_dir: Path
) -> None:
    store = tmp_path / "data" / "nats" / "jetstream"
    filler: list[Path] = []
    with tmpfs(store, "32m"):
        await _ride_out(
            tmp_path, keys_dir, cause="no_space",
            break_store=lambda _: filler.append(fill(store)),
            fix_store=lambda _: filler.pop().unlink(),
        )  # fmt: skip


async def test_a_read_only_store_fails_closed_and_recovers_when_mounted_again(
    tmp_path: Path, keys_dir: Path
) -> None:
    """The kernel remounts a failing ext4 read-only by itself (``errors=remount-ro``);
    that is the read-only store a running hub meets: an operator's ``mount -o
    remount,ro`` is refused (EBUSY) while nats-server holds its block files open.
    Such a file system cannot be made writable in place (``remount,rw`` keeps it
    read-only); the repair is unmount, check, mount, which works because `up` stopped
    the server on the fault."""
    store = tmp_path / "data" / "nats" / "jetstream"
    image = tmp_path / "store.img"
    with ext4(store, image) as device:
        trigger = Path("/sys/fs/ext4") / device / "trigger_fs_error"
        if not trigger.exists():
            pytest.skip("the kernel has no ext4 trigger_fs_error (sysfs)")

        def break_store(_: str) -> None:
            trigger.write_text(f"sigbus test {datetime.now(UTC).isoformat()}\n")

        def fix_store(_: str) -> None:
            _umount(store)
            subprocess.run(["e2fsck", "-f", "-y", str(image)], capture_output=True, check=False)
            _mount("-o", "loop,errors=remount-ro", str(image), str(store))

        await _ride_out(tmp_path, keys_dir, cause="read_only",
                        break_store=break_store, fix_store=fix_store)  # fmt: skip


def test_down_during_a_store_fault_stops_up_cleanly(tmp_path: Path) -> None:
    """`sigbus down` while the store watch holds nats-server stopped: `up` exits 0,
    without a traceback (the hub closes a connection that is reconnecting)."""
    data, outputs = tmp_path / "data", tmp_path / "out"
    outputs.mkdir()
    store = data / "nats" / "jetstream"
    with tmpfs(store, "16m"):
        session = Session(data, outputs)
        with session.up():  # stopped by `sigbus down`, its exit status 0 asserted
            # The store watch runs beside a started hub; on a loaded machine the hub may
            # still be making its streams when `up` has written its state file.
            deadline = time.monotonic() + 60
            while not _events(outputs / "up.stderr", "broker_started"):
                assert time.monotonic() < deadline, "the hub did not start"
                time.sleep(0.2)
            fill(store)
            deadline = time.monotonic() + 30
            while not _events(outputs / "up.stderr", "nats_store_fault"):
                assert time.monotonic() < deadline, "up did not report the store fault"
                time.sleep(0.2)
    assert "Traceback" not in (outputs / "up.stderr").read_text()


async def test_a_full_stream_limit_is_reported_and_clears_without_a_restart(
    tmp_path: Path, keys_dir: Path
) -> None:
    """The disclosure log stream's ``max_bytes`` reached under `sigbus up`: the hub
    names the server's refusal and holds the round; it is not a store fault, so the
    store watch restarts nothing; lifting the limit lets the hub go on by itself."""

    async def set_limit(url: str, *, full: bool) -> None:
        nc = await connect(url, name="test-operator", creds=hub_setup(keys_dir).creds)
        try:
            js = nc.jetstream()
            info = await js.stream_info(LOG_STREAM)
            limit = info.state.bytes + 16 if full else -1
            await js.update_stream(replace(info.config, max_bytes=limit))
        finally:
            await nc.close()

    await _ride_out(
        tmp_path, keys_dir, cause="maximum bytes exceeded", store_fault=False,
        break_store=lambda url: set_limit(url, full=True),
        fix_store=lambda url: set_limit(url, full=False),
    )  # fmt: skip


#: Lines of nats-server 2.15's log, as it wrote them on a full and a read-only store.
NO_SPACE_LINE = (
    "[7974] 2026/12/04 18:36:13.822416 [ERR] Filestore [T] Critical write error: write "
    "/srv/nats/jetstream/jetstream/$G/streams/T/msgs/1.blk: no space left on device"
)
READ_ONLY_LINE = (
    "[8335] 2026/12/04 18:37:10.100319 [ERR] JetStream failed to store a msg on stream "
    "'$G > T': write /srv/nats/jetstream/jetstream/$G/streams/T/msgs/1.blk: read-only file system"
)


def test_the_watch_reads_the_cause_of_a_store_write_error_from_the_servers_log() -> None:
    store = "/srv/nats/jetstream"
    assert log_cause(NO_SPACE_LINE, store) == "no_space"
    assert log_cause(READ_ONLY_LINE, store) == "read_only"
    assert log_cause(NO_SPACE_LINE, "/elsewhere") is None  # another store's
    # A stream limit is not a store fault: reported by who is refused, no restart.
    limit = "[1] 2026/12/04 18:00:00.0 [WRN] /srv/nats/jetstream: maximum bytes exceeded"
    assert log_cause(limit, store) is None


def test_the_probe_writes_in_the_store_and_counts_its_free_space(tmp_path: Path) -> None:
    assert probe(tmp_path) is None
    assert not list(tmp_path.iterdir())  # it left nothing behind
    assert probe(tmp_path, low_free=2**62) == "no_space"  # less free than the low mark


class _FakeServer:
    """Stands in for EmbeddedNats: counts the watch's kills and starts."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.calls: list[str] = []
        (data_dir / "jetstream" / "jetstream").mkdir(parents=True)
        (data_dir / "run").mkdir()
        (data_dir / "run" / "nats-server.log").write_text("[1] started\n")

    def kill(self) -> int:
        self.calls.append("kill")
        return 4222

    def start_again(self, port: int) -> str:
        self.calls.append(f"start {port}")
        return f"tls://127.0.0.1:{port}"


async def test_a_fault_only_the_servers_log_saw_still_restarts_it_once(tmp_path: Path) -> None:
    """A fault over before the next probe (the disk full for a moment): the server has
    latched its write error all the same, and only its log says so."""
    server = _FakeServer(tmp_path)
    watch = StoreWatch(server, interval_s=0.01)
    store = str(tmp_path / "jetstream")
    line = NO_SPACE_LINE.replace("/srv/nats/jetstream", store)
    with (tmp_path / "run" / "nats-server.log").open("a") as f:
        f.write(line + "\n")
    with structlog.testing.capture_logs() as events:
        task = asyncio.create_task(watch.run())
        await _until(lambda: len(server.calls) == 2, 10, "the watch did not restart it")
        await asyncio.sleep(0.1)  # and nothing more happens
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert server.calls == ["kill", "start 4222"]
    said = [(e["event"], e["cause"]) for e in events if "cause" in e]
    assert said == [("nats_store_fault", "no_space"), ("nats_store_fault_cleared", "no_space")]
