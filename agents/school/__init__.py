"""Skolan: reports concern to social services (SoL 14 kap. 1 §) and commits to
plan actions in a SIG. A school never sends a LUL 6 § notification."""

from __future__ import annotations

from sigbus.protocol.ids import AgencyId, MessageType

AGENCY = AgencyId.SCHOOL
SENDS = frozenset(
    {MessageType.REFERRAL, MessageType.PLAN_COMMITMENT, MessageType.COMMITMENT_STATUS}
)
