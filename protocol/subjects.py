"""NATS subjects and JetStream stream names. Opaque ids only, never personal data.

Every agency publishes to its own ingress subject of one stream, so the hub
consumes one totally ordered sequence (a withdrawal takes effect before every
later message), and each agency's backlog is one subject the stream can cap.

The streams live in the hub's NATS account. An agency's account sees only
what the hub exports to it by name (transport/natsauth.py): its ingress
subject, its hub services, and the next-message and ack subjects of the two
consumers the hub made for it.
"""

from __future__ import annotations

from sigbus.protocol.ids import AgencyId

INGRESS_STREAM = "SIGBUS_INGRESS"
INGRESS_ALL = "sigbus.ingress.*"
#: The fast lane: consent withdrawals and amendments, decided ahead of the
#: messages queued before them (issue 11). Same stream, so one ingress sequence.
URGENT_ALL = "sigbus.ingress.*.urgent"

INBOX_STREAM = "SIGBUS_INBOX"
INBOX_ALL = "sigbus.inbox.>"

LOG_STREAM = "SIGBUS_LOG"
LOG_ENTRY_SUBJECT = "sigbus.log.entry"

CHECKPOINT_STREAM = "SIGBUS_CHECKPOINT"
CHECKPOINT_SUBJECT = "sigbus.log.checkpoint"
COSIGNATURE_ALL = "sigbus.log.cosignature.>"
#: Witness gossip (core NATS, agency to agency): each witness publishes the checkpoints
#: it cosigned on its own subject, in its own account, and reads the other witnesses'.
GOSSIP_PREFIX = "sigbus.log.gossip"

#: Hub-private state (cases, consent records), encrypted under the hub state key.
STATE_STREAM = "SIGBUS_STATE"
STATE_SUBJECT = "sigbus.state.hub"

#: Request/reply services of the hub (log proofs, the latest checkpoint). Each agency
#: has its own subject per service, so the hub knows who asks from the subject the
#: bus delivered, which only that agency's account can reach, never from the message.
PROOF_INCLUSION = "proof.inclusion"
PROOF_CONSISTENCY = "proof.consistency"
CHECKPOINT_REQUEST = "checkpoint.request"
#: The hub's signed decision notice for one of the asking agency's own messages.
NOTICE_REQUEST = "notice.request"
HUB_SERVICES = (PROOF_INCLUSION, PROOF_CONSISTENCY, CHECKPOINT_REQUEST, NOTICE_REQUEST)
HUB_SERVICES_ALL = "sigbus.hub.*.>"

#: The JetStream API prefix under which an agency reaches the hub account's consumers.
HUB_JS_PREFIX = "$JS.hub.API"

#: Hub snapshots (broker/snapshot.py): hub-only, signed, the state part sealed.
SNAPSHOT_STREAM = "SIGBUS_SNAPSHOT"
SNAPSHOT_ALL = "sigbus.snapshot.>"
SNAPSHOT_MANIFEST_SUBJECT = "sigbus.snapshot.manifest"

#: The hub lease (issue 12): a JetStream KV bucket; the active hub holds its one key.
LEASE_BUCKET = "SIGBUS_HUB_LEASE"
LEASE_STREAM = f"KV_{LEASE_BUCKET}"
LEASE_KEY = "active"

#: The hub's retention vault (broker/vault.py): hub-only. ``copy.<h>`` keeps a released
#: message's ciphertext; ``key.<h>`` its data key, sealed under the hub state key, erased
#: when the message's retention period ends (crypto-shredding).
VAULT_STREAM = "SIGBUS_VAULT"
VAULT_ALL = "sigbus.vault.>"
VAULT_KEYS = "sigbus.vault.key.>"

#: The console's access log and the reviewers' findings (console/records.py): hub-only,
#: one subject each, every record hash-chained and signed by the hub.
ACCESS_STREAM = "SIGBUS_ACCESS"
ACCESS_SUBJECT = "sigbus.console.access"
FINDINGS_STREAM = "SIGBUS_FINDINGS"
FINDINGS_SUBJECT = "sigbus.console.finding"

ALL_STREAMS = (
    INGRESS_STREAM,
    INBOX_STREAM,
    LOG_STREAM,
    CHECKPOINT_STREAM,
    STATE_STREAM,
    SNAPSHOT_STREAM,
    LEASE_STREAM,
    VAULT_STREAM,
    ACCESS_STREAM,
    FINDINGS_STREAM,
)


def ingress_subject(sender: AgencyId) -> str:
    """The message type travels in the signed header, not in the subject."""
    return f"sigbus.ingress.{sender}"


def urgent_subject(sender: AgencyId) -> str:
    """The sender's fast lane (``sigbus.ingress.<agency>.urgent``)."""
    return f"{ingress_subject(sender)}.urgent"


def ingress_sender(subject: str) -> str | None:
    """The agency whose ingress subject (either lane) this is."""
    parts = subject.split(".")
    if parts[3:] == ["urgent"]:
        parts = parts[:3]
    if len(parts) != 3 or parts[:2] != ["sigbus", "ingress"]:
        return None
    return parts[2]


def is_urgent(subject: str) -> bool:
    return subject.endswith(".urgent") and ingress_sender(subject) is not None


def service_subject(agency: AgencyId, service: str) -> str:
    return f"sigbus.hub.{agency}.{service}"


def service_requester(subject: str) -> str | None:
    """The agency whose service subject this is (``sigbus.hub.<agency>.<service>``)."""
    parts = subject.split(".", 3)
    if len(parts) != 4 or parts[:2] != ["sigbus", "hub"] or parts[3] not in HUB_SERVICES:
        return None
    return parts[2]


def inbox_subject(agency: AgencyId) -> str:
    return f"sigbus.inbox.{agency}"


def inbox_consumer(agency: AgencyId) -> str:
    return f"inbox-{agency}"


def witness_consumer(agency: AgencyId) -> str:
    return f"witness-{agency}"


def cosignature_subject(witness: AgencyId) -> str:
    return f"sigbus.log.cosignature.{witness}"


def gossip_subject(witness: AgencyId) -> str:
    return f"{GOSSIP_PREFIX}.{witness}"


def gossip_sender(subject: str) -> str | None:
    """The agency whose gossip subject this is (``sigbus.log.gossip.<agency>``)."""
    head, _, agency = subject.rpartition(".")
    return agency if head == GOSSIP_PREFIX and agency else None
