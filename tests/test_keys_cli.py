"""`sigbus keys`: generate, public, add, rotate, revoke, show; passphrase-encrypted keys."""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sigbus.cli_keys import keys_app
from sigbus.protocol.directory import KeyUse, sign_directory
from sigbus.protocol.errors import KeyLookupError
from sigbus.protocol.ids import HUB
from sigbus.protocol.reasons import ReasonCode
from sigbus.protocol.root import Root, RootKey, root_key_id_for, sign_root
from sigbus.protocol.sealing import SuiteId
from sigbus.protocol.signing import HybridPrivateKey
from sigbus.transport.errors import ConfigError
from sigbus.transport.keyring import (
    KeyringError,
    PublicBundle,
    WrongPassphrase,
    encrypt_keyfile,
    load_private_file,
    public_bundle,
    revoke_key,
    rotate_keys,
)
from sigbus.transport.keystore import (
    DEV_AGENCIES,
    DEV_KEYS_DIR,
    generate_agency,
    generate_dev_keys,
    load_directory,
    load_private,
    load_root_private,
    load_signed_root,
    load_trusted_directory,
    save_directory,
)

runner = CliRunner()
T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
P = "police"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def base_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    keys = tmp_path_factory.mktemp("base") / "keys"
    generate_dev_keys(keys, now=T0 - timedelta(days=30), suite=SuiteId.X25519)
    return keys


@pytest.fixture
def hub_dir(base_keys: Path, tmp_path: Path) -> Path:
    """A hub keys dir whose directory lists hub, police, school, social."""
    keys = tmp_path / "hub"
    shutil.copytree(base_keys, keys)
    return keys


