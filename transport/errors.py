"""Errors of the runtime edge (configuration, embedded server, CLI)."""

from __future__ import annotations

from sigbus.protocol.errors import SigbusError

__all__ = ["ConfigError", "NatsUnreachable", "ServerError", "SigbusError", "TransportError"]




class ConfigError(SigbusError):
    """Missing or malformed configuration, key file or directory."""


class ServerError(SigbusError):
    """The embedded nats-server could not be started or stopped."""


class TransportError(SigbusError):
    """Publishing to or consuming from NATS failed after retries."""


class NatsUnreachable(TransportError):
    """No NATS connection within the deadline (down, restarting, or refusing us):
    a long-running adapter retries it, a one-shot command exits."""
