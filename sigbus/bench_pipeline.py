"""The hub's CPU per message without the I/O: the pure pipeline plus the release signatures.

:func:`broker.pipeline.evaluate` (verify, open, validate, decide, re-seal) on
envelopes the sender sealed, with the live hub's own context and state, then one
release record signed per release (:func:`protocol.release.sign_record`), as the
service does after the log append. This is the part of the hub the crypto floor
bounds; everything else the hub spends is NATS round trips.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from sigbus.bench_world import RECIPIENTS, World, full_size_status
from sigbus.broker.pipeline import evaluate
from sigbus.protocol.ids import MessageType
from sigbus.protocol.release import ReleaseRecord, sign_record


def pipeline_cpu_seconds(world: World, iterations: int) -> float:
    """CPU seconds per message (this thread's) of evaluate + 2 release signatures."""
    broker = world.hub.broker
    raws = [
        world.sender.seal(
            MessageType.COMMITMENT_STATUS,
            full_size_status(),
            case_ref=world.case_ref,
            recipients=RECIPIENTS,
        ).to_wire()
        for _ in range(iterations)
    ]
    now = datetime.now(UTC)
    started = time.thread_time()
    for seq, raw in enumerate(raws, start=1):
        plan = evaluate(
            raw,
            subject_agency=world.sender.agency,
            ingress_seq=10**9 + seq,
            first_seen=lambda _message_id: None,
            state=broker.state,
            ctx=broker.ctx,
            now=now,
        )
        if len(plan.releases) != len(RECIPIENTS):
            raise RuntimeError("the bench case no longer releases to both recipients")
        for draft in plan.releases:
            entry = draft.entry
            assert entry.release_id is not None
            assert entry.legal_basis is not None
            record = ReleaseRecord(
                release_id=entry.release_id,
                decision_id=entry.decision_id,
                message_id=entry.message_id,
                recipient=draft.recipient,
                recipient_key_id=draft.recipient_key_id,
                legal_basis=entry.legal_basis,
                statutory=entry.statutory,
                consent_refs=entry.consent_refs,
                rules_hash=entry.rules_hash,
                log_index=seq,
                leaf_hash="0" * 64,
                ciphertext_sha256=entry.ciphertext_sha256 or "",
                released_at=entry.decided_at,
                hub_key_id=broker.ctx.identity.signing_key_id,
            )
            sign_record(record, broker.ctx.identity.signing_key)
    return (time.thread_time() - started) / iterations