def invoke(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = runner.invoke(keys_app, list(args), env=env)
    return result.exit_code, result.stdout, result.stderr


def test_round_trip_generate_public_add_show(hub_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "agency"
    # A fresh agency id is not possible (closed enum): drop school from the
    # directory, then add it back with newly generated keys, as a hub would.
    directory = load_directory(hub_dir)
    without_school = directory.model_copy(
        update={
            "serial": directory.serial + 1,
            "agencies": tuple(e for e in directory.agencies if e.agency != "school"),
        }
    )
    save_directory(hub_dir, without_school, load_root_private(hub_dir))

    code, stdout, _ = invoke("generate", "--agency", "school", "--out", str(out))
    assert code == 0, stdout
    key_file = out / "school.key.json"
    assert _mode(key_file) == 0o600
    assert load_private(out, "school").agency == "school"

    code, stdout, _ = invoke("public", "--key", str(key_file))
    assert code == 0
    bundle = PublicBundle.model_validate_json(stdout).checked()
    assert bundle.agency == "school"
    assert {k.use for k in bundle.keys} == {KeyUse.SIGNING, KeyUse.SEALING, KeyUse.WITNESS}
    assert "private" not in stdout
    public_file = tmp_path / "school.pub.json"
    public_file.write_text(stdout)

    code, stdout, stderr = invoke(
        "add",
        "--directory-dir",
        str(hub_dir),
        "--public",
        str(public_file),
        "--not-before",
        "2026-01-01T00:00:00+00:00",
        "--not-after",
        "2036-01-01T00:00:00+00:00",
    )
    assert code == 0, stderr
    updated = load_directory(hub_dir)  # verifies the root signature
    assert updated.serial == directory.serial + 2
    keyfile = load_private(out, "school")
    assert updated.signing_key("school", keyfile.signing_key_id, at=T0)
    assert updated.sealing_key("school", at=T0).key_id == keyfile.sealing_key_id

    # Adding the same agency twice is refused: that is what rotate is for.
    code, _, stderr = invoke(
        "add",
        "--directory-dir",
        str(hub_dir),
        "--public",
        str(public_file),
        "--not-before",
        "2026-01-01T00:00:00+00:00",
        "--not-after",
        "2036-01-01T00:00:00+00:00",
    )
    assert code == 2
    assert "rotate" in stderr

    code, stdout, _ = invoke("show", "--directory-dir", str(hub_dir), "--at", T0.isoformat())
    assert code == 0
    assert "signature verified" in stdout
    assert keyfile.signing_key_id in stdout
    assert keyfile.sealing_key_id in stdout
    assert f"serial {updated.serial}" in stdout


def test_rotation_overlap_both_verify_newest_seals(hub_dir: Path, tmp_path: Path) -> None:
    old = load_private(hub_dir, P)
    code, _, _ = invoke("generate", "--agency", "police", "--out", str(tmp_path / "new"))
    assert code == 0
    new = load_private(tmp_path / "new", P)
    public_file = tmp_path / "police.pub.json"
    public_file.write_text(public_bundle(new).model_dump_json())
    overlap_start = T0 + timedelta(days=1)
    overlap_end = T0 + timedelta(days=15)
    code, _, stderr = invoke(
        "rotate",
        "--directory-dir",
        str(hub_dir),
        "--public",
        str(public_file),
        "--not-before",
        overlap_start.isoformat(),
        "--not-after",
        (T0 + timedelta(days=400)).isoformat(),
        "--retire-old-at",
        overlap_end.isoformat(),
    )
    assert code == 0, stderr
    d = load_directory(hub_dir)
    during = T0 + timedelta(days=5)
    # Before the overlap: only the old key exists for use; it seals.
    assert d.sealing_key(P, at=T0).key_id == old.sealing_key_id
    with pytest.raises(KeyLookupError) as e:
        d.signing_key(P, new.signing_key_id, at=T0)
    assert e.value.reason is ReasonCode.KEY_NOT_VALID
    # During the overlap: both signing keys verify, the newest sealing key seals.
    assert d.signing_key(P, old.signing_key_id, at=during)
    assert d.signing_key(P, new.signing_key_id, at=during)
    assert d.sealing_key(P, at=during).key_id == new.sealing_key_id
    # A release sealed to the old key just before the switch can still be matched.
    assert d.sealing_key_by_id(P, old.sealing_key_id, at=during).key_id == old.sealing_key_id
    # After the overlap: the old key no longer verifies.
    after = overlap_end + timedelta(seconds=1)
    with pytest.raises(KeyLookupError) as e:
        d.signing_key(P, old.signing_key_id, at=after)
    assert e.value.reason is ReasonCode.KEY_NOT_VALID
    assert d.signing_key(P, new.signing_key_id, at=after)


def test_rotation_refuses_a_gap(hub_dir: Path) -> None:
    new = generate_agency(P, now=T0, suite=SuiteId.X25519).keyfile
    with pytest.raises(KeyringError):
        rotate_keys(
            load_directory(hub_dir),
            public_bundle(new),
            not_before=T0 + timedelta(days=10),
            not_after=T0 + timedelta(days=100),
            retire_old_at=T0 + timedelta(days=5),
            now=T0,
        )


def test_revocation_from_revoked_at_on_not_before(hub_dir: Path) -> None:
    police = load_private(hub_dir, P)
    revoked_at = T0 + timedelta(hours=2)
    code, _, stderr = invoke(
        "revoke",
        "--directory-dir",
        str(hub_dir),
        "--key-id",
        police.signing_key_id,
        "--at",
        revoked_at.isoformat(),
    )
    assert code == 0, stderr
    d = load_directory(hub_dir)
    assert d.signing_key(P, police.signing_key_id, at=revoked_at - timedelta(microseconds=1))
    for at in (revoked_at, revoked_at + timedelta(days=1)):
        with pytest.raises(KeyLookupError) as e:
            d.signing_key(P, police.signing_key_id, at=at)
        assert e.value.reason is ReasonCode.REVOKED_KEY
    key = next(k for k in d.entry(P).keys if k.key_id == police.signing_key_id)
    assert key.status.value == "revoked"
    assert key.revoked_at == revoked_at

    code, stdout, _ = invoke(
        "show",
        "--directory-dir",
        str(hub_dir),
        "--at",
        (revoked_at + timedelta(hours=1)).isoformat(),
    )
    assert code == 0
    line = next(row for row in stdout.splitlines() if police.signing_key_id in row)
    assert "revoked" in line


def test_revoked_sealing_key_is_not_sealed_to(hub_dir: Path) -> None:
    police = load_private(hub_dir, P)
    d = revoke_key(load_directory(hub_dir), police.sealing_key_id, at=T0, now=T0)
    assert d.serial == load_directory(hub_dir).serial + 1
    with pytest.raises(KeyLookupError):
        d.sealing_key(P, at=T0)
    assert d.sealing_key(P, at=T0 - timedelta(seconds=1)).key_id == police.sealing_key_id


def test_revoke_unknown_key_fails_cleanly(hub_dir: Path) -> None:
    code, _, stderr = invoke(
        "revoke",
        "--directory-dir",
        str(hub_dir),
        "--key-id",
        "police-sig-0000000000000000",
        "--at",
        T0.isoformat(),
    )
    assert code == 2
    assert stderr.startswith("error: no key with that id")


def test_tampered_directory_is_refused_by_show(hub_dir: Path) -> None:
    path = hub_dir / "directory.json"
    doc = json.loads(path.read_text())
    doc["directory"]["serial"] += 1
    path.write_text(json.dumps(doc))
    code, _, stderr = invoke("show", "--directory-dir", str(hub_dir))
    assert code == 2
    assert "signature" in stderr


def test_encrypted_key_round_trip_and_wrong_passphrase(tmp_path: Path) -> None:
    env = {"SIGBUS_TEST_PASSPHRASE": "korrekt häst batteri häftklammer"}
    code, _, stderr = invoke(
        "generate",
        "--agency",
        "police",
        "--out",
        str(tmp_path),
        "--passphrase-env",
        "SIGBUS_TEST_PASSPHRASE",
        env=env,
    )
    assert code == 0, stderr
    path = tmp_path / "police.key.json"
    assert _mode(path) == 0o600
    raw = path.read_text()
    assert "signing_private" not in raw
    assert json.loads(raw)["kdf"]["name"] == "scrypt"

    keyfile = load_private_file(path, env["SIGBUS_TEST_PASSPHRASE"])
    assert keyfile.agency == P
    with pytest.raises(WrongPassphrase):
        load_private_file(path, "fel lösenord")
    with pytest.raises(KeyringError):
        load_private_file(path, None)

    code, stdout, _ = invoke(
        "public", "--key", str(path), "--passphrase-env", "SIGBUS_TEST_PASSPHRASE", env=env
    )
    assert code == 0
    assert PublicBundle.model_validate_json(stdout).agency == P

    code, stdout, stderr = invoke(
        "public", "--key", str(path), "--passphrase-env", "WRONG", env={"WRONG": "fel lösenord"}
    )
    assert code == 2
    assert stderr.startswith("error: wrong passphrase")
    assert stdout == ""


def test_encryption_binds_the_header(tmp_path: Path) -> None:
    keyfile = generate_agency(P, now=T0, suite=SuiteId.X25519).keyfile
    encrypted = encrypt_keyfile(keyfile, "lösen")
    moved = encrypted.model_copy(update={"agency": "school"})
    path = tmp_path / "moved.json"
    path.write_text(moved.model_dump_json())
    path.chmod(0o600)
    with pytest.raises(WrongPassphrase):
        load_private_file(path, "lösen")


def test_unencrypted_files_still_load_with_keystore(tmp_path: Path) -> None:
    code, _, _ = invoke("generate", "--agency", "social", "--out", str(tmp_path))
    assert code == 0
    assert load_private(tmp_path, "social") == load_private_file(tmp_path / "social.key.json")


def test_generate_refuses_to_overwrite(tmp_path: Path) -> None:
    assert invoke("generate", "--agency", "school", "--out", str(tmp_path))[0] == 0
    code, _, stderr = invoke("generate", "--agency", "school", "--out", str(tmp_path))
    assert code == 2
    assert "--force" in stderr


def test_dev_generate_writes_private_files_0600(tmp_path: Path) -> None:
    code, stdout, _ = invoke(
        "dev-generate", "--out", str(tmp_path), "--suite", "x25519-hkdfsha256-aes256gcm"
    )
    assert code == 0
    assert "never use them in production" in stdout
    for agency in (HUB, *DEV_AGENCIES):
        assert _mode(tmp_path / f"{agency}.key.json") == 0o600
    for holder in (HUB, "police", "social"):
        assert _mode(tmp_path / f"root.{holder}.key.json") == 0o600
    assert not (tmp_path / "root.pub").exists()
    assert {e.agency for e in load_directory(tmp_path).agencies} == {HUB, *DEV_AGENCIES}


def test_bundle_with_mismatched_key_id_is_refused(tmp_path: Path, hub_dir: Path) -> None:
    keyfile = generate_agency(P, now=T0, suite=SuiteId.X25519).keyfile
    doc = json.loads(public_bundle(keyfile).model_dump_json())
    doc["keys"][0]["key_id"] = "police-sig-" + "a" * 16
    path = tmp_path / "bad.pub.json"
    path.write_text(json.dumps(doc))
    code, _, stderr = invoke(
        "rotate",
        "--directory-dir",
        str(hub_dir),
        "--public",
        str(path),
        "--not-before",
        T0.isoformat(),
        "--not-after",
        (T0 + timedelta(days=1)).isoformat(),
    )
    assert code == 2
    assert "key id does not match" in stderr


def test_production_keys_from_zero_with_any_partner(tmp_path: Path) -> None:
    """`keys init` at the hub, `keys generate` for partners the code never names, `keys add`."""
    hub = tmp_path / "hub"
    code, stdout, stderr = invoke("init", "--out", str(hub))
    assert code == 0, stderr
    assert "keep root.hub.key.json offline" in stdout
    for private in ("root.hub.key.json", "hub.key.json"):
        assert _mode(hub / private) == 0o600
    directory = load_directory(hub)
    assert directory.serial == 1
    assert [e.agency for e in directory.agencies] == [HUB]
    assert load_private(hub, HUB).hub is not None
    # A second init would replace the root: refused.
    code, _, stderr = invoke("init", "--out", str(hub))
    assert code == 2
    assert "refusing to replace a root" in stderr

    for partner in ("arbetsformedlingen", "kriminalvarden", "ungdomsmottagning_vast"):
        agency_dir = tmp_path / partner
        code, _, stderr = invoke("generate", "--agency", partner, "--out", str(agency_dir))
        assert code == 0, stderr
        bundle = agency_dir / "bundle.json"
        code, stdout, stderr = invoke("public", "--key", str(agency_dir / f"{partner}.key.json"))
        assert code == 0, stderr
        bundle.write_text(stdout)
        code, _, stderr = invoke(
            "add",
            "--directory-dir",
            str(hub),
            "--public",
            str(bundle),
            "--not-before",
            "2026-01-01T00:00:00+00:00",
            "--not-after",
            "2027-01-01T00:00:00+00:00",
        )
        assert code == 0, stderr
    listed = [e.agency for e in load_directory(hub).agencies]
    assert listed == [HUB, "arbetsformedlingen", "kriminalvarden", "ungdomsmottagning_vast"]

    # The server configuration is rendered from the directory: one user per agency.
    code, stdout, stderr = invoke("nats-config", "--directory-dir", str(hub))
    assert code == 0, stderr
    assert stdout.count("nkey:") == 4
    assert "# kriminalvarden" in stdout


@pytest.mark.parametrize("name", ["Police", "9lives", "a", "x" * 32, "pol-ice", "ab123456"])
def test_generate_refuses_names_that_are_not_agency_names(tmp_path: Path, name: str) -> None:
    code, _, stderr = invoke("generate", "--agency", name, "--out", str(tmp_path))
    assert code == 2
    assert "an agency name is 2-31 characters" in stderr
    assert not any(tmp_path.iterdir())


def test_a_bundle_with_a_bad_agency_name_says_so(tmp_path: Path, hub_dir: Path) -> None:
    keyfile = generate_agency("sis", now=T0, suite=SuiteId.X25519).keyfile
    doc = json.loads(public_bundle(keyfile).model_dump_json())
    doc["agency"] = "SiS Youth Homes"
    path = tmp_path / "bad.pub.json"
    path.write_text(json.dumps(doc))
    code, _, stderr = invoke(
        "add",
        "--directory-dir",
        str(hub_dir),
        "--public",
        str(path),
        "--not-before",
        "2026-01-01T00:00:00+00:00",
        "--not-after",
        "2027-01-01T00:00:00+00:00",
    )
    assert code == 2
    assert "at agency:" in stderr
    assert "SiS Youth Homes" not in stderr


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    generate_dev_keys(keys, now=T0, suite=SuiteId.X25519)
    (keys / "police.key.json").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_private(keys, P)
    (keys / "police.key.json").chmod(0o600)
    assert load_private(keys, P).agency == P


# --- The key ceremony (issue #10): sign-directory, endorse, publish, rotate-root, on a
# copy of keys/dev (root: hub, police, social; threshold 2, the hub required).


@pytest.fixture
def dev_copy(tmp_path: Path) -> Path:
    """A copy of the committed keys/dev (never keys/dev itself), without trusted state."""
    keys = Path(shutil.copytree(DEV_KEYS_DIR, tmp_path / "dev"))
    (keys / "directory-state.json").unlink(missing_ok=True)
    return keys


def ceremony(*args: str) -> tuple[int, str, str]:
    """Run a `sigbus keys` command; a Python exception (a traceback) fails the test."""
    result = runner.invoke(keys_app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.stdout, result.stderr


def assert_one_line_error(code: int, stderr: str, *words: str) -> None:
    assert code == 2
    assert stderr.startswith("error: "), stderr
    assert stderr.count("\n") == 1, stderr
    assert "Traceback" not in stderr
    for word in words:
        assert word in stderr, stderr


def _root_key_file(keys: Path, holder: str) -> str:
    return str(keys / f"root.{holder}.key.json")


def _root_keys(keys: Path, *holders: str) -> list[str]:
    return [arg for h in holders for arg in ("--root-key", _root_key_file(keys, h))]


def test_publish_refuses_a_directory_below_the_root_threshold_then_takes_it_at_it(
    dev_copy: Path,
) -> None:
    before = load_directory(dev_copy)
    school = load_private(dev_copy, "school")
    code, stdout, _ = ceremony(
        "revoke", "--directory-dir", str(dev_copy), "--key-id", school.sealing_key_id,
        "--at", "2030-01-01T00:00:00+00:00", "--root-key", _root_key_file(dev_copy, HUB),
    )  # fmt: skip
    assert code == 0, stdout
    assert "not yet in force" in stdout, stdout
    assert (dev_copy / "directory.pending.json").exists()
    assert load_directory(dev_copy).serial == before.serial  # nothing in force changed

    code, _, stderr = ceremony("publish", str(dev_copy))
    assert_one_line_error(code, stderr, "not published", "1 distinct root key holder")
    assert load_directory(dev_copy).serial == before.serial

    code, stdout, _ = ceremony(
        "sign-directory", str(dev_copy), "--root-key", _root_key_file(dev_copy, "police")
    )
    assert code == 0, stdout
    assert "signed by police; ready" in stdout, stdout
    code, stdout, stderr = ceremony("publish", str(dev_copy))
    assert code == 0, stderr
    assert f"directory serial {before.serial + 1} published" in stdout
    after = load_directory(dev_copy)
    assert after.serial == before.serial + 1
    assert not (dev_copy / "directory.pending.json").exists()
    revoked = next(k for e in after.agencies for k in e.keys if k.key_id == school.sealing_key_id)
    assert revoked.revoked_at == datetime(2030, 1, 1, tzinfo=UTC)


def test_a_threshold_without_the_hub_is_not_published(dev_copy: Path) -> None:
    school = load_private(dev_copy, "school")
    code, stdout, _ = ceremony(
        "revoke", "--directory-dir", str(dev_copy), "--key-id", school.sealing_key_id,
        "--at", "2030-01-01T00:00:00+00:00",
        "--root-key", _root_key_file(dev_copy, "police"),
        "--root-key", _root_key_file(dev_copy, "social"),
    )  # fmt: skip
    assert code == 0
    assert "not yet in force" in stdout
    code, _, stderr = ceremony("publish", str(dev_copy))
    assert_one_line_error(code, stderr, "not published", "required root key holder(s) hub")


def test_publish_without_a_pending_directory_says_so(dev_copy: Path) -> None:
    code, _, stderr = ceremony("publish", str(dev_copy))
    assert_one_line_error(code, stderr, "no pending directory")


def _school_moved_to_its_own_host(dev_copy: Path, tmp_path: Path) -> Path:
    """School's key file lives on school's adapter host, not beside the root keys, so
    nothing endorses for school unless school does (`keys endorse`)."""
    host = tmp_path / "school-host"
    host.mkdir()
    shutil.move(dev_copy / "school.key.json", host / "school.key.json")
    return host / "school.key.json"


def test_a_key_change_needs_the_agency_endorsement_to_be_published(
    dev_copy: Path, tmp_path: Path
) -> None:
    current_key = _school_moved_to_its_own_host(dev_copy, tmp_path)
    new_keys = tmp_path / "school-2028"
    assert ceremony("generate", "--agency", "school", "--out", str(new_keys))[0] == 0
    code, bundle, _ = ceremony("public", "--key", str(new_keys / "school.key.json"))
    assert code == 0
    (tmp_path / "school-2028.pub.json").write_text(bundle)
    before = load_directory(dev_copy)

    code, stdout, _ = ceremony(
        "rotate", "--directory-dir", str(dev_copy),
        "--public", str(tmp_path / "school-2028.pub.json"),
        "--not-before", "2026-01-01T00:00:00+00:00", "--not-after", "2030-01-01T00:00:00+00:00",
        *_root_keys(dev_copy, HUB, "police"),
    )  # fmt: skip
    assert code == 0, stdout
    assert "not yet in force" in stdout, stdout
    assert "school" in stdout, stdout

    # The root threshold alone (hub and police) cannot change school's keys.
    code, _, stderr = ceremony("publish", str(dev_copy))
    assert_one_line_error(code, stderr, "not published", "school without that agency's endorsement")
    assert load_directory(dev_copy).serial == before.serial

    # Neither another agency's key file nor school's new key endorses for school.
    code, _, stderr = ceremony(
        "endorse", str(dev_copy), "--agency", "school", "--key", str(dev_copy / "police.key.json")
    )
    assert_one_line_error(code, stderr, "belongs to another agency")
    code, stdout, _ = ceremony(
        "endorse", str(dev_copy), "--agency", "school", "--key", str(new_keys / "school.key.json")
    )
    assert code == 0, stdout
    assert "endorsement" in stdout, stdout  # still missing: says what
    code, _, stderr = ceremony("publish", str(dev_copy))
    assert_one_line_error(code, stderr, "without that agency's endorsement")

    # School's signing key in force endorses: now it is published.
    code, stdout, _ = ceremony(
        "endorse", str(dev_copy), "--agency", "school", "--key", str(current_key)
    )
    assert code == 0, stdout
    assert "endorsed by school; ready" in stdout, stdout
    code, stdout, stderr = ceremony("publish", str(dev_copy))
    assert code == 0, stderr
    after = load_directory(dev_copy)
    assert after.serial == before.serial + 1
    new = load_private(new_keys, "school")
    assert after.sealing_key("school", at=T0).key_id == new.sealing_key_id


def test_rotate_root_with_the_old_threshold_is_accepted_by_a_party_pinning_the_old_root(
    dev_copy: Path, tmp_path: Path
) -> None:
    agency_host = tmp_path / "police-host"  # pins root version 1, as every agency does
    agency_host.mkdir()
    shutil.copy(dev_copy / "root.json", agency_host / "root.json")
    new_root = tmp_path / "root-v2"
    code, stdout, stderr = ceremony(
        "rotate-root", "--directory-dir", str(dev_copy),
        "--old-key", _root_key_file(dev_copy, HUB), "--old-key", _root_key_file(dev_copy, "police"),
        "--holder", HUB, "--holder", "police", "--holder", "social", "--threshold", "2",
        "--out", str(new_root),
    )  # fmt: skip
    assert code == 0, stderr
    assert "root version 2 written" in stdout
    assert sorted(p.name for p in new_root.iterdir()) == [
        "root.hub.key.json", "root.police.key.json", "root.social.key.json"
    ]  # fmt: skip

    shutil.copy(dev_copy / "directory.json", agency_host / "directory.json")
    code, stdout, stderr = ceremony("show", "--directory-dir", str(agency_host))
    assert code == 0, stderr
    assert "signature verified" in stdout
    trusted = load_trusted_directory(agency_host, now=datetime.now(UTC))
    assert trusted.root is not None
    assert trusted.root.version == 2

    # The old root keys no longer sign a directory on their own.
    school = load_private(dev_copy, "school")
    code, stdout, _ = ceremony(
        "revoke", "--directory-dir", str(dev_copy), "--key-id", school.sealing_key_id,
        "--at", "2030-01-01T00:00:00+00:00",
        *_root_keys(dev_copy, HUB, "police"),
    )  # fmt: skip
    assert code == 0
    assert "not yet in force" in stdout
    code, _, stderr = ceremony("publish", str(dev_copy))
    assert_one_line_error(code, stderr, "no valid signature of the required root key holder(s) hub")


def test_rotate_root_below_the_old_threshold_is_refused_and_writes_nothing(
    dev_copy: Path, tmp_path: Path
) -> None:
    root_before = (dev_copy / "root.json").read_bytes()
    code, _, stderr = ceremony(
        "rotate-root", "--directory-dir", str(dev_copy), "--old-key", _root_key_file(dev_copy, HUB),
        "--holder", HUB, "--holder", "police", "--threshold", "2", "--out", str(tmp_path / "v2"),
    )  # fmt: skip
    assert_one_line_error(code, stderr, "root version 2", "threshold is 2")
    assert (dev_copy / "root.json").read_bytes() == root_before
    assert not (tmp_path / "v2").exists()


def test_a_root_signed_only_by_its_new_keys_is_refused_by_a_party_pinning_the_old_one(
    dev_copy: Path, tmp_path: Path
) -> None:
    """Whoever holds no old root key makes a version 2 of their own and signs the
    directory with it: a party pinning version 1 refuses it, in one line."""
    pinned = load_signed_root(dev_copy)
    new_signers = [(h, HybridPrivateKey.generate()) for h in (HUB, "police", "social")]
    forged = sign_root(
        Root(
            version=2,
            expires_at=datetime.now(UTC) + timedelta(days=365),
            keys=tuple(
                RootKey(
                    key_id=root_key_id_for(h, k.public_key().public_bytes_raw()),
                    holder=h,
                    public_key=k.public_key().public_bytes_raw(),
                )
                for h, k in new_signers
            ),
            threshold=2,
            required_holders=(HUB,),
        ),
        new_signers,
    )
    directory = load_directory(dev_copy)
    signed = sign_directory(
        directory.model_copy(update={"serial": directory.serial + 1}), (pinned, forged), new_signers
    )
    host = tmp_path / "police-host"
    host.mkdir()
    shutil.copy(dev_copy / "root.json", host / "root.json")
    (host / "directory.json").write_text(signed.model_dump_json())
    code, _, stderr = ceremony("show", "--directory-dir", str(host))
    assert_one_line_error(
        code, stderr, "root version 2 carries no valid signature", "root key holder(s) hub"
    )
    with pytest.raises(ConfigError, match="root version 2"):
        load_trusted_directory(host, now=datetime.now(UTC))


def test_the_installed_command_refuses_in_one_line_without_a_traceback(dev_copy: Path) -> None:
    """The same refusal through the real entry point (`sigbus keys ...` as a process)."""
    school = load_private(dev_copy, "school")
    sigbus = [sys.executable, "-c", "from sigbus.cli import entrypoint; entrypoint()", "keys"]
    revoke = subprocess.run(
        [*sigbus, "revoke", "--directory-dir", str(dev_copy), "--key-id", school.sealing_key_id,
         "--at", "2030-01-01T00:00:00+00:00", *_root_keys(dev_copy, HUB)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert revoke.returncode == 0, revoke.stderr
    serial = load_directory(dev_copy).serial + 1
    published = subprocess.run(
        [*sigbus, "publish", str(dev_copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert published.returncode == 2
    assert published.stderr == (
        f"error: not published: directory serial {serial} carries valid signatures of 1 "
        "distinct root key holder(s) of root version 1; its threshold is 2\n"
    )
