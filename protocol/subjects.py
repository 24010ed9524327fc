"""NATS subjects and JetStream stream names. Opaque ids only, never personal data.

Every agency publishes to its own ingress subjects of one stream, so the hub
consumes one totally ordered sequence (a withdrawal takes effect before every
later message), and least-privilege permissions can be stated per agency.
"""

from __future__ import annotations

from sigbus.protocol.ids import AgencyId, MessageType

INGRESS_STREAM = "SIGBUS_INGRESS"
INGRESS_ALL = "sigbus.ingress.>"

INBOX_STREAM = "SIGBUS_INBOX"
INBOX_ALL = "sigbus.inbox.>"

LOG_STREAM = "SIGBUS_LOG"
LOG_ENTRY_SUBJECT = "sigbus.log.entry"

CHECKPOINT_STREAM = "SIGBUS_CHECKPOINT"
CHECKPOINT_SUBJECT = "sigbus.log.checkpoint"
COSIGNATURE_ALL = "sigbus.log.cosignature.>"

#: Hub-private state (cases, consent records), encrypted under the hub state key.
STATE_STREAM = "SIGBUS_STATE"
STATE_SUBJECT = "sigbus.state.hub"

#: Request/reply services of the hub for log proofs.
PROOF_INCLUSION_SUBJECT = "sigbus.log.proof.inclusion"
PROOF_CONSISTENCY_SUBJECT = "sigbus.log.proof.consistency"

ALL_STREAMS = (INGRESS_STREAM, INBOX_STREAM, LOG_STREAM, CHECKPOINT_STREAM, STATE_STREAM)


def ingress_subject(sender: AgencyId, message_type: MessageType) -> str:
    return f"sigbus.ingress.{sender}.{message_type.value}"


def inbox_subject(agency: AgencyId) -> str:
    return f"sigbus.inbox.{agency}"


def inbox_consumer(agency: AgencyId) -> str:
    return f"inbox-{agency}"


def witness_consumer(agency: AgencyId) -> str:
    return f"witness-{agency}"


def cosignature_subject(witness: AgencyId) -> str:
    return f"sigbus.log.cosignature.{witness}"
