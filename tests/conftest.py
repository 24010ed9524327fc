"""Shared fixtures: dev keys, a fixed clock, and one real nats-server per session."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import structlog

# The suite runs on the development keys (and copies of them), as `sigbus --dev` would;
# subprocesses inherit it. tests/test_dev_keys.py checks the refusal without it.
os.environ["SIGBUS_DEV"] = "1"
from nats.js.errors import NotFoundError

from sigbus.broker.setup import hub_setup
from sigbus.protocol.subjects import ALL_STREAMS
from sigbus.transport.bus import connect
from sigbus.transport.keystore import DEV_KEYS_DIR
from sigbus.transport.natsserver import EmbeddedNats


@pytest.fixture(autouse=True)
def _structlog_config_restored() -> Iterator[None]:
    """A command run in-process (CliRunner) configures structlog's level for the whole
    process; restore it, so a later test's info events are not filtered away."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


@pytest.fixture(scope="session")
def keys_dir() -> Path:
    return DEV_KEYS_DIR


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    """A real nats-server on a free loopback port, JetStream on, fsync always."""
    server = EmbeddedNats(
        tmp_path_factory.mktemp("nats"), server_name="sigbus-test", keys_dir=DEV_KEYS_DIR
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def nats_url(nats_server: EmbeddedNats) -> str:
    """The server's URL, with every sigbus stream deleted first (a clean bus per test)."""
    nc = await connect(nats_server.url, name="test-cleanup", creds=hub_setup(DEV_KEYS_DIR).creds)
    js = nc.jetstream()
    for stream in ALL_STREAMS:
        with contextlib.suppress(NotFoundError):
            await js.delete_stream(stream)
    await nc.close()
    return nats_server.url


@pytest.fixture
def fixed_now() -> datetime:
    return datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
