"""``sigbus audit`` run the way a compliance officer runs it: on an export file."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from audit_fixtures import (
    ALL_WITNESSES,
    LOG_KEY,
    ROOT_KEY,
    ROOT_SIGNERS,
    hybrid_from_seed,
    key_from_seed,
    make_log,
    signed_checkpoint,
    signed_directory_json,
    trust_args,
)
from typer.testing import CliRunner

from sigbus.audit.checkpoint import DEFAULT_ORIGIN, note_body, public_key_bytes, sign_note
from sigbus.cli_audit import audit_app

runner = CliRunner()
COUNT = 9


@pytest.fixture
def export_file(tmp_path: Path) -> Path:
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"".join(make_log(COUNT, ALL_WITNESSES).export_lines()))
    return path


@pytest.fixture
def trusted(tmp_path: Path) -> list[str]:
    return trust_args(tmp_path)


def key_b64(key: object) -> str:
    return base64.b64encode(public_key_bytes(key.public_key())).decode()  # type: ignore[attr-defined]


def test_verify_intact_file_prints_the_trusted_verdict(
    export_file: Path, trusted: list[str]
) -> None:
    result = runner.invoke(audit_app, ["verify", str(export_file), *trusted])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("VERIFIED / VERIFIERAD")
    assert f"  entries: {COUNT} entries intact and in order; tree size {COUNT}" in lines[1]
    assert lines[2].startswith("  poster: ")
    assert "signed by the pinned root key root-" in lines[3]
    assert "quorum 2 of 2 distinct trusted witnesses" in result.output
    assert "  vittnen: 2 av 2 betrodda vittnen" in result.output


def test_a_bare_root_public_key_is_no_longer_a_root(
    export_file: Path, trusted: list[str], tmp_path: Path
) -> None:
    old_style = tmp_path / "root.pub"
    old_style.write_text(key_b64(ROOT_KEY.ed25519) + "\n")
    result = runner.invoke(audit_app, ["verify", str(export_file), *trusted[:3], str(old_style)])
    assert result.exit_code == 1
    assert "root.json) is malformed" in result.output
    assert "VERIFIED" not in result.output


def test_a_directory_signed_by_one_root_key_fails(export_file: Path, tmp_path: Path) -> None:
    args = trust_args(tmp_path)
    Path(args[1]).write_text(signed_directory_json(root=ROOT_SIGNERS[:1]))
    result = runner.invoke(audit_app, ["verify", str(export_file), *args])
    assert result.exit_code == 1
    assert "FAIL / UNDERKÄND: the directory is not trusted" in result.output
    assert "1 distinct root key holder(s) of root version 1; its threshold is 2" in result.output
    assert "sv: katalogen är inte betrodd: för få av rotnyckelinnehavarna" in result.output
    assert "VERIFIED" not in result.output


def test_a_directory_without_the_hub_root_key_fails(export_file: Path, tmp_path: Path) -> None:
    args = trust_args(tmp_path)
    Path(args[1]).write_text(signed_directory_json(root=ROOT_SIGNERS[1:]))
    result = runner.invoke(audit_app, ["verify", str(export_file), *args])
    assert result.exit_code == 1
    assert "required root key holder(s) hub" in result.output


def test_without_trusted_inputs_the_command_refuses(export_file: Path, trusted: list[str]) -> None:
    for partial in ([], trusted[:2], trusted[2:]):
        result = runner.invoke(audit_app, ["verify", str(export_file), *partial])
        assert result.exit_code == 2
        assert "--directory DIR_FILE" in result.output
        assert "VERIFIED" not in result.output
        assert len(result.output.strip().splitlines()) == 1


def test_self_consistency_only_never_says_ok(export_file: Path, trusted: list[str]) -> None:
    result = runner.invoke(audit_app, ["verify", str(export_file), "--self-consistency-only"])
    assert result.exit_code == 3
    assert result.output.startswith("NOT VERIFIED / INTE VERIFIERAD")
    assert "nothing is proven" in result.output
    assert "OK" not in result.output
    as_json = runner.invoke(
        audit_app, ["verify", str(export_file), "--self-consistency-only", "--json"]
    )
    assert as_json.exit_code == 3
    document = json.loads(as_json.output)
    assert (document["verdict"], document["ok"]) == ("self-consistent-only", False)
    mixed = runner.invoke(
        audit_app, ["verify", str(export_file), "--self-consistency-only", *trusted]
    )
    assert mixed.exit_code == 2


def test_json_verdict_carries_the_same_facts(export_file: Path, trusted: list[str]) -> None:
    result = runner.invoke(audit_app, ["verify", str(export_file), "--json", *trusted])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document["verdict"] == "verified"
    assert (document["tree_size"], document["quorum"]) == (
        COUNT,
        {"required": 2, "met": 2, "of": 2},
    )
    assert [c["agency"] for c in document["cosignatures"]] == ["police", "school"]
    assert document["log_key_id"].startswith("hub-sig-")
    assert document["root_key_id"].startswith("root-")


def test_quorum_option_and_its_range(tmp_path: Path, trusted: list[str]) -> None:
    path = tmp_path / "one.jsonl"
    path.write_bytes(b"".join(make_log(COUNT, ALL_WITNESSES[:1]).export_lines()))
    short = runner.invoke(audit_app, ["verify", str(path), *trusted])
    assert short.exit_code == 1
    assert "quorum not met: 1 of the 2" in short.output
    assert "never cosigned: school" in short.output
    assert runner.invoke(audit_app, ["verify", str(path), *trusted, "--quorum", "1"]).exit_code == 0
    for out_of_range in ("0", "3"):
        result = runner.invoke(audit_app, ["verify", str(path), *trusted, "--quorum", out_of_range])
        assert result.exit_code == 2
        assert "out of range" in result.output


def test_a_directory_signed_by_another_root_fails(export_file: Path, tmp_path: Path) -> None:
    args = trust_args(tmp_path)
    rogue = [("hub", hybrid_from_seed(70)), ("police", hybrid_from_seed(71))]
    Path(args[1]).write_text(signed_directory_json(root=rogue))
    result = runner.invoke(audit_app, ["verify", str(export_file), *args])
    assert result.exit_code == 1
    assert "directory is not trusted" in result.output
    assert "required root key holder(s) hub" in result.output


def test_save_checkpoint_then_use_it_next_time(
    export_file: Path, trusted: list[str], tmp_path: Path
) -> None:
    saved = tmp_path / "proved.note"
    first = runner.invoke(
        audit_app, ["verify", str(export_file), *trusted, "--save-checkpoint", str(saved)]
    )
    assert first.exit_code == 0, first.output
    note = saved.read_text()
    assert note.count("\u2014 sigbus/witness/") == 2  # kept with the cosignatures that counted
    again = runner.invoke(
        audit_app, ["verify", str(export_file), *trusted, "--checkpoint", str(saved)]
    )
    assert again.exit_code == 0, again.output
    assert f"earlier checkpoints at tree sizes {COUNT}" in again.output
    # A checkpoint of a longer log than this export: the export was rolled back.
    longer = tmp_path / "longer.note"
    longer.write_text(signed_checkpoint(make_log(COUNT + 1).tree))
    rolled = runner.invoke(
        audit_app, ["verify", str(export_file), *trusted, "--checkpoint", str(longer)]
    )
    assert rolled.exit_code == 1
    assert "rolled back" in rolled.output
    # An earlier checkpoint signed by anyone but the directory's log key fails the run.
    foreign = tmp_path / "foreign.note"
    foreign.write_text(sign_note(note_body(note), DEFAULT_ORIGIN, key_from_seed(71)))
    refused = runner.invoke(
        audit_app, ["verify", str(export_file), *trusted, "--checkpoint", str(foreign)]
    )
    assert refused.exit_code == 1
    assert "not validly signed by a hub log key in the directory" in refused.output
    # Nothing is saved from a run that did not verify.
    failed_save = tmp_path / "never.note"
    runner.invoke(
        audit_app,
        [
            "verify",
            str(export_file),
            *trusted,
            "--checkpoint",
            str(longer),
            "--save-checkpoint",
            str(failed_save),
        ],
    )
    assert not failed_save.exists()


def test_verify_names_the_first_bad_entry(export_file: Path, trusted: list[str]) -> None:
    lines = export_file.read_bytes().splitlines(keepends=True)
    lines[5] = lines[5].replace(b'"ingress_seq":', b'"ingress_seq":1', 1)
    export_file.write_bytes(b"".join(lines))
    result = runner.invoke(audit_app, ["verify", str(export_file), *trusted])
    assert result.exit_code == 1
    assert "FAIL / UNDERKÄND: entry 4:" in result.output


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
    denies = [json.loads(line) for line in result.stdout.splitlines()]
    assert [entry["index"] for entry in denies] == [2, 5, 8]
    by_case = runner.invoke(
        audit_app, ["query", str(export_file), "--case", "case-0001", "--agency", "social"]
    )
    assert [json.loads(x)["index"] for x in by_case.stdout.splitlines()] == [1]
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
    assert [json.loads(x)["index"] for x in period.stdout.splitlines()] == [3, 4]
    subject = runner.invoke(audit_app, ["query", str(export_file), "--subject-ref", "sref-0002"])
    assert [json.loads(x)["index"] for x in subject.stdout.splitlines()] == [2, 7]


def test_query_says_how_many_matched(export_file: Path) -> None:
    result = runner.invoke(audit_app, ["query", str(export_file), "--outcome", "deny"])
    assert result.exit_code == 0, result.output
    assert f"3 of {COUNT} entries matched" in result.stderr
    assert "matched" not in result.stdout  # stdout stays JSON Lines for jq


@pytest.mark.parametrize(
    ("option", "value", "listed"),
    [
        ("--outcome", "released", "deny, recorded, release, retraction"),
        ("--agency", "skola", "police"),
        ("--legal-basis", "osl-10-2", "consent"),
    ],
)
def test_a_misspelt_filter_exits_2_and_lists_the_valid_values(
    export_file: Path, option: str, value: str, listed: str
) -> None:
    """A typo must not read as "no disclosures" (issue #14)."""
    result = runner.invoke(audit_app, ["query", str(export_file), option, value])
    assert result.exit_code == 2, result.output
    assert f"{option} {value!r} is not a known value" in result.stderr
    assert listed in result.stderr
    assert result.stdout == ""


def test_verify_proof_against_a_signed_checkpoint(export_file: Path, tmp_path: Path) -> None:
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
