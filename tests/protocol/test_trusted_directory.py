"""TrustedDirectory: rollback, equivocation, freeze, a short root threshold and an
unendorsed key change are refused (pure: bytes and time in)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sigbus.protocol.directory import (
    AgencyEntry,
    Directory,
    DirectoryKey,
    Endorsement,
    KeyStatus,
    KeyUse,
    SignedDirectory,
    TrustedDirectory,
    endorse,
    endorsement_message,
    key_id_for,
    sign_directory,
)
from sigbus.protocol.errors import DirectoryError, DirectoryRefused
from sigbus.protocol.root import Root, RootKey, root_key_id_for, sign_root
from sigbus.protocol.signing import HybridPrivateKey

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
SIGNERS = [(h, HybridPrivateKey.from_private_bytes(bytes([i + 40]) * 64))
           for i, h in enumerate(("hub", "police", "social"))]  # fmt: skip
_ROOT = Root(
    version=1,
    expires_at=NOW + timedelta(days=365),
    keys=tuple(
        RootKey(
            key_id=root_key_id_for(h, k.public_key().public_bytes_raw()),
            holder=h,
            public_key=k.public_key().public_bytes_raw(),
        )
        for h, k in SIGNERS
    ),
    threshold=2,
    required_holders=("hub",),
)
SIGNED_ROOT = sign_root(_ROOT, SIGNERS)
ROOT_PUB = SIGNED_ROOT.model_dump_json().encode()
POLICE_OLD = HybridPrivateKey.from_private_bytes(b"\x21" * 64)
POLICE_NEW = HybridPrivateKey.from_private_bytes(b"\x22" * 64)
SOCIAL_KEY = HybridPrivateKey.from_private_bytes(b"\x23" * 64)


def _signing(agency: str, key: HybridPrivateKey, **changes: object) -> DirectoryKey:
    public = key.public_key().public_bytes_raw()
    fields: dict[str, object] = {
        "key_id": key_id_for(agency, KeyUse.SIGNING, public),
        "use": KeyUse.SIGNING,
        "public_key": public,
        "not_before": NOW - timedelta(days=1),
        "not_after": NOW + timedelta(days=300),
    }
    fields.update(changes)
    return DirectoryKey.model_validate(fields)


def _entries(police: tuple[DirectoryKey, ...] | None = None) -> tuple[AgencyEntry, ...]:
    return (
        AgencyEntry(agency="police", keys=police or (_signing("police", POLICE_OLD),)),
        AgencyEntry(agency="social", keys=(_signing("social", SOCIAL_KEY),)),
    )


def _signed(
    serial: int,
    *,
    expires: datetime = NOW + timedelta(days=30),
    issued: datetime = NOW,
    root: list[tuple[str, HybridPrivateKey]] | None = None,
    agencies: tuple[AgencyEntry, ...] = (),
) -> SignedDirectory:
    directory = Directory(serial=serial, issued_at=issued, expires_at=expires, agencies=agencies)
    return sign_directory(directory, (SIGNED_ROOT,), SIGNERS[:2] if root is None else root)


def _raw(serial: int, **kwargs: object) -> bytes:
    return _signed(serial, **kwargs).model_dump_json().encode()  # type: ignore[arg-type]


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
    rogue = [(h, HybridPrivateKey.generate()) for h, _ in SIGNERS]
    with pytest.raises(DirectoryRefused) as e:
        TrustedDirectory(ROOT_PUB).update(_raw(1, root=rogue), NOW)
    assert e.value.kind == "root_required_holder_missing"


def test_one_root_signature_is_below_the_threshold() -> None:
    trusted = TrustedDirectory(ROOT_PUB)
    with pytest.raises(DirectoryRefused) as e:
        trusted.update(_raw(1, root=SIGNERS[:1]), NOW)
    assert e.value.kind == "root_threshold_not_met"
    assert trusted.directory is None


def test_the_threshold_without_the_hub_is_refused() -> None:
    with pytest.raises(DirectoryRefused) as e:
        TrustedDirectory(ROOT_PUB).update(_raw(1, root=SIGNERS[1:]), NOW)
    assert e.value.kind == "root_required_holder_missing"


def test_signatures_added_later_do_not_make_another_directory() -> None:
    trusted = TrustedDirectory(ROOT_PUB)
    trusted.update(_raw(1), NOW)
    resigned = sign_directory(_signed(1).directory, (SIGNED_ROOT,), SIGNERS[2:], onto=_signed(1))
    assert len(resigned.signatures) == 3
    assert trusted.update(resigned.model_dump_json().encode(), NOW).serial == 1


def test_first_adoption_needs_no_endorsement() -> None:
    police = (_signing("police", POLICE_NEW),)
    assert TrustedDirectory(ROOT_PUB).update(_raw(1, agencies=_entries(police)), NOW).serial == 1


def test_an_unendorsed_key_change_is_refused_and_the_old_directory_kept() -> None:
    trusted = TrustedDirectory(ROOT_PUB)
    trusted.update(_raw(1, agencies=_entries()), NOW)
    added = _entries((_signing("police", POLICE_OLD), _signing("police", POLICE_NEW)))
    every_root_key = _raw(2, agencies=added, root=SIGNERS)
    with pytest.raises(DirectoryRefused) as e:
        trusted.update(every_root_key, NOW)
    assert e.value.kind == "unendorsed_key_change"
    assert e.value.agencies == ("police",)
    assert trusted.directory is not None
    assert trusted.directory.serial == 1


def test_an_unendorsed_change_is_refused_after_a_restart_too() -> None:
    first = TrustedDirectory(ROOT_PUB)
    first.update(_raw(1, agencies=_entries()), NOW)
    restarted = TrustedDirectory(ROOT_PUB, first.state)
    replaced = _entries((_signing("police", POLICE_NEW),))
    with pytest.raises(DirectoryRefused, match="without that agency's endorsement"):
        restarted.update(_raw(2, agencies=replaced), NOW)


def test_an_endorsed_key_change_is_accepted() -> None:
    trusted = TrustedDirectory(ROOT_PUB)
    trusted.update(_raw(1, agencies=_entries()), NOW)
    old_id = _entries()[0].keys[0].key_id
    new = _signed(2, agencies=_entries((_signing("police", POLICE_NEW),)))
    assert trusted.update(endorse(new, "police", old_id, POLICE_OLD).model_dump_json().encode(),
                          NOW).serial == 2  # fmt: skip


def test_an_endorsement_by_the_new_key_or_another_agency_does_not_count() -> None:
    trusted = TrustedDirectory(ROOT_PUB)
    trusted.update(_raw(1, agencies=_entries()), NOW)
    new = _signed(2, agencies=_entries((_signing("police", POLICE_NEW),)))
    new_id = new.directory.agencies[0].keys[0].key_id
    social_id = _entries()[1].keys[0].key_id
    for wrong in (endorse(new, "police", new_id, POLICE_NEW),
                  endorse(new, "social", social_id, SOCIAL_KEY)):  # fmt: skip
        with pytest.raises(DirectoryRefused) as e:
            trusted.update(wrong.model_dump_json().encode(), NOW)
        assert e.value.kind == "unendorsed_key_change"


def test_an_endorsement_valid_only_in_its_ed25519_half_does_not_count() -> None:
    """Harvest now, forge later: the police key's classical half alone endorses nothing."""
    trusted = TrustedDirectory(ROOT_PUB)
    trusted.update(_raw(1, agencies=_entries()), NOW)
    old_id = _entries()[0].keys[0].key_id
    new = _signed(2, agencies=_entries((_signing("police", POLICE_NEW),)))
    entry = new.directory.agencies[0]
    ed_half = POLICE_OLD.ed25519.sign(endorsement_message("police", entry))
    forged = new.model_copy(
        update={
            "endorsements": (
                Endorsement(agency="police", key_id=old_id, signature=ed_half + b"\0" * 3309),
            )
        }
    )
    with pytest.raises(DirectoryRefused) as e:
        trusted.update(forged.model_dump_json().encode(), NOW)
    assert e.value.kind == "unendorsed_key_change"


