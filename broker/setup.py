"""The hub from its keys directory: context, state and log keys, NATS credentials."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from sigbus.broker.pipeline import HubContext
from sigbus.broker.service import Broker
from sigbus.policy import Rules, default_rules
from sigbus.protocol.ids import AgencyId
from sigbus.transport.config import credentials
from sigbus.transport.errors import ConfigError
from sigbus.transport.keystore import DirectoryWatcher, load_directory, load_private
from sigbus.transport.natsauth import NatsCredentials


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
