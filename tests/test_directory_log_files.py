"""The hub appends every directory it puts in force to the directory log, and the agencies
cosign it (issue #10): `sigbus keys renew` twice on a copy of keys/dev gives a
directory-log.json that the offline check accepts with every agency's cosignature; a
witness that cosigned one history refuses another (a fork) and cosigns nothing."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from structlog.testing import capture_logs
from typer.testing import CliRunner

from sigbus.audit.dirlog import DirectoryLeaf, check_directory_logged, parse_directory_log_proof
from sigbus.audit.errors import AuditError, ForkDetected
from sigbus.audit.trust import trust_from_directory, witness_name
from sigbus.cli_keys import keys_app
from sigbus.protocol.signing import HybridPrivateKey
from sigbus.transport.dirlog_files import (
    DIRECTORY_LOG_FILE,
    DIRECTORY_LOG_LEAVES_FILE,
    LEAVES,
    cosign_directory_log,
)
from sigbus.transport.keystore import (
    DEV_KEYS_DIR,
    DIRECTORY_FILE,
    DirectoryWatcher,
    load_directory,
    load_private,
    load_root_private,
    load_trusted_directory,
    log_in_force,
    save_directory,
)
from tests.test_directory_watch import _touch_later

runner = CliRunner()


@pytest.fixture
def dev_copy(tmp_path: Path) -> Path:
    keys = Path(shutil.copytree(DEV_KEYS_DIR, tmp_path / "dev"))
    (keys / "directory-state.json").unlink(missing_ok=True)
    return keys


def renew(keys: Path) -> str:
    result = runner.invoke(keys_app, ["renew", "--directory-dir", str(keys)])
    assert result.exit_code == 0, result.output
    return result.output


def test_every_published_directory_is_logged_and_cosigned_by_every_agency(
    dev_copy: Path,
) -> None:
    first = load_directory(dev_copy).serial
    assert "is entry 0 of the directory log" in renew(dev_copy)
    assert "is entry 1 of the directory log" in renew(dev_copy)
    directory = load_directory(dev_copy)
    assert directory.serial == first + 2
    proof = parse_directory_log_proof((dev_copy / DIRECTORY_LOG_FILE).read_bytes())
    trust = trust_from_directory(directory, root_public=b"", witness_name=witness_name)
    result = check_directory_logged(directory, proof, trust)
    assert (result.checkpoint.size, result.witnesses) == (2, ("police", "school", "social"))
    # The directory before it is in the log, but not the newest entry this proof is for.
    with pytest.raises(AuditError, match="not for this directory"):
        check_directory_logged(directory.model_copy(update={"serial": first + 1}), proof, trust)


def test_a_witness_refuses_a_rewritten_directory_log(dev_copy: Path) -> None:
    renew(dev_copy)
    renew(dev_copy)
    leaves_file = dev_copy / DIRECTORY_LOG_LEAVES_FILE
    honest = LEAVES.validate_json(leaves_file.read_bytes())
    directory = load_directory(dev_copy)
    # The hub rewrites its log: another first entry, the same newest directory.
    forged = [DirectoryLeaf(serial=honest[0].serial, digest="0" * 64), honest[1]]
    leaves_file.write_bytes(LEAVES.dump_json(forged))
    with pytest.raises(ForkDetected, match="two checkpoints of size 2 with different roots"):
        log_in_force(dev_copy, now=datetime.now(UTC))
    # ... or drops its first entry: a shrunk log is refused as well.
    leaves_file.write_bytes(LEAVES.dump_json(honest[1:]))
    police = load_private(dev_copy, "police")
    assert police.witness_private is not None
    key = HybridPrivateKey.from_private_bytes(police.witness_private)
    with pytest.raises(AuditError, match="below the cosigned size 2"):
        log_in_force(dev_copy, now=datetime.now(UTC))
    with pytest.raises(AuditError, match="below the cosigned size 2"):
        cosign_directory_log(dev_copy, "police", key, directory, now=datetime.now(UTC))
    # No agency cosigned the rewritten log.
    proof = parse_directory_log_proof((dev_copy / DIRECTORY_LOG_FILE).read_bytes())
    assert "sigbus/witness/" not in proof.checkpoint


def test_an_adapter_that_cosigned_the_log_refuses_a_directory_not_in_it(dev_copy: Path) -> None:
    renew(dev_copy)
    trusted = load_trusted_directory(dev_copy, now=datetime.now(UTC), agency="police")
    watcher = DirectoryWatcher(dev_copy, trusted, agency="police")
    in_force = watcher.current.serial
    # Root-signed (threshold) but put in place without the hub logging it.
    unlogged = watcher.current.model_copy(update={"serial": in_force + 1})
    save_directory(dev_copy, unlogged, load_root_private(dev_copy))
    _touch_later(dev_copy / DIRECTORY_FILE, 1)
    with capture_logs() as events:
        assert watcher.refresh().serial == in_force
    refused = [e for e in events if e["event"] == "security_event"]
    assert [(e["kind"], e["serial"]) for e in refused] == [("directory_not_logged", in_force + 1)]
    assert "not for this directory" in refused[0]["reason"]
    renew(dev_copy)  # logged and cosigned: now taken
    _touch_later(dev_copy / DIRECTORY_FILE, 2)
    assert watcher.refresh().serial == in_force + 2


def test_an_agency_cosigns_by_hand_with_keys_cosign_directory_log(dev_copy: Path) -> None:
    """Production: the file travels from the hub to each agency and back; an agency
    whose key is not in the hub's keys directory cosigns with the CLI."""
    renew(dev_copy)
    state = dev_copy / "directory-log-witness.school.json"
    cosigned_once = state.read_bytes()
    renew(dev_copy)
    # As the hub published it, before the school cosigned: no school line, and the
    # school's witness state still at the first entry.
    log_file = dev_copy / DIRECTORY_LOG_FILE
    proof = parse_directory_log_proof(log_file.read_bytes())
    school = witness_name("school")
    unsigned = "\n".join(
        line for line in proof.checkpoint.split("\n") if not line.startswith(f"— {school} ")
    )
    assert unsigned != proof.checkpoint
    log_file.write_text(proof.model_copy(update={"checkpoint": unsigned}).model_dump_json())
    state.write_bytes(cosigned_once)
    directory = load_directory(dev_copy)
    trust = trust_from_directory(directory, root_public=b"", witness_name=witness_name)
    with pytest.raises(AuditError, match="quorum"):
        check_directory_logged(directory, parse_directory_log_proof(log_file.read_bytes()), trust)
    key = str(dev_copy / "school.key.json")
    wrong = runner.invoke(
        keys_app,
        ["cosign-directory-log", "--directory-dir", str(dev_copy), "--agency", "police",
         "--key", key],
    )  # fmt: skip
    assert wrong.exit_code != 0
    assert "belongs to another agency" in wrong.output
    done = runner.invoke(
        keys_app,
        ["cosign-directory-log", "--directory-dir", str(dev_copy), "--agency", "school",
         "--key", key],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    assert "cosigned by school" in done.output
    result = check_directory_logged(
        directory, parse_directory_log_proof(log_file.read_bytes()), trust
    )
    assert result.witnesses == ("police", "school", "social")
