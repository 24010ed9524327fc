"""An agency's adapter from its keys directory: identity, directory, NATS credentials."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sigbus.agents.runtime import Adapter
from sigbus.protocol.directory import Directory, TrustedDirectory
from sigbus.protocol.identity import AgencyIdentity
from sigbus.protocol.ids import AgencyId
from sigbus.transport.config import credentials, suite_policy
from sigbus.transport.keystore import DirectoryWatcher, load_private, load_trusted_directory
from sigbus.transport.natsauth import NatsCredentials


@dataclass(frozen=True)
class AgencySetup:
    identity: AgencyIdentity
    trusted: TrustedDirectory
    creds: NatsCredentials
    keys_dir: Path

    @property
    def directory(self) -> Directory:
        assert self.trusted.directory is not None
        return self.trusted.directory

    async def connect(self, url: str) -> Adapter:
        adapter = await Adapter.connect(
            url, self.identity, self.directory, self.creds, suite_policy=suite_policy()
        )
        adapter.directory_source = DirectoryWatcher(
            self.keys_dir, self.trusted, agency=self.identity.agency
        ).refresh
        return adapter


def agency_setup(agency: AgencyId, keys: Path) -> AgencySetup:
    keyfile = load_private(keys, agency)
    return AgencySetup(
        identity=keyfile.identity(),
        trusted=load_trusted_directory(keys, now=datetime.now(UTC), agency=agency),
        creds=credentials(agency, keys, keyfile),
        keys_dir=keys,
    )
