"""Policy decision latency: ``policy.decide`` vs the same check as a Cedar policy (cedarpy).

Run: ``.venv/bin/python bench/policy_bench.py`` (``--quick`` for a smaller run).

What is measured (issue 5, "Evidence"):

* a store of 100,000 subjects/cases (1-3 consent records each) plus one target
  subject with 10 consent records (given, amended, widened, withdrawn, expired,
  too long, future, and a guardian no longer in custody);
* ``decide`` latency (median, p99) on requests about the target subject, one
  recipient each, at instants spanning the subject's 18th birthday and the
  records' validity periods; 10 % assert OSL 10 kap. 18 a § (full path, no memo);
* the same requests through Cedar (``cedarpy.is_authorized``, PolicySet and
  Entities parsed once; entities include the 100,000 cases), per call, and
  through ``is_authorized_batch`` (amortised) as Cedar's fastest mode;
* the count of requests on which both agree (permit == Allow);
* ``decide`` on random subjects of the store, first touch (cold: fold + memo
  build) and again (warm);
* ``decide`` on the target with a new ``CaseState`` per request built from the
  same event objects, as ``broker/state.py`` does.

Cedar has no quantifiers, so "every required consenter has some record that
covers the release" cannot be one static policy over entity data. The Cedar
side therefore compiles the case's folded consent records (the same fold the
engine uses: withdrawals, expiries and amendments applied) into one policy per
case; Cedar evaluates the parties, scopes, validity periods against ``now``,
the 18th birthday, the statute and the hub forbid. Both sides get the state
compiled once; both evaluate time-dependent conditions on every request.

The engine's speed comes from memos keyed by object identity (``policy._memo``):
the fold of a case's events, and per (discloser, recipient, category) the answer
with the interval of ``now`` over which it cannot change. A new event makes a
new events tuple, so no memo can honour a consent withdrawn since.
"""

from __future__ import annotations

import argparse
import gc
import json
import random
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import cedarpy  # noqa: E402

from sigbus.policy import (  # noqa: E402
    CaseState,
    ConsentRecordEvent,
    DecisionRequest,
    Rules,
    StatutoryAssertion,
    SubjectFacts,
    Verdict,
    decide,
    default_rules,
)
from sigbus.policy._index import RecordStatus, build_index  # noqa: E402
from sigbus.policy.engine import birthday_instant  # noqa: E402
from sigbus.protocol.codes import ConsentAction, ConsenterRole, ConsentPurpose  # noqa: E402
from sigbus.protocol.ids import AgencyId, MessageType  # noqa: E402
from sigbus.protocol.messages import ConsentScope  # noqa: E402

POLICE, SCHOOL, SOCIAL = "police", "school", "social"
ALL = (POLICE, SCHOOL, SOCIAL)
CATS = (
    MessageType.CASE_INVITATION,
    MessageType.PLAN_COMMITMENT,
    MessageType.COMMITMENT_STATUS,
    MessageType.MEETING_NOTICE,
)
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
EVIDENCE = "ab" * 32
YP = "young_person"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TARGET = "case-target"


def us(t: datetime) -> int:
    return (t - EPOCH) // timedelta(microseconds=1)


# ------------------------------------------------------------------------- state


def scope(
    disclosers: Sequence[AgencyId] = ALL,
    recipients: Sequence[AgencyId] = ALL,
    categories: Sequence[MessageType] = CATS,
    start: datetime = T0 - 60 * DAY,
    end: datetime = T0 + 200 * DAY,
) -> ConsentScope:
    return ConsentScope(
        disclosers=tuple(disclosers),
        recipients=tuple(recipients),
        categories=tuple(categories),
        purpose=ConsentPurpose.SIG_CASE,
        valid_from=start,
        valid_until=end,
    )


