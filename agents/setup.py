"""An agency's adapter from its keys directory: identity, directory, NATS credentials."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sigbus.agents.runtime import Adapter
from sigbus.protocol.directory import Directory
from sigbus.protocol.identity import AgencyIdentity
from sigbus.protocol.ids import AgencyId
from sigbus.transport.config import credentials
from sigbus.transport.keystore import DirectoryWatcher, load_directory, load_private
from sigbus.transport.natsauth import NatsCredentials


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


def agency_setup(agency: AgencyId, keys: Path) -> AgencySetup:
    keyfile = load_private(keys, agency)
    return AgencySetup(
        identity=keyfile.identity(),
        directory=load_directory(keys),
        creds=credentials(agency, keys, keyfile),
        keys_dir=keys,
    )
