"""``sigbus audit fork-evidence export`` and ``sigbus audit verify-fork``, offline."""

from __future__ import annotations

import json
from pathlib import Path

from audit_fixtures import (
    ALL_WITNESSES,
    POLICE_WITNESS,
    key_from_seed,
    make_entries,
    make_log,
    signed_checkpoint,
    trust_args,
)
from typer.testing import CliRunner

from sigbus.agents.witnessing import fork_evidence_path
from sigbus.audit.checkpoint import DEFAULT_ORIGIN, make_checkpoint_body, sign_note
from sigbus.audit.entry import leaf_hash
from sigbus.audit.errors import ForkDetected
from sigbus.audit.merkle import MerkleTree
from sigbus.audit.splitview import ForkEvidence
from sigbus.cli_audit import audit_app
from tests.audit.audit_fixtures import rechained

runner = CliRunner()
TREE = MerkleTree(leaf_hash(line) for line in make_entries(6))


def other_history() -> MerkleTree:
    entries = make_entries(6)
    entries[2] = entries[2].replace(b'"police"', b'"school"', 1)
    return MerkleTree(leaf_hash(line) for line in rechained(entries))


def saved(tmp_path: Path, first: str, second: str, proof: tuple[bytes, ...] = ()) -> Path:
    """A witness's state file with one fork evidence file next to it, as the runner saves."""
    state = tmp_path / "witness-police.json"
    fork = ForkDetected("x", previous=first, candidate=second, consistency_proof=proof)
    evidence = ForkEvidence.of(
        fork,
        origin=DEFAULT_ORIGIN,
        detected_by=POLICE_WITNESS,
        detected_at="2026-11-23T10:00:00+00:00",
        source="gossip",
        peer="school",
    )
    fork_evidence_path(state, 1).write_text(evidence.model_dump_json(indent=2))
    return state


def export_and_verify(tmp_path: Path, state: Path, *extra: str) -> tuple[int, str]:
    out = tmp_path / "fork.json"
    exported = runner.invoke(
        audit_app, ["fork-evidence", "export", "--witness-state", str(state), "--out", str(out)]
    )
    assert exported.exit_code == 0, exported.output
    assert out.stat().st_mode & 0o777 == 0o600
    result = runner.invoke(audit_app, ["verify-fork", str(out), *trust_args(tmp_path), *extra])
    return result.exit_code, result.output


def test_a_same_size_fork_is_proven_in_english_and_swedish(tmp_path: Path) -> None:
    state = saved(tmp_path, signed_checkpoint(TREE), signed_checkpoint(other_history()))
    code, output = export_and_verify(tmp_path, state)
    assert code == 0, output
    assert "fork proven" in output
    assert "forken bevisad" in output
    assert "size 6" in output
    code, output = export_and_verify(tmp_path, state, "--json")
    document = json.loads(output)
    assert (code, document["verdict"], document["fork_proven"]) == (0, "fork-proven", True)
    assert document["sizes"] == [6, 6]


def test_two_consistent_checkpoints_are_no_fork(tmp_path: Path) -> None:
    proof = tuple(TREE.consistency_proof(3, 6))
    state = saved(tmp_path, signed_checkpoint(TREE, 3), signed_checkpoint(TREE), proof)
    code, output = export_and_verify(tmp_path, state)
    assert code == 1
    assert "no fork" in output
    assert "ingen fork" in output


def test_a_failed_proof_between_different_sizes_is_not_proven_offline(tmp_path: Path) -> None:
    state = saved(tmp_path, signed_checkpoint(TREE, 3), signed_checkpoint(other_history()))
    code, output = export_and_verify(tmp_path, state)
    assert code == 3
    assert "not proven offline" in output


def test_evidence_not_signed_by_the_directory_log_key_is_refused(tmp_path: Path) -> None:
    body = make_checkpoint_body(DEFAULT_ORIGIN, 6, other_history().root())
    forged = sign_note(body, DEFAULT_ORIGIN, key_from_seed(77))
    state = saved(tmp_path, signed_checkpoint(TREE), forged)
    code, output = export_and_verify(tmp_path, state)
    assert code == 1
    assert "not signed by a log key of the directory" in output
    assert "fork proven" not in output


def test_without_trusted_inputs_nothing_is_proven(tmp_path: Path) -> None:
    state = saved(tmp_path, signed_checkpoint(TREE), signed_checkpoint(other_history()))
    evidence = fork_evidence_path(state, 1)
    result = runner.invoke(audit_app, ["verify-fork", str(evidence)])
    assert result.exit_code == 2
    assert "fork proven" not in result.output
    missing = runner.invoke(
        audit_app, ["fork-evidence", "export", "--witness-state", str(tmp_path / "none.json")]
    )
    assert missing.exit_code == 2
    assert "no fork evidence" in missing.output


def test_verify_refuses_an_export_forked_from_a_checkpoint_the_officer_holds(
    tmp_path: Path,
) -> None:
    """Offline split view: the hub hands the officer an export of another history than
    the checkpoints the officer kept (same size, and a prefix). Both fail, naming the fork
    and the size; the honest export with the same checkpoints verifies."""
    log = make_log(6, ALL_WITNESSES)
    export = tmp_path / "log.jsonl"
    export.write_bytes(b"".join(log.export_lines()))
    trusted = trust_args(tmp_path)
    for size in (6, 3):
        held = tmp_path / f"held-{size}.txt"
        held.write_text(signed_checkpoint(other_history(), size))
        result = runner.invoke(
            audit_app, ["verify", str(export), *trusted, "--checkpoint", str(held)]
        )
        assert result.exit_code == 1, result.output
        assert f"fork: the earlier checkpoint of size {size} does not match" in result.output
        assert "VERIFIED" not in result.output
        honest = tmp_path / f"honest-{size}.txt"
        honest.write_text(signed_checkpoint(log.tree, size))
        ok = runner.invoke(
            audit_app, ["verify", str(export), *trusted, "--checkpoint", str(honest)]
        )
        assert ok.exit_code == 0, ok.output