def ev(
    cid: str,
    rev: int,
    action: ConsentAction,
    who: str,
    sc: ConsentScope | None,
    at: datetime,
) -> ConsentRecordEvent:
    guardian = who != YP
    return ConsentRecordEvent(
        consent_id=cid,
        revision=rev,
        action=action,
        consenter_role=ConsenterRole.GUARDIAN if guardian else ConsenterRole.YOUNG_PERSON,
        guardian_ref=who if guardian else None,
        scope=sc,
        acted_at=at,
        recorded_at=at,
        recorded_by="social_sig_coordinator",
        evidence_sha256=EVIDENCE if sc is not None else None,
        source_message_id=f"msg-bench-{cid}-{rev}",
    )


GIVEN, AMENDED = ConsentAction.GIVEN, ConsentAction.AMENDED
WITHDRAWN, EXPIRED = ConsentAction.WITHDRAWN, ConsentAction.EXPIRED


def target_case() -> CaseState:
    """A 17-year-old turning 18 on 2026-03-31, two guardians, 10 consent records."""
    t = T0 - 50 * DAY
    events = [
        # young person: a wide consent later narrowed (police no longer a recipient)
        ev("consent-t01", 1, GIVEN, YP, scope(), t),
        ev("consent-t01", 2, AMENDED, YP, scope(recipients=[SOCIAL, SCHOOL]), t + 20 * DAY),
        # young person: police may receive meeting notices -- withdrawn
        ev("consent-t02", 1, GIVEN, YP, scope(recipients=[POLICE], categories=CATS[3:]), t),
        ev("consent-t02", 2, WITHDRAWN, YP, None, t + 30 * DAY),
        # young person: an expired record and a future one (starts in 10 days)
        ev("consent-t03", 1, GIVEN, YP, scope(end=T0 + 20 * DAY), t),
        ev("consent-t03", 2, EXPIRED, YP, None, t + 40 * DAY),
        ev(
            "consent-t04",
            1,
            GIVEN,
            YP,
            scope(categories=CATS[3:], start=T0 + 10 * DAY, end=T0 + 100 * DAY),
            t,
        ),
        # guardian vh-1: one consent, one too long (400 days > 365)
        ev("consent-t05", 1, GIVEN, "vh-1", scope(), t),
        ev("consent-t06", 1, GIVEN, "vh-1", scope(end=T0 + 340 * DAY), t),
        # guardian vh-2: school and social as disclosers only; one withdrawn; one widened
        ev("consent-t07", 1, GIVEN, "vh-2", scope(disclosers=[SCHOOL, SOCIAL]), t),
        ev("consent-t08", 1, GIVEN, "vh-2", scope(), t),
        ev("consent-t08", 2, WITHDRAWN, "vh-2", None, t + 10 * DAY),
        ev("consent-t09", 1, GIVEN, "vh-2", scope(recipients=[SOCIAL]), t),
        ev("consent-t09", 2, AMENDED, "vh-2", scope(), t + 5 * DAY),
        # vh-3 no longer has custody: never required, never counted
        ev("consent-t10", 1, GIVEN, "vh-3", scope(), t),
    ]
    events.sort(key=lambda e: e.recorded_at)
    return CaseState(
        case_ref=TARGET,
        subject=SubjectFacts(
            date_of_birth=date(2008, 3, 31), guardians_with_custody=frozenset({"vh-1", "vh-2"})
        ),
        parties=frozenset(ALL),
        consent_events=tuple(events),
    )


def store_case(i: int, rng: random.Random) -> CaseState:
    dob = date(2006, 1, 1) + timedelta(days=rng.randrange(0, 8 * 365))
    guardians = [f"vh-{k}" for k in range(1, rng.randrange(0, 3) + 1)]
    consenters = [YP, *guardians]
    start = T0 - rng.randrange(1, 200) * DAY
    events = [
        ev(f"consent-s{i:06d}c{k}", 1, GIVEN, who, scope(start=start, end=start + 300 * DAY), start)
        for k, who in enumerate(consenters)
    ]
    if rng.random() < 0.1:
        events.append(ev(f"consent-s{i:06d}c0", 2, WITHDRAWN, YP, None, start + DAY))
    return CaseState(
        case_ref=f"case-s{i:06d}",
        subject=SubjectFacts(date_of_birth=dob, guardians_with_custody=frozenset(guardians)),
        parties=frozenset(ALL),
        consent_events=tuple(events),
    )


