"""Reason codes for every way the hub's pipeline can refuse a message.

These codes are the contract with agency IT and compliance officers: each deny
in the disclosure log carries one, and `docs/protocol.md` lists them. Policy
deny reasons (``policy.DenyCode``) are added after a ``policy:`` prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class ReasonCode(StrEnum):
    NOT_JSON = "not_json"
    MALFORMED_ENVELOPE = "malformed_envelope"
    UNSUPPORTED_VERSION = "unsupported_version"
    UNKNOWN_TYPE = "unknown_type"
    OVERSIZE = "oversize"
    SENDER_MISMATCH = "sender_mismatch"  # header sender != ingress subject's agency
    UNKNOWN_SENDER_KEY = "unknown_sender_key"
    REVOKED_KEY = "revoked_key"
    KEY_NOT_VALID = "key_not_valid"  # outside the key's validity period
    BAD_SIGNATURE = "bad_signature"
    SEAL_OPEN_FAILED = "seal_open_failed"  # HPKE could not open the data key
    SUITE_NOT_ALLOWED = "suite_not_allowed"  # classical-only HPKE suite, not allowed here
    DECRYPT_FAILED = "decrypt_failed"  # AES-GCM tag check failed
    SCHEMA_INVALID = "schema_invalid"
    PERSONNUMMER_INVALID = "personnummer_invalid"
    PERSONNUMMER_IN_FREE_TEXT = "personnummer_in_free_text"
    CREATED_AT_IN_FUTURE = "created_at_in_future"
    CREATED_AT_TOO_OLD = "created_at_too_old"
    REPLAYED_MESSAGE_ID = "replayed_message_id"
    CASE_REF_REQUIRED = "case_ref_required"
    UNKNOWN_CASE = "unknown_case"
    CASE_EXISTS = "case_exists"
    CASE_CLOSED = "case_closed"  # the case was closed: nothing about it is shared or recorded
    CASE_ALREADY_SELECTED = "case_already_selected"
    #: A plan revision that is not the plan's next version, or names a commitment the
    #: case's plan does not have.
    PLAN_CONFLICT = "plan_conflict"
    RECIPIENT_NOT_PARTY = "recipient_not_party"
    SENDER_NOT_ALLOWED = "sender_not_allowed"  # this sender may not send this type
    NO_RECIPIENTS = "no_recipients"
    HUB_RECORD_HAS_RECIPIENTS = "hub_record_has_recipients"
    CONSENT_CONFLICT = "consent_conflict"  # e.g. an event for an unknown consent record
    ASSERTION_NOT_ALLOWED = "assertion_not_allowed"  # statute not in the sender's profile
    UNKNOWN_FUNCTION = "unknown_function"  # function or action not in the agency's profile
    INTERNAL_ERROR = "internal_error"
    WRONG_LANE = "wrong_lane"  # on the fast lane, but not a consent withdrawal or amendment
    # Not a refusal: the reason of the hub's own entry that names a stored log
    # record found unsound at start-up (audit/quarantine.py).
    QUARANTINED_RECORD = "quarantined_record"
    # Not a refusal: the reason of a ``retraction`` entry, a release pulled back
    # from its recipient's inbox, unfetched, after its consent was withdrawn.
    RETRACTED_AFTER_WITHDRAWAL = "retracted_after_withdrawal"
    # Not a refusal: the reason of a ``shredded`` entry, the hub's data key for a
    # message destroyed when its retention period ended (broker/vault.py).
    RETENTION_EXPIRED = "retention_expired"
    # The hub asked to open a message whose data key it shredded: the content is gone.
    CONTENT_SHREDDED = "content_shredded"
    # The hub asked to open a message it never kept (not released, or unknown).
    NOT_RETAINED = "not_retained"
    # A case_opened names a referral that another case is already opened for.
    REFERRAL_ALREADY_LINKED = "referral_already_linked"
    # An existence query, but the rules file does not allow notices of existence.
    EXISTENCE_NOTICE_OFF = "existence_notice_off"
    # Not a refusal: the reason of a recorded existence answer, with the agencies
    # involved (``existence_answered:police.school``) or ``existence_answered:none``.
    EXISTENCE_ANSWERED = "existence_answered"


@dataclass(frozen=True, slots=True)
class HubReason:
    """A reason from the hub's own checks; text only when the log entry is written.

    ``detail`` is a short code chosen by the hub (an exception's type name), never input.
    """

    code: ReasonCode
    detail: str | None = None

    def render(self) -> str:
        return f"{self.code.value}:{self.detail}" if self.detail else self.code.value
