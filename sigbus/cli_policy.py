"""``sigbus policy``: evaluate one release request offline, like ``opa eval``.

``check`` reads a rules file (TOML), a state file and a request file (JSON, see
``docs/policy.md``), decides at ``--at`` and prints the Decision as JSON.
``explain`` (or ``check --explain``) prints the same decision for a person.

Exit codes: 0 every recipient permitted, 1 any recipient denied, 2 bad input.
This module owns the file I/O; :func:`policy.decide` stays pure.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated
from zoneinfo import ZoneInfo

import typer
from pydantic import Field, ValidationError

from sigbus.policy import (
    CaseState,
    Decision,
    DecisionRequest,
    DenyCode,
    DenyReason,
    PolicyError,
    PolicyInputError,
    RecipientDecision,
    Rules,
    StatutoryAssertion,
    SubjectFacts,
    Verdict,
    decide,
    load_rules,
)
from sigbus.policy.model import PolicyModel
from sigbus.protocol.ids import AgencyId, MessageType
from sigbus.protocol.messages import parse_consenter_key

policy_app = typer.Typer(
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,
    help="Offline policy evaluation: decide one request against rules and state.",
    no_args_is_help=True,
)

_STOCKHOLM = ZoneInfo("Europe/Stockholm")
_MAX_FILE_BYTES = 4 * 1024 * 1024


# ------------------------------------------------------------------ file formats


class StateDocument(PolicyModel):
    """State file: the hub's case state, or (no case yet) the subject facts only."""

    format: Annotated[str, Field(pattern=r"^sigbus-policy-state/1$")] = "sigbus-policy-state/1"
    case: CaseState | None = None
    subject: SubjectFacts | None = None


class RequestDocument(PolicyModel):
    """Request file: the release question, without state (the state file carries it)."""

    format: Annotated[str, Field(pattern=r"^sigbus-policy-request/1$")] = "sigbus-policy-request/1"
    message_id: Annotated[str, Field(min_length=1, max_length=128)]
    discloser: AgencyId
    recipients: Annotated[tuple[AgencyId, ...], Field(min_length=1, max_length=8)]
    category: MessageType
    assertions: Annotated[tuple[StatutoryAssertion, ...], Field(max_length=8)] = ()


def _read(path: Path, what: str) -> bytes:
    try:
        size = path.stat().st_size
        if size > _MAX_FILE_BYTES:
            raise PolicyInputError(f"{what} file is larger than {_MAX_FILE_BYTES} bytes: {path}")
        return path.read_bytes()
    except OSError as e:
        raise PolicyInputError(f"cannot read {what} file {path}: {e.strerror}") from e


def _validation_summary(e: ValidationError) -> str:
    # Never echo input values: they may be personal data.
    parts = []
    for err in e.errors(include_url=False, include_input=False)[:5]:
        loc = ".".join(str(x) for x in err["loc"]) or "(document)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def load_state(data: bytes) -> StateDocument:
    try:
        return StateDocument.model_validate_json(data)
    except ValidationError as e:
        raise PolicyInputError(f"state file is invalid: {_validation_summary(e)}") from e


def load_request(data: bytes) -> RequestDocument:
    try:
        return RequestDocument.model_validate_json(data)
    except ValidationError as e:
        raise PolicyInputError(f"request file is invalid: {_validation_summary(e)}") from e


def parse_at(value: str) -> datetime:
    try:
        at = datetime.fromisoformat(value)
    except ValueError as e:
        raise PolicyInputError(
            "--at must be an ISO 8601 date-time, e.g. 2026-03-01T12:00:00Z"
        ) from e
    if at.tzinfo is None or at.utcoffset() is None:
        raise PolicyInputError("--at must carry a UTC offset, e.g. 2026-03-01T12:00:00+01:00")
    # Ages and consent periods are counted in Stockholm time, up to a century ahead.
    if not (MIN_AT <= at <= MAX_AT):
        raise PolicyInputError("--at must lie between the years 1900 and 9000")
    return at


MIN_AT = datetime(1900, 1, 1, tzinfo=UTC)
MAX_AT = datetime(9000, 1, 1, tzinfo=UTC)


def build_request(state: StateDocument, req: RequestDocument) -> DecisionRequest:
    return DecisionRequest(
        message_id=req.message_id,
        discloser=req.discloser,
        recipients=req.recipients,
        category=req.category,
        case=state.case,
        subject=state.subject,
        assertions=req.assertions,
    )


# ------------------------------------------------------------------- explanation

_CONSENTER_WORDS = {"young_person": "the young person"}

