"""The broker's error hierarchy."""

from __future__ import annotations

from sigbus.protocol.errors import SigbusError
from sigbus.protocol.reasons import ReasonCode


class BrokerError(SigbusError):
    """Root of broker errors."""


class LogFencedError(BrokerError):
    """Another writer appended to the disclosure log: this broker must stop."""


class LeaseLostError(BrokerError):
    """The hub lease lapsed or was taken (transport/lease.py): this hub must not append."""


class StateCorruptError(BrokerError):
    """A hub state record could not be decrypted or parsed."""


class SnapshotRejectedError(BrokerError):
    """A hub snapshot did not verify (signature, digests, or against the log): not used."""


class Rejection(BrokerError):
    """A message is refused; ``reason`` goes into the disclosure log."""

    def __init__(self, reason: ReasonCode, detail: str = "") -> None:
        super().__init__(f"{reason.value}{': ' + detail if detail else ''}")
        self.reason = reason


class WithdrawalRefused(Rejection):
    """A consent withdrawal the hub could not apply: sharing goes on, so it is an alarm."""