# ------------------------------------------------------------------------- cedar


def cedar_entity(case: CaseState) -> dict[str, object]:
    dob = case.subject.date_of_birth
    return {
        "uid": {"type": "Case", "id": case.case_ref},
        "attrs": {
            "parties": [
                {"__entity": {"type": "Agency", "id": a}} for a in sorted(case.parties)
            ],
            "adult_at": us(birthday_instant(dob, 18)),
            "age21_at": us(birthday_instant(dob, 21)),
        },
        "parents": [],
    }


def _set(kind: str, values: Sequence[str]) -> str:
    return "[" + ", ".join(f'{kind}::"{v}"' for v in values) + "]"


def cedar_policies(case: CaseState, rules: Rules) -> str:
    """The consent rule for ``case`` (from its folded records), the statute, the forbid."""
    assert rules.young_person_consent_required_under_15, "bench covers the shipped setting"
    index = build_index(case)
    max_len = timedelta(days=rules.max_consent_days)

    def covers(consenter: str) -> str:
        clauses = []
        for rec in index.by_consenter.get(consenter, ()):
            sc = rec.scope
            if rec.status is not RecordStatus.ACTIVE or sc is None:
                continue
            if sc.purpose != rules.consent.purpose or sc.valid_until - sc.valid_from > max_len:
                continue
            cats = [c.value for c in sorted(sc.categories) if c in rules.consent_categories]
            if not (sc.disclosers and sc.recipients and cats):
                continue
            clauses.append(
                f"(context.now >= {us(sc.valid_from)} && context.now < {us(sc.valid_until)}"
                f" && principal in {_set('Agency', sorted(sc.disclosers))}"
                f" && resource in {_set('Agency', sorted(sc.recipients))}"
                f" && action in {_set('Action', cats)})"
            )
        return "(" + " || ".join(clauses) + ")" if clauses else "false"

    guardians = (
        " && ".join(covers(f"guardian:{g}") for g in sorted(case.subject.guardians_with_custody))
        or "true"
    )
    osl = rules.statutes_by_id["osl_10_18a"]
    return f"""
// OSL 12 kap. 2 §: consent, compiled from the folded records of {case.case_ref}
permit (principal, action, resource)
when {{
  context.case == Case::"{case.case_ref}" &&
  context.case.parties.contains(principal) && context.case.parties.contains(resource) &&
  {covers(YP)} &&
  (context.now >= context.case.adult_at || ({guardians}))
}};

// OSL 10 kap. 18 a §: social services -> police, under 21, risk assessment id
permit (
  principal == Agency::"{osl.senders[0]}",
  action in {_set("Action", [c.value for c in osl.categories])},
  resource == Agency::"{osl.recipient}"
)
when {{ context.osl_10_18a_evidence like "ra-*" && context.now < context.case.age21_at }};

// hub records are never released; the hub is not a recipient
forbid (principal, action, resource) when {{ resource == Agency::"hub" }};
"""


def cedar_request(req: DecisionRequest, now: datetime) -> dict[str, object]:
    assert req.case is not None
    assert len(req.recipients) == 1
    evidence = next((a.evidence_id for a in req.assertions if a.basis == "osl_10_18a"), "")
    return {
        "principal": f'Agency::"{req.discloser}"',
        "action": f'Action::"{req.category.value}"',
        "resource": f'Agency::"{req.recipients[0]}"',
        "context": {
            "now": us(now),
            "case": {"__entity": {"type": "Case", "id": req.case.case_ref}},
            "osl_10_18a_evidence": evidence,
        },
    }


