"""Keys in a running system: revocation takes effect without a restart; encrypted keys work."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from sigbus.agents.errors import ReleaseRejected
from sigbus.agents.setup import agency_setup
from sigbus.audit.entry import EntryOutcome
from sigbus.broker.setup import hub_setup
from sigbus.fixtures import birth_date_for_age, fictitious_personnummer
from sigbus.protocol.codes import ReferralKind, ReferralReason
from sigbus.protocol.ids import MessageType
from sigbus.protocol.messages import Referral
from sigbus.protocol.release import parse_release
from sigbus.protocol.subjects import INBOX_STREAM, inbox_subject
from sigbus.transport.files import write_private
from sigbus.transport.keyring import WrongPassphrase, encrypt_keyfile, revoke_key
from sigbus.transport.keystore import (
    PASSPHRASE_ENV,
    load_directory,
    load_private,
    load_root_private,
    private_key_path,
    save_directory,
)
from tests.integration.conftest import LUL6

P, SO = "police", "social"


@pytest.fixture
def keys_copy(keys_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(keys_dir, tmp_path / "keys"))


def referral() -> Referral:
    today = datetime.now(UTC).date()
    return Referral(
        kind=ReferralKind.LUL_6_NOTIFICATION,
        personnummer=fictitious_personnummer(birth_date_for_age(today, 15), 990),
        reasons=(ReferralReason.WEAPON,),
        observed_on=today,
        contact_function="police_youth_unit",
    )


async def test_revocation_takes_effect_in_a_running_hub(nats_url: str, keys_copy: Path) -> None:
    broker = hub_setup(keys_copy).broker(nats_url)
    await broker.start()
    police = await agency_setup(P, keys_copy).connect(nats_url)
    try:
        before = await police.send(
            MessageType.REFERRAL, referral(), recipients=(SO,), assertion=LUL6
        )
        await broker.drain_ingress(idle_timeout=0.3)

        now = datetime.now(UTC)
        directory = load_directory(keys_copy)
        key_id = police.identity.signing_key_id
        revoked = revoke_key(directory, key_id, at=now - timedelta(seconds=1), now=now)
        assert revoked.serial > directory.serial
        save_directory(keys_copy, revoked, load_root_private(keys_copy))

        after = await police.send(
            MessageType.REFERRAL, referral(), recipients=(SO,), assertion=LUL6
        )
        await broker.drain_ingress(idle_timeout=0.3)
        logged = [e for seq in range(1, 10) for e in broker.writer.entries_for_ingress(seq)]
        outcomes = {e.message_id: (e.outcome, e.reasons) for e in logged}
        assert outcomes[before][0] is EntryOutcome.RELEASE
        # Signed by a revoked key, the header vouches for nothing: the deny names the
        # publishing agency under the ingress stand-in id, not the id the bytes claim.
        assert after not in outcomes
        last = logged[-1]
        assert (last.outcome, last.reasons, last.sender) == (
            EntryOutcome.DENY,
            ("revoked_key",),
            P,
        )
        assert last.message_id.startswith("ingress-")
    finally:
        await police.close()
        await broker.stop()


async def test_a_recipient_refuses_a_sender_key_revoked_before_the_release(
    nats_url: str, keys_copy: Path
) -> None:
    """The sender's key is checked when it signed *and* when the hub released it: a
    created_at before the revocation does not bring the key back (issue 10)."""
    broker = hub_setup(keys_copy).broker(nats_url)
    await broker.start()
    police = await agency_setup(P, keys_copy).connect(nats_url)
    try:
        await police.send(MessageType.REFERRAL, referral(), recipients=(SO,), assertion=LUL6)
        await broker.drain_ingress(idle_timeout=0.3)
        stored = await broker.js.get_last_msg(INBOX_STREAM, inbox_subject(SO))
        raw = stored.data or b""
        release = parse_release(raw)
        assert release.envelope.header.created_at < release.record.released_at
        directory = load_directory(keys_copy)
        revoked = revoke_key(
            directory,
            police.identity.signing_key_id,
            at=release.record.released_at,
            now=datetime.now(UTC),
        )
        save_directory(keys_copy, revoked, load_root_private(keys_copy))
        social = await agency_setup(SO, keys_copy).connect(nats_url)
        try:
            with pytest.raises(ReleaseRejected, match="revoked_key"):
                social.open_release(raw)
        finally:
            await social.close()
    finally:
        await police.close()
        await broker.stop()


def test_encrypted_key_file_loads_with_its_passphrase(
    keys_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = load_private(keys_copy, SO)
    encrypted = encrypt_keyfile(plain, "correct horse battery staple")
    write_private(private_key_path(keys_copy, SO), encrypted.model_dump_json().encode())
    assert b"signing_private" not in private_key_path(keys_copy, SO).read_bytes()
    monkeypatch.setenv(PASSPHRASE_ENV, "correct horse battery staple")
    assert agency_setup(SO, keys_copy).identity.signing_key_id == plain.signing_key_id
    monkeypatch.setenv(PASSPHRASE_ENV, "wrong")
    with pytest.raises(WrongPassphrase):
        agency_setup(SO, keys_copy)
