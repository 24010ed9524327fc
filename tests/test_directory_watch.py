"""A running hub or adapter refuses an older directory (the root-key holder cannot roll it back)."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from structlog.testing import capture_logs

from sigbus.transport.keystore import (
    DEV_KEYS_DIR,
    DIRECTORY_FILE,
    DIRECTORY_STATE_FILE,
    DirectoryWatcher,
    load_root_private,
    load_trusted_directory,
    save_directory,
)


def _touch_later(path: Path, step: int) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + step * 1_000_000_000))


def test_an_older_signed_directory_is_refused_while_running(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    shutil.copytree(DEV_KEYS_DIR, keys, ignore=shutil.ignore_patterns(DIRECTORY_STATE_FILE))
    trusted = load_trusted_directory(keys, now=datetime.now(UTC))
    assert trusted.directory is not None
    old = trusted.directory
    old_bytes = (keys / DIRECTORY_FILE).read_bytes()
    watcher = DirectoryWatcher(keys, trusted)
    newer = old.model_copy(update={"serial": old.serial + 1})
    save_directory(keys, newer, load_root_private(keys))
    _touch_later(keys / DIRECTORY_FILE, 1)
    assert watcher.refresh().serial == old.serial + 1
    # The old file, validly signed by the same root, is put back.
    (keys / DIRECTORY_FILE).write_bytes(old_bytes)
    _touch_later(keys / DIRECTORY_FILE, 2)
    with capture_logs() as events:
        assert watcher.refresh().serial == old.serial + 1
    assert {"event": "security_event", "kind": "directory_rollback"}.items() <= events[0].items()
