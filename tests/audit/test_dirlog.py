"""The directory log (issue #10): a directory not in a quorum-cosigned directory-log
checkpoint is refused; witnesses cosign only what extends their view and ends in the
directory they trust; two inconsistent directory-log checkpoints are a fork."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from audit_fixtures import (
    LOG_KEY,
    POLICE_KEY,
    POLICE_WITNESS,
    SCHOOL_KEY,
    SCHOOL_WITNESS,
    WITNESS_TIME,
    fixture_directory,
    fixture_trust,
)

from sigbus.audit.checkpoint import add_signature_lines, cosign, sign_note
from sigbus.audit.dirlog import (
    DIRECTORY_LOG_ORIGIN,
    DirectoryLeaf,
    DirectoryLog,
    DirectoryNotLogged,
    DirectoryWitness,
    check_directory_logged,
)
from sigbus.audit.errors import AuditError, ForkDetected
from sigbus.audit.splitview import ForkEvidence, compare_views
from sigbus.protocol.directory import Directory

NOW = datetime.fromtimestamp(WITNESS_TIME, UTC)
V1 = fixture_directory()
V2 = V1.model_copy(update={"serial": 2})


def logged(*directories: Directory) -> DirectoryLog:
    return DirectoryLog([DirectoryLeaf.of(d) for d in directories])


def cosigned(log: DirectoryLog, *witnesses: tuple[str, object]) -> str:
    body = log.checkpoint_body()
    note = sign_note(body, DIRECTORY_LOG_ORIGIN, LOG_KEY)
    lines = [cosign(body, name, key, timestamp=WITNESS_TIME) for name, key in witnesses]  # type: ignore[arg-type]
    return add_signature_lines(note, lines)


BOTH = ((POLICE_WITNESS, POLICE_KEY), (SCHOOL_WITNESS, SCHOOL_KEY))


def test_a_logged_directory_with_the_witness_quorum_is_accepted() -> None:
    log = logged(V1, V2)
    result = check_directory_logged(V2, log.proof(cosigned(log, *BOTH)), fixture_trust())
    assert result.witnesses == ("police", "school")
    assert result.checkpoint.size == 2


def test_a_directory_not_in_the_log_is_refused() -> None:
    """The hub shows police a directory (same serial, other keys) it never logged."""
    log = logged(V1, V2)
    proof = log.proof(cosigned(log, *BOTH))
    shown = V2.model_copy(update={"agencies": V2.agencies[:2]})
    with pytest.raises(DirectoryNotLogged, match="not for this directory"):
        check_directory_logged(shown, proof, fixture_trust())
    # Nor can the hub relabel the proof's leaf to the directory it shows.
    relabelled = proof.model_copy(update={"leaf": DirectoryLeaf.of(shown)})
    with pytest.raises(DirectoryNotLogged, match="is not included in the checkpoint of size 2"):
        check_directory_logged(shown, relabelled, fixture_trust())


def test_a_checkpoint_below_the_witness_quorum_is_refused() -> None:
    log = logged(V1, V2)
    proof = log.proof(cosigned(log, (POLICE_WITNESS, POLICE_KEY)))
    with pytest.raises(DirectoryNotLogged, match="witness quorum not met: 1 of the 2"):
        check_directory_logged(V2, proof, fixture_trust())
    # A cosignature with a key that is not school's witness key does not count either.
    forged = log.proof(cosigned(log, (POLICE_WITNESS, POLICE_KEY), (SCHOOL_WITNESS, LOG_KEY)))
    with pytest.raises(DirectoryNotLogged, match="cosigned: police\\)"):
        check_directory_logged(V2, forged, fixture_trust())


def test_a_disclosure_log_checkpoint_is_no_directory_log_checkpoint() -> None:
    log = logged(V1)
    body = log.checkpoint_body().replace(DIRECTORY_LOG_ORIGIN, "sigbus/dev/disclosure-log")
    note = sign_note(body, DIRECTORY_LOG_ORIGIN, LOG_KEY)
    with pytest.raises(DirectoryNotLogged, match="origin"):
        check_directory_logged(V1, log.proof(note), fixture_trust())


def test_a_witness_cosigns_only_the_log_ending_in_the_directory_it_trusts() -> None:
    witness = DirectoryWitness(POLICE_WITNESS, POLICE_KEY, LOG_KEY.public_key())
    one = logged(V1)
    note1 = cosigned(one)
    assert witness.observe(note1, [], one.proof(note1), V1, now=NOW).startswith("\u2014 ")
    two = logged(V1, V2)
    note2 = cosigned(two)
    # Police still trusts serial 1 and has not verified serial 2: a later one is fine
    # only once it holds it; an older or different one never.
    other = V1.model_copy(update={"agencies": V1.agencies[:2]})
    with pytest.raises(DirectoryNotLogged, match="not the directory this agency trusts"):
        witness.observe(note2, two.consistency_proof(1), two.proof(note2), V2.model_copy(
            update={"serial": 3}), now=NOW)  # fmt: skip
    forked = logged(V1, other.model_copy(update={"serial": 2}))
    note_forked = cosigned(forked)
    with pytest.raises(DirectoryNotLogged, match="not the directory this agency trusts"):
        witness.observe(note_forked, forked.consistency_proof(1), forked.proof(note_forked), V2,
                        now=NOW)  # fmt: skip
    assert witness.observe(note2, two.consistency_proof(1), two.proof(note2), V2, now=NOW)


def test_two_inconsistent_directory_log_checkpoints_are_a_fork_with_exportable_evidence() -> None:
    """The hub logs V2 for police and another serial 2 for school: split view of the keys."""
    shown_school = V1.model_copy(update={"serial": 2, "agencies": V1.agencies[:2]})
    police_view, school_view = cosigned(logged(V1, V2)), cosigned(logged(V1, shown_school))
    with pytest.raises(ForkDetected) as fork:
        compare_views(
            police_view,
            school_view,
            [],
            log_key=LOG_KEY.public_key(),
            log_key_name=DIRECTORY_LOG_ORIGIN,
        )
    evidence = ForkEvidence.of(
        fork.value,
        origin=DIRECTORY_LOG_ORIGIN,
        detected_by=POLICE_WITNESS,
        detected_at=NOW.isoformat(),
        source="gossip",
        peer="school",
    )
    assert (evidence.first, evidence.second) == (police_view, school_view)
    # A witness that cosigned police's view refuses school's as a fork, cosigning nothing.
    witness = DirectoryWitness(POLICE_WITNESS, POLICE_KEY, LOG_KEY.public_key())
    witness.observe(police_view, [], logged(V1, V2).proof(police_view), V2, now=NOW)
    with pytest.raises(ForkDetected):
        witness.observe(
            school_view, [], logged(V1, shown_school).proof(school_view), shown_school, now=NOW
        )


def test_the_hub_log_only_grows_with_higher_serials() -> None:
    log = logged(V1, V2)
    assert log.append(DirectoryLeaf.of(V2)) is False  # republished: no new leaf
    with pytest.raises(AuditError, match="does not follow the logged serial 2"):
        log.append(DirectoryLeaf.of(V1))
