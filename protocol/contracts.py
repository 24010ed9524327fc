"""Machine-readable contracts for other systems: JSON Schema and AsyncAPI, from the models.

Pure: models and registries in, dicts (and their text) out. The published files
(docs/schemas/, docs/asyncapi.yaml) are written by ``sigbus contracts`` and checked
against this module by tests/test_contracts.py, so they cannot drift from the models.

JSON Schema (draft 2020-12) says what a receiver's parser enforces: types, patterns,
lengths, enums, closed objects. A validator the models run is carried over as the
keywords that express it (:data:`VALIDATOR_KEYWORDS`); what JSON Schema cannot say
(a consent's shape by action, a period's order) is named in a ``$comment``. A
validator with neither fails the generation, so no check is left out silently.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from sigbus.protocol.errors import SigbusError
from sigbus.protocol.ids import AGENCY_NAME_PATTERN, HUB, MessageType
from sigbus.protocol.messages import MESSAGE_TYPES, SentBy
from sigbus.protocol.personnummer import PERSONNUMMER_PATTERN

DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: A name, not a location: ``.invalid`` (RFC 2606) never resolves.
SCHEMA_ID_BASE = "https://sigbus.invalid/schemas/"
SCHEMA_DIR = "docs/schemas"
ASYNCAPI_PATH = "docs/asyncapi.yaml"
#: How the AsyncAPI document names the dialect of the payload schemas it points to.
SCHEMA_FORMAT = "application/schema+json;version=draft-2020-12"

#: RFC 4648 §4 standard base64 with padding, as ``protocol.canonical.b64decode`` demands.
BASE64_PATTERN = r"^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$"
#: The 12-digit form ``protocol.personnummer.normalise_personnummer`` accepts.
PERSONNUMMER_LONG_FORM = r"^(19|20)\d{6}-?\d{4}$"
#: ``protocol.ids.no_digit_run``: no id may hide a personnummer's date part.
DIGIT_RUN = r"\d{6}"


class ContractError(SigbusError):
    """A model uses a check this module cannot state, or a registry entry lacks its text."""


#: Field validators -> the JSON Schema keywords that say the same.
VALIDATOR_KEYWORDS: Mapping[str, JsonSchemaValue] = {
    "sigbus.protocol.ids.no_digit_run": {"not": {"pattern": DIGIT_RUN}},
    "sigbus.protocol.messages._unique": {"uniqueItems": True},
    "sigbus.protocol.messages._parties_only": {
        "uniqueItems": True,
        "not": {"contains": {"const": HUB}},
    },
    "sigbus.protocol.personnummer.normalise_personnummer": {
        "pattern": PERSONNUMMER_LONG_FORM,
        "description": (
            "Personnummer (Swedish personal identity number), 12 digits, YYYYMMDD-NNNC "
            "or YYYYMMDDNNNC. The receiver also checks the date and the check digit "
            "(Luhn, Skatteverket SKV 704). Only ever inside the encrypted body."
        ),
    },
    "sigbus.protocol.personnummer._reject_personnummer_pattern": {
        "not": {"pattern": PERSONNUMMER_PATTERN.pattern},
    },
}

#: Model validators JSON Schema cannot express -> what the receiver checks.
RECEIVER_CHECKS: Mapping[str, str] = {
    "sigbus.protocol.messages.ConsentScope._period_is_ordered": (
        "valid_until is after valid_from"
    ),
    "sigbus.protocol.messages.ConsentEvent._shape_matches_action": (
        "guardian_ref is present exactly when consenter_role is guardian; given and amended "
        "carry scope and evidence_sha256; withdrawn and expired carry no scope"
    ),
    "sigbus.protocol.messages.CommitmentStatus._reason_only_when_not_done": (
        "not_done_reason is present exactly when status is not_done"
    ),
}

#: pydantic's own length checks, applied as a function when another validator wraps
#: the type: keyword name per JSON type.
_LENGTH_KEYWORDS = {
    ("max_length", "string"): "maxLength",
    ("min_length", "string"): "minLength",
    ("max_length", "array"): "maxItems",
    ("min_length", "array"): "minItems",
}


def _validator_name(function: object) -> str:
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', '?')}"


class _SigbusJsonSchema(GenerateJsonSchema):
    """pydantic's draft 2020-12 generator, plus the checks the models add by function."""

    def bytes_schema(self, schema: core_schema.BytesSchema) -> JsonSchemaValue:
        # Every wire bytes field is B64Bytes (protocol/canonical.py).
        return {"type": "string", "contentEncoding": "base64", "pattern": BASE64_PATTERN}

    def function_after_schema(
        self, schema: core_schema.AfterValidatorFunctionSchema
    ) -> JsonSchemaValue:
        inner = dict(self.generate_inner(schema["schema"]))
        function = schema["function"]["function"]
        if isinstance(function, functools.partial):
            return _with_length(inner, function)
        name = _validator_name(function)
        if name in VALIDATOR_KEYWORDS:
            return _merged(inner, VALIDATOR_KEYWORDS[name])
        if name in RECEIVER_CHECKS:
            inner["$comment"] = f"The receiver also checks: {RECEIVER_CHECKS[name]}."
            return inner
        raise ContractError(
            f"validator {name} has no JSON Schema counterpart: "
            "add it to VALIDATOR_KEYWORDS or RECEIVER_CHECKS in protocol/contracts.py"
        )


