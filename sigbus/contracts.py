"""The published contracts: which models and subjects, and the files they are written to.

``protocol.contracts`` turns models into schemas (pure); this module names every
model other systems see, including the log entry (audit/, above protocol/ in the
layers), builds the AsyncAPI channels from ``protocol.subjects`` and writes or
checks the files. ``sigbus contracts`` regenerates them; tests/test_contracts.py
fails when the committed files differ.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sigbus.audit.entry import LogEntry
from sigbus.protocol import subjects
from sigbus.protocol.contracts import (
    AGENCY_PARAMETER,
    ASYNCAPI_PATH,
    SCHEMA_DIR,
    Api,
    Channel,
    Contract,
    Message,
    Operation,
    asyncapi_document,
    message_contracts,
    schema_text,
    schemas,
    yaml_text,
)
from sigbus.protocol.envelope import PROTOCOL_VERSION, Envelope
from sigbus.protocol.notice import NoticeReply, NoticeRequest, SignedNotice
from sigbus.protocol.proofs import (
    CheckpointGossip,
    CheckpointReply,
    ConsistencyRequest,
    Cosignature,
    InclusionRequest,
    ProofReply,
)
from sigbus.protocol.release import Release, ReleaseRecord

REGENERATE = ".venv/bin/sigbus contracts"

#: Everything but the bodies: what travels on the bus around them.
WIRE_CONTRACTS = (
    Contract(
        "envelope",
        Envelope,
        "Envelope (kuvert)",
        "What an agency publishes on its ingress subject: a cleartext header, signed by "
        "the sender (Ed25519) and free of personal data, and the body encrypted "
        "(AES-256-GCM) under a data key sealed to the hub (HPKE, RFC 9180). The body's "
        "schema is the one the header's type names. docs/protocol.md, 'Envelope'.",
    ),
    Contract(
        "release_record",
        ReleaseRecord,
        "Release record (utlämnandepost)",
        "The hub's signed statement that one release (utlämnande, disclosure) was lawful "
        "and logged: the decision, the legal basis (consent or statute), the consent "
        "revisions relied on, and the disclosure-log index and leaf hash it was written at.",
    ),
    Contract(
        "release",
        Release,
        "Release (utlämnande)",
        "What a recipient receives in its inbox: the sender's envelope unchanged, with the "
        "data key re-sealed to the recipient, and the hub-signed release record. Verify "
        "both signatures before opening anything (docs/protocol.md, 'Release').",
    ),
    Contract(
        "log_entry",
        LogEntry,
        "Disclosure-log entry (loggpost)",
        "One decision in the append-only, witnessed disclosure log (utlämnandelogg): ids "
        "and codes, never content; the RFC 8785 encoding of an entry is its Merkle leaf "
        "(RFC 9162). Read by auditors; docs/audit-log.md.",
    ),
    Contract(
        "inclusion_request",
        InclusionRequest,
        "Inclusion-proof request",
        "Asks the hub for the RFC 9162 inclusion proof of the log entry at index in a "
        "tree of size entries; answered only to a party to that entry.",
    ),
    Contract(
        "consistency_request",
        ConsistencyRequest,
        "Consistency-proof request",
        "Asks the hub for the RFC 9162 consistency proof between two tree sizes, so a "
        "witness or recipient sees that the log only grew.",
    ),
    Contract(
        "proof_reply",
        ProofReply,
        "Proof reply",
        "The hub's answer to a proof request: the proof's hashes (base64) and, for an "
        "inclusion proof, the entry's leaf hash; or a short error code.",
    ),
    Contract(
        "checkpoint_reply",
        CheckpointReply,
        "Checkpoint reply",
        "The hub's latest checkpoint as a C2SP signed note (tlog-checkpoint), signed by "
        "the hub's log key and carrying the witnesses' cosignatures it has.",
    ),
    Contract(
        "decision_notice",
        SignedNotice,
        "Decision notice (beslutsbesked)",
        "The hub's signed answer to a sender about its own message: per recipient "
        "released or denied with the reason codes, or a hub record confirmed or refused, "
        "and the disclosure-log index of each entry. Ids and codes only. Stored in the "
        "sender's inbox beside its releases, and served on its notice service.",
    ),
    Contract(
        "notice_request",
        NoticeRequest,
        "Decision-notice request",
        "Asks the hub for the decision notice of one of your own messages, by its id; "
        "until it is decided (or if it is not yours) the reply says not_decided.",
    ),
    Contract(
        "notice_reply",
        NoticeReply,
        "Decision-notice reply",
        "The signed decision notice, or a short error code while there is none.",
    ),
    Contract(
        "cosignature",
        Cosignature,
        "Cosignature (vittnessignatur)",
        "A witness agency's C2SP cosignature/v1 line over a checkpoint it verified, so "
        "that the hub cannot show different logs to different agencies.",
    ),
    Contract(
        "checkpoint_gossip",
        CheckpointGossip,
        "Checkpoint gossip (vittnesutbyte)",
        "A witness's current view: the signed checkpoint it last cosigned and its "
        "cosignature line, for the other witnesses to compare with theirs (split view).",
    ),
)


def contracts() -> list[Contract]:
    return [*message_contracts(), *WIRE_CONTRACTS]


def _schema_message(name: str, title: str, summary: str) -> Message:
    return Message(name, title, summary, schema=name)


_REPLY = "The reply goes back to the requester alone (the server maps it to an _R_ subject)."
_SIGNED_NOTE = Message(
    "signed_checkpoint",
    "Signed checkpoint",
    "A C2SP tlog-checkpoint in a signed note: origin, tree size, base64 root hash, "
    "then the hub's and the witnesses' signature lines. Text, not JSON.",
    content_type="text/plain",
)
_EMPTY_REQUEST = Message(
    "checkpoint_request",
    "Checkpoint request",
    "An empty request for the latest checkpoint.",
    content_type="application/octet-stream",
)

_SERVICE_MESSAGES = {
    subjects.PROOF_INCLUSION: (
        _schema_message("inclusion_request", "Inclusion-proof request", "index and size"),
        _schema_message("proof_reply", "Proof reply", "proof hashes or an error code"),
    ),
    subjects.PROOF_CONSISTENCY: (
        _schema_message("consistency_request", "Consistency-proof request", "two sizes"),
        _schema_message("proof_reply", "Proof reply", "proof hashes or an error code"),
    ),
    subjects.CHECKPOINT_REQUEST: (
        _EMPTY_REQUEST,
        _schema_message("checkpoint_reply", "Checkpoint reply", "the latest signed note"),
    ),
    subjects.NOTICE_REQUEST: (
        _schema_message("notice_request", "Decision-notice request", "one message id"),
        _schema_message("notice_reply", "Decision-notice reply", "the signed notice"),
    ),
}

AGENCY = "{agency}"
#: Subjects no other system reads or writes, so not in the AsyncAPI document: the hub's
#: own state and its snapshots, encrypted under the hub state key (exported to no agency),
#: and the console's access log and findings (hub-signed chains, console/records.py).
HUB_PRIVATE_SUBJECTS = (
    subjects.STATE_SUBJECT,
    subjects.SNAPSHOT_MANIFEST_SUBJECT,
    subjects.ACCESS_SUBJECT,
    subjects.FINDINGS_SUBJECT,
)


def _service_key(service: str) -> str:
    return service.replace(".", "_")


def channels() -> tuple[Channel, ...]:
    """One channel per subject an agency (or an auditor) touches, from protocol.subjects."""
    fixed = [
        Channel(
            "ingress",
            subjects.ingress_subject(AGENCY),
            "Your ingress subject: publish every envelope here (JetStream, stream "
            f"{subjects.INGRESS_STREAM}). The hub reads one ordered sequence of all "
            "agencies' ingress; the subject, which only your account can reach, names you.",
            (_schema_message("envelope", "Envelope", "a signed header and a sealed body"),),
        ),
        Channel(
            "ingress_urgent",
            subjects.urgent_subject(AGENCY),
            "Your fast lane, same stream: a consent_event that withdraws a samtycke or "
            "records its expiry goes here and is decided ahead of everything queued before "
            "it. Anything else published here is denied with reason wrong_lane.",
            (_schema_message("envelope", "Envelope", "a signed header and a sealed body"),),
        ),
        Channel(
            "inbox",
            subjects.inbox_subject(AGENCY),
            "Your inbox: releases to you and the decision notices for your own messages, "
            f"stored in stream {subjects.INBOX_STREAM}. Read them through the pull consumer "
            f"{subjects.inbox_consumer(AGENCY)} under the JetStream API prefix "
            f"{subjects.HUB_JS_PREFIX}; ack each one after your case system stored it.",
            (
                _schema_message("release", "Release", "envelope, release record, signature"),
                _schema_message("decision_notice", "Decision notice", "the hub's signed answer"),
            ),
        ),
    ]
    services = []
    for service in subjects.HUB_SERVICES:
        request, reply = _SERVICE_MESSAGES[service]
        key = _service_key(service)
        services += [
            Channel(
                key,
                subjects.service_subject(AGENCY, service),
                f"Request/reply service of the hub: {request.title.lower()}. "
                "Only your account can reach your subject, so the hub knows who asks.",
                (request,),
            ),
            Channel(f"{key}_reply", None, f"The reply to {request.title.lower()}. {_REPLY}",
                    (reply,)),
        ]
    log = [
        Channel(
            "checkpoint",
            subjects.CHECKPOINT_SUBJECT,
            f"Checkpoints of the disclosure log (stream {subjects.CHECKPOINT_STREAM}). A "
            f"witness reads them through its pull consumer {subjects.witness_consumer(AGENCY)}.",
            (_SIGNED_NOTE,),
        ),
        Channel(
            "cosignature",
            subjects.cosignature_subject(AGENCY),
            "Your cosignatures, as a witness, of checkpoints you verified.",
            (_schema_message("cosignature", "Cosignature", "a cosignature/v1 line"),),
        ),
        Channel(
            "gossip",
            subjects.gossip_subject(AGENCY),
            "Witness gossip, agency to agency (core NATS, not stored): each witness "
            "publishes its view on its own subject and reads the other witnesses'. "
            "A view inconsistent with yours is a fork alarm (log_fork_detected).",
            (_schema_message("checkpoint_gossip", "Checkpoint gossip", "a witness's view"),),
        ),
        Channel(
            "log_entry",
            subjects.LOG_ENTRY_SUBJECT,
            f"The disclosure log itself (stream {subjects.LOG_STREAM}). Written by the hub "
            "alone; the read-only auditor reads stored entries one by one.",
            (_schema_message("log_entry", "Log entry", "one decision, ids and codes only"),),
        ),
    ]
    return (*fixed, *services, *log)


def operations() -> tuple[Operation, ...]:
    services = tuple(
        Operation(
            f"request_{_service_key(s)}",
            "send",
            _service_key(s),
            f"Ask the hub ({s}).",
            reply=f"{_service_key(s)}_reply",
        )
        for s in subjects.HUB_SERVICES
    )
    return (
        Operation("send_envelope", "send", "ingress", "Send a message to the hub."),
        Operation(
            "send_withdrawal", "send", "ingress_urgent", "Withdraw a consent, ahead of the queue."
        ),
        Operation("receive_release", "receive", "inbox", "Receive what was released to you."),
        *services,
        Operation("receive_checkpoint", "receive", "checkpoint", "Witness a checkpoint."),
        Operation("send_cosignature", "send", "cosignature", "Publish your cosignature."),
        Operation("send_gossip", "send", "gossip", "Publish your view on your gossip subject."),
        Operation("receive_gossip", "receive", "gossip", "Read the other witnesses' views."),
        Operation("read_log_entry", "receive", "log_entry", "Audit the disclosure log."),
    )


SECURITY: dict[str, Any] = {
    "mutualTls": {
        "type": "X509",
        "description": (
            "Mutual TLS: the server verifies a client certificate issued by the "
            "deployment's CA, and you verify the server's. transport/natsauth.py issues "
            "them and renders the server's tls block; docs/operations.md."
        ),
    },
    "nkey": {
        "type": "asymmetricEncryption",
        "description": (
            "A NATS nkey (Ed25519) user per agency, in a NATS account of its own. The "
            "server configuration is generated from the signed agency directory "
            "(transport/natsauth.py). Your account sees only what the hub's account "
            "exports to it by name: your ingress subject, your hub services "
            "(sigbus.hub.<agency>.>), your cosignature subject, and the next-message and "
            "ack subjects of your inbox and witness consumers; you publish your own "
            "gossip subject and read the other agencies' (sigbus.log.gossip.<agency>). "
            "Replies reach only you "
            "(your own reply prefix _INBOX_<agency>). Anything else is refused by the server."
        ),
    },
}


def api() -> Api:
    return Api(
        title="sigbus: the SIG message bus",
        version=str(PROTOCOL_VERSION),
        description=(
            "Subjects of sigbus, the broker through which the agencies of a SIG "
            "(sociala insatsgrupper) share information about a young person under consent "
            "(samtycke) or a statute. Every subject carries opaque ids only; personal data "
            "travels only inside encrypted bodies. See docs/contracts.md."
        ),
        server_host="localhost:4222",
        channels=channels(),
        operations=operations(),
        security=SECURITY,
        parameters={"agency": AGENCY_PARAMETER},
    )


_HEADER = (
    "AsyncAPI 3.0 document of sigbus, generated from protocol/subjects.py and the models.\n"
    f"Do not edit: regenerate with `{REGENERATE}`."
)


def published() -> dict[str, str]:
    """Relative path -> the exact text of every published contract file."""
    files = {
        f"{SCHEMA_DIR}/{name}.schema.json": schema_text(schema)
        for name, schema in schemas(contracts()).items()
    }
    files[ASYNCAPI_PATH] = yaml_text(asyncapi_document(api()), _HEADER)
    return files


def stale(root: Path) -> list[str]:
    """Files under ``root`` that are missing or differ, plus stale schema files."""
    expected = published()
    differing = [
        path
        for path, text in expected.items()
        if not (root / path).is_file() or (root / path).read_text(encoding="utf-8") != text
    ]
    extra = [
        str(p.relative_to(root))
        for p in sorted((root / SCHEMA_DIR).glob("*.schema.json"))
        if str(p.relative_to(root)) not in expected
    ]
    return differing + extra


def write(root: Path) -> list[str]:
    """Write every contract file under ``root``, remove stale schemas; the paths changed."""
    changed = stale(root)
    expected = published()
    (root / SCHEMA_DIR).mkdir(parents=True, exist_ok=True)
    for path in changed:
        target = root / path
        if path in expected:
            target.write_text(expected[path], encoding="utf-8")
        else:
            target.unlink()
    return changed
