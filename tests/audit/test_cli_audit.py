"""``sigbus audit`` run the way a compliance officer runs it: on an export file."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from audit_fixtures import LOG_KEY, POLICE_KEY, POLICE_WITNESS, key_from_seed, make_log
from typer.testing import CliRunner

from sigbus.audit.checkpoint import public_key_bytes
from sigbus.cli_audit import audit_app

runner = CliRunner()
COUNT = 9


@pytest.fixture
def export_file(tmp_path: Path) -> Path:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"".join(make_log(COUNT, [(POLICE_WITNESS, POLICE_KEY)]).export_lines()))
    return path


def key_b64(key: object) -> str:
    return base64.b64encode(public_key_bytes(key.public_key())).decode()  # type: ignore[attr-defined]


def test_verify_intact_file(export_file: Path) -> None:
    result = runner.invoke(audit_app, ["verify", str(export_file), "--log-key", key_b64(LOG_KEY)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"OK: {COUNT} entries intact")
    assert "(trusted key)" in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_verify_with_key_file_and_wrong_key(export_file: Path, tmp_path: Path) -> None:
    key_file = tmp_path / "log.pub"
    key_file.write_text(key_b64(LOG_KEY) + "\n")
    assert (
        runner.invoke(audit_app, ["verify", str(export_file), "--log-key", str(key_file)]).exit_code
        == 0
    )
    wrong = runner.invoke(
        audit_app, ["verify", str(export_file), "--log-key", key_b64(key_from_seed(9))]
    )
    assert wrong.exit_code == 1
    assert "not validly signed" in wrong.output


def test_verify_names_the_first_bad_entry(export_file: Path) -> None:
    lines = export_file.read_bytes().splitlines(keepends=True)
    lines[5] = lines[5].replace(b'"ingress_seq":', b'"ingress_seq":1', 1)
    export_file.write_bytes(b"".join(lines))
    result = runner.invoke(audit_app, ["verify", str(export_file)])
    assert result.exit_code == 1
    assert "FAIL: entry 4:" in result.output


def test_prove_and_verify_proofs(export_file: Path, tmp_path: Path) -> None:
    inclusion = runner.invoke(audit_app, ["prove", "inclusion", str(export_file), "3"])
    assert inclusion.exit_code == 0, inclusion.output
    document = json.loads(inclusion.output)
    assert (document["type"], document["index"], document["size"]) == ("inclusion", 3, COUNT)
    proof_file = tmp_path / "inclusion.json"
    proof_file.write_text(inclusion.output)
    assert runner.invoke(audit_app, ["verify-proof", str(proof_file)]).exit_code == 0

    document["index"] = 4
    proof_file.write_text(json.dumps(document))
    bad = runner.invoke(audit_app, ["verify-proof", str(proof_file)])
    assert bad.exit_code == 1
    assert "does not verify" in bad.output

    consistency = runner.invoke(audit_app, ["prove", "consistency", str(export_file), "3", "9"])
    assert consistency.exit_code == 0, consistency.output
    assert json.loads(consistency.output)["type"] == "consistency"
    ok = runner.invoke(audit_app, ["verify-proof", "-"], input=consistency.output)
    assert ok.exit_code == 0
    assert "consistency proof verifies" in ok.output


def test_prove_refuses_a_tampered_file(export_file: Path) -> None:
    lines = export_file.read_bytes().splitlines(keepends=True)
    del lines[2]
    export_file.write_bytes(b"".join(lines))
    result = runner.invoke(audit_app, ["prove", "inclusion", str(export_file), "0"])
    assert result.exit_code == 1
    assert "refusing" in result.output


def test_query_filters(export_file: Path) -> None:
    result = runner.invoke(audit_app, ["query", str(export_file), "--outcome", "deny"])
    assert result.exit_code == 0, result.output
    denies = [json.loads(line) for line in result.output.splitlines()]
    assert [entry["index"] for entry in denies] == [2, 5, 8]
    by_case = runner.invoke(
        audit_app, ["query", str(export_file), "--case", "case-0001", "--agency", "social"]
    )
    assert [json.loads(x)["index"] for x in by_case.output.splitlines()] == [1]
    period = runner.invoke(
        audit_app,
        [
            "query",
            str(export_file),
            "--since",
            "2026-11-23T09:00:03+00:00",
            "--until",
            "2026-11-23T10:00:05+01:00",
        ],
    )
    assert [json.loads(x)["index"] for x in period.output.splitlines()] == [3, 4]
    subject = runner.invoke(audit_app, ["query", str(export_file), "--subject-ref", "sref-0002"])
    assert [json.loads(x)["index"] for x in subject.output.splitlines()] == [2, 7]


def test_verify_proof_against_a_signed_checkpoint(export_file: Path, tmp_path: Path) -> None:
    from audit_fixtures import signed_checkpoint

    log = make_log(COUNT)
    current, older = tmp_path / "current.note", tmp_path / "older.note"
    current.write_text(signed_checkpoint(log.tree))
    older.write_text(signed_checkpoint(log.tree, 3))
    key = key_b64(LOG_KEY)
    inclusion = runner.invoke(audit_app, ["prove", "inclusion", str(export_file), "4"]).output
    consistency = runner.invoke(
        audit_app, ["prove", "consistency", str(export_file), "3", str(COUNT)]
    ).output

    def run(proof: str, note: Path, log_key: str = key) -> tuple[int, str]:
        result = runner.invoke(
            audit_app,
            ["verify-proof", "-", "--checkpoint", str(note), "--log-key", log_key],
            input=proof,
        )
        return result.exit_code, result.output

    assert run(inclusion, current)[0] == 0
    assert "matches the checkpoint of size 9" in run(inclusion, current)[1]
    assert run(consistency, current)[0] == 0
    assert run(consistency, older)[0] == 0  # the older checkpoint a witness kept
    code, output = run(inclusion, older)  # an inclusion proof for another tree size
    assert code == 1
    assert "size 3" in output
    code, output = run(inclusion, current, key_b64(key_from_seed(9)))  # not the log's key
    assert code == 1
    assert "does not match the checkpoint" in output
    document = json.loads(inclusion)  # a self-consistent proof for a different tree
    document.update(leaf_hash=base64.b64encode(b"\x07" * 32).decode(), proof=[])
    document.update(index=0, size=1, root=document["leaf_hash"])
    alone = runner.invoke(audit_app, ["verify-proof", "-"], input=json.dumps(document))
    assert alone.exit_code == 0
    assert run(json.dumps(document), current)[0] == 1
    missing_key = runner.invoke(audit_app, ["verify-proof", "-", "--checkpoint", str(current)])
    assert missing_key.exit_code == 2
