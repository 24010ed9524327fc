"""Enumerated codes used in message bodies instead of free text.

Messages are minimal by schema (design brief, "Protocol essentials"): a code
says what the receiving agency needs to act on and nothing more. The code
lists follow the working method described by Socialstyrelsen (2014, 2016) and
Hylte kommun (2020); extend them through a protocol version bump.
"""

from __future__ import annotations

from enum import StrEnum


class ReferralKind(StrEnum):
    #: Anmälan om oro, SoL 14 kap. 1 § (reporting duty to social services).
    REPORT_OF_CONCERN = "report_of_concern"
    #: Underrättelse enligt 6 § LUL (police notification, subject under 18).
    LUL_6_NOTIFICATION = "lul_6_notification"


class ReferralReason(StrEnum):
    SUSPECTED_OFFENCE = "suspected_offence"
    CRIMINAL_NETWORK_CONTACT = "criminal_network_contact"
    SUBSTANCE_USE = "substance_use"
    SCHOOL_ABSENCE = "school_absence"
    VIOLENCE = "violence"
    WEAPON = "weapon"
    RISK_OF_HARM = "risk_of_harm"
    WANTS_TO_LEAVE_CRIMINALITY = "wants_to_leave_criminality"


class ConsentAction(StrEnum):
    GIVEN = "given"
    AMENDED = "amended"
    WITHDRAWN = "withdrawn"
    EXPIRED = "expired"


class ConsenterRole(StrEnum):
    YOUNG_PERSON = "young_person"
    GUARDIAN = "guardian"  # vårdnadshavare with custody


class ConsentPurpose(StrEnum):
    #: Information exchange within a social insatsgrupp around one case.
    SIG_CASE = "sig_case"


class ActionCode(StrEnum):
    """Plan actions (individuell åtgärdsplan)."""

    SCHOOL_ATTENDANCE_PLAN = "school_attendance_plan"
    STUDY_SUPPORT = "study_support"
    MENTOR = "mentor"
    LEISURE_ACTIVITY = "leisure_activity"
    EMPLOYMENT_SUPPORT = "employment_support"
    SUBSTANCE_TREATMENT = "substance_treatment"
    POLICE_CONTACT_PERSON = "police_contact_person"
    EXIT_PROGRAMME = "exit_programme"
    FAMILY_SUPPORT = "family_support"
    HOUSING_SUPPORT = "housing_support"


class StatusCode(StrEnum):
    DONE = "done"
    IN_PROGRESS = "in_progress"
    NOT_DONE = "not_done"


class NotDoneReason(StrEnum):
    YOUNG_PERSON_ABSENT = "young_person_absent"
    RESOURCE_MISSING = "resource_missing"
    DECLINED = "declined"
    RESCHEDULED = "rescheduled"
    OTHER_AGENCY_PENDING = "other_agency_pending"


class PlaceCode(StrEnum):
    SOCIAL_SERVICES_OFFICE = "social_services_office"
    SCHOOL = "school"
    POLICE_STATION = "police_station"
    HOME_VISIT = "home_visit"
    VIDEO = "video"


class AgendaItem(StrEnum):
    PLAN_REVIEW = "plan_review"
    COMMITMENT_FOLLOW_UP = "commitment_follow_up"
    NEW_ACTIONS = "new_actions"
    CONSENT_REVIEW = "consent_review"
    SCHOOL_SITUATION = "school_situation"
    LEISURE = "leisure"
    SAFETY = "safety"
    CLOSING = "closing"


class AssessmentInstrument(StrEnum):
    """Structured assessment instruments a SIG selection may rest on (a reference only:
    the assessment itself stays in the social services' case system)."""

    #: Structured Assessment of Violence Risk in Youth.
    SAVRY = "savry"
    #: ESTER (evidensbaserad strukturerad bedömning av risk- och skyddsfaktorer).
    ESTER = "ester"
    #: Barns behov i centrum (Socialstyrelsen).
    BBIC = "bbic"


class ClosureReason(StrEnum):
    """Why a SIG case ended (avslut); the steering group's statistics count these."""

    PLAN_COMPLETED = "plan_completed"  # the plan's goals are met
    NOT_SELECTED = "not_selected"  # the selection decided against a SIG
    YOUNG_PERSON_DECLINED = "young_person_declined"
    CONSENT_ENDED = "consent_ended"  # consent withdrawn or expired, not renewed
    MOVED_AWAY = "moved_away"  # moved out of the municipality
    OTHER_INTERVENTION = "other_intervention"  # e.g. placement (SiS, LVU) or prison
    AGE_LIMIT = "age_limit"  # beyond the SIG's age range


class QuestionnaireOccasion(StrEnum):
    """When social services asked the young person how the support was experienced."""

    REVIEW = "review"  # at a follow-up of the plan
    CLOSURE = "closure"  # at the end of the SIG


class QuestionnaireQuestion(StrEnum):
    """The questionnaire's questions; each is a field of the questionnaire body."""

    LISTENED_TO = "listened_to"  # I was listened to
    SUPPORT_HELPED = "support_helped"  # the support helped me
    KNEW_THE_PLAN = "knew_the_plan"  # I knew what was planned for me


class QuestionnaireAnswer(StrEnum):
    YES = "yes"
    PARTLY = "partly"
    NO = "no"
    NO_ANSWER = "no_answer"  # asked, and did not want to answer