def test_a_revocation_needs_no_endorsement_but_undoing_it_does() -> None:
    trusted = TrustedDirectory(ROOT_PUB)
    trusted.update(_raw(1, agencies=_entries()), NOW)
    revoked = _entries((_signing("police", POLICE_OLD, revoked_at=NOW),))
    assert trusted.update(_raw(2, agencies=revoked), NOW).serial == 2
    with pytest.raises(DirectoryRefused) as e:
        trusted.update(_raw(3, agencies=_entries()), NOW)
    assert e.value.kind == "unendorsed_key_change"


def test_removing_an_agency_needs_its_endorsement() -> None:
    trusted = TrustedDirectory(ROOT_PUB)
    trusted.update(_raw(1, agencies=_entries()), NOW)
    with pytest.raises(DirectoryRefused) as e:
        trusted.update(_raw(2, agencies=_entries()[1:]), NOW)
    assert e.value.agencies == ("police",)


def test_a_malformed_pinned_root_is_refused() -> None:
    with pytest.raises(DirectoryError, match=r"root\.json"):
        TrustedDirectory(b"AAAA")


def test_a_key_marked_revoked_without_a_time_is_never_usable() -> None:
    key = DirectoryKey(
        key_id="police-sig-0123456789abcdef",
        use=KeyUse.SIGNING,
        public_key=ROOT_PUB,
        not_before=NOW - timedelta(days=1),
        not_after=NOW + timedelta(days=1),
        status=KeyStatus.REVOKED,
    )
    assert not key.usable_at(NOW)
    assert key.model_copy(update={"status": KeyStatus.ACTIVE}).usable_at(NOW)
