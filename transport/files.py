"""Key material on disk: created 0600 from the start, replaced atomically, read with a
clear error. The lowest piece of the edge: keys, certificates and the directory use it."""

from __future__ import annotations

import os
from pathlib import Path

from sigbus.transport.errors import ConfigError


def write_private(path: Path, data: bytes) -> None:
    """Create or replace ``path`` with mode 0600, atomically (no window in which another
    user could read it, no half-written file after a crash), and durably: the directory
    is fsynced too, so the rename itself survives a crash (a release file dropped for
    the case system must be on disk before the adapter acks it)."""
    tmp = path.parent / f".{path.name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_private(path: Path) -> bytes:
    """A private file's bytes, refused while anyone but its owner may read it (as ssh does):
    a key file left 0644 in a shared directory is already a stolen key file."""
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from e
    if mode & 0o077:
        raise ConfigError(f"{path} is readable by others: run `chmod 600 {path}`")
    return read_file(path)


def read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror}") from e
