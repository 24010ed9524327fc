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
from typing import Annotated, Final, NewType

from pydantic import AfterValidator, StringConstraints


class MessageType(StrEnum):
    """Message types; also the policy's *message category*."""

    REFERRAL = "referral"
    CASE_OPENED = "case_opened"
    CASE_SELECTED = "case_selected"
    CASE_CLOSED = "case_closed"
    CONSENT_EVENT = "consent_event"
    CASE_INVITATION = "case_invitation"
    PLAN_COMMITMENT = "plan_commitment"
    COMMITMENT_STATUS = "commitment_status"
    MEETING_NOTICE = "meeting_notice"
    MEETING_ATTENDANCE = "meeting_attendance"
    MEETING_MINUTES = "meeting_minutes"
    #: The young person's own view of the support, coded (a hub record).
    YOUTH_QUESTIONNAIRE = "youth_questionnaire"
    #: The action plan as a whole, revised: its next version and the commitments it holds.
    PLAN_REVISION = "plan_revision"
    #: The hub's own message: a plan commitment passed its due date without ``done``.
    COMMITMENT_REMINDER = "commitment_reminder"
    EXISTENCE_QUERY = "existence_query"


# Opaque ids. Every id carries a lower-case prefix and may not contain a run of
# six or more digits, so a personnummer (or its date part) can never be
# smuggled into a header, subject or log entry disguised as an id.
_DIGIT_RUN = re.compile(r"\d{6}")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz"


def no_digit_run(value: str) -> str:
    if _DIGIT_RUN.search(value):
        raise ValueError("ids must not contain six or more consecutive digits")
    return value


MessageIdStr = Annotated[
    str, StringConstraints(pattern=r"^msg-[A-Za-z0-9_-]{8,64}$"), AfterValidator(no_digit_run)
]
CaseRefStr = Annotated[
    str, StringConstraints(pattern=r"^case-[A-Za-z0-9_-]{4,64}$"), AfterValidator(no_digit_run)
]
ConsentIdStr = Annotated[
    str, StringConstraints(pattern=r"^consent-[A-Za-z0-9_-]{4,64}$"), AfterValidator(no_digit_run)
]
CommitmentIdStr = Annotated[
    str, StringConstraints(pattern=r"^cm-[A-Za-z0-9_-]{4,64}$"), AfterValidator(no_digit_run)
]
#: A function at an agency (who to call back, who owns an action), never a named
#: person. Each agency's profile lists the functions it has.
FunctionCode = Annotated[
    str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{2,40}$"), AfterValidator(no_digit_run)
]
GuardianRefStr = Annotated[
    str, StringConstraints(pattern=r"^vh-[a-z0-9]{1,16}$"), AfterValidator(no_digit_run)
]
KeyIdStr = Annotated[
    str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{1,30}-(sig|seal)-[0-9a-f]{16}$")
]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


#: An agency is a name, never personal data; it exists because the signed directory
#: lists it and a profile describes it (docs/architecture.md, "Adding an agency").
AGENCY_NAME_PATTERN = r"^[a-z][a-z0-9_]{1,30}$"
_AGENCY_NAME = re.compile(AGENCY_NAME_PATTERN)
#: The hub's own name in the directory: the broker run by the lead agency.
HUB: Final = "hub"

AgencyId = Annotated[
    str, StringConstraints(pattern=AGENCY_NAME_PATTERN), AfterValidator(no_digit_run)
]


def agency_name(text: str) -> str:
    """Validate an agency name given from outside (a flag, a file name, a bundle)."""
    if not _AGENCY_NAME.fullmatch(text) or _DIGIT_RUN.search(text):
        raise ValueError(
            "an agency name is 2-31 characters of a-z, 0-9 and _, starting with a letter"
        )
    return text


def new_opaque_id(prefix: str, length: int = 24) -> str:
    """A fresh random id of letters only (~112 bits for the default length)."""
    return f"{prefix}-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


MessageId = NewType("MessageId", str)
CaseRef = NewType("CaseRef", str)
ConsentId = NewType("ConsentId", str)
SubjectId = NewType("SubjectId", str)
#: A subject's pseudonym within one case (or one case-less message): what log entries carry.
SubjectRef = NewType("SubjectRef", str)
KeyId = NewType("KeyId", str)
DecisionId = NewType("DecisionId", str)
ReleaseId = NewType("ReleaseId", str)
