"""The hub's index of releases a withdrawal can still pull back (broker/retraction.py)."""

from __future__ import annotations

from sigbus.audit.entry import EntryOutcome, LogEntry
from sigbus.broker.retraction import RetractionIndex, retraction_draft
from tests.audit.audit_fixtures import make_entries


def releases(count: int) -> list[LogEntry]:
    entries = [LogEntry.model_validate_json(line) for line in make_entries(count)]
    return [e for e in entries if e.outcome is EntryOutcome.RELEASE]


def test_releases_are_found_by_the_consent_they_relied_on() -> None:
    index = RetractionIndex()
    for seq, entry in enumerate(releases(12), start=100):
        index.released(entry, seq)
    under = index.under("consent-0000")
    assert under, "the fixture releases under consent-0000"
    assert all(s.entry.consent_refs[0].consent_id == "consent-0000" for s in under)
    assert [s.seq for s in under] == sorted(s.seq for s in under)
    index.forget("consent-0000")
    assert index.under("consent-0000") == []
    assert len(index) == len(releases(12)) - len(under)


def test_statutory_releases_and_fetched_ones_are_not_kept() -> None:
    index = RetractionIndex()
    entry = releases(1)[0]
    index.released(entry.model_copy(update={"statutory": True}), 1)
    assert len(index) == 0  # a statute does not depend on a consent
    index.released(entry, 5)
    index.released(entry.model_copy(update={"release_id": "rel-other"}), 9)
    assert index.fetched(entry.recipient or "", delivered=5) == 1
    assert [s.seq for s in index.under(entry.consent_refs[0].consent_id)] == [9]


def test_the_index_is_bounded_oldest_first() -> None:
    index = RetractionIndex(limit=3)
    entry = releases(1)[0]
    for seq in range(10):
        index.released(entry, seq)
    assert len(index) == 3
    assert [s.seq for s in index.under(entry.consent_refs[0].consent_id)] == [7, 8, 9]


def test_a_retraction_names_the_release_and_the_withdrawal() -> None:
    release = releases(1)[0]
    draft = retraction_draft(release, 77, "msg-withdrawal", release.decided_at)
    assert draft.outcome is EntryOutcome.RETRACTION
    assert (draft.release_id, draft.recipient) == (release.release_id, release.recipient)
    assert (draft.message_id, draft.ingress_seq) == ("msg-withdrawal", 77)
    assert draft.reason_codes() == ("retracted_after_withdrawal",)
    assert draft.consent_refs == release.consent_refs