def _with_length(inner: JsonSchemaValue, check: functools.partial[Any]) -> JsonSchemaValue:
    out = dict(inner)
    for argument, value in check.keywords.items():
        keyword = _LENGTH_KEYWORDS.get((argument, str(inner.get("type"))))
        if keyword is None:
            raise ContractError(f"length check {argument} has no JSON Schema counterpart")
        out[keyword] = value
    return out


def _merged(inner: JsonSchemaValue, extra: JsonSchemaValue) -> JsonSchemaValue:
    out = dict(inner)
    for key, value in extra.items():
        if key == "not" and "not" in out:
            out["allOf"] = [*out.get("allOf", []), {"not": value}]
        else:
            out[key] = value
    return out


def schema_id(name: str) -> str:
    return f"{SCHEMA_ID_BASE}{name}.schema.json"


def model_schema(
    model: type[BaseModel], *, name: str, title: str, description: str
) -> dict[str, Any]:
    """The draft 2020-12 schema of what a receiver accepts for ``model``."""
    body = model.model_json_schema(mode="validation", schema_generator=_SigbusJsonSchema)
    return {
        "$schema": DIALECT,
        "$id": schema_id(name),
        "title": title,
        "description": description,
        **{k: v for k, v in body.items() if k not in ("title", "description")},
    }


@dataclass(frozen=True)
class Contract:
    """One published schema: its file name, the model, and what it is in the SIG."""

    name: str
    model: type[BaseModel]
    title: str
    description: str


