"""How the demo judges a step (sigbus/demo.py: judge): every part of a step's
expectation can fail it, so an ``ok`` line in `make demo` means what it says."""

from __future__ import annotations

import dataclasses

from sigbus.audit.entry import EntryOutcome, LogEntry
from sigbus.broker.notices import notice_for
from sigbus.demo import AuditOutcome, Expectation, RetentionOutcome, judge
from sigbus.protocol.ids import HUB, MessageType
from tests.audit.audit_fixtures import make_entries

P, S, SO = "police", "school", "social"
MID = "msg-000000000042"


def entry(index: int, outcome: EntryOutcome, recipient: str | None, **kw: object) -> LogEntry:
    base = LogEntry.model_validate_json(make_entries(1)[0])
    return base.model_copy(
        update={"index": index, "message_id": MID, "outcome": outcome, "recipient": recipient, **kw}
    )


def step(expected: dict[str, EntryOutcome], logged: list[LogEntry], **kw: object) -> Expectation:
    notice = notice_for(logged, hub_key_id="hub-sig-test")
    return Expectation("step", MID, expected, notice=notice, **kw)  # type: ignore[arg-type]


def test_a_release_pulled_back_holds_only_if_the_recipient_never_got_it() -> None:
    logged = [entry(7, EntryOutcome.RELEASE, P)]
    pulled = step({P: EntryOutcome.RELEASE}, logged, pulled_back=(P,))
    assert judge(pulled, logged, {P: [], SO: []})
    assert pulled.observed == {P: "release"}
    assert not judge(pulled, logged, {P: [MID], SO: []})  # it reached the police after all
    plain = step({P: EntryOutcome.RELEASE}, logged)
    assert not judge(plain, logged, {P: []})  # released, and never arrived
    assert not judge(plain, logged, {P: [MID], S: [MID]})  # arrived where nothing was released


def test_a_withdrawal_holds_with_its_retraction_and_a_notice_of_the_record_only() -> None:
    recorded = entry(
        25,
        EntryOutcome.RECORDED,
        None,
        sender=SO,
        message_type=MessageType.CONSENT_EVENT,
        consent_refs=(),
        release_id=None,
    )
    retraction = entry(
        26, EntryOutcome.RETRACTION, P, sender=SO, reasons=("retracted_after_withdrawal",)
    )
    logged = [recorded, retraction]
    x = step({HUB: EntryOutcome.RECORDED, P: EntryOutcome.RETRACTION}, logged)
    assert x.notice is not None
    assert [i.log_index for i in x.notice.items] == [25]
    assert judge(x, logged, {P: [], SO: []})
    # Expecting no retraction, or a retraction that did not happen, fails the step.
    assert not judge(step({HUB: EntryOutcome.RECORDED}, logged), logged, {P: []})
    only = [recorded]
    want = {HUB: EntryOutcome.RECORDED, P: EntryOutcome.RETRACTION}
    assert not judge(step(want, only), only, {P: []})
    # No notice came back to the sender: the step fails too.
    silent = Expectation("step", MID, want, notice=None)
    assert not judge(silent, logged, {P: []})


def test_the_reason_and_the_case_state_must_match() -> None:
    denied = [
        entry(
            31,
            EntryOutcome.DENY,
            None,
            reasons=("case_closed",),
            consent_refs=(),
            release_id=None,
            legal_basis=None,
        )
    ]
    closed = {"status": "closed", "closure": "plan_completed"}
    x = step({HUB: EntryOutcome.DENY}, denied, reason="case_closed", state_expected=closed)
    x.state_observed = {**closed, "missing": "guardian:vh-2"}
    assert judge(x, denied, {P: [], S: []})
    assert not judge(step({HUB: EntryOutcome.DENY}, denied, reason="consent_withdrawn"), denied, {})
    x.state_observed = {"status": "paused"}
    assert not judge(x, denied, {P: [], S: []})


def test_a_state_step_holds_only_on_the_state_it_names() -> None:
    active = {"status": "active", "missing": "none"}
    x = Expectation("3b", None, {}, state_expected=active, state_observed=dict(active))
    assert judge(x, [], {})
    x.state_observed = {"status": "consent_collection", "missing": "guardian:vh-2"}
    assert not judge(x, [], {})
    assert not judge(Expectation("3b", None, {}), [], {})  # nothing expected: not a check


def test_the_hubs_own_reminder_holds_once_without_a_notice() -> None:
    logged = [entry(30, EntryOutcome.RELEASE, P, sender=HUB)]
    x = Expectation("remind", MID, {P: EntryOutcome.RELEASE}, hub_own=True)
    assert judge(x, logged, {P: [MID], SO: []})
    assert not judge(x, logged, {P: [], SO: []})  # logged as released, never arrived
    again = Expectation("remind", MID, {P: EntryOutcome.RELEASE}, hub_own=True, repeats=1)
    assert not judge(again, logged, {P: [MID]})  # a second pass reminded again
    twice = [*logged, entry(31, EntryOutcome.RELEASE, P, sender=HUB)]
    assert not judge(x, twice, {P: [MID]})  # two reminders logged for one commitment
    denied = [entry(30, EntryOutcome.DENY, P, sender=HUB, release_id=None)]
    assert not judge(x, denied, {P: []})  # expected released, the hub denied it
    none = Expectation("remind", None, {P: EntryOutcome.RELEASE}, hub_own=True)
    assert not judge(none, [], {P: []})  # no reminder at all


def test_the_retention_run_holds_only_as_scheduled_refused_and_verified() -> None:
    audit = AuditOutcome(
        cosigned_by=["police"],
        inclusion_proved=1,
        export_path="x",
        export_summary="VERIFIED",
        ok=True,
    )

    def run(**kw: object) -> RetentionOutcome:
        facts: dict[str, object] = {
            "run_at": "2027-06-03",
            "shredded": ["msg-a"],
            "expected": ["msg-a"],
            "refusals": ["content_shredded"],
            "kept_opens": True,
            "audit": audit,
        }
        return RetentionOutcome(**{**facts, **kw})  # type: ignore[arg-type]

    assert run().ok
    assert not run(shredded=[], expected=[], refusals=[]).ok  # nothing due: nothing shown
    assert not run(shredded=["msg-a", "msg-b"]).ok  # more than the schedule says
    assert not run(refusals=["opened"]).ok  # the hub still opened it
    assert not run(kept_opens=False).ok  # shredding reached a message in its period
    assert not run(audit=dataclasses.replace(audit, ok=False)).ok  # the log no longer verifies