# ----------------------------------------------------------------------- timing


def percentiles(ns: list[int]) -> tuple[float, float]:
    ordered = sorted(ns)
    return statistics.median(ordered) / 1000, ordered[int(len(ordered) * 0.99)] / 1000


def timed(fn: Callable[[int], object], n: int) -> list[int]:
    out = []
    clock = time.perf_counter_ns
    for i in range(n):
        t = clock()
        fn(i)
        out.append(clock() - t)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=int, default=100_000, help="subjects in the store")
    parser.add_argument("--requests", type=int, default=20_000, help="requests per measurement")
    parser.add_argument("--quick", action="store_true", help="10,000 subjects, 5,000 requests")
    parser.add_argument("--seed", type=int, default=5)
    args = parser.parse_args(argv)
    if args.quick:
        args.store, args.requests = 10_000, 5_000
    rng = random.Random(args.seed)
    rules = default_rules()

    t = time.perf_counter()
    store: dict[str, CaseState] = {}
    for i in range(args.store):
        c = store_case(i, rng)
        store[c.case_ref] = c
    target = target_case()
    store[TARGET] = target
    build_s = time.perf_counter() - t

    # Requests about the target: instants from the latest event to beyond the
    # 18th birthday and the end of several validity periods.
    instants = [
        T0 + k * DAY + rng.randrange(0, 86_400) * timedelta(seconds=1) for k in range(0, 240, 4)
    ]
    instants += [
        birthday_instant(target.subject.date_of_birth, 18) + d
        for d in (-timedelta(microseconds=1), timedelta(0))
    ]
    requests: list[tuple[DecisionRequest, datetime]] = []
    for i in range(args.requests):
        statutory = rng.random() < 0.1
        discloser = SOCIAL if statutory else rng.choice(ALL)
        recipient = POLICE if statutory else rng.choice(ALL)
        assertions = (
            (StatutoryAssertion(basis="osl_10_18a", evidence_id=f"ra-risk{i % 7:04d}"),)
            if statutory
            else ()
        )
        requests.append(
            (
                DecisionRequest(
                    message_id=f"msg-bench{i:08d}",
                    discloser=discloser,
                    recipients=(recipient,),
                    category=rng.choice(CATS),
                    case=target,
                    assertions=assertions,
                ),
                rng.choice(instants),
            )
        )

    t = time.perf_counter()
    entities_json = json.dumps(
        [{"uid": {"type": "Agency", "id": a}, "attrs": {}, "parents": []} for a in ALL]
        + [cedar_entity(c) for c in store.values()]
    )
    entities = cedarpy.Entities.from_json_str(entities_json)
    policies = cedarpy.PolicySet.from_str(cedar_policies(target, rules))
    cedar_requests = [cedar_request(r, now) for r, now in requests]
    cedar_setup_s = time.perf_counter() - t

    gc.collect()
    gc.freeze()  # the store is long-lived: keep the collector from rescanning it

    # warm-up (both sides), then measure
    for r, now in requests[:500]:
        decide(r, rules, now=now)
    for cr in cedar_requests[:500]:
        cedarpy.is_authorized(cr, policies, entities)

    ours = [decide(r, rules, now=now) for r, now in requests]
    ns_ours = timed(lambda i: decide(requests[i][0], rules, now=requests[i][1]), len(requests))
    theirs = [cedarpy.is_authorized(cr, policies, entities) for cr in cedar_requests]
    ns_cedar = timed(
        lambda i: cedarpy.is_authorized(cedar_requests[i], policies, entities), len(cedar_requests)
    )
    t = time.perf_counter_ns()
    batch = cedarpy.is_authorized_batch(cedar_requests, policies, entities)
    batch_us = (time.perf_counter_ns() - t) / len(cedar_requests) / 1000

    agree = sum(
        (d.per_recipient[0].outcome is Verdict.PERMIT) == c.allowed
        for d, c in zip(ours, theirs, strict=True)
    )
    agree_batch = sum(a.allowed == b.allowed for a, b in zip(theirs, batch, strict=True))
    permits = sum(d.per_recipient[0].outcome is Verdict.PERMIT for d in ours)
    errors = sum(bool(c.diagnostics.errors) for c in theirs)

    # Random subjects of the store: cold (first touch), then warm.
    keys = list(store)
    picks = [store[keys[rng.randrange(len(keys))]] for _ in range(len(requests))]
    store_reqs = [
        DecisionRequest(
            message_id=f"msg-store{i:08d}",
            discloser=rng.choice(ALL),
            recipients=(rng.choice(ALL),),
            category=rng.choice(CATS),
            case=c,
        )
        for i, c in enumerate(picks)
    ]
    now_store = T0 + DAY
    ns_cold = timed(lambda i: decide(store_reqs[i], rules, now=now_store), len(store_reqs))
    ns_warm = timed(lambda i: decide(store_reqs[i], rules, now=now_store), len(store_reqs))

    # As the hub does (broker/state.py): a new CaseState per message, built from
    # the same event objects; memos shared through the events (fold, answers).
    def rebuilt(i: int) -> DecisionRequest:
        r = requests[i][0]
        state = CaseState(
            case_ref=target.case_ref,
            subject=target.subject,
            parties=target.parties,
            consent_events=tuple(target.consent_events),
        )
        return r.model_copy(update={"case": state})

    rebuilt_reqs = [rebuilt(i) for i in range(len(requests))]
    ns_rebuilt = timed(
        lambda i: decide(rebuilt_reqs[i], rules, now=requests[i][1]), len(rebuilt_reqs)
    )

    med, p99 = percentiles(ns_ours)
    rb_med, rb_p99 = percentiles(ns_rebuilt)
    cmed, cp99 = percentiles(ns_cedar)
    cold_med, cold_p99 = percentiles(ns_cold)
    warm_med, warm_p99 = percentiles(ns_warm)
    n = len(requests)
    print(
        f"policy bench: {args.store:,} subjects in store (built in {build_s:.1f} s), "
        f"target subject with {len({e.consent_id for e in target.consent_events})} consent "
        f"records, {n:,} requests ({permits:,} permit), Python {sys.version.split()[0]}"
    )
    print(
        f"  rules {rules.rules_version} sha256 {rules.sha256[:16]}…; "
        f"cedar setup {cedar_setup_s:.1f} s (entities + policies parsed once)"
    )
    print(f"  decide (target subject)          median {med:8.2f} µs   p99 {p99:8.2f} µs")
    print(f"  cedarpy.is_authorized (per call) median {cmed:8.2f} µs   p99 {cp99:8.2f} µs")
    print(f"  cedarpy.is_authorized_batch      mean   {batch_us:8.2f} µs per request (amortised)")
    print(
        f"  ratio cedar/decide (median, per call): {cmed / med:5.1f}x;"
        f" vs batch: {batch_us / med:5.1f}x"
    )
    print(
        f"  agreeing decisions: {agree:,}/{n:,} (cedar batch vs per call: {agree_batch:,}/{n:,};"
        f" cedar errors: {errors})"
    )
    print(
        f"  decide (random store subject)    cold median {cold_med:6.2f} µs p99 {cold_p99:7.2f} µs"
        f" | warm median {warm_med:6.2f} µs p99 {warm_p99:7.2f} µs"
    )
    print(
        f"  decide (target, CaseState rebuilt per message as the hub does) median {rb_med:6.2f} µs"
        f" p99 {rb_p99:7.2f} µs"
    )
    goal = med <= 20 and cmed / med >= 3
    print(
        f"  goal (median <= 20 µs and >= 3x faster than cedar per call): "
        f"{'met' if goal else 'NOT met'}"
    )
    return 0 if agree == n else 1


if __name__ == "__main__":
    raise SystemExit(main())
