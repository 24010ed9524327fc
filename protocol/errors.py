"""One error hierarchy for the wire format. Every error carries a reason code.

Messages never echo input values: a failed personnummer or a tampered field
is named by *where* it failed, never by what it contained.
"""

from __future__ import annotations

from sigbus.protocol.reasons import ReasonCode


class SigbusError(Exception):
    """The one root of every error sigbus raises; the command line renders it in one place.

    Messages name *where* and *which rule*, never input values.
    """


class ProtocolError(SigbusError):
    """Root of every protocol error; ``reason`` is what the disclosure log records."""

    reason: ReasonCode = ReasonCode.MALFORMED_ENVELOPE

    def __init__(self, message: str, *, reason: ReasonCode | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class EnvelopeFormatError(ProtocolError):
    reason = ReasonCode.MALFORMED_ENVELOPE


class SignatureError(ProtocolError):
    reason = ReasonCode.BAD_SIGNATURE


class KeyLookupError(ProtocolError):
    reason = ReasonCode.UNKNOWN_SENDER_KEY


class OpenError(ProtocolError):
    reason = ReasonCode.DECRYPT_FAILED


class SuiteRefused(ProtocolError):
    """An HPKE suite the party's :class:`~protocol.sealing.SuitePolicy` does not allow."""

    reason = ReasonCode.SUITE_NOT_ALLOWED


class BodyValidationError(ProtocolError):
    reason = ReasonCode.SCHEMA_INVALID


class DirectoryError(ProtocolError):
    """The agency directory is malformed or its signature does not verify."""

    reason = ReasonCode.UNKNOWN_SENDER_KEY


class DirectoryRefused(DirectoryError):
    """A verified directory that must not be trusted now; ``kind`` names the rule
    (``directory_rollback``, ``directory_equivocation``, ``directory_expired``,
    ``root_threshold_not_met``, ``unendorsed_key_change``, ...); ``agencies`` names
    the agencies concerned, where the rule is about some."""

    def __init__(self, message: str, *, kind: str, agencies: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.kind = kind
        self.agencies = agencies


class ReleaseError(ProtocolError):
    """A release failed the recipient's checks (record signature, binding)."""

    reason = ReasonCode.BAD_SIGNATURE


class NoticeError(ProtocolError):
    """A decision notice failed the sender's checks (hub signature, addressed to it)."""

    reason = ReasonCode.BAD_SIGNATURE


class ProfileError(SigbusError):
    """An agency profile is malformed or inconsistent with the message-type registry."""
