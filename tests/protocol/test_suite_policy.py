"""Suite policy: the classical-only HPKE suite (X25519, no post-quantum KEM) is refused
by senders and by the hub unless the configuration explicitly allows it (issue #10)."""

from __future__ import annotations

import dataclasses

import pytest

from sigbus.agents.setup import agency_setup
from sigbus.audit.entry import EntryOutcome
from sigbus.broker.pipeline import HubContext, PipelineConfig, evaluate
from sigbus.broker.state import HubState
from sigbus.protocol.directory import AgencyEntry, DirectoryKey, KeyUse
from sigbus.protocol.envelope import Header, open_body, seal_envelope
from sigbus.protocol.errors import SuiteRefused
from sigbus.protocol.ids import HUB
from sigbus.protocol.messages import Referral
from sigbus.protocol.reasons import ReasonCode
from sigbus.protocol.sealing import (
    SuiteId,
    SuitePolicy,
    data_key_info,
    generate_sealing_key,
    new_data_key,
    open_data_key,
    seal_data_key,
)
from sigbus.transport.config import ALLOW_CLASSICAL_SUITE_ENV, suite_policy
from sigbus.transport.keystore import DEV_KEYS_DIR
from tests.protocol.test_fuzz_envelope import NOW, SO, P, hub_ctx, valid_envelope

ALLOW = SuitePolicy(allow_classical=True)
INFO = data_key_info("msg-suitepolicy", "social", "key-1")


def test_sealing_refuses_the_classical_suite_by_default() -> None:
    pair = generate_sealing_key(SuiteId.X25519)
    with pytest.raises(SuiteRefused) as info:
        seal_data_key(SuiteId.X25519, pair.public_bytes, new_data_key(), INFO)
    assert info.value.reason is ReasonCode.SUITE_NOT_ALLOWED


def test_sealing_to_the_classical_suite_when_explicitly_allowed() -> None:
    pair = generate_sealing_key(SuiteId.X25519)
    key = new_data_key()
    sealed = seal_data_key(SuiteId.X25519, pair.public_bytes, key, INFO, policy=ALLOW)
    assert open_data_key(SuiteId.X25519, pair.private_bytes, sealed, INFO) == key


def test_the_hybrid_suite_is_always_allowed() -> None:
    pair = generate_sealing_key(SuiteId.MLKEM768_X25519)
    key = new_data_key()
    sealed = seal_data_key(SuiteId.MLKEM768_X25519, pair.public_bytes, key, INFO)
    assert open_data_key(SuiteId.MLKEM768_X25519, pair.private_bytes, sealed, INFO) == key


def test_configuration_allows_it_only_when_set_to_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_CLASSICAL_SUITE_ENV, raising=False)
    assert suite_policy() == SuitePolicy(allow_classical=False)
    monkeypatch.setenv(ALLOW_CLASSICAL_SUITE_ENV, "yes")
    assert suite_policy() == SuitePolicy(allow_classical=False)
    monkeypatch.setenv(ALLOW_CLASSICAL_SUITE_ENV, "1")
    assert suite_policy() == SuitePolicy(allow_classical=True)


def _classical_envelope_wire(policy: SuitePolicy) -> bytes:
    """The baseline referral, but sealed to a classical hub key (header suite X25519)."""
    base = valid_envelope()
    pair = generate_sealing_key(SuiteId.X25519)
    header = Header.model_validate(
        {**base.header.model_dump(), "message_id": "msg-classicalsuite", "suite": SuiteId.X25519}
    )
    plaintext = open_body(base, recipient=HUB, suite_private=hub_ctx().identity.sealing_private)
    body = Referral.model_validate_json(plaintext)
    return seal_envelope(
        header,
        body,
        agency_setup(P, DEV_KEYS_DIR).identity,
        recipient=HUB,
        recipient_key_id=base.sealed_key_id,
        recipient_public=pair.public_bytes,
        policy=policy,
    ).to_wire()


def test_a_sender_refuses_a_classical_hub_key_unless_allowed() -> None:
    with pytest.raises(SuiteRefused):
        _classical_envelope_wire(SuitePolicy())
    assert _classical_envelope_wire(ALLOW)


def _evaluate(
    raw: bytes, ctx: HubContext
) -> list[tuple[str | None, EntryOutcome, tuple[str, ...]]]:
    plan = evaluate(
        raw,
        subject_agency=P,
        ingress_seq=11,
        first_seen=lambda _mid: None,
        state=HubState(),
        ctx=ctx,
        now=NOW,
    )
    return [(e.recipient, e.outcome, e.reason_codes()) for e in plan.entries]


def test_the_hub_refuses_an_envelope_of_the_classical_suite() -> None:
    raw = _classical_envelope_wire(ALLOW)
    ((_, outcome, reasons),) = _evaluate(raw, hub_ctx())
    assert outcome is EntryOutcome.DENY
    assert reasons == (ReasonCode.SUITE_NOT_ALLOWED.value,)
    # Allowed by configuration, the suite check passes: this one then fails to open,
    # since the hub's real key is not the one it was sealed to.
    allowing = dataclasses.replace(hub_ctx(), config=PipelineConfig(suite_policy=ALLOW))
    ((_, outcome, reasons),) = _evaluate(raw, allowing)
    assert outcome is EntryOutcome.DENY
    assert reasons[0].startswith(ReasonCode.SEAL_OPEN_FAILED.value)


def _with_classical_recipient_key(ctx: HubContext) -> HubContext:
    """The directory, but social's sealing key replaced by a classical X25519 key."""
    pair = generate_sealing_key(SuiteId.X25519)
    agencies = []
    for entry in ctx.directory.agencies:
        if entry.agency == SO:
            keys = tuple(
                DirectoryKey.model_validate(
                    {**k.model_dump(), "suite": SuiteId.X25519, "public_key": pair.public_bytes}
                )
                if k.use is KeyUse.SEALING
                else k
                for k in entry.keys
            )
            entry = AgencyEntry.model_validate({**entry.model_dump(), "keys": keys})
        agencies.append(entry)
    directory = ctx.directory.model_copy(update={"agencies": tuple(agencies)})
    return dataclasses.replace(ctx, directory=directory)


def test_the_hub_does_not_release_to_a_classical_recipient_key_unless_allowed() -> None:
    raw = valid_envelope().to_wire()
    ctx = _with_classical_recipient_key(hub_ctx())
    assert _evaluate(raw, ctx) == [(SO, EntryOutcome.DENY, (ReasonCode.SUITE_NOT_ALLOWED.value,))]
    allowing = dataclasses.replace(ctx, config=PipelineConfig(suite_policy=ALLOW))
    ((recipient, outcome, _),) = _evaluate(raw, allowing)
    assert (recipient, outcome) == (SO, EntryOutcome.RELEASE)
