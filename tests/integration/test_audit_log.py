"""The disclosure log on a real server: witnesses, proofs, export, forks, fencing, crashes."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nats.errors import Error as NatsError
from pydantic import BaseModel
from structlog.testing import capture_logs
from typer.testing import CliRunner, Result

from sigbus.agents import witnessing
from sigbus.agents.runtime import Adapter, Delivered
from sigbus.agents.setup import agency_setup
from sigbus.agents.witnessing import (
    LogProofError,
    UnprovenRelease,
    WitnessRunner,
    log_public_key,
    prove_release,
)
from sigbus.audit.checkpoint import (
    DEFAULT_ORIGIN,
    cosign,
    load_public_key,
    make_checkpoint_body,
    sign_note,
)
from sigbus.audit.entry import EntryOutcome, leaf_hash
from sigbus.audit.export_format import CosignatureRecord
from sigbus.audit.merkle import MerkleTree
from sigbus.audit.verify import verify_export
from sigbus.broker.errors import LogFencedError
from sigbus.broker.log_writer import LogWriter
from sigbus.broker.pipeline import EntryDraft
from sigbus.broker.setup import hub_setup
from sigbus.cli_audit import audit_app, load_trust
from sigbus.export import export_log
from sigbus.protocol.codes import ReferralKind, ReferralReason
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import Referral
from sigbus.protocol.proofs import InclusionRequest, ProofReply
from sigbus.protocol.reasons import HubReason, ReasonCode
from sigbus.protocol.signing import HybridPrivateKey
from sigbus.protocol.subjects import (
    CHECKPOINT_STREAM,
    CHECKPOINT_SUBJECT,
    INBOX_ALL,
    PROOF_INCLUSION,
    inbox_subject,
)
from sigbus.transport.bus import connect
from sigbus.transport.keystore import init_root, load_directory, save_directory
from tests.audit.audit_fixtures import hand_written_export, rechained
from tests.integration.conftest import LUL6, World

P, S, SO = "police", "school", "social"


def referral(world: World) -> Referral:
    return Referral(
        kind=ReferralKind.LUL_6_NOTIFICATION,
        personnummer=world.youth,
        reasons=(ReferralReason.WEAPON,),
        observed_on=datetime.now(UTC).date(),
        contact_function="police_youth_unit",
    )


async def test_witnesses_cosign_and_export_verifies_offline(
    world: World, tmp_path: Path, keys_dir: Path
) -> None:
    await world.open_case_with_consents()
    await world.adapters[P].send(
        MessageType.REFERRAL, referral(world), recipients=(SO,), assertion=LUL6
    )
    await world.settle()
    await world.broker.checkpointer.publish()
    runners = [
        WitnessRunner(a, state_path=tmp_path / f"witness-{a.agency}.json")
        for a in world.adapters.values()
    ]
    for runner in runners:
        await runner.run_once()
        assert runner.cosigned[-1] == world.broker.writer.size
        assert not runner.alarms

    delivered = world.inboxes[SO].received[-1]
    evidence = await prove_release(world.adapters[SO], delivered)
    entry = (await world.log_entries())[evidence.log_index]
    assert (entry.outcome, entry.release_id) == (EntryOutcome.RELEASE, delivered.record.release_id)
    assert evidence.leaf_hash == leaf_hash(entry.canonical_bytes())
    assert evidence.checkpoint.size == world.broker.writer.size

    out = tmp_path / "log.jsonl"
    log_key = log_public_key(world.adapters[SO])
    summary = await export_log(world.broker.js, out, log_key, witnesses=list(world.adapters))
    assert summary.entries == world.broker.writer.size
    assert len(summary.witnesses) == 3
    root = (keys_dir / "root.json").read_bytes()
    trust = load_trust(keys_dir / "directory.json", root, quorum=None)
    report = verify_export(out.read_bytes().splitlines(keepends=True), trust=trust)
    assert (report.entries, report.verdict) == (summary.entries, "verified")

    result = verify_cli(out, keys_dir)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("VERIFIED / VERIFIERAD")
    assert "quorum 3 of 3" in result.output
    lines = out.read_bytes().splitlines(keepends=True)
    lines[3] = lines[3].replace(b'"release"', b'"deny"', 1).replace(b'"recorded"', b'"deny"', 1)
    (tmp_path / "tampered.jsonl").write_bytes(b"".join(lines))
    result = verify_cli(tmp_path / "tampered.jsonl", keys_dir)
    assert result.exit_code == 1
    assert "entry 2: altered" in result.output  # line 3 = entry index 2


def verify_cli(export: Path, keys_dir: Path, *extra: str) -> Result:
    """``sigbus audit verify`` as a compliance officer runs it: pinned root, signed directory."""
    trusted = ["--directory", str(keys_dir / "directory.json"),
               "--root", str(keys_dir / "root.json")]  # fmt: skip
    # audit_app, not the top-level app: its callback would reconfigure logging
    # (level warning) for every later test of the session.
    return CliRunner().invoke(audit_app, ["verify", str(export), *trusted, *extra])


async def test_a_log_the_hub_rewrites_fails_the_officers_verification(
    world: World, tmp_path: Path, keys_dir: Path
) -> None:
    """A real hub run, then every rewrite the hub (holding its real log key) could attempt."""
    await world.open_case_with_consents()
    await _released_referral(world)
    for adapter in world.adapters.values():
        await WitnessRunner(adapter).run_once()
    out = tmp_path / "log.jsonl"
    log_key = log_public_key(world.adapters[SO])
    await export_log(world.broker.js, out, log_key, witnesses=list(world.adapters))
    saved = tmp_path / "officer.note"
    honest = verify_cli(out, keys_dir, "--save-checkpoint", str(saved))
    assert honest.exit_code == 0, honest.output

    lines = out.read_bytes().splitlines(keepends=True)
    entries = [line[:-1] for line in lines[1:-1]]
    trailer = json.loads(lines[-1])
    real = [
        CosignatureRecord(c["witness"], load_public_key(
            base64.b64decode(c["public_key"])), c["line"])
        for c in trailer["cosignatures"]
    ]  # fmt: skip
    hub_log_key = hub_setup(keys_dir).log_key  # the hub's real checkpoint-signing key
    changed = list(entries)
    assert b'"outcome":"release"' in changed[-1]  # the referral's release, turned into a deny
    changed[-1] = changed[-1].replace(b'"outcome":"release"', b'"outcome":"deny"')
    dropped = entries[:2] + entries[3:]
    reordered = [entries[1], entries[0], *entries[2:]]
    for name, rewritten in (("changed", changed), ("dropped", dropped), ("reordered", reordered)):
        new = rechained(rewritten)
        tree = MerkleTree(leaf_hash(line) for line in new)
        note = sign_note(make_checkpoint_body(DEFAULT_ORIGIN, tree.size, tree.root()),
                         DEFAULT_ORIGIN, hub_log_key)  # fmt: skip
        body = note[: note.rindex("\n\n") + 1]
        self_made = [
            CosignatureRecord(c.witness, fresh.public_key(),
                              cosign(body, c.witness, fresh, timestamp=1_800_000_000))
            for c in real
            for fresh in [HybridPrivateKey.generate()]
        ]  # fmt: skip
        for cosigned, records in (("removed", []), ("kept", real), ("self-made", self_made)):
            path = tmp_path / f"{name}-{cosigned}.jsonl"
            path.write_bytes(hand_written_export(new, note, records, log_key))
            result = verify_cli(path, keys_dir)
            assert result.exit_code == 1, (name, cosigned, result.output)
            assert "quorum not met: 0 of the 3" in result.output, (name, cosigned)
            # ... and against the checkpoint the officer kept from the honest run.
            result = verify_cli(path, keys_dir, "--checkpoint", str(saved), "--quorum", "1")
            assert result.exit_code == 1, (name, cosigned)
            assert "fork" in result.output or "rolled back" in result.output

    # Replaced: one witness's real cosignature swapped for a self-made one.
    fresh = HybridPrivateKey.generate()
    body = trailer["checkpoint"][: trailer["checkpoint"].rindex("\n\n") + 1]
    swapped = [*real[:-1], CosignatureRecord(real[-1].witness, fresh.public_key(),
               cosign(body, real[-1].witness, fresh, timestamp=1_800_000_000))]  # fmt: skip
    path = tmp_path / "replaced.jsonl"
    path.write_bytes(hand_written_export(entries, trailer["checkpoint"], swapped, log_key))
    result = verify_cli(path, keys_dir)
    assert result.exit_code == 1
    assert "quorum not met: 2 of the 3" in result.output
    assert verify_cli(path, keys_dir, "--quorum", "2").exit_code == 0

    # A directory signed by another root (with an attacker's log key) is refused.
    rogue_dir = tmp_path / "rogue"
    rogue_dir.mkdir()
    save_directory(rogue_dir, load_directory(keys_dir), init_root(rogue_dir, now=datetime.now(UTC)))
    result = CliRunner().invoke(audit_app, ["verify", str(out), "--directory",
                                      str(rogue_dir / "directory.json"), "--root",
                                      str(keys_dir / "root.json")])  # fmt: skip
    assert result.exit_code == 1
    assert "directory is not trusted: two different roots carry version 1" in result.output
    assert "sv: katalogen är inte betrodd: två olika rotfiler" in result.output


async def _released_referral(world: World, witnesses: tuple[str, ...] = (P, S, SO)) -> Delivered:
    """A LUL 6 § notification released to social services, and a checkpoint covering
    it that ``witnesses`` cosigned (by default every party agency: the quorum)."""
    await world.adapters[P].send(
        MessageType.REFERRAL, referral(world), recipients=(SO,), assertion=LUL6
    )
    await world.settle()
    await world.broker.checkpointer.publish()
    for agency in witnesses:
        await WitnessRunner(world.adapters[agency]).run_once(timeout=0.2)
    return world.inboxes[SO].received[-1]


async def test_a_release_is_proven_only_against_a_quorum_cosigned_checkpoint(
    world: World,
) -> None:
    """Split view: a checkpoint only the hub signed may be a view shown to this recipient
    alone. Without the cosignatures of every party agency (the default quorum) in time,
    the release stays unproven and the security event says so; with them it is proven."""
    delivered = await _released_referral(world, witnesses=(P, SO))
    social = world.adapters[SO]
    with (
        capture_logs() as logs,
        pytest.raises(UnprovenRelease, match="2 of 3 distinct trusted witnesses"),
    ):
        await prove_release(social, delivered, wait_s=0.5)
    unproven = [e for e in logs if e.get("kind") == "release_unproven"]
    assert unproven == [
        {
            "event": "security_event",
            "kind": "release_unproven",
            "agency": SO,
            "log_index": delivered.record.log_index,
            "reason": "witness_quorum_not_reached",
            "log_level": "error",
        }
    ]
    two = await prove_release(social, delivered, quorum=2, wait_s=0.5)
    assert two.witnesses == (P, SO)
    await WitnessRunner(world.adapters[S]).run_once(timeout=0.2)
    every = await prove_release(social, delivered, wait_s=2.0)
    assert every.witnesses == (P, S, SO)
    assert every.checkpoint.size > delivered.record.log_index


async def test_a_recipients_proof_carries_the_leaf_hash_not_the_entry(world: World) -> None:
    """Need to know: the hub proves a release's inclusion with the entry's leaf hash and
    audit path only, so the entry (sender, case, basis, subject ref) stays at the hub."""
    delivered = await _released_referral(world)
    entry = (await world.log_entries())[delivered.record.log_index]
    hashed = leaf_hash(entry.canonical_bytes())
    request = InclusionRequest(index=entry.index, size=world.broker.writer.size)
    # As prove_release asks: the raw reply, before any parsing.
    answer = await witnessing._request(world.adapters[SO], PROOF_INCLUSION, request)
    reply = json.loads(answer)
    assert set(reply) == {"proof", "leaf_hash", "error"}
    assert reply["error"] is None
    assert base64.b64decode(reply["leaf_hash"]) == hashed
    assert delivered.record.leaf_hash == hashed.hex()
    for revealing in (
        entry.canonical_bytes(),
        base64.b64encode(entry.canonical_bytes()),
        entry.message_id.encode(),
        entry.decision_id.encode(),
        b"subj-",
        b"sref-",
    ):
        assert revealing not in answer

    evidence = await prove_release(world.adapters[SO], delivered)
    assert (evidence.log_index, evidence.leaf_hash) == (entry.index, hashed)


async def test_prove_release_refuses_a_leaf_hash_that_is_not_the_signed_one(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    delivered = await _released_referral(world)
    social = world.adapters[SO]
    other = "00" * 32
    # The record names another leaf than the one the hub proves (the hub's reply is honest).
    forged = replace(delivered, record=delivered.record.model_copy(update={"leaf_hash": other}))
    with pytest.raises(LogProofError, match="not the one its release record signs"):
        await prove_release(social, forged)

    # The hub's reply names another leaf than the signed record does.
    real_request = witnessing._request

    async def lying_hub(adapter: Adapter, subject: str, body: BaseModel | None) -> bytes:
        raw = await real_request(adapter, subject, body)
        if not isinstance(body, InclusionRequest):
            return raw
        lie = ProofReply.model_validate_json(raw).model_copy(
            update={"leaf_hash": bytes.fromhex(other)}
        )
        return lie.model_dump_json().encode()

    monkeypatch.setattr(witnessing, "_request", lying_hub)
    with pytest.raises(LogProofError, match="not the one its release record signs"):
        await prove_release(social, delivered)
    # Both agree on a leaf that is not in the tree at that index: the path refutes it.
    with pytest.raises(LogProofError, match="inclusion proof does not verify"):
        await prove_release(social, forged)
    monkeypatch.undo()
    assert (await prove_release(social, delivered)).log_index == delivered.record.log_index


async def test_witness_raises_the_alarm_on_a_forked_checkpoint(
    world: World, keys_dir: Path
) -> None:
    await world.adapters[P].send(
        MessageType.REFERRAL, referral(world), recipients=(SO,), assertion=LUL6
    )
    await world.settle()
    await world.broker.checkpointer.publish()
    runner = WitnessRunner(world.adapters[S])
    await runner.run_once()
    size = world.broker.writer.size
    assert runner.cosigned == [size]
    # A hub that rewrites history: a checkpoint of the same size with another root,
    # properly signed with the real log key.
    forged = sign_note(
        make_checkpoint_body(DEFAULT_ORIGIN, size, b"\x07" * 32),
        DEFAULT_ORIGIN,
        hub_setup(keys_dir).log_key,
    )
    await world.broker.js.publish(CHECKPOINT_SUBJECT, forged.encode(), stream=CHECKPOINT_STREAM)
    await runner.run_once()
    assert len(runner.alarms) == 1
    assert runner.cosigned == [size]  # never cosigned the fork


async def test_two_cases_of_one_person_have_unrelated_subject_refs(world: World) -> None:
    """No person-stable id in the log: each case (and a referral outside any case) has
    its own subject ref; only the hub's encrypted state knows both cases are one person's."""
    first = await world.open_case_with_consents()
    second = await world.open_case_with_consents()
    mid = await world.adapters[P].send(
        MessageType.REFERRAL, referral(world), recipients=(SO,), assertion=LUL6
    )
    await world.settle()
    entries = await world.log_entries()
    refs = {
        scope: {e.subject_ref for e in entries if scope in (e.case_ref, e.message_id)}
        for scope in (first, second, mid)
    }
    assert all(len(found) == 1 and None not in found for found in refs.values())
    assert len(set().union(*refs.values())) == 3
    assert all(ref.startswith("sref-") for found in refs.values() for ref in found if ref)
    state = world.broker.state.cases
    assert state[first].subject_id == state[second].subject_id  # the index, at the hub only
    assert all(state[first].subject_id.encode() not in e.canonical_bytes() for e in entries)


async def test_an_export_holds_no_person_pseudonym(world: World, tmp_path: Path) -> None:
    case = await world.open_case_with_consents()
    await world.adapters[P].send(
        MessageType.REFERRAL, referral(world), recipients=(SO, S), assertion=LUL6
    )
    await world.settle()
    await world.broker.checkpointer.publish()
    out = tmp_path / "log.jsonl"
    await export_log(world.broker.js, out, log_public_key(world.adapters[SO]), witnesses=[])
    exported = out.read_bytes()
    assert b'"subject_ref":"sref-' in exported
    assert b"subj-" not in exported
    assert world.broker.state.cases[case].subject_id.encode() not in exported
    assert world.youth.encode() not in exported


async def test_second_writer_is_fenced(world: World) -> None:
    await world.adapters[P].send(
        MessageType.REFERRAL, referral(world), recipients=(SO,), assertion=LUL6
    )
    await world.settle()
    stale = LogWriter(world.broker.js)  # never recovered: believes the log is empty
    draft = EntryDraft(
        decision_id="dec-fenced",
        decided_at=datetime.now(UTC),
        ingress_seq=99,
        message_id="msg-fencedwriter",
        message_type=None,
        sender=None,
        recipient=None,
        subject_ref=None,
        case_ref=None,
        legal_basis=None,
        statutory=False,
        consent_refs=(),
        rule_ids=(),
        rules_hash="x",
        ciphertext_sha256=None,
        outcome=EntryOutcome.DENY,
        reasons=(HubReason(ReasonCode.MALFORMED_ENVELOPE),),
        release_id=None,
    )
    with pytest.raises(LogFencedError):
        await stale.append(draft)


async def _streams_created(nats_url: str, keys_dir: Path, hub: subprocess.Popen[bytes]) -> None:
    """Wait until the hub process has created its ingress stream (a loaded machine may
    take several seconds to start it); fail if it dies or never does."""
    nc = await connect(nats_url, name="test-wait", creds=hub_setup(keys_dir).creds)
    try:
        js = nc.jetstream()
        for _ in range(300):
            assert hub.poll() is None, "the hub process died while starting"
            try:
                await js.stream_info("SIGBUS_INGRESS")
            except NatsError:
                await asyncio.sleep(0.1)
            else:
                return
        raise AssertionError("the hub process did not create its streams within 30 s")
    finally:
        await nc.close()


async def test_crash_between_log_and_release_resolves_to_exactly_one_release(
    nats_url: str, keys_dir: Path
) -> None:
    """Kill the broker process after the log append, restart it: one release, no more."""
    env = {**os.environ, "SIGBUS_FAULT_CRASH_AFTER_LOG": "1"}
    cmd = [
        sys.executable,
        "-m",
        "sigbus",
        "broker",
        "run",
        "--nats",
        nats_url,
        "--keys",
        str(keys_dir),
        "--ack-wait",
        "2",
    ]
    setup = agency_setup(P, keys_dir)
    police = await setup.connect(nats_url)
    first = subprocess.Popen(cmd, env=env)
    try:
        await _streams_created(nats_url, keys_dir, first)
        world_youth = World(broker=None, adapters={}).youth  # type: ignore[arg-type]
        mid = await police.send(
            MessageType.REFERRAL,
            Referral(
                kind=ReferralKind.LUL_6_NOTIFICATION,
                personnummer=world_youth,
                reasons=(ReferralReason.WEAPON,),
                observed_on=datetime.now(UTC).date(),
                contact_function="police_youth_unit",
            ),
            recipients=(SO,),
            assertion=LUL6,
        )
        code = await asyncio.to_thread(first.wait, 20)
    finally:
        if first.poll() is None:
            first.kill()
    assert code == 70  # died by the injected fault, after logging, before releasing
    nc = await connect(nats_url, name="test-observer", creds=hub_setup(keys_dir).creds)
    js = nc.jetstream()
    inbox = await js.stream_info("SIGBUS_INBOX")
    assert inbox.state.messages == 0  # nothing released yet

    hub = hub_setup(keys_dir)
    from datetime import timedelta

    broker = hub.broker(nats_url, ack_wait=timedelta(seconds=2))
    await broker.start()
    try:
        assert broker.writer.size == 1  # the decision survived the crash
        for _ in range(20):
            await broker.process_batch(timeout=0.5)
            if (await js.stream_info("SIGBUS_INBOX")).state.messages:
                break
        await broker.drain_ingress(idle_timeout=2.5)
        assert broker.writer.size == 1  # resumed, not decided twice
        inbox = await js.stream_info("SIGBUS_INBOX", subjects_filter=INBOX_ALL)
        assert inbox.state.messages == 2  # the release, and the police's decision notice
        assert inbox.state.subjects == {inbox_subject(SO): 1, inbox_subject("police"): 1}
        msg = await js.get_last_msg("SIGBUS_INBOX", inbox_subject(SO))
        assert msg.data is not None
        social = agency_setup(SO, keys_dir)
        delivered = Adapter(social.identity, social.directory, nc).open_release(msg.data)
        assert delivered.header.message_id == mid
        assert delivered.record.log_index == 0
    finally:
        await broker.stop()
        await police.close()
        await nc.close()
