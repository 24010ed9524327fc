"""The public development keys are refused unless asked for, and named on every start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sigbus.protocol.directory import KeyUse
from sigbus.protocol.ids import HUB
from sigbus.protocol.signing import HYBRID_PUBLIC_BYTES
from sigbus.transport.keystore import DEV_KEYS_DIR, DEV_MARKER, load_directory, load_private

ROOT = Path(__file__).resolve().parents[1]


def _sigbus(*args: str, dev: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGBUS_")}
    if dev:
        env["SIGBUS_DEV"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "sigbus", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_committed_dev_keys_are_marked() -> None:
    assert (DEV_KEYS_DIR / DEV_MARKER).is_file()


def test_without_dev_the_dev_keys_are_refused(tmp_path: Path) -> None:
    for args in (
        ("up", "--data-dir", str(tmp_path)),
        ("police", "inbox", "--nats", "nats://127.0.0.1:1"),
        ("broker", "run", "--nats", "nats://127.0.0.1:1"),
    ):
        refused = _sigbus(*args, dev=False)
        assert refused.returncode == 2, (args, refused.stderr)
        assert "DEVELOPMENT keys" in refused.stderr
        assert "sigbus --dev" in refused.stderr
        assert "Traceback" not in refused.stderr


def test_with_dev_they_are_used_and_named(tmp_path: Path) -> None:
    shown = _sigbus("--dev", "police", "inbox", "--nats", "nats://127.0.0.1:1", dev=False)
    assert "using the DEVELOPMENT keys" in shown.stderr


def test_dev_keys_are_hybrid_and_every_party_has_a_witness_key_of_its_own() -> None:
    """Issue #10: SIGNING, LOG and WITNESS keys are hybrid Ed25519+ML-DSA-65 (1,984 B);
    each party agency witnesses with a WITNESS key, never its message-signing key."""
    directory = load_directory(DEV_KEYS_DIR)
    for entry in directory.agencies:
        uses = {k.use: k for k in entry.keys}
        assert len(uses[KeyUse.SIGNING].public_key) == HYBRID_PUBLIC_BYTES
        if entry.agency == HUB:
            assert len(uses[KeyUse.LOG].public_key) == HYBRID_PUBLIC_BYTES
            assert KeyUse.WITNESS not in uses
            continue
        witness = uses[KeyUse.WITNESS]
        assert len(witness.public_key) == HYBRID_PUBLIC_BYTES
        assert witness.public_key != uses[KeyUse.SIGNING].public_key
        identity = load_private(DEV_KEYS_DIR, entry.agency).identity()
        assert identity.witness_key is not None
        assert identity.witness_key_id == witness.key_id
        assert identity.witness_key.public_key().public_bytes_raw() == witness.public_key
