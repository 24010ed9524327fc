"""TrustedDirectory: rollback, equivocation and freeze are refused (pure: bytes and time in)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sigbus.protocol.directory import (
    Directory,
    DirectoryKey,
    KeyStatus,
    KeyUse,
    TrustedDirectory,
    sign_directory,
)
from sigbus.protocol.errors import DirectoryError, DirectoryRefused

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
ROOT = Ed25519PrivateKey.generate()
ROOT_PUB = ROOT.public_key().public_bytes_raw()


def _raw(serial: int, *, expires: datetime = NOW + timedelta(days=30), issued: datetime = NOW,
         root: Ed25519PrivateKey = ROOT) -> bytes:
    directory = Directory(serial=serial, issued_at=issued, expires_at=expires, agencies=())
    return sign_directory(directory, root).model_dump_json().encode()


def test_a_higher_serial_replaces_and_the_state_follows() -> None:
    trusted = TrustedDirectory(ROOT_PUB)
    trusted.update(_raw(1), NOW)
    assert trusted.update(_raw(2), NOW).serial == 2
    assert trusted.state is not None
    assert trusted.state.serial == 2


def test_a_restart_keeps_the_rules_through_the_persisted_state() -> None:
    first = TrustedDirectory(ROOT_PUB)
    first.update(_raw(5), NOW)
    restarted = TrustedDirectory(ROOT_PUB, first.state)
    with pytest.raises(DirectoryRefused, match="rollback") as e:
        restarted.update(_raw(4), NOW)
    assert e.value.kind == "directory_rollback"
    assert restarted.update(_raw(5), NOW).serial == 5  # the same file again is fine


def test_two_directories_under_one_serial_are_refused() -> None:
    trusted = TrustedDirectory(ROOT_PUB)
    trusted.update(_raw(3), NOW)
    with pytest.raises(DirectoryRefused) as e:
        trusted.update(_raw(3, issued=NOW + timedelta(seconds=1)), NOW)
    assert e.value.kind == "directory_equivocation"
    assert trusted.directory is not None
    assert trusted.directory.issued_at == NOW


def test_an_expired_directory_is_refused_even_at_a_new_serial() -> None:
    trusted = TrustedDirectory(ROOT_PUB)
    trusted.update(_raw(1), NOW)
    with pytest.raises(DirectoryRefused) as e:
        trusted.update(_raw(2, expires=NOW), NOW)
    assert e.value.kind == "directory_expired"
    assert trusted.state is not None
    assert trusted.state.serial == 1


def test_another_root_is_refused() -> None:
    with pytest.raises(DirectoryError, match="untrusted root"):
        TrustedDirectory(ROOT_PUB).update(_raw(1, root=Ed25519PrivateKey.generate()), NOW)


def test_a_key_marked_revoked_without_a_time_is_never_usable() -> None:
    key = DirectoryKey(key_id="police-sig-0123456789abcdef", use=KeyUse.SIGNING,
                       public_key=ROOT_PUB, not_before=NOW - timedelta(days=1),
                       not_after=NOW + timedelta(days=1), status=KeyStatus.REVOKED)
    assert not key.usable_at(NOW)
    assert key.model_copy(update={"status": KeyStatus.ACTIVE}).usable_at(NOW)
