"""The k-of-n root: threshold, required holder, duplicate signers, rotation, rollback, expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import cache

import pytest

from sigbus.protocol.errors import DirectoryRefused
from sigbus.protocol.root import (
    Root,
    RootKey,
    RootSignature,
    SignedRoot,
    root_key_id_for,
    root_message,
    sign_root,
    walk_roots,
)
from sigbus.protocol.signing import HybridPrivateKey

NOW = datetime(2026, 6, 1, tzinfo=UTC)
HOLDERS = ("hub", "police", "social")


@cache
def key(name: str) -> HybridPrivateKey:
    return HybridPrivateKey.generate()


def root_key(holder: str, name: str) -> RootKey:
    public = key(name).public_key().public_bytes_raw()
    return RootKey(key_id=root_key_id_for(holder, public), holder=holder, public_key=public)


def make_root(version: int = 1, generation: str = "a", **changes: object) -> Root:
    fields: dict[str, object] = {
        "version": version,
        "expires_at": NOW + timedelta(days=365),
        "keys": tuple(root_key(h, f"{h}-{generation}") for h in HOLDERS),
        "threshold": 2,
        "required_holders": ("hub",),
    }
    fields.update(changes)
    return Root.model_validate(fields)


def signed(root: Root, *names: str, generation: str = "a") -> SignedRoot:
    return sign_root(root, [(n, key(f"{n}-{generation}")) for n in names])


def test_threshold_of_distinct_holders_with_the_hub_is_accepted() -> None:
    pinned = signed(make_root(), "hub", "police")
    assert walk_roots(pinned, [], NOW) == pinned.root


def test_one_signature_is_below_the_threshold() -> None:
    with pytest.raises(DirectoryRefused) as e:
        walk_roots(signed(make_root(), "hub"), [], NOW)
    assert e.value.kind == "root_threshold_not_met"


def test_missing_required_holder_is_refused_even_above_the_threshold() -> None:
    with pytest.raises(DirectoryRefused) as e:
        walk_roots(signed(make_root(), "police", "social"), [], NOW)
    assert e.value.kind == "root_required_holder_missing"
    assert e.value.agencies == ("hub",)


def test_the_same_signature_twice_counts_once() -> None:
    one = signed(make_root(), "hub")
    doubled = SignedRoot(root=one.root, signatures=one.signatures * 2)
    with pytest.raises(DirectoryRefused) as e:
        walk_roots(doubled, [], NOW)
    assert e.value.kind == "root_threshold_not_met"


def test_a_holder_with_two_keys_counts_once() -> None:
    keys = (root_key("hub", "hub-a"), root_key("hub", "hub-b"), root_key("police", "police-a"))
    root = make_root(keys=keys)
    two_hub_keys = sign_root(root, [("hub", key("hub-a")), ("hub", key("hub-b"))])
    with pytest.raises(DirectoryRefused) as e:
        walk_roots(two_hub_keys, [], NOW)
    assert e.value.kind == "root_threshold_not_met"


def test_a_forged_signature_counts_for_nothing() -> None:
    good = signed(make_root(), "hub")
    police_id = make_root().keys[1].key_id
    forged = SignedRoot(
        root=good.root,
        signatures=(*good.signatures, RootSignature(key_id=police_id, signature=b"\0" * 3373)),
    )
    with pytest.raises(DirectoryRefused):
        walk_roots(forged, [], NOW)


def test_threshold_above_the_holders_is_malformed() -> None:
    with pytest.raises(ValueError, match="threshold"):
        make_root(threshold=4)


def test_rotation_signed_by_old_and_new_thresholds_is_accepted() -> None:
    pinned = signed(make_root(), "hub", "police")
    v2 = make_root(2, generation="b")
    both = sign_root(
        v2, [("hub", key("hub-a")), ("social", key("social-a")), ("hub", key("hub-b")),
             ("police", key("police-b"))],
    )  # fmt: skip
    assert walk_roots(pinned, [both], NOW).version == 2


def test_rotation_signed_only_by_the_new_keys_is_refused() -> None:
    pinned = signed(make_root(), "hub", "police")
    v2 = signed(make_root(2, generation="b"), "hub", "police", generation="b")
    with pytest.raises(DirectoryRefused) as e:
        walk_roots(pinned, [v2], NOW)
    assert e.value.kind == "root_required_holder_missing"  # the old hub key did not sign


def test_rotation_signed_only_by_the_old_keys_is_refused() -> None:
    pinned = signed(make_root(), "hub", "police")
    v2 = signed(make_root(2, generation="b"), "hub", "police", generation="a")
    with pytest.raises(DirectoryRefused):
        walk_roots(pinned, [v2], NOW)


def test_a_version_gap_is_refused() -> None:
    pinned = signed(make_root(), "hub", "police")
    v3 = signed(make_root(3), "hub", "police")
    with pytest.raises(DirectoryRefused) as e:
        walk_roots(pinned, [v3], NOW)
    assert e.value.kind == "root_version_gap"


def test_a_chain_walks_several_versions() -> None:
    pinned = signed(make_root(), "hub", "police")
    chain = [signed(make_root(v), "hub", "social") for v in (3, 2)]  # same keys, any order
    assert walk_roots(pinned, chain, NOW).version == 3


def test_rollback_below_the_persisted_version_is_refused() -> None:
    pinned = signed(make_root(), "hub", "police")
    v2 = signed(make_root(2), "hub", "police")
    assert walk_roots(pinned, [v2], NOW, min_version=2).version == 2
    with pytest.raises(DirectoryRefused) as e:
        walk_roots(pinned, [], NOW, min_version=2)
    assert e.value.kind == "root_rollback"


def test_two_roots_under_one_version_are_refused() -> None:
    pinned = signed(make_root(), "hub", "police")
    other = signed(make_root(threshold=3), "hub", "police", "social")
    with pytest.raises(DirectoryRefused) as e:
        walk_roots(pinned, [other], NOW)
    assert e.value.kind == "root_equivocation"


def test_an_expired_newest_root_is_refused() -> None:
    pinned = signed(make_root(expires_at=NOW), "hub", "police")
    with pytest.raises(DirectoryRefused) as e:
        walk_roots(pinned, [], NOW)
    assert e.value.kind == "root_expired"
    assert walk_roots(pinned, [], NOW - timedelta(seconds=1)).version == 1


def test_a_root_signature_is_domain_separated() -> None:
    root = make_root()
    bare = key("hub-a").sign(root.model_dump_json().encode())
    hub_id = root.keys[0].key_id
    police = signed(root, "police").signatures
    wrong = SignedRoot(
        root=root, signatures=(RootSignature(key_id=hub_id, signature=bare), *police)
    )
    with pytest.raises(DirectoryRefused):
        walk_roots(wrong, [], NOW)


def test_a_root_signature_valid_only_in_its_ed25519_half_counts_for_nothing() -> None:
    """Harvest now, forge later: a forger of Ed25519 alone (the police key's classical
    half, used honestly here) cannot make the police count towards the threshold."""
    good = signed(make_root(), "hub")
    police = key("police-a")
    ed_half = police.ed25519.sign(root_message(good.root))
    forged = SignedRoot(
        root=good.root,
        signatures=(
            *good.signatures,
            RootSignature(key_id=make_root().keys[1].key_id, signature=ed_half + b"\0" * 3309),
        ),
    )
    with pytest.raises(DirectoryRefused) as e:
        walk_roots(forged, [], NOW)
    assert e.value.kind == "root_threshold_not_met"
