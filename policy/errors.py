"""One error hierarchy for the policy package.

``decide`` itself never raises (any error inside evaluation becomes a deny with
``evaluation_error``); these errors come from loading rules and from the
offline tools that read user-given files.
"""

from __future__ import annotations

from sigbus.protocol.errors import SigbusError


class PolicyError(SigbusError):
    """Root of every policy error."""


class RulesError(PolicyError):
    """The rules file is not valid TOML or does not match the rules schema."""


class PolicyInputError(PolicyError):
    """A state or request document is malformed (offline tools)."""


class EvaluationError(PolicyError):
    """An inconsistency found during evaluation; always turned into a deny."""
