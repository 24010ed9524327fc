"""Polisen: refers young people (LUL 6 § notifications, reports of concern) and
commits to plan actions in a SIG. Only what is specific to the police lives here."""

from __future__ import annotations

from sigbus.protocol.ids import AgencyId, MessageType

AGENCY = AgencyId.POLICE
SENDS = frozenset(
    {MessageType.REFERRAL, MessageType.PLAN_COMMITMENT, MessageType.COMMITMENT_STATUS}
)
