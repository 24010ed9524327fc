"""The named bad-input corpus (tests/corpus/*.json) through a real nats-server and broker.

Each case file holds ``name``, ``description``, ``expected_reason`` (as the log
entry's ``reasons`` shows it) and a ``recipe``: how to derive the hostile input
from a valid message. For every case this test asserts:

* the disclosure log gained deny entries only, and the first deny carries exactly
  the expected reason (a recipient-level deny may add the policy's own reasons
  after it: they are listed by the case in ``also_reasons``);
* nothing was released (the inbox stream's message count is unchanged);
* the broker still serves the next good message (it is released).

Recipe keys (all optional; the default is a valid police LUL 6 § referral to
social services):

``raw`` / ``raw_hex``       publish these bytes instead of an envelope
``sender``                  agency whose keys build and sign the message
``publisher``               agency whose adapter publishes (its own ingress subject)
``type``                    message type; ``recipients``: header recipients
``case``                    ``open`` (all parties) or ``open_without_school``
``case_ref``                ``new``: a fresh, never-opened case ref
``body_patch``              merged into the valid body JSON before sealing and signing
``created_at_offset_s``     header created_at = now + offset, signed properly
``signing_key``             ``unknown``: sign with a key the directory does not list
``sealed_key_id``           the sealed key id the sender signs (default: the hub's)
``signed_mutate``           ``flip_sealed_key_byte``: corrupt the sealed key *before*
                            signing, so the signature covers the corrupt key
``keys``                    ``police_signing_revoked``: run on a copy of keys/dev in
                            which the police signing key was revoked an hour ago
``assertion``               the statute asserted in the signed header (default: the
                            sender's referral statute on a referral, else none)
``wire_header_patch``       changes the header after signing (tampering)
``wire_patch``              changes top-level envelope fields after signing
``mutate``                  ``flip_ciphertext_byte``, ``flip_sealed_key_byte``,
                            ``flip_signature_byte`` (Ed25519 half),
                            ``flip_mldsa_signature_byte`` (ML-DSA-65 half),
                            ``pad_to_size`` (with ``size``)
``replay``                  release the message first, then republish the same bytes
                            under another ``Nats-Msg-Id``

Bodies with bad content are sealed and signed validly (raw JSON bytes encrypted
here), so the hub gets as far as the body check.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from sigbus.audit.entry import EntryOutcome, LogEntry
from sigbus.protocol.canonical import (
    BODY_AAD_DOMAIN,
    ENVELOPE_SIGNATURE_DOMAIN,
    canonical_json,
    sha256_hex,
)
from sigbus.protocol.directory import KeyStatus, KeyUse
from sigbus.protocol.envelope import Header
from sigbus.protocol.ids import HUB, AgencyId, MessageType, new_opaque_id
from sigbus.protocol.messages import StatutoryAssertion
from sigbus.protocol.reasons import ReasonCode
from sigbus.protocol.release import Release
from sigbus.protocol.sealing import data_key_info, new_data_key, seal_data_key
from sigbus.protocol.signing import HybridPrivateKey
from sigbus.protocol.subjects import ingress_subject
from sigbus.transport.keystore import (
    DEV_AGENCIES,
    load_directory,
    load_private,
    load_root_private,
    save_directory,
)
from tests.integration.conftest import World

CORPUS_DIR = Path(__file__).resolve().parents[1] / "corpus"
CASE_FILES = sorted(CORPUS_DIR.glob("*.json"))

P, S, SO = "police", "school", "social"


def load_case(path: Path) -> dict[str, Any]:
    case: dict[str, Any] = json.loads(path.read_text())
    assert set(case) <= {
        "name",
        "description",
        "expected_reason",
        "also_reasons",
        "known_bug",
        "recipe",
    }
    assert case["name"] == path.stem, "a case is named after its file"
    assert case["description"]
    assert isinstance(case["recipe"], dict)
    return case


def known_reason(code: str) -> bool:
    if code.startswith("policy:"):
        return True
    return code in {r.value for r in ReasonCode}


def test_corpus_is_well_formed() -> None:
    cases = [load_case(p) for p in CASE_FILES]
    assert len(cases) >= 20
    for case in cases:
        assert known_reason(case["expected_reason"]), case["name"]
    # Every required category of the issue has a case.
    reasons = {c["expected_reason"] for c in cases}
    for required in (
        "not_json",
        "unsupported_version",
        "unknown_type",
        "malformed_envelope",
        "oversize",
        "personnummer_invalid",
        "personnummer_in_free_text",
        "bad_signature",
        "seal_open_failed",
        "unknown_sender_key",
        "revoked_key",
        "sender_not_allowed",
        "replayed_message_id",
        "created_at_too_old",
        "created_at_in_future",
        "recipient_not_party",
        "sender_mismatch",
    ):
        assert required in reasons, required


# -- building inputs ----------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _flip(b64text: str, at: int = 0) -> str:
    raw = bytearray(base64.b64decode(b64text))
    raw[at % len(raw)] ^= 0x01
    return _b64(bytes(raw))


def _substitute(value: Any, youth: str, now: datetime) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, youth, now) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, youth, now) for v in value]
    if not isinstance(value, str):
        return value
    bad_check = youth[:-1] + str((int(youth[-1]) + 1) % 10)
    return (
        value.replace("$youth_bad_check", bad_check)
        .replace("$youth_short", youth[2:])
        .replace("$youth", youth)
        .replace("$now_minus_60s", (now - timedelta(seconds=60)).isoformat())
    )


def valid_body(message_type: MessageType, sender: AgencyId, youth: str) -> dict[str, Any]:
    today = datetime.now(UTC).date().isoformat()
    if message_type is MessageType.REFERRAL:
        police = sender == P
        return {
            "version": 1,
            "kind": "lul_6_notification" if police else "report_of_concern",
            "personnummer": youth,
            "reasons": ["suspected_offence" if police else "school_absence"],
            "observed_on": today,
            "contact_function": "police_youth_unit" if police else "school_counsellor",
        }
    if message_type is MessageType.COMMITMENT_STATUS:
        return {
            "version": 1,
            "commitment_id": "cm-attendance",
            "status": "in_progress",
            "as_of": today,
        }
    if message_type is MessageType.CASE_OPENED:
        return {
            "version": 1,
            "personnummer": youth,
            "guardians_with_custody": ["vh-1"],
            "parties": list(DEV_AGENCIES),
        }
    raise AssertionError(f"no body template for {message_type}")


def build_envelope(
    world: World,
    *,
    sender: AgencyId,
    message_type: MessageType,
    body: dict[str, Any],
    case_ref: str | None,
    recipients: list[str],
    created_at: datetime,
    signing_key: HybridPrivateKey | None = None,
    signing_key_id: str | None = None,
    assertion: dict[str, str] | object | None = ...,
    sealed_key_id: str | None = None,
    corrupt_sealed_key: bool = False,
) -> dict[str, Any]:
    """A sealed, signed envelope as a JSON document, from *raw* body JSON.

    The same steps as :func:`protocol.envelope.seal_envelope`, but the body is not
    validated first, so a body with bad content still arrives validly signed.
    """
    adapter = world.adapters[sender]
    hub_key = adapter.directory.sealing_key(HUB, at=datetime.now(UTC))
    assert hub_key.suite is not None
    header = Header(
        message_id=new_opaque_id("msg"),
        type=message_type,
        sender=sender,
        sender_key_id=signing_key_id or adapter.identity.signing_key_id,
        case_ref=case_ref,
        created_at=created_at,
        recipients=tuple(recipients),
        assertion=_assertion(sender, message_type, assertion),
        suite=hub_key.suite,
    ).model_dump(mode="json")
    plaintext = json.dumps(body).encode()
    data_key = new_data_key()
    nonce = os.urandom(12)
    ciphertext = AESGCM(data_key).encrypt(
        nonce, plaintext, BODY_AAD_DOMAIN + canonical_json(header)
    )
    sealed = seal_data_key(
        hub_key.suite,
        hub_key.public_key,
        data_key,
        data_key_info(header["message_id"], HUB, hub_key.key_id),
    )
    if corrupt_sealed_key:
        sealed = sealed[:40] + bytes([sealed[40] ^ 0x01]) + sealed[41:]
    key_id = sealed_key_id or hub_key.key_id
    signed = ENVELOPE_SIGNATURE_DOMAIN + canonical_json(
        {
            "header": header,
            "ciphertext_sha256": sha256_hex(nonce + ciphertext),
            "sealed_key_sha256": sha256_hex(sealed),
            "sealed_key_id": key_id,
        }
    )
    key = signing_key or adapter.identity.signing_key
    return {
        "header": header,
        "nonce": _b64(nonce),
        "ciphertext": _b64(ciphertext),
        "sealed_key": _b64(sealed),
        "sealed_key_id": key_id,
        "signature": _b64(key.sign(signed)),
    }


def _assertion(
    sender: AgencyId, message_type: MessageType, given: dict[str, str] | object | None
) -> StatutoryAssertion | None:
    if given is not ...:
        return None if given is None else StatutoryAssertion.model_validate(given)
    if message_type is not MessageType.REFERRAL:
        return None
    basis = "lul_6" if sender == P else "reporting_duty"
    return StatutoryAssertion(basis=basis, evidence_id="dnr-corpus-ref")


async def open_case(world: World, parties: tuple[AgencyId, ...]) -> str:
    """Open a case with the young person's and a guardian's consent, all categories."""
    return await world.open_case_with_consents(guardians=("vh-1",), parties=parties)


async def inbox_count(world: World) -> int:
    """Releases stored in any inbox (each sender's decision notices aside)."""
    return len(await world.inbox_items(Release))


async def send_good(world: World) -> str:
    """A valid school report of concern to social services (school is never revoked)."""
    envelope = build_envelope(
        world,
        sender=S,
        message_type=MessageType.REFERRAL,
        body=valid_body(MessageType.REFERRAL, S, world.youth),
        case_ref=None,
        recipients=[SO],
        created_at=datetime.now(UTC),
    )
    mid: str = envelope["header"]["message_id"]
    await world.adapters[S].publish_raw(ingress_subject(S), json.dumps(envelope).encode(), mid)
    return mid


@dataclass(frozen=True)
class Hostile:
    subject: str
    data: bytes
    nats_msg_id: str
    publisher: AgencyId


async def build_hostile(world: World, recipe: dict[str, Any]) -> Hostile:
    sender = AgencyId(recipe.get("sender", "police"))
    publisher = AgencyId(recipe.get("publisher", sender))
    message_type = MessageType(recipe.get("type", "referral"))
    subject = ingress_subject(publisher)
    if "raw" in recipe:
        return Hostile(subject, recipe["raw"].encode(), new_opaque_id("msg"), publisher)
    if "raw_hex" in recipe:
        return Hostile(
            subject,
            bytes.fromhex(recipe["raw_hex"].replace(" ", "")),
            new_opaque_id("msg"),
            publisher,
        )

    case_ref: str | None = None
    if recipe.get("case") == "open":
        case_ref = await open_case(world, DEV_AGENCIES)
    elif recipe.get("case") == "open_without_school":
        case_ref = await open_case(world, (P, SO))
    elif recipe.get("case_ref") == "new":
        case_ref = new_opaque_id("case", 12)
    now = datetime.now(UTC)
    body = valid_body(message_type, sender, world.youth)
    body.update(_substitute(recipe.get("body_patch", {}), world.youth, now))
    signing_key, signing_key_id = None, None
    if recipe.get("signing_key") == "unknown":
        signing_key, signing_key_id = HybridPrivateKey.generate(), f"{sender}-sig-{'0' * 16}"
    envelope = build_envelope(
        world,
        sender=sender,
        message_type=message_type,
        body=body,
        case_ref=case_ref,
        recipients=recipe.get("recipients", [SO]),
        created_at=now + timedelta(seconds=recipe.get("created_at_offset_s", 0)),
        signing_key=signing_key,
        signing_key_id=signing_key_id,
        assertion=recipe.get("assertion", ...),
        sealed_key_id=recipe.get("sealed_key_id"),
        corrupt_sealed_key=recipe.get("signed_mutate") == "flip_sealed_key_byte",
    )
    envelope["header"].update(_substitute(recipe.get("wire_header_patch", {}), world.youth, now))
    envelope.update(recipe.get("wire_patch", {}))
    mutate = recipe.get("mutate")
    if mutate == "flip_ciphertext_byte":
        envelope["ciphertext"] = _flip(envelope["ciphertext"], 3)
    elif mutate == "flip_sealed_key_byte":
        envelope["sealed_key"] = _flip(envelope["sealed_key"], 40)
    elif mutate == "flip_signature_byte":
        envelope["signature"] = _flip(envelope["signature"], 7)
    elif mutate == "flip_mldsa_signature_byte":
        envelope["signature"] = _flip(envelope["signature"], 64 + 100)
    data = json.dumps(envelope).encode()
    if mutate == "pad_to_size":
        size = int(recipe["size"])
        data = data + b" " * (size - len(data))
        assert len(data) == size
    mid: str = envelope["header"]["message_id"]
    if not isinstance(mid, str) or not mid.startswith("msg-"):
        mid = new_opaque_id("msg")
    return Hostile(subject, data, mid, publisher)


# -- the revoked-key world ----------------------------------------------------


def revoked_keys_dir(src: Path, tmp: Path) -> Path:
    """A copy of ``src`` whose directory revokes the police signing key an hour ago."""
    keys = tmp / "keys"
    shutil.copytree(src, keys)
    directory = load_directory(keys)
    revoked_at = datetime.now(UTC) - timedelta(hours=1)
    agencies = []
    for entry in directory.agencies:
        if entry.agency == P:
            entry = entry.model_copy(
                update={
                    "keys": tuple(
                        k.model_copy(update={"status": KeyStatus.REVOKED, "revoked_at": revoked_at})
                        if k.use is KeyUse.SIGNING
                        else k
                        for k in entry.keys
                    )
                }
            )
        agencies.append(entry)
    save_directory(
        keys,
        directory.model_copy(update={"agencies": tuple(agencies), "serial": directory.serial + 1}),
        load_root_private(keys),
    )
    assert load_directory(keys).signing_key(
        P, load_private(keys, P).signing_key_id, at=revoked_at - timedelta(seconds=1)
    )
    return keys


# -- the test -------------------------------------------------------------------


def _reason_matches(entry: LogEntry, expected: str, also: list[str]) -> bool:
    return entry.reasons == (expected, *also)


def _param(path: Path) -> Any:
    """A case with ``known_bug`` is a strict xfail: it fails today, and passes (so the
    marker must go) once the broker is fixed."""
    bug = json.loads(path.read_text()).get("known_bug")
    marks = [pytest.mark.xfail(strict=True, reason=f"BUG: {bug}")] if bug else []
    return pytest.param(path, id=path.stem, marks=marks)


@pytest.mark.parametrize("case_file", [_param(p) for p in CASE_FILES])
async def test_corpus_case(
    case_file: Path, make_world: Any, keys_dir: Path, tmp_path: Path
) -> None:
    case = load_case(case_file)
    recipe: dict[str, Any] = case["recipe"]
    expected: str = case["expected_reason"]
    also: list[str] = case.get("also_reasons", [])
    keys = (
        revoked_keys_dir(keys_dir, tmp_path)
        if recipe.get("keys") == "police_signing_revoked"
        else keys_dir
    )
    world: World = await make_world(keys)

    hostile = await build_hostile(world, recipe)
    publisher = world.adapters[hostile.publisher]
    if recipe.get("replay"):
        await publisher.publish_raw(hostile.subject, hostile.data, hostile.nats_msg_id)
        await world.settle()
        first = await world.entries_for(hostile.nats_msg_id)
        assert first[SO].outcome is EntryOutcome.RELEASE, "the original is released once"
        hostile = Hostile(
            hostile.subject, hostile.data, hostile.nats_msg_id + "-replay", hostile.publisher
        )

    await world.settle()
    log_before = world.broker.writer.size
    inbox_before = await inbox_count(world)
    received_before = {a: list(world.received_ids(a)) for a in DEV_AGENCIES}

    await publisher.publish_raw(hostile.subject, hostile.data, hostile.nats_msg_id)
    await world.settle()

    new = (await world.log_entries())[log_before:]
    assert new, "the hostile input got no log entry"
    assert all(e.outcome is EntryOutcome.DENY for e in new), [(e.outcome, e.reasons) for e in new]
    assert _reason_matches(new[0], expected, also), new[0].reasons
    assert all(
        known_reason(r.split(":")[0]) or r.startswith("policy:") for e in new for r in e.reasons
    )
    assert await inbox_count(world) == inbox_before, "something was released"
    assert {a: world.received_ids(a) for a in DEV_AGENCIES} == received_before

    good = await send_good(world)
    await world.settle()
    entries = await world.entries_for(good)
    assert entries[SO].outcome is EntryOutcome.RELEASE
    assert good in world.received_ids(SO)
    assert await inbox_count(world) == inbox_before + 1
