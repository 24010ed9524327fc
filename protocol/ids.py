"""Identifiers and closed vocabularies shared by every party.

Every id that crosses a process boundary is opaque: it says *which* record,
never *whose*. A personnummer never becomes an id; the hub derives a
pseudonymous :data:`SubjectId` from it with a keyed hash (see
``broker.pseudonym``).
"""

from __future__ import annotations

import re
import secrets
from enum import StrEnum
from typing import Annotated, NewType

from pydantic import AfterValidator, StringConstraints


class AgencyId(StrEnum):
    """A party to a SIG. ``hub`` is the broker run by social services."""

    POLICE = "police"
    SCHOOL = "school"
    SOCIAL = "social"
    HUB = "hub"


#: Agencies that run an adapter and can be parties to a case.
PARTY_AGENCIES: tuple[AgencyId, ...] = (AgencyId.POLICE, AgencyId.SCHOOL, AgencyId.SOCIAL)


class MessageType(StrEnum):
    """Message types; also the policy's *message category*."""

    REFERRAL = "referral"
    CASE_OPENED = "case_opened"
    CONSENT_EVENT = "consent_event"
    CASE_INVITATION = "case_invitation"
    PLAN_COMMITMENT = "plan_commitment"
    COMMITMENT_STATUS = "commitment_status"
    MEETING_NOTICE = "meeting_notice"


#: Types addressed to the hub itself: they change hub state and are never released.
HUB_RECORD_TYPES: frozenset[MessageType] = frozenset(
    {MessageType.CASE_OPENED, MessageType.CONSENT_EVENT}
)

# Opaque ids. Every id carries a lower-case prefix and may not contain a run of
# six or more digits, so a personnummer (or its date part) can never be
# smuggled into a header, subject or log entry disguised as an id.
_DIGIT_RUN = re.compile(r"\d{6}")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def _no_digit_run(value: str) -> str:
    if _DIGIT_RUN.search(value):
        raise ValueError("ids must not contain six or more consecutive digits")
    return value


MessageIdStr = Annotated[
    str, StringConstraints(pattern=r"^msg-[A-Za-z0-9_-]{8,64}$"), AfterValidator(_no_digit_run)
]
CaseRefStr = Annotated[
    str, StringConstraints(pattern=r"^case-[A-Za-z0-9_-]{4,64}$"), AfterValidator(_no_digit_run)
]
ConsentIdStr = Annotated[
    str, StringConstraints(pattern=r"^consent-[A-Za-z0-9_-]{4,64}$"), AfterValidator(_no_digit_run)
]
CommitmentIdStr = Annotated[
    str, StringConstraints(pattern=r"^cm-[A-Za-z0-9_-]{4,64}$"), AfterValidator(_no_digit_run)
]
GuardianRefStr = Annotated[str, StringConstraints(pattern=r"^vh-[a-z0-9]{1,16}$")]
KeyIdStr = Annotated[str, StringConstraints(pattern=r"^[a-z]+-(sig|seal)-[0-9a-f]{16}$")]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


def new_opaque_id(prefix: str, length: int = 24) -> str:
    """A fresh random id of letters only (~112 bits for the default length)."""
    return f"{prefix}-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


MessageId = NewType("MessageId", str)
CaseRef = NewType("CaseRef", str)
ConsentId = NewType("ConsentId", str)
SubjectId = NewType("SubjectId", str)
KeyId = NewType("KeyId", str)
DecisionId = NewType("DecisionId", str)
ReleaseId = NewType("ReleaseId", str)