#: What each message type is in the SIG: the Swedish word, its gloss, who sends it.
MESSAGE_DESCRIPTIONS: Mapping[MessageType, tuple[str, str]] = {
    MessageType.REFERRAL: (
        "Referral (anmälan)",
        "An anmälan (report of concern to social services, SoL 14 kap. 1 §) or a police "
        "notification under LUL 6 §, about a young person. Coded reasons only, no narrative. "
        "It can come before any case, so it needs no case_ref.",
    ),
    MessageType.CASE_OPENED: (
        "SIG case opened (SIG-ärende öppnat)",
        "Social services tell the hub whom a SIG case (sociala insatsgrupper: a social "
        "intervention group for a young person) is about, which guardians with custody "
        "(vårdnadshavare) must consent, and which agencies are parties. A hub record: "
        "never released to anyone.",
    ),
    MessageType.CONSENT_EVENT: (
        "Consent event (samtycke)",
        "A samtycke (consent) given, amended, withdrawn or expired, by the young person or "
        "a guardian, as recorded by social services. A hub record: never released; the "
        "hub releases other messages only within a consent's scope or under a statute.",
    ),
    MessageType.CASE_SELECTED: (
        "SIG selection decision (beslut om SIG)",
        "Social services decided that the young person of the case enters the SIG, "
        "optionally naming the structured assessment the decision rests on: an instrument "
        "code (SAVRY, ESTER, BBIC) and the case system's own opaque id for it, never its "
        "content. A hub record: never released to anyone.",
    ),
    MessageType.CASE_CLOSED: (
        "SIG case closed (avslut)",
        "Social services closed the SIG case, with a coded reason. From then on the hub "
        "denies every message about the case (reason case_closed), statutory ones too. "
        "A hub record: never released to anyone.",
    ),
    MessageType.CASE_INVITATION: (
        "Case invitation (inbjudan till SIG)",
        "Social services invite an agency into the SIG case the header's case_ref names: "
        "who the young person is, which agencies are parties, and the coordinator.",
    ),
    MessageType.PLAN_COMMITMENT: (
        "Plan commitment (åtgärd i åtgärdsplanen)",
        "One action in the individuell åtgärdsplan (individual action plan): which agency "
        "does what, by which function, by when.",
    ),
    MessageType.COMMITMENT_STATUS: (
        "Commitment status (lägesrapport)",
        "A lägesrapport (status report) on one plan commitment, with a coded reason when "
        "it was not done and an optional short note screened for personnummer.",
    ),
    MessageType.MEETING_NOTICE: (
        "Meeting notice (kallelse)",
        "A kallelse (notice) to the individuellt möte (the individual meeting of the SIG): "
        "when, where (a coded place) and the agenda.",
    ),
    MessageType.MEETING_ATTENDANCE: (
        "Meeting attendance (närvaro)",
        "Who came to the individual meeting held at meeting_at: the agencies present "
        "(parties of the case), whether the young person came, and which guardians came, "
        "by guardian ref (vh-...). Never a name.",
    ),
    MessageType.MEETING_MINUTES: (
        "Meeting minutes (minnesanteckningar)",
        "The minutes of the individual meeting held at meeting_at: the agenda items dealt "
        "with, as codes, and one short free-text note (at most 300 characters), screened "
        "for personnummer: a note with one is refused.",
    ),
    MessageType.YOUTH_QUESTIONNAIRE: (
        "The young person's questionnaire (ungdomens enkät)",
        "How the young person experienced the support, as coded answers (yes, partly, no, "
        "no_answer) to fixed questions, recorded by social services at a review or at "
        "closure. A hub record: never released; counted, with small counts suppressed, in "
        "the steering group's follow-up figures.",
    ),
    MessageType.PLAN_REVISION: (
        "Plan revision (reviderad åtgärdsplan)",
        "A new version of the case's individuell åtgärdsplan (individual action plan): "
        "the plan's next version number (1, 2, ... as the hub counts them; any other is "
        "denied plan_conflict) and the ids of the commitments the version holds, each "
        "sent before as a plan_commitment. A commitment left out is no longer followed up.",
    ),
    MessageType.COMMITMENT_REMINDER: (
        "Commitment reminder (påminnelse)",
        "The hub's reminder to the responsible agency (the one recipient) that its plan "
        "commitment passed its due date without a done status: which commitment, action, "
        "owner function and due date. Sent once per commitment and due date, and released "
        "only as the commitment itself would be (consent or statute for plan_commitment "
        "from the lead agency).",
    ),
    MessageType.EXISTENCE_QUERY: (
        "Existence query (finns det andra aktörer?)",
        "A party asks the hub whether another agency is involved with the young person "
        "(a notice of existence without content, as the Dutch Verwijsindex). The hub "
        "answers in its decision notice with only the agencies that are parties to an open "
        "case about the young person (reason existence_answered:<agency>.<agency> or "
        "existence_answered:none), never content, category or case; it refuses "
        "(existence_notice_off) unless the rules file enables [existence_notice]. "
        "Addressed to the hub: never released to anyone. Every query and answer is logged.",
    ),
}

_SENT_BY = {
    SentBy.LEAD: "Sent by the lead agency (social services) only.",
    SentBy.PARTY: "Sent by any agency that is a party to the case.",
    SentBy.ANY: "Sent by any agency in the signed directory.",
    SentBy.HUB: "Sent by the hub itself (header sender \"hub\"); no agency may send it.",
}


def message_contracts() -> list[Contract]:
    """One body schema per entry of ``MESSAGE_TYPES``, named by its wire ``type``."""
    out = []
    for message_type, spec in MESSAGE_TYPES.items():
        if message_type not in MESSAGE_DESCRIPTIONS:
            raise ContractError(
                f"message type {message_type.value} has no description: "
                "add it to MESSAGE_DESCRIPTIONS in protocol/contracts.py"
            )
        title, text = MESSAGE_DESCRIPTIONS[message_type]
        description = (
            f"{text} {_SENT_BY[spec.sent_by]} The body of an envelope whose header type is "
            f'"{message_type.value}"; encrypted, so only the hub and the recipients see it.'
        )
        out.append(Contract(message_type.value, spec.model, title, description))
    return out


def schemas(contracts: Iterable[Contract]) -> dict[str, dict[str, Any]]:
    """name -> schema, in the order given."""
    return {
        c.name: model_schema(c.model, name=c.name, title=c.title, description=c.description)
        for c in contracts
    }


# -- AsyncAPI 3.0 -----------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One AsyncAPI message: a published schema, or text (a signed note)."""

    key: str
    title: str
    summary: str
    schema: str | None = None  # a Contract name; None: an empty or text payload
    content_type: str = "application/json"


@dataclass(frozen=True)
class Channel:
    key: str
    address: str | None  # None: a reply subject the server makes (dynamic)
    description: str
    messages: tuple[Message, ...]


@dataclass(frozen=True)
class Operation:
    key: str
    action: str  # "send" or "receive", from the agency's side
    channel: str
    summary: str
    reply: str | None = None  # the reply channel of a request