_SENTENCES: dict[DenyCode, str] = {
    DenyCode.NO_BASIS: "there is no legal basis for this release",
    DenyCode.CONSENT_MISSING: "{who} has not given consent",
    DenyCode.CONSENT_WITHDRAWN: "{who} has withdrawn consent {cid}",
    DenyCode.CONSENT_EXPIRED: "consent {cid} from {who} has expired",
    DenyCode.CONSENT_TOO_LONG: (
        "consent {cid} from {who} runs longer than the municipality's maximum, "
        "so it does not count; a new consent with a shorter period is needed"
    ),
    DenyCode.CONSENT_CONFLICT: "the events of consent {cid} from {who} are inconsistent",
    DenyCode.OUTSIDE_PERIOD: "consent {cid} from {who} is not yet valid",
    DenyCode.SCOPE_DISCLOSER: "consent {cid} from {who} does not cover this sender",
    DenyCode.SCOPE_RECIPIENT: "consent {cid} from {who} does not cover this recipient",
    DenyCode.SCOPE_CATEGORY: "consent {cid} from {who} does not cover this kind of message",
    DenyCode.SCOPE_PURPOSE: "consent {cid} from {who} is not for the SIG case",
    DenyCode.UNKNOWN_PARTY: "the agency is not a party that can receive messages",
    DenyCode.NOT_A_PARTY: "the agency is not a party of this case",
    DenyCode.STATUTE_PRECONDITION_NOT_MET: "a condition of the statute is not met",
    DenyCode.STATUTE_RECIPIENT_NOT_ALLOWED: "the statute does not allow release to this agency",
    DenyCode.SENDER_NOT_ALLOWED: "the statute does not apply to this sender",
    DenyCode.SUBJECT_UNKNOWN: "the young person's date of birth is not known to the hub",
    DenyCode.EVALUATION_ERROR: "the decision could not be evaluated (denied to be safe)",
}


def _who(consenter: str | None) -> str:
    if consenter is None:
        return "a required person"
    try:
        role, guardian = parse_consenter_key(consenter)
    except ValueError:
        return consenter
    if guardian is not None:
        return f"guardian {guardian}"
    return _CONSENTER_WORDS.get(role.value, role.value)


def explain_reason(reason: DenyReason) -> str:
    text = _SENTENCES[reason.code].format(
        who=_who(reason.consenter), cid=reason.consent_id or "(none)"
    )
    suffix = f" [{reason.as_code()}" + (f"; {reason.detail}" if reason.detail else "") + "]"
    return text[0].upper() + text[1:] + "." + suffix


def _basis_text(rd: RecipientDecision, rules: Rules | None) -> str:
    if rd.legal_basis is None:
        return "no basis"
    if rules is not None:
        if rd.legal_basis == rules.consent.id:
            return f"consent, {rules.consent.citation}"
        statute = rules.statutes_by_id.get(rd.legal_basis)
        if statute is not None:
            return f"statute, {statute.citation} ({statute.title})"
    return rd.legal_basis


def explain(decision: Decision, request: DecisionRequest, rules: Rules | None = None) -> str:
    """A readable account of a decision for a social worker (ids only, no personal data)."""
    local = decision.decided_at.astimezone(_STOCKHOLM)
    lines = [
        f"Decision {decision.decision_id}",
        f"  at {local:%Y-%m-%d %H:%M:%S} Stockholm time; rules {decision.rules_version} "
        f"(sha256 {decision.rules_hash[:12]}…)",
        f"  message {request.message_id}: {request.category.value} from {request.discloser}"
        + (f" in case {request.case.case_ref}" if request.case else " (no case)"),
        "",
    ]
    for rd in decision.per_recipient:
        if rd.outcome is Verdict.PERMIT:
            lines.append(f"{rd.recipient}: MAY RECEIVE it, on {_basis_text(rd, rules)}.")
            for ref in rd.consent_refs:
                lines.append(f"  relies on consent {ref.consent_id}, revision {ref.revision}")
            if rd.statutory:
                lines.append("  statutory disclosure: flagged for review in the disclosure log")
        else:
            lines.append(f"{rd.recipient}: MAY NOT RECEIVE it.")
            for reason in rd.reasons:
                lines.append(f"  - {explain_reason(reason)}")
        for note in rd.notes:
            lines.append(f"  note: {note}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- commands

RulesOpt = Annotated[Path, typer.Option("--rules", help="rules file (TOML)", show_default=False)]
StateOpt = Annotated[Path, typer.Option("--state", help="state file (JSON)", show_default=False)]
RequestOpt = Annotated[
    Path, typer.Option("--request", help="request file (JSON)", show_default=False)
]
AtOpt = Annotated[
    str, typer.Option("--at", help="decision time, ISO 8601 with offset", show_default=False)
]


def _run(rules: Path, state: Path, request: Path, at: str, *, human: bool) -> None:
    try:
        loaded_rules = load_rules(_read(rules, "rules"))
        st = load_state(_read(state, "state"))
        rq = load_request(_read(request, "request"))
        full = build_request(st, rq)
        now = parse_at(at)
    except PolicyError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    except ValidationError as e:
        typer.echo(f"error: request is invalid: {_validation_summary(e)}", err=True)
        raise typer.Exit(2) from e
    decision = decide(full, loaded_rules, now=now)
    if human:
        typer.echo(explain(decision, full, loaded_rules))
    else:
        typer.echo(json.dumps(decision.model_dump(mode="json"), indent=2, ensure_ascii=False))
    raise typer.Exit(0 if decision.all_permitted else 1)


@policy_app.command("check")
def check_cmd(
    rules: RulesOpt,
    state: StateOpt,
    request: RequestOpt,
    at: AtOpt,
    explain_flag: Annotated[
        bool, typer.Option("--explain", help="print a readable account instead of JSON")
    ] = False,
) -> None:
    """Decide one request; print the Decision as JSON. Exit 0 permit, 1 deny, 2 bad input."""
    _run(rules, state, request, at, human=explain_flag)


@policy_app.command("explain")
def explain_cmd(rules: RulesOpt, state: StateOpt, request: RequestOpt, at: AtOpt) -> None:
    """Like ``check --explain``: the decision in words, for a social worker."""
    _run(rules, state, request, at, human=True)
