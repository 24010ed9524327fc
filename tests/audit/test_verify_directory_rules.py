"""The offline verifier (``sigbus audit verify``) applies the directory rules of issue #10.

Given the directory state the officer kept from the last verification
(``--directory-state``), a rolled-back directory, a frozen (expired) one and one in which
an agency's keys changed without that agency's endorsement are each refused: exit 1,
the reason in English and Swedish, and nothing reported verified. The honest export
against the same state verifies, so each refusal is the directory's alone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from audit_fixtures import (
    ALL_WITNESSES,
    LOG_KEY,
    SIGNED_ROOT,
    fixture_directory,
    key_from_seed,
    make_log,
    signed_directory_json,
    trust_args,
)
from test_dirlog import BOTH, cosigned, logged
from typer.testing import CliRunner

from sigbus.audit.checkpoint import sign_note
from sigbus.audit.dirlog import DIRECTORY_LOG_ORIGIN
from sigbus.cli_audit import audit_app
from sigbus.protocol.directory import Directory, DirectoryState, TrustedDirectory

runner = CliRunner()


def kept_state(tmp_path: Path, directory: Directory) -> Path:
    """The state an officer keeps after trusting ``directory``."""
    trusted = TrustedDirectory(SIGNED_ROOT.model_dump_json().encode())
    trusted.update(signed_directory_json(directory).encode(), datetime.now(UTC))
    assert isinstance(trusted.state, DirectoryState)
    path = tmp_path / "directory-state.json"
    path.write_text(trusted.state.model_dump_json())
    return path


def verify(tmp_path: Path, directory: Directory, state: Path) -> tuple[int, str]:
    export = tmp_path / "log.jsonl"
    export.write_bytes(b"".join(make_log(4, ALL_WITNESSES).export_lines()))
    result = runner.invoke(
        audit_app,
        ["verify", str(export), *trust_args(tmp_path, directory), "--directory-state", str(state)],
    )
    return result.exit_code, result.output


def at_serial(directory: Directory, serial: int, **changes: object) -> Directory:
    return directory.model_copy(update={"serial": serial, **changes})


def test_the_same_directory_against_its_kept_state_verifies(tmp_path: Path) -> None:
    directory = fixture_directory()
    code, output = verify(tmp_path, directory, kept_state(tmp_path, directory))
    assert code == 0, output
    assert "VERIFIED" in output


def test_a_rolled_back_directory_is_refused_offline(tmp_path: Path) -> None:
    newer = at_serial(fixture_directory(), 2)
    code, output = verify(tmp_path, fixture_directory(), kept_state(tmp_path, newer))
    assert code == 1, output
    assert "directory rollback: serial 1 is older than the trusted serial 2" in output
    assert "katalogen är äldre än den senast betrodda" in output
    assert "VERIFIED" not in output


def test_a_frozen_directory_is_refused_offline(tmp_path: Path) -> None:
    """The hub withholds every newer directory: the one it keeps serving runs out."""
    now = datetime.now(UTC)
    current = fixture_directory()
    frozen = at_serial(
        current, 2, issued_at=now - timedelta(days=2), expires_at=now - timedelta(seconds=1)
    )
    code, output = verify(tmp_path, frozen, kept_state(tmp_path, current))
    assert code == 1, output
    assert "directory serial 2 expired at" in output
    assert "katalogen har gått ut" in output
    assert "VERIFIED" not in output


def test_a_key_change_without_the_agencys_endorsement_is_refused_offline(tmp_path: Path) -> None:
    """The hub and police (a root threshold) replace school's witness key: without school's
    endorsement the officer's verifier refuses the directory that would trust it."""
    current = fixture_directory()
    substituted = at_serial(
        fixture_directory({"police": key_from_seed(2), "school": key_from_seed(42)}), 2
    )
    code, output = verify(tmp_path, substituted, kept_state(tmp_path, current))
    assert code == 1, output
    assert "school without that agency's endorsement" in output
    assert "en myndighets nycklar ändrades utan myndighetens egen signatur" in output
    assert "VERIFIED" not in output


def test_the_offline_verifier_refuses_a_directory_not_in_the_cosigned_directory_log(
    tmp_path: Path,
) -> None:
    """``--directory-log``: the directory must be in a directory-log checkpoint that the
    agencies' witness quorum cosigned; one the hub logged for itself alone is refused."""
    directory = fixture_directory()
    export = tmp_path / "log.jsonl"
    export.write_bytes(b"".join(make_log(4, ALL_WITNESSES).export_lines()))
    log = logged(directory)
    proof_file = tmp_path / "directory-log.json"

    def run(note: str) -> tuple[int, str]:
        proof_file.write_text(log.proof(note).model_dump_json())
        args = ["verify", str(export), *trust_args(tmp_path), "--directory-log", str(proof_file)]
        result = runner.invoke(audit_app, args)
        return result.exit_code, result.output

    code, output = run(cosigned(log, *BOTH))
    assert code == 0, output
    assert (
        "serial 1 is entry 0 of the directory-log checkpoint of size 1, cosigned by police, school"
        in output
    )
    code, output = run(sign_note(log.checkpoint_body(), DIRECTORY_LOG_ORIGIN, LOG_KEY))
    assert code == 1, output
    assert (
        "not in the cosigned directory log: directory log: witness quorum not met: 0 of the 2"
        in output
    )
    assert "VERIFIED" not in output
