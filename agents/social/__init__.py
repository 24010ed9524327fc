"""Socialtjänsten: leads the SIG. Opens cases, records samtycke (consent) from
the young person and each vårdnadshavare (guardian with custody), invites the
parties, draws up the individuell åtgärdsplan and calls individual meetings."""

from __future__ import annotations

from sigbus.protocol.ids import AgencyId, MessageType

AGENCY = AgencyId.SOCIAL
SENDS = frozenset(
    {
        MessageType.CASE_OPENED,
        MessageType.CONSENT_EVENT,
        MessageType.CASE_INVITATION,
        MessageType.PLAN_COMMITMENT,
        MessageType.COMMITMENT_STATUS,
        MessageType.MEETING_NOTICE,
    }
)
