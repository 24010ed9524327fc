"""The adapters' error hierarchy."""

from __future__ import annotations

from sigbus.protocol.errors import SigbusError


class AdapterError(SigbusError):
    """Root of adapter errors."""


class PublishFailed(AdapterError):
    """The hub's stream did not acknowledge a message after every retry."""


class ReleaseRejected(AdapterError):
    """A release failed verification: it is a security event, never handed on."""


class NoticeRejected(AdapterError):
    """A decision notice failed verification: a security event, never believed."""


class CaseSystemError(AdapterError):
    """The case system (a sink) did not take a release: it stays unacked, redelivered later."""
