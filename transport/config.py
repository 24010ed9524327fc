"""Where things are: NATS URL, keys, data. Flags beat environment beat defaults."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from sigbus.protocol.ids import AgencyId
from sigbus.protocol.keyfile import PrivateKeyFile
from sigbus.protocol.sealing import SuitePolicy
from sigbus.transport.errors import ConfigError
from sigbus.transport.keystore import DEV_KEYS_DIR, DEV_MARKER, auditor_seed
from sigbus.transport.natsauth import AUDITOR, NatsCredentials

DEFAULT_DATA_DIR = Path("var/sigbus")
UP_STATE_FILE = "sigbus-up.json"
INSECURE_DEV_ENV = "SIGBUS_INSECURE_DEV"
#: Set by ``sigbus --dev`` (and by ``sigbus demo``): the development keys may be used.
DEV_ENV = "SIGBUS_DEV"
#: ``1``: seal to and accept the classical-only X25519 HPKE suite (no post-quantum KEM).
ALLOW_CLASSICAL_SUITE_ENV = "SIGBUS_ALLOW_CLASSICAL_SUITE"


def keys_dir(option: Path | None) -> Path:
    """``--keys``, else ``SIGBUS_KEYS_DIR``, else a source checkout's ``keys/dev``."""
    path = option or Path(os.environ.get("SIGBUS_KEYS_DIR", DEV_KEYS_DIR))
    if not path.is_dir():
        raise ConfigError(
            f"no keys directory at {path}: pass --keys DIR or set SIGBUS_KEYS_DIR. "
            "A new deployment starts with `sigbus keys init --out DIR` (docs/keys.md); "
            "the development keys are in a source checkout's keys/dev"
        )
    if (path / DEV_MARKER).exists():
        if os.environ.get(DEV_ENV) != "1":
            raise ConfigError(
                f"{path} holds the public DEVELOPMENT keys: anyone can read their private "
                "halves. Pass `sigbus --dev …` to use them anyway, or `--keys` for real keys"
            )
        _warn_dev_once(path)
    return path


_warned: set[Path] = set()


def _warn_dev_once(path: Path) -> None:
    """Said on every start, once per process: these keys protect nothing."""
    if path not in _warned:
        _warned.add(path)
        sys.stderr.write(f"sigbus: using the DEVELOPMENT keys in {path} (never for real data)\n")


def local_keys_dir() -> Path | None:
    """The keys directory if there is one (where local agency profiles may live)."""
    path = Path(os.environ.get("SIGBUS_KEYS_DIR", DEV_KEYS_DIR))
    return path if path.is_dir() else None


def data_dir(option: Path | None) -> Path:
    return option or Path(os.environ.get("SIGBUS_DATA_DIR", DEFAULT_DATA_DIR))


def nats_url(option: str | None, data: Path | None = None) -> str:
    """``--nats``, else ``SIGBUS_NATS_URL``, else the server started by ``sigbus up``."""
    if option:
        return option
    if env := os.environ.get("SIGBUS_NATS_URL"):
        return env
    state = data_dir(data) / UP_STATE_FILE
    try:
        return str(json.loads(state.read_text())["nats_url"])
    except (OSError, KeyError, ValueError) as e:
        raise ConfigError(
            "no NATS server: pass --nats URL, set SIGBUS_NATS_URL, or start one with `sigbus up`"
        ) from e


def suite_policy() -> SuitePolicy:
    """Post-quantum HPKE suites only, unless ``SIGBUS_ALLOW_CLASSICAL_SUITE=1``."""
    return SuitePolicy(allow_classical=os.environ.get(ALLOW_CLASSICAL_SUITE_ENV) == "1")


def insecure_dev() -> bool:
    """Set by ``sigbus --insecure-dev``: plaintext NATS without identities. Debugging only."""
    return os.environ.get(INSECURE_DEV_ENV) == "1"


def credentials(agency: AgencyId, keys: Path, keyfile: PrivateKeyFile) -> NatsCredentials:
    if insecure_dev():
        return NatsCredentials(agency=agency, insecure_dev=True)
    if keyfile.nats_seed is None:
        raise ConfigError(f"key file of {agency} has no NATS identity: regenerate it")
    return NatsCredentials(agency=agency, nkey_seed=keyfile.nats_seed, keys_dir=keys)


def auditor_credentials(keys: Path) -> NatsCredentials:
    """The read-only auditor's identity (``sigbus audit export``), never the hub's."""
    if insecure_dev():
        return NatsCredentials(agency=AUDITOR, insecure_dev=True)
    return NatsCredentials(agency=AUDITOR, nkey_seed=auditor_seed(keys), keys_dir=keys)
