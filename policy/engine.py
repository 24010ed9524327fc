"""``decide``: the consent and legal-basis decision for one release request.

Pure: no clock reads (``now`` is an argument), no I/O, no NATS. Per recipient,
in this order:

1. **Forbids** (beat every permit): the recipient or discloser is not a party
   agency; the category is a hub record (never released).
2. **Consent** (OSL 12 kap. 2 §), for consentable categories only — never a
   referral: every required consenter has an active record whose scope covers
   (discloser, recipient, category, purpose) at ``now``, and both agencies are
   parties of the case.
3. **Statute** (rules file ``[[statute]]``): asserted by the sender, naming this
   recipient, sender and category allowed, subject younger than the limit,
   evidence id of the required form. Never blocked by a withdrawal; flagged
   ``statutory=True``.
4. Otherwise **deny** (default deny), with every reason found.

Any exception inside evaluation becomes a deny with ``evaluation_error``.

Speed (see ``bench/policy_bench.py``): the fold of a case's events is memoised
on its last event (:mod:`policy._index`), and for requests without statutory
assertions the per-recipient answer is memoised on the fold together with the
interval of ``now`` over which it cannot change (bounded by every validity
start/end in the case, the 15th and 18th birthdays and the latest event). Every
memo is keyed by the identity (or, for immutable values, the value) of all it
depends on (:mod:`policy._memo`): a state with a new event, other parties or
other subject facts never sees an old answer.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_right
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from sigbus.policy._index import CaseIndex, RecordStatus, RecordView, build_index, case_index
from sigbus.policy._memo import memo
from sigbus.policy.model import (
    CaseState,
    ConsentRef,
    Decision,
    DecisionRequest,
    DenyCode,
    DenyReason,
    RecipientDecision,
    StatutoryAssertion,
    SubjectFacts,
    Verdict,
)
from sigbus.policy.rules import Rules, StatuteRule
from sigbus.protocol.codes import ConsenterRole, ConsentPurpose
from sigbus.protocol.ids import HUB, AgencyId, MessageType
from sigbus.protocol.messages import HUB_RECORD_TYPES, consenter_key

#: Ages are counted in Swedish calendar days: a birthday starts at 00:00 Stockholm time.
STOCKHOLM = ZoneInfo("Europe/Stockholm")

#: Rule ids of the built-in forbids (they beat every permit).
FORBID_NON_PARTY = "forbid_non_party"
FORBID_HUB_RECORD = "forbid_hub_record"

_YOUNG_PERSON = ConsenterRole.YOUNG_PERSON.value
#: Stands in for the guardians of a minor whose custody the hub does not know; no
#: consent record can be this consenter (guardian refs are ``vh-…``).
CUSTODY_UNKNOWN = "custody_unknown"
_M = TypeVar("_M", bound=BaseModel)
_setattr = object.__setattr__
_new = object.__new__  # BaseModel defines no __new__; cls.__new__ is a slower lookup


def _trusted(cls: type[_M], values: dict[str, Any]) -> _M:
    """Build a model from values the engine made itself (already of the declared types).

    Like ``model_construct`` without its defaults handling (about twice as fast);
    ``values`` must name every field. Tests re-validate every decision strictly.
    """
    obj = _new(cls)
    _setattr(obj, "__dict__", values)
    _setattr(obj, "__pydantic_fields_set__", set(values))
    _setattr(obj, "__pydantic_extra__", None)
    _setattr(obj, "__pydantic_private__", None)
    return obj


# -------------------------------------------------------------------------- ages


def age_on(date_of_birth: date, today: date) -> int:
    """Completed years on ``today``.

    A person born on 29 February reaches a new age on 1 March in a common year
    (the tuple comparison below).
    """
    before_birthday = (today.month, today.day) < (date_of_birth.month, date_of_birth.day)
    return today.year - date_of_birth.year - (1 if before_birthday else 0)


def stockholm_date(now: datetime) -> date:
    return now.astimezone(STOCKHOLM).date()


def birthday_instant(date_of_birth: date, years: int) -> datetime:
    """00:00 Europe/Stockholm on the day the person turns ``years`` (29 Feb -> 1 Mar)."""
    year = date_of_birth.year + years
    try:
        day = date_of_birth.replace(year=year)
    except ValueError:  # 29 February in a common year
        day = date(year, 3, 1)
    return datetime(day.year, day.month, day.day, tzinfo=STOCKHOLM)


# --------------------------------------------------------------- compiled rules


@dataclass(frozen=True, slots=True)
class _Compiled:
    """The rules in the shape the hot path reads (memoised per Rules object)."""

    consent_id: str
    purpose: ConsentPurpose
    categories: frozenset[MessageType]
    majority: int
    own_optional_under: int
    own_required_under_15: bool
    max_len: timedelta
    statutes: dict[str, StatuteRule]
    sha256: str
    version: str


def _compile(rules: Rules) -> _Compiled:
    key = (rules.consent, rules.municipality, rules.statute, rules.sha256, rules.rules_version)

    def build() -> _Compiled:
        c = rules.consent
        return _Compiled(
            consent_id=c.id,
            purpose=c.purpose,
            categories=frozenset(c.categories),
            majority=c.age_of_majority,
            own_optional_under=c.own_consent_optional_under,
            own_required_under_15=rules.municipality.young_person_consent_required_under_15,
            max_len=timedelta(days=rules.municipality.max_consent_days),
            statutes={s.id: s for s in rules.statute},
            sha256=rules.sha256,
            version=rules.rules_version,
        )

    return memo(rules, "compiled", key, build)


def _required(age: int, guardians: frozenset[str], cr: _Compiled) -> tuple[str, ...]:
    """Who must have consented (see :func:`required_consenters`)."""
    if age >= cr.majority:
        return (_YOUNG_PERSON,)
    # Every minor has a vårdnadshavare (FB 6 kap. 2 §; a särskilt förordnad one if need
    # be): no guardian on record means custody is unknown, never that none is needed.
    named = tuple(consenter_key(ConsenterRole.GUARDIAN, g) for g in sorted(guardians))
    named = named or (CUSTODY_UNKNOWN,)
    if age < cr.own_optional_under and not cr.own_required_under_15:
        return named
    return (_YOUNG_PERSON, *named)


def required_consenters(subject: SubjectFacts, rules: Rules, now: datetime) -> tuple[str, ...]:
    """Who must have consented at ``now``.

    Adult (≥ age of majority, FB 9 kap. 1 §): the young person only — a guardian's
    consent stops counting on the 18th birthday. Minor: the young person **and**
    every guardian with custody (OSL 12 kap. 2 §; FB 6 kap. 11 §, 13 §: guardians
    with joint custody decide together); below 15 the municipality may rely on
    the guardians alone.
    """
    age = age_on(subject.date_of_birth, stockholm_date(now))
    return _required(age, subject.guardians_with_custody, _compile(rules))


# ---------------------------------------------------------------------- consent


def _plain(code: DenyCode, detail: str | None = None) -> DenyReason:
    return _trusted(
        DenyReason, {"code": code, "consenter": None, "consent_id": None, "detail": detail}
    )


def _reason(code: DenyCode, rec: RecordView, detail: str | None = None) -> DenyReason:
    return _trusted(
        DenyReason,
        {"code": code, "consenter": rec.consenter, "consent_id": rec.consent_id, "detail": detail},
    )


def _record_reason(
    rec: RecordView,
    discloser: AgencyId,
    recipient: AgencyId,
    category: MessageType,
    now: datetime,
    cr: _Compiled,
) -> DenyReason | None:
    """None when the record covers the release at ``now``; else the first failure.

    FHIR R5 Consent: ``status`` active, ``provision.period`` contains now,
    ``provision.actor`` (discloser, recipient), ``documentType``, ``purpose``.
    """
    if rec.status is RecordStatus.WITHDRAWN:
        return _reason(DenyCode.CONSENT_WITHDRAWN, rec)
    scope = rec.scope
    if rec.status is RecordStatus.CONFLICT or scope is None:
        return _reason(DenyCode.CONSENT_CONFLICT, rec, rec.conflict)
    if rec.status is RecordStatus.EXPIRED:
        return _reason(DenyCode.CONSENT_EXPIRED, rec, "expired_event")
    if scope.valid_until - scope.valid_from > cr.max_len:
        return _reason(DenyCode.CONSENT_TOO_LONG, rec, "max_consent_days")
    if now < scope.valid_from:
        return _reason(DenyCode.OUTSIDE_PERIOD, rec, "before_valid_from")
    if now >= scope.valid_until:
        return _reason(DenyCode.CONSENT_EXPIRED, rec, "valid_until")
    if scope.purpose != cr.purpose:
        return _reason(DenyCode.SCOPE_PURPOSE, rec)
    if discloser not in scope.disclosers:
        return _reason(DenyCode.SCOPE_DISCLOSER, rec, discloser)
    if recipient not in scope.recipients:
        return _reason(DenyCode.SCOPE_RECIPIENT, rec, recipient)
    if category not in scope.categories:
        return _reason(DenyCode.SCOPE_CATEGORY, rec, category.value)
    return None


def _consent(
    case: CaseState | None,
    index: CaseIndex | None,
    required: tuple[str, ...],
    discloser: AgencyId,
    recipient: AgencyId,
    category: MessageType,
    now: datetime,
    cr: _Compiled,
) -> tuple[list[ConsentRef], list[DenyReason], list[str]]:
    """OSL 12 kap. 2 §: (refs, reasons, notes); permitted iff ``reasons`` is empty."""
    if case is None or index is None:
        return [], [_plain(DenyCode.NO_BASIS, "no_case")], []
    if category not in cr.categories:
        return [], [_plain(DenyCode.NO_BASIS, "category_not_consentable")], []
    reasons: list[DenyReason] = []
    if discloser not in case.parties:
        reasons.append(_plain(DenyCode.NOT_A_PARTY, "discloser"))
    if recipient not in case.parties:
        reasons.append(_plain(DenyCode.NOT_A_PARTY, "recipient"))
    refs: list[ConsentRef] = []
    notes: list[str] = []
    for consenter in required:
        if consenter == CUSTODY_UNKNOWN:  # fail closed: a missing fact is not a permission
            reasons.append(_plain(DenyCode.SUBJECT_UNKNOWN, "custody"))
            continue
        records = index.by_consenter.get(consenter, ())
        if not records:
            reasons.append(
                _trusted(
                    DenyReason,
                    {
                        "code": DenyCode.CONSENT_MISSING,
                        "consenter": consenter,
                        "consent_id": None,
                        "detail": None,
                    },
                )
            )
            continue
        found: RecordView | None = None
        failures: list[DenyReason] = []
        for rec in records:
            notes.extend(rec.notes)
            why = _record_reason(rec, discloser, recipient, category, now, cr)
            if why is None:
                found = rec
                break
            failures.append(why)
        if found is not None:
            refs.append(
                _trusted(ConsentRef, {"consent_id": found.consent_id, "revision": found.revision})
            )
        else:
            reasons.extend(failures)
    return refs, reasons, notes


# ---------------------------------------------------------------------- statute


def _statute_reason(
    statute: StatuteRule,
    assertion: StatutoryAssertion,
    discloser: AgencyId,
    recipient: AgencyId,
    category: MessageType,
    age: int | None,
) -> DenyReason | None:
    """None when ``statute`` permits this release; else the first failed precondition."""
    sid = statute.id
    if statute.senders is not None and discloser not in statute.senders:
        return _plain(DenyCode.SENDER_NOT_ALLOWED, sid)
    if category not in statute.categories:
        return _plain(DenyCode.STATUTE_PRECONDITION_NOT_MET, f"{sid}:category")
    if recipient != statute.recipient:
        # A statutory basis reaches only the recipient the statute names.
        return _plain(DenyCode.STATUTE_RECIPIENT_NOT_ALLOWED, sid)
    if age is None:
        return _plain(DenyCode.SUBJECT_UNKNOWN, sid)
    if age >= statute.subject_under_age:
        return _plain(DenyCode.STATUTE_PRECONDITION_NOT_MET, f"{sid}:age")
    if not statute.evidence_re.fullmatch(assertion.evidence_id):
        return _plain(DenyCode.STATUTE_PRECONDITION_NOT_MET, f"{sid}:{statute.evidence_kind}")
    return None


# ---------------------------------------------------------------- per recipient


def _decision(
    recipient: AgencyId,
    outcome: Verdict,
    *,
    basis: str | None = None,
    statutory: bool = False,
    refs: tuple[ConsentRef, ...] = (),
    rule_ids: tuple[str, ...] = (),
    reasons: tuple[DenyReason, ...] = (),
    notes: list[str] | None = None,
) -> RecipientDecision:
    return _trusted(
        RecipientDecision,
        {
            "recipient": recipient,
            "outcome": outcome,
            "legal_basis": basis,
            "statutory": statutory,
            "consent_refs": refs,
            "rule_ids": rule_ids,
            "reasons": reasons,
            "notes": tuple(dict.fromkeys(notes)) if notes else (),
        },
    )


def _forbid(recipient: AgencyId, code: DenyCode, detail: str, rule: str) -> RecipientDecision:
    return _decision(recipient, Verdict.DENY, rule_ids=(rule,), reasons=(_plain(code, detail),))


def _decide_recipient(
    request: DecisionRequest,
    recipient: AgencyId,
    cr: _Compiled,
    now: datetime,
    index: CaseIndex | None,
    age: int | None,
    required: tuple[str, ...],
) -> RecipientDecision:
    discloser = request.discloser
    category = request.category
    # 1. Forbids: beat any permit below.
    # The hub is never a party: it only ever records (case opened, samtycke).
    if recipient == HUB:
        return _forbid(recipient, DenyCode.UNKNOWN_PARTY, "recipient", FORBID_NON_PARTY)
    if discloser == HUB:
        return _forbid(recipient, DenyCode.UNKNOWN_PARTY, "discloser", FORBID_NON_PARTY)
    if category in HUB_RECORD_TYPES:
        return _forbid(recipient, DenyCode.NO_BASIS, "hub_record", FORBID_HUB_RECORD)
    if age is not None and age < 0:
        # Born after the decision: an implausible fact, never "under 18" (fail closed).
        return _decision(
            recipient, Verdict.DENY, reasons=(_plain(DenyCode.SUBJECT_UNKNOWN, "date_of_birth"),)
        )

    # 3 (evaluated first, applied after consent): statutes asserted by the sender.
    # Every assertion is checked (the same basis may be asserted twice with other
    # evidence); the first that holds, in request order, is the basis.
    statute_reasons: list[DenyReason] = []
    statute_hit: StatuteRule | None = None
    for assertion in request.assertions:
        statute = cr.statutes.get(assertion.basis)
        if statute is None:
            # Never echo an unknown asserted string: it is sender-controlled text.
            why: DenyReason | None = _plain(DenyCode.NO_BASIS, "unknown_statute")
        else:
            why = _statute_reason(statute, assertion, discloser, recipient, category, age)
        if why is None:
            statute_hit = statute
            break
        if why not in statute_reasons:
            statute_reasons.append(why)

    # 2. Consent: never for a referral (decided by statute only).
    notes: list[str] = []
    consent_reasons: list[DenyReason] = []
    if category is not MessageType.REFERRAL:
        refs, consent_reasons, notes = _consent(
            request.case, index, required, discloser, recipient, category, now, cr
        )
        if not consent_reasons:
            if statute_hit is not None:
                notes.append(f"statute_also_applicable:{statute_hit.id}")
            return _decision(
                recipient,
                Verdict.PERMIT,
                basis=cr.consent_id,
                refs=tuple(refs),
                rule_ids=(cr.consent_id,),
                notes=notes,
            )

    if statute_hit is not None:
        return _decision(
            recipient,
            Verdict.PERMIT,
            basis=statute_hit.id,
            statutory=True,
            rule_ids=(statute_hit.id,),
            notes=notes,
        )

    # 4. Default deny, with every reason found.
    reasons = statute_reasons + consent_reasons
    if not reasons:
        reasons = [_plain(DenyCode.NO_BASIS, "referral_needs_statute")]
    return _decision(recipient, Verdict.DENY, reasons=tuple(reasons), notes=notes)


# ------------------------------------------------------------- coverage memo


class _Coverage:
    """Memoised answers for one case state and one rules object (no assertions).

    ``bounds`` are the instants at which an answer can change: every record's
    valid_from / valid_until, the 15th and 18th birthdays (Stockholm midnight)
    and the latest recorded event. Between two bounds every comparison in
    :func:`_record_reason` and :func:`_required` has the same result.
    """

    __slots__ = ("answers", "bounds", "parties", "rules", "subject")

    def __init__(self, rules: _Compiled, case: CaseState, index: CaseIndex) -> None:
        instants: set[datetime] = set()
        for records in index.by_consenter.values():
            for rec in records:
                if rec.scope is not None:
                    instants.add(rec.scope.valid_from)
                    instants.add(rec.scope.valid_until)
        dob = case.subject.date_of_birth
        instants.add(birthday_instant(dob, rules.majority))
        instants.add(birthday_instant(dob, rules.own_optional_under))
        if index.latest_recorded_at is not None:
            instants.add(index.latest_recorded_at)
        self.rules = rules
        self.subject = case.subject
        self.parties = case.parties
        # In UTC: comparing aware datetimes that share one tzinfo object skips the
        # utcoffset() calls (the hub's clock gives UTC).
        self.bounds: list[datetime] = sorted({t.astimezone(UTC) for t in instants})
        self.answers: dict[tuple[AgencyId, AgencyId, MessageType, int], RecipientDecision] = {}

    def slot(self, now: datetime) -> int:
        return bisect_right(self.bounds, now)


class _CaseView:
    """Everything the engine derives from one case state, memoised together."""

    __slots__ = ("_digest", "case", "coverage", "index", "shareable")

    def __init__(self, case: CaseState, *, shareable: bool = True) -> None:
        self.case = case
        self.index = build_index(case)
        self._digest: str | None = None
        self.coverage: _Coverage | None = None
        #: False for states holding mutable containers (model_construct): nothing shared.
        self.shareable = shareable

    @property
    def digest(self) -> str:
        if self._digest is None:
            self._digest = self.case.digest()
        return self._digest

    def coverage_for(self, cr: _Compiled) -> _Coverage:
        cov = self.coverage
        if cov is None or cov.rules is not cr:
            if self.shareable:
                cov = _shared_coverage(self.index, self.case, cr)
            else:
                cov = _Coverage(cr, self.case, self.index)
            self.coverage = cov
        return cov


_MAX_COVERAGES_PER_FOLD = 4


def _shared_coverage(index: CaseIndex, case: CaseState, cr: _Compiled) -> _Coverage:
    """The coverage memo for (fold, subject facts, parties, rules), kept on the fold.

    States rebuilt per message from the same events share the fold (see
    ``_index.build_index``) and so share these answers. Subject facts and
    parties are immutable values: compared by identity, then by value.
    """
    subject, parties = case.subject, case.parties
    for item in index.derived:
        if (
            isinstance(item, _Coverage)
            and item.rules is cr
            and (item.subject is subject or item.subject == subject)
            and (item.parties is parties or item.parties == parties)
        ):
            return item
    cov = _Coverage(cr, case, index)
    index.derived.append(cov)
    if len(index.derived) > _MAX_COVERAGES_PER_FOLD:
        del index.derived[0]
    return cov


def _view(case: CaseState) -> _CaseView:
    # Keyed by the identity of every field an answer depends on (policy._memo): a
    # state with a new event, other parties or other subject facts gets a new view.
    key = (case.consent_events, case.subject, case.parties, case.case_ref)
    if (
        type(case.consent_events) is not tuple
        or type(case.parties) is not frozenset
        or type(case.subject.guardians_with_custody) is not frozenset
    ):
        # Mutable containers (only via model_construct) could change in place under
        # the same identity: never memoise them.
        return _CaseView(case, shareable=False)
    return memo(case, "view", key, lambda: _CaseView(case))


# ------------------------------------------------------------------------ decide


def _netstring(parts: list[str]) -> bytes:
    return "".join(f"{len(p)}:{p}," for p in parts).encode("utf-8")


def _encode_parts(parts: list[str]) -> bytes:
    """An injective encoding of a list of strings.

    Joined by NUL when no part contains one (then, with the part count fixed by
    the format, the join is injective); otherwise netstrings (``len:value,``).
    """
    joined = "\x00".join(parts)
    if joined.count("\x00") == len(parts) - 1:
        return b"0" + joined.encode("utf-8")
    return b"1" + _netstring(parts)


def _subject_part(subject: SubjectFacts) -> str:
    guardians = ",".join(sorted(subject.guardians_with_custody))
    return f"{subject.date_of_birth.isoformat()};{guardians}"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _decision_id(
    request: DecisionRequest, cr: _Compiled, now: datetime, view: _CaseView | None
) -> str:
    """``dec-`` + SHA-256 over the canonical request, the rules hash and ``now``.

    Canonical request: the request's fields in a fixed order (with the count of
    assertions), injectively encoded (:func:`_encode_parts`); the case state
    enters by its RFC 8785 digest, ``now`` as integer microseconds since the
    Unix epoch (so the same instant in any UTC offset gives the same id).
    """
    subject = request.subject
    parts = [
        "sigbus-decision/1",
        request.message_id,
        request.discloser,
        ",".join(request.recipients),
        request.category.value,
        view.digest if view is not None else "-",
        "-" if subject is None else _subject_part(subject),
        cr.sha256,
        str((now - _EPOCH) // _MICROSECOND),
        str(len(request.assertions)),
    ]
    for a in request.assertions:
        parts.append(a.basis)
        parts.append(a.evidence_id)
    return "dec-" + hashlib.sha256(_encode_parts(parts)).hexdigest()[:40]


class _Context:
    """What a full evaluation needs beyond the request; built only on a memo miss."""

    __slots__ = ("age", "index", "required")

    def __init__(
        self, request: DecisionRequest, cr: _Compiled, now: datetime, view: _CaseView | None
    ) -> None:
        case = request.case
        subject = case.subject if case is not None else request.subject
        self.age = None if subject is None else age_on(subject.date_of_birth, stockholm_date(now))
        self.index: CaseIndex | None = None
        self.required: tuple[str, ...] = ()
        if case is not None and view is not None and self.age is not None:
            latest = view.index.latest_recorded_at
            # A query about an instant before the latest event sees only the
            # events recorded by then (uncached fold).
            self.index = view.index if latest is None or latest <= now else case_index(case, now)
            self.required = _required(self.age, case.subject.guardians_with_custody, cr)


def decide(request: DecisionRequest, rules: Rules, *, now: datetime) -> Decision:
    """Decide, per requested recipient (same order), whether the release is permitted.

    Never raises: an error anywhere in evaluation is a deny with ``evaluation_error``.
    """
    try:
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("now must be timezone-aware")  # noqa: TRY301
        cr = _compile(rules)
        case = request.case
        view: _CaseView | None = None
        coverage: _Coverage | None = None
        slot = 0
        if case is not None:
            view = _view(case)
            latest = view.index.latest_recorded_at
            if not request.assertions and (latest is None or latest <= now):
                coverage = view.coverage_for(cr)
                slot = coverage.slot(now)
        ctx: _Context | None = None
        discloser, category = request.discloser, request.category
        per: list[RecipientDecision] = []
        for recipient in request.recipients:
            if coverage is not None:
                akey = (discloser, recipient, category, slot)
                answer = coverage.answers.get(akey)
                if answer is not None:
                    per.append(answer)
                    continue
            if ctx is None:
                ctx = _Context(request, cr, now, view)
            answer = _decide_recipient(
                request, recipient, cr, now, ctx.index, ctx.age, ctx.required
            )
            if coverage is not None:
                coverage.answers[akey] = answer
            per.append(answer)
        return _trusted(
            Decision,
            {
                "decision_id": _decision_id(request, cr, now, view),
                "decided_at": now,
                "rules_hash": cr.sha256,
                "per_recipient": tuple(per),
                "rules_version": cr.version,
                "message_id": request.message_id,
            },
        )
    except Exception as e:  # noqa: BLE001 - default deny: any error is a deny, never raised
        return _error_decision(request, rules, now, e)


def _error_decision(
    request: DecisionRequest, rules: Rules, now: datetime, error: Exception
) -> Decision:
    # The reason names the exception type only: a message could echo input data.
    detail = type(error).__name__[:64]
    reason = DenyReason(code=DenyCode.EVALUATION_ERROR, detail=detail)
    try:
        per = tuple(
            RecipientDecision(recipient=str(r), outcome=Verdict.DENY, reasons=(reason,))
            for r in request.recipients
        )
    except Exception:  # noqa: BLE001 - recipients unreadable: nobody is permitted anyway
        per = ()
    rules_hash = str(getattr(rules, "sha256", ""))
    seed = _netstring(
        [
            "sigbus-decision-error/1",
            str(getattr(request, "message_id", "")),
            rules_hash,
            repr(now),
            detail,
        ]
    )
    return Decision.model_construct(
        decision_id="dec-" + hashlib.sha256(seed).hexdigest()[:40],
        decided_at=now,
        rules_hash=rules_hash,
        per_recipient=per,
        rules_version=getattr(rules, "rules_version", None),
        message_id=getattr(request, "message_id", None),
    )
