"""Where things are: NATS URL, keys, data. Flags beat environment beat defaults."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from agents.runtime import Adapter
from broker.pipeline import HubContext
from broker.service import Broker
from policy import Rules, default_rules
from protocol.directory import Directory
from protocol.identity import AgencyIdentity
from protocol.ids import AgencyId
from protocol.keyfile import PrivateKeyFile
from sigbus.errors import ConfigError
from sigbus.keystore import DEV_KEYS_DIR, DirectoryWatcher, load_directory, load_private
from sigbus.natsauth import NatsCredentials

DEFAULT_DATA_DIR = Path("var/sigbus")
UP_STATE_FILE = "sigbus-up.json"
INSECURE_DEV_ENV = "SIGBUS_INSECURE_DEV"


def keys_dir(option: Path | None) -> Path:
    return option or Path(os.environ.get("SIGBUS_KEYS_DIR", DEV_KEYS_DIR))


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


@dataclass(frozen=True)
class AgencySetup:
    identity: AgencyIdentity
    directory: Directory
    creds: NatsCredentials
    keys_dir: Path

    async def connect(self, url: str) -> Adapter:
        adapter = await Adapter.connect(url, self.identity, self.directory, self.creds)
        adapter.directory_source = DirectoryWatcher(self.keys_dir, self.directory).refresh
        return adapter


def insecure_dev() -> bool:
    """Set by ``sigbus --insecure-dev``: plaintext NATS without identities. Debugging only."""
    return os.environ.get(INSECURE_DEV_ENV) == "1"


def credentials(agency: AgencyId, keys: Path, keyfile: PrivateKeyFile) -> NatsCredentials:
    if insecure_dev():
        return NatsCredentials(agency=agency, insecure_dev=True)
    if keyfile.nats_seed is None:
        raise ConfigError(f"key file of {agency.value} has no NATS identity: regenerate it")
    return NatsCredentials(agency=agency, nkey_seed=keyfile.nats_seed, keys_dir=keys)


def agency_setup(agency: AgencyId, keys: Path) -> AgencySetup:
    keyfile = load_private(keys, agency)
    return AgencySetup(
        identity=keyfile.identity(),
        directory=load_directory(keys),
        creds=credentials(agency, keys, keyfile),
        keys_dir=keys,
    )


@dataclass(frozen=True)
class HubSetup:
    ctx: HubContext
    state_key: bytes
    log_key: Ed25519PrivateKey
    creds: NatsCredentials
    watcher: DirectoryWatcher

    def broker(
        self, url: str, *, ack_wait: timedelta = timedelta(seconds=30), replicas: int = 1
    ) -> Broker:
        return Broker(
            url,
            self.ctx,
            self.state_key,
            self.log_key,
            self.creds,
            ack_wait=ack_wait,
            replicas=replicas,
            directory_source=self.watcher.refresh,
        )


def hub_setup(keys: Path, rules: Rules | None = None) -> HubSetup:
    keyfile = load_private(keys, AgencyId.HUB)
    if keyfile.hub is None:
        raise ConfigError("the hub key file lacks the hub secrets")
    ctx = HubContext(
        identity=keyfile.identity(),
        pseudonym_key=keyfile.hub.pseudonym_key,
        directory=load_directory(keys),
        rules=rules or default_rules(),
    )
    return HubSetup(
        ctx=ctx,
        state_key=keyfile.hub.state_key,
        creds=credentials(AgencyId.HUB, keys, keyfile),
        watcher=DirectoryWatcher(keys, ctx.directory),
        log_key=Ed25519PrivateKey.from_private_bytes(keyfile.hub.log_signing_private),
    )
