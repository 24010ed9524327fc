"""The hub from its keys directory: context, state and log keys, NATS credentials."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from sigbus.broker.pipeline import HubContext, PipelineConfig
from sigbus.broker.service import Broker
from sigbus.policy import Rules, default_rules
from sigbus.policy.rules import check_rule_references
from sigbus.protocol.errors import SigbusError
from sigbus.protocol.ids import HUB
from sigbus.protocol.profiles import Profiles
from sigbus.protocol.signing import HybridPrivateKey
from sigbus.transport.bus import INGRESS_BACKLOG
from sigbus.transport.config import credentials, suite_policy
from sigbus.transport.errors import ConfigError
from sigbus.transport.keystore import DirectoryWatcher, load_private, load_trusted_directory
from sigbus.transport.natsauth import NatsCredentials
from sigbus.transport.profiles import load_profiles, local_profiles_stamp

log = structlog.get_logger("sigbus.hub")

#: How often the hub looks at its local profiles folder for a change (seconds).
PROFILES_POLL_S = 1.0


@dataclass
class HubSetup:
    ctx: HubContext
    state_key: bytes
    log_key: HybridPrivateKey
    creds: NatsCredentials
    watcher: DirectoryWatcher
    keys_dir: Path
    #: The local profiles as last read (transport.profiles.local_profiles_stamp).
    _profiles_stamp: tuple[tuple[str, int, int], ...] = field(default=(), init=False)
    _profiles_seen_at: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._profiles_stamp = local_profiles_stamp(self.keys_dir)

    def broker(
        self,
        url: str,
        *,
        ack_wait: timedelta = timedelta(seconds=30),
        replicas: int = 1,
        ingress_backlog: int = INGRESS_BACKLOG,
    ) -> Broker:
        return Broker(
            url,
            self.ctx,
            self.state_key,
            self.log_key,
            self.creds,
            ack_wait=ack_wait,
            replicas=replicas,
            ingress_backlog=ingress_backlog,
            context_source=self.refresh,
        )

    def refresh(self, ctx: HubContext) -> HubContext:
        """The context with the current directory; profiles are re-read when it or the
        local profiles folder changed (the folder is looked at once a second at most,
        so the hot path stats one file per message, as before).

        A new agency joins by a directory change (``sigbus keys add``) plus its
        profile, in either order. A profile set that fails the start-up checks is
        refused and the previous one kept (fail closed: the new agency's messages
        are denied ``sender_not_allowed`` meanwhile).
        """
        directory = self.watcher.refresh()
        stamp = self._profiles_stamp
        if time.monotonic() - self._profiles_seen_at >= PROFILES_POLL_S:
            self._profiles_seen_at = time.monotonic()
            stamp = local_profiles_stamp(self.keys_dir)
        if directory is ctx.directory and stamp == self._profiles_stamp:
            return ctx
        self._profiles_stamp = stamp
        try:
            profiles = checked_profiles(self.keys_dir, ctx.rules)
        except SigbusError as e:
            log.error("profiles_refused", error=str(e))
            profiles = ctx.profiles
        return replace(ctx, directory=directory, profiles=profiles)


def hub_setup(keys: Path, rules: Rules | None = None) -> HubSetup:
    rules = rules or default_rules()
    keyfile = load_private(keys, HUB)
    if keyfile.hub is None:
        raise ConfigError("the hub key file lacks the hub secrets")
    trusted = load_trusted_directory(keys, now=datetime.now(UTC))
    assert trusted.directory is not None
    ctx = HubContext(
        identity=keyfile.identity(),
        pseudonym_key=keyfile.hub.pseudonym_key,
        directory=trusted.directory,
        rules=rules,
        profiles=checked_profiles(keys, rules),
        config=PipelineConfig(suite_policy=suite_policy()),
    )
    return HubSetup(
        ctx=ctx,
        state_key=keyfile.hub.state_key,
        creds=credentials(HUB, keys, keyfile),
        watcher=DirectoryWatcher(keys, trusted),
        keys_dir=keys,
        log_key=HybridPrivateKey.from_private_bytes(keyfile.hub.log_signing_private),
    )


def checked_profiles(keys: Path, rules: Rules) -> Profiles:
    """The agency profiles, refused unless every statute they name is in the rules file."""
    profiles = load_profiles(keys)
    check_rule_references(rules, profiles.rule_ids(), named_by="agency profiles")
    return profiles
