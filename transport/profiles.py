"""Agency profiles from disk: the shipped ones, extended or replaced by a local folder.

The local folder is ``SIGBUS_PROFILES_DIR``, else ``profiles/`` inside the keys
directory (where a municipality keeps the rest of its SIG configuration). A
file there named like a shipped one replaces it; any other file adds an agency.
"""

from __future__ import annotations

import os
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from sigbus.protocol.profiles import AgencyProfile, Profiles, parse_profile

PROFILES_ENV = "SIGBUS_PROFILES_DIR"
SUFFIX = ".toml"


def shipped_profiles_dir() -> Traversable:
    return resources.files("sigbus").joinpath("profiles")


def local_profiles_dir(keys_dir: Path | None) -> Path | None:
    if env := os.environ.get(PROFILES_ENV):
        return Path(env)
    return keys_dir / "profiles" if keys_dir is not None else None


def _read_folder(folder: Traversable) -> dict[str, AgencyProfile]:
    found: dict[str, AgencyProfile] = {}
    if not folder.is_dir():
        return found
    for item in folder.iterdir():
        if item.name.endswith(SUFFIX) and item.is_file():
            stem = item.name.removesuffix(SUFFIX)
            found[stem] = parse_profile(item.read_bytes(), file_stem=stem)
    return found


def load_profiles(keys_dir: Path | None = None) -> Profiles:
    """Shipped profiles, then the local folder's (which win by name)."""
    profiles = _read_folder(shipped_profiles_dir())
    local = local_profiles_dir(keys_dir)
    if local is not None:
        profiles.update(_read_folder(local))
    return Profiles(profiles.values())


def local_profiles_stamp(keys_dir: Path | None) -> tuple[tuple[str, int, int], ...]:
    """What the local profiles folder holds now (names, mtimes, sizes): a change means
    a profile was added or edited, so the hub re-reads them without a restart."""
    local = local_profiles_dir(keys_dir)
    if local is None or not local.is_dir():
        return ()
    found = []
    for path in sorted(local.glob(f"*{SUFFIX}")):
        st = path.stat()
        found.append((path.name, st.st_mtime_ns, st.st_size))
    return tuple(found)