def parameters_of(address: str | None) -> list[str]:
    return re.findall(r"\{([a-z_]+)\}", address or "")


def _message(m: Message) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": m.key,
        "title": m.title,
        "summary": m.summary,
        "contentType": m.content_type,
    }
    if m.schema is not None:
        out["payload"] = {
            "schemaFormat": SCHEMA_FORMAT,
            "schema": {"$ref": f"./schemas/{m.schema}.schema.json"},
        }
    elif m.content_type == "text/plain":
        out["payload"] = {"type": "string"}
    return out


def _channel(c: Channel) -> dict[str, Any]:
    out: dict[str, Any] = {"address": c.address, "description": c.description}
    names = parameters_of(c.address)
    if names:
        out["parameters"] = {n: {"$ref": f"#/components/parameters/{n}"} for n in names}
    out["messages"] = {m.key: {"$ref": f"#/components/messages/{m.key}"} for m in c.messages}
    return out


def _operation(o: Operation, channels: Mapping[str, Channel]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "action": o.action,
        "channel": {"$ref": f"#/channels/{o.channel}"},
        "summary": o.summary,
        "messages": [
            {"$ref": f"#/channels/{o.channel}/messages/{m.key}"}
            for m in channels[o.channel].messages
        ],
        "security": [{"$ref": "#/components/securitySchemes/nkey"}],
    }
    if o.reply is not None:
        out["reply"] = {
            "channel": {"$ref": f"#/channels/{o.reply}"},
            "messages": [
                {"$ref": f"#/channels/{o.reply}/messages/{m.key}"}
                for m in channels[o.reply].messages
            ],
        }
    return out


@dataclass(frozen=True)
class Api:
    """What the AsyncAPI document is made of; the caller builds it from the registries."""

    title: str
    version: str
    description: str
    server_host: str
    channels: tuple[Channel, ...]
    operations: tuple[Operation, ...]
    security: Mapping[str, JsonSchemaValue]
    parameters: Mapping[str, JsonSchemaValue]


def asyncapi_document(api: Api) -> dict[str, Any]:
    channels = {c.key: c for c in api.channels}
    messages = {m.key: m for c in api.channels for m in c.messages}
    return {
        "asyncapi": "3.0.0",
        "info": {"title": api.title, "version": api.version, "description": api.description},
        "defaultContentType": "application/json",
        "servers": {
            "bus": {
                "host": api.server_host,
                "protocol": "nats",
                "description": "The SIG's NATS server (JetStream), run with the hub.",
                "security": [{"$ref": "#/components/securitySchemes/mutualTls"}],
            }
        },
        "channels": {c.key: _channel(c) for c in api.channels},
        "operations": {o.key: _operation(o, channels) for o in api.operations},
        "components": {
            "messages": {k: _message(m) for k, m in messages.items()},
            "parameters": dict(api.parameters),
            "securitySchemes": dict(api.security),
        },
    }


AGENCY_PARAMETER: JsonSchemaValue = {
    "description": (
        "An agency's name as the signed agency directory lists it "
        f"(pattern {AGENCY_NAME_PATTERN}, never 'hub'): your own, for every channel here."
    ),
}


# -- text -----------------------------------------------------------------------------


def schema_text(schema: Mapping[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def _yaml_key(key: str) -> str:
    return key if _PLAIN_KEY.match(key) else json.dumps(key, ensure_ascii=False)


def _yaml_lines(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    if isinstance(value, Mapping) and value:
        lines = []
        for key, item in value.items():
            if _nested(item):
                lines += [f"{pad}{_yaml_key(key)}:", *_yaml_lines(item, indent + 1)]
            else:
                lines.append(f"{pad}{_yaml_key(key)}: {_scalar(item)}")
        return lines
    if isinstance(value, list | tuple) and value:
        lines = []
        for item in value:
            if _nested(item):
                first, *rest = _yaml_lines(item, indent + 1)
                lines += [f"{pad}- {first.lstrip()}", *rest]
            else:
                lines.append(f"{pad}- {_scalar(item)}")
        return lines
    return [f"{pad}{_scalar(value)}"]


def _nested(value: Any) -> bool:
    return isinstance(value, Mapping | list | tuple) and bool(value)


def _scalar(value: Any) -> str:
    # JSON scalars are YAML 1.2 flow scalars (a double-quoted JSON string is a YAML one).
    return json.dumps(value, ensure_ascii=False)


def yaml_text(document: Mapping[str, Any], header: str) -> str:
    """Block-style YAML of a JSON-shaped document, every scalar in JSON syntax."""
    comments = [f"# {line}".rstrip() for line in header.splitlines()]
    return "\n".join([*comments, *_yaml_lines(document, 0)]) + "\n"

