"""Reminders of overdue plan commitments (issue 13). Pure: ``now`` is an argument.

A commitment of a case's plan (a ``plan_commitment`` the hub released to a party,
kept as hub state) whose due date has passed, Stockholm time, without a ``done``
status gets exactly one reminder to its responsible agency: a
``commitment_reminder`` the hub itself seals and signs. It is released only as
the commitment itself would be: the policy is asked whether the lead agency (who
follows the plan up) may disclose a ``plan_commitment`` about the case to that
agency, so no consent (or a closed case) means a logged deny, not a release.

"Already reminded" is hub state, not memory: each reminder's decision (released
or denied) is a :class:`~sigbus.broker.state.CommitmentRemindedChange` bound to
its log entry, so a second pass, a restart or a replay of the state finds it and
decides nothing again. A commitment given a new due date can be reminded once more,
for that date.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sigbus.broker.pipeline import HubContext, Plan, release_plan
from sigbus.broker.state import CaseRecord, CommitmentRecord, CommitmentRemindedChange, HubState
from sigbus.policy import DecisionRequest, decide
from sigbus.policy.engine import stockholm_date
from sigbus.protocol.envelope import Header, seal_envelope
from sigbus.protocol.ids import HUB, MessageType
from sigbus.protocol.messages import CommitmentReminder
from sigbus.protocol.reasons import HubReason, ReasonCode
from sigbus.protocol.sealing import data_key_info, open_data_key

#: The log entries of a reminder belong to no ingress message (stream sequences start at 1).
REMINDER_INGRESS_SEQ = 0
#: The policy category a reminder is released under: it discloses the commitment again.
REMINDER_CATEGORY = MessageType.PLAN_COMMITMENT


@dataclass(frozen=True)
class DueReminder:
    case: CaseRecord
    commitment: CommitmentRecord


def reminder_id(case_ref: str, commitment: CommitmentRecord) -> str:
    """Deterministic per case, commitment and due date; letters only (no digit runs)."""
    digest = hashlib.sha256(
        f"reminder\n{case_ref}\n{commitment.commitment_id}\n{commitment.due_on}".encode()
    ).digest()
    return "msg-rem" + "".join(chr(ord("a") + b % 26) for b in digest[:24])


def due_reminders(state: HubState, now: datetime) -> list[DueReminder]:
    """Every commitment of a live case past its due date at ``now``, not done, and not
    reminded for that due date yet; in case and due-date order."""
    today = stockholm_date(now)
    out = []
    for case in state.cases.values():
        if case.closure is not None:
            continue
        for commitment in sorted(
            case.commitments.values(), key=lambda c: (c.due_on, c.commitment_id)
        ):
            if (
                commitment.due_on < today
                and commitment.in_plan
                and not commitment.done
                and commitment.due_on not in commitment.reminded
            ):
                out.append(DueReminder(case, commitment))
    return out


def plan_reminder(due: DueReminder, ctx: HubContext, now: datetime) -> Plan:
    """The reminder's one decision (an entry, a release if permitted) and its state change."""
    case, commitment = due.case, due.commitment
    recipient = commitment.responsible_agency
    message_id = reminder_id(case.case_ref, commitment)
    hub_key = ctx.directory.sealing_key(HUB, at=now)
    assert hub_key.suite is not None
    header = Header(
        message_id=message_id,
        type=MessageType.COMMITMENT_REMINDER,
        sender=HUB,
        sender_key_id=ctx.identity.signing_key_id,
        case_ref=case.case_ref,
        created_at=now,
        recipients=(recipient,),
        suite=hub_key.suite,
    )
    body = CommitmentReminder(
        commitment_id=commitment.commitment_id,
        action=commitment.action,
        owner_function=commitment.owner_function,
        due_on=commitment.due_on,
    )
    envelope = seal_envelope(
        header,
        body,
        ctx.identity,
        recipient=HUB,
        recipient_key_id=hub_key.key_id,
        recipient_public=hub_key.public_key,
        policy=ctx.config.suite_policy,
    )
    data_key = open_data_key(
        header.suite,
        ctx.identity.sealing_private,
        envelope.sealed_key,
        data_key_info(message_id, HUB, envelope.sealed_key_id),
    )
    request = DecisionRequest(
        message_id=message_id,
        discloser=ctx.profiles.lead,
        recipients=(recipient,),
        category=REMINDER_CATEGORY,
        case=case.policy_state(),
    )
    decision = decide(request, ctx.rules, now=now)
    early = (
        {} if recipient in case.parties else {recipient: HubReason(ReasonCode.RECIPIENT_NOT_PARTY)}
    )
    entries, releases = release_plan(
        envelope, decision, early, case.subject_id, REMINDER_INGRESS_SEQ, ctx, now, data_key
    )
    change = CommitmentRemindedChange(
        message_id=message_id,
        case_ref=case.case_ref,
        commitment_id=commitment.commitment_id,
        due_on=commitment.due_on,
        released=bool(releases),
        decided_at=now,
    )
    return Plan(
        message_id=message_id,
        entries=tuple(entries),
        releases=tuple(releases),
        state_change=change,
        data_key=data_key if releases else None,
        bound=0,
    )
