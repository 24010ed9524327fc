"""Building samtycke (consent) events: social services record them, the hub keeps them."""

from __future__ import annotations

from datetime import datetime, timedelta

from sigbus.protocol.canonical import sha256_hex
from sigbus.protocol.codes import ConsentAction, ConsenterRole, ConsentPurpose
from sigbus.protocol.ids import AgencyId, FunctionCode, MessageType
from sigbus.protocol.messages import ConsentEvent, ConsentScope


def consent_given(
    consent_id: str,
    role: ConsenterRole,
    guardian_ref: str | None,
    *,
    disclosers: tuple[AgencyId, ...],
    recipients: tuple[AgencyId, ...],
    categories: tuple[MessageType, ...],
    valid_from: datetime,
    valid_until: datetime,
    acted_at: datetime,
    evidence_sha256: str,
    recorded_by: FunctionCode = "social_case_worker",
) -> ConsentEvent:
    """A written, scoped consent for one SIG case; ``evidence_sha256`` hashes the signed form."""
    return ConsentEvent(
        consent_id=consent_id,
        action=ConsentAction.GIVEN,
        consenter_role=role,
        guardian_ref=guardian_ref,
        scope=ConsentScope(
            disclosers=disclosers,
            recipients=recipients,
            categories=categories,
            purpose=ConsentPurpose.SIG_CASE,
            valid_from=valid_from,
            valid_until=valid_until,
        ),
        acted_at=acted_at,
        evidence_sha256=evidence_sha256,
        recorded_by=recorded_by,
    )


def consent_withdrawn(
    consent_id: str,
    role: ConsenterRole,
    guardian_ref: str | None,
    *,
    acted_at: datetime,
    recorded_by: FunctionCode = "social_case_worker",
) -> ConsentEvent:
    """Withdrawal ends sharing from the moment the hub records it."""
    return ConsentEvent(
        consent_id=consent_id,
        action=ConsentAction.WITHDRAWN,
        consenter_role=role,
        guardian_ref=guardian_ref,
        acted_at=acted_at,
        recorded_by=recorded_by,
    )


def consents_of_everyone(
    guardians: tuple[str, ...],
    *,
    parties: tuple[AgencyId, ...],
    categories: tuple[MessageType, ...],
    now: datetime,
) -> list[ConsentEvent]:
    """Consent from the young person and every guardian (SoL: every vårdnadshavare of a
    minor), among ``parties`` for ``categories``, valid for 90 days: the demo's, the
    tests' and the bench's fully consented case."""
    consenters = [(ConsenterRole.YOUNG_PERSON, None)] + [
        (ConsenterRole.GUARDIAN, g) for g in guardians
    ]
    events = []
    for role, guardian in consenters:
        cid = f"consent-{role.value.replace('_', '')}{(guardian or '').replace('-', '')}"
        events.append(
            consent_given(
                cid,
                role,
                guardian,
                disclosers=parties,
                recipients=parties,
                categories=categories,
                valid_from=now - timedelta(minutes=5),
                valid_until=now + timedelta(days=90),
                acted_at=now - timedelta(minutes=1),
                evidence_sha256=sha256_hex(cid.encode()),
            )
        )
    return events
