"""The published contracts match the models, cover every registry entry, and validate
real samples, in Python (jsonschema) and in Node.js (Ajv, draft 2020-12)."""

from __future__ import annotations

import copy
import inspect
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from pydantic import BaseModel
from typer.testing import CliRunner

from sigbus.agents.social.consent import consent_given, consent_withdrawn
from sigbus.audit.entry import GENESIS_PREV_HASH, EntryOutcome, LogEntry
from sigbus.cli import app
from sigbus.contracts import HUB_PRIVATE_SUBJECTS, REGENERATE, api, contracts, published, stale
from sigbus.fixtures import birth_date_for_age, fictitious_personnummer
from sigbus.protocol import subjects
from sigbus.protocol.canonical import sha256_hex
from sigbus.protocol.codes import (
    ActionCode,
    AgendaItem,
    AssessmentInstrument,
    ClosureReason,
    ConsenterRole,
    NotDoneReason,
    PlaceCode,
    QuestionnaireAnswer,
    QuestionnaireOccasion,
    ReferralKind,
    ReferralReason,
    StatusCode,
)
from sigbus.protocol.contracts import (
    ASYNCAPI_PATH,
    SCHEMA_DIR,
    SCHEMA_FORMAT,
    message_contracts,
    schemas,
)
from sigbus.protocol.envelope import Envelope
from sigbus.protocol.ids import HUB, MessageType
from sigbus.protocol.messages import (
    MESSAGE_TYPES,
    AssessmentRef,
    CaseClosed,
    CaseInvitation,
    CaseOpened,
    CaseSelected,
    CommitmentReminder,
    CommitmentStatus,
    ExistenceQuery,
    MeetingAttendance,
    MeetingMinutes,
    MeetingNotice,
    PlanCommitment,
    PlanRevision,
    Referral,
    YouthQuestionnaire,
)
from sigbus.protocol.notice import (
    NOT_DECIDED,
    DecisionNotice,
    NoticeItem,
    NoticeOutcome,
    NoticeReply,
    NoticeRequest,
    notice_id_for,
    sign_notice,
)
from sigbus.protocol.proofs import (
    CheckpointGossip,
    CheckpointReply,
    ConsistencyRequest,
    Cosignature,
    InclusionRequest,
    ProofReply,
)
from sigbus.protocol.release import Release, ReleaseRecord, release_id_for, sign_record
from sigbus.transport.keystore import DEV_AGENCIES, DEV_KEYS_DIR, load_private
from tests.protocol.test_envelope import sealed

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
YOUTH = fictitious_personnummer(birth_date_for_age(NOW.date(), 16), 983)
CASE = "case-contractsample"
#: Where .ci/run installs Ajv (npm), beside the virtual environment.
NODE_MODULES = ROOT / ".venv" / "node" / "node_modules"


# -- samples: built the way the demo and the adapters build them ------------------------


def body_samples() -> dict[MessageType, list[BaseModel]]:
    parties = DEV_AGENCIES
    return {
        MessageType.REFERRAL: [
            Referral(
                kind=ReferralKind.LUL_6_NOTIFICATION,
                personnummer=YOUTH,
                reasons=(ReferralReason.SUSPECTED_OFFENCE,),
                observed_on=NOW.date() - timedelta(days=2),
                contact_function="police_youth_unit",
            )
        ],
        MessageType.CASE_OPENED: [
            CaseOpened(personnummer=YOUTH, guardians_with_custody=("vh-1", "vh-2"), parties=parties)
        ],
        MessageType.CASE_SELECTED: [
            CaseSelected(
                assessment=AssessmentRef(
                    instrument=AssessmentInstrument.SAVRY, assessment_id="as-savry-k12"
                ),
                decided_by="social_sig_coordinator",
            ),
            CaseSelected(decided_by="social_case_worker"),
        ],
        MessageType.CASE_CLOSED: [
            CaseClosed(reason=ClosureReason.PLAN_COMPLETED, closed_by="social_sig_coordinator")
        ],
        MessageType.CONSENT_EVENT: [
            consent_given(
                "consent-guardianone",
                ConsenterRole.GUARDIAN,
                "vh-1",
                disclosers=parties,
                recipients=parties,
                categories=(MessageType.PLAN_COMMITMENT, MessageType.MEETING_NOTICE),
                valid_from=NOW - timedelta(minutes=5),
                valid_until=NOW + timedelta(days=180),
                acted_at=NOW - timedelta(minutes=1),
                evidence_sha256=sha256_hex(b"signed consent form"),
            ),
            consent_withdrawn("consent-guardianone", ConsenterRole.GUARDIAN, "vh-1", acted_at=NOW),
        ],
        MessageType.CASE_INVITATION: [
            CaseInvitation(
                personnummer=YOUTH, parties=parties, coordinator="social_sig_coordinator"
            )
        ],
        MessageType.PLAN_COMMITMENT: [
            PlanCommitment(
                commitment_id="cm-schoolattendance",
                responsible_agency="school",
                action=ActionCode.SCHOOL_ATTENDANCE_PLAN,
                owner_function="school_counsellor",
                due_on=NOW.date() + timedelta(days=30),
            )
        ],
        MessageType.COMMITMENT_STATUS: [
            CommitmentStatus(
                commitment_id="cm-schoolattendance",
                status=StatusCode.IN_PROGRESS,
                as_of=NOW.date(),
                note="Kontakt med mentor varje vecka.",
            ),
            CommitmentStatus(
                commitment_id="cm-schoolattendance",
                status=StatusCode.NOT_DONE,
                not_done_reason=next(iter(NotDoneReason)),
                as_of=NOW.date(),
            ),
        ],
        MessageType.MEETING_NOTICE: [
            MeetingNotice(
                meeting_at=NOW + timedelta(days=7),
                place=PlaceCode.SOCIAL_SERVICES_OFFICE,
                agenda=(AgendaItem.PLAN_REVIEW, AgendaItem.NEW_ACTIONS),
            )
        ],
        MessageType.YOUTH_QUESTIONNAIRE: [
            YouthQuestionnaire(
                occasion=QuestionnaireOccasion.REVIEW,
                listened_to=QuestionnaireAnswer.YES,
                support_helped=QuestionnaireAnswer.PARTLY,
                knew_the_plan=QuestionnaireAnswer.NO_ANSWER,
                recorded_by="social_case_worker",
            )
        ],
        MessageType.MEETING_ATTENDANCE: [
            MeetingAttendance(
                meeting_at=NOW - timedelta(hours=2),
                agencies_present=("social", "school"),
                young_person_present=True,
                guardians_present=("vh-1",),
            )
        ],
        MessageType.MEETING_MINUTES: [
            MeetingMinutes(
                meeting_at=NOW - timedelta(hours=2),
                discussed=(AgendaItem.PLAN_REVIEW, AgendaItem.NEW_ACTIONS),
                note="Skolan tar fram en närvaroplan till nästa möte.",
            )
        ],
        MessageType.PLAN_REVISION: [
            PlanRevision(
                plan_version=2,
                commitments=("cm-schoolattendance", "cm-policecontact"),
                revised_by="social_sig_coordinator",
            )
        ],
        MessageType.COMMITMENT_REMINDER: [
            CommitmentReminder(
                commitment_id="cm-schoolattendance",
                action=ActionCode.SCHOOL_ATTENDANCE_PLAN,
                owner_function="school_counsellor",
                due_on=NOW.date() - timedelta(days=1),
            )
        ],
        MessageType.EXISTENCE_QUERY: [
            ExistenceQuery(personnummer=YOUTH, asked_by="police_youth_unit")
        ],
    }


def sealed_referral() -> Envelope:
    """The envelope round-trip test's own referral, sealed with the development keys."""
    police = load_private(DEV_KEYS_DIR, "police").identity()
    return sealed(police, load_private(DEV_KEYS_DIR, HUB).identity(), DEV_KEYS_DIR)


def wire_samples() -> dict[str, list[BaseModel]]:
    envelope = sealed_referral()
    hub_log_key = load_private(DEV_KEYS_DIR, HUB)
    record = ReleaseRecord(
        release_id=release_id_for(envelope.header.message_id, "social"),
        decision_id="dec-contractsample",
        message_id=envelope.header.message_id,
        recipient="social",
        recipient_key_id=envelope.sealed_key_id,
        legal_basis="lul_6",
        statutory=True,
        rules_hash=sha256_hex(b"rules"),
        log_index=0,
        leaf_hash=sha256_hex(b"leaf"),
        ciphertext_sha256=envelope.ciphertext_digest(),
        sealed_key_sha256=sha256_hex(envelope.sealed_key),
        released_at=NOW,
        hub_key_id="hub-sig-0123456789abcdef",
    )
    signature = sign_record(record, hub_log_key.identity().signing_key)
    entry = LogEntry(
        index=0,
        prev_leaf_hash=GENESIS_PREV_HASH,
        decision_id="dec-contractsample",
        decided_at=NOW,
        ingress_seq=1,
        message_id=envelope.header.message_id,
        message_type=MessageType.REFERRAL,
        sender="police",
        recipient="social",
        subject_ref="subj-contractsample",
        case_ref=None,
        legal_basis="lul_6",
        statutory=True,
        rules_hash=record.rules_hash,
        ciphertext_sha256=record.ciphertext_sha256,
        outcome=EntryOutcome.RELEASE,
        release_id=record.release_id,
    )
    notice = sign_notice(
        DecisionNotice(
            notice_id=notice_id_for(envelope.header.message_id, 1),
            message_id=envelope.header.message_id,
            message_type=MessageType.REFERRAL,
            sender="police",
            decided_at=NOW,
            items=(
                NoticeItem(recipient="social", outcome=NoticeOutcome.RELEASED, log_index=0),
                NoticeItem(
                    recipient="school",
                    outcome=NoticeOutcome.DENIED,
                    reasons=("statute_recipient_not_allowed:lul_6",),
                    log_index=1,
                ),
            ),
            hub_key_id="hub-sig-0123456789abcdef",
        ),
        hub_log_key.identity().signing_key,
    )
    return {
        "decision_notice": [notice],
        "notice_request": [NoticeRequest(message_id=envelope.header.message_id)],
        "notice_reply": [NoticeReply(notice=notice), NoticeReply(error=NOT_DECIDED)],
        "envelope": [envelope],
        "release_record": [record],
        "release": [Release(
            envelope=envelope,
            sealed_key=envelope.sealed_key,
            sealed_key_id=envelope.sealed_key_id,
            record=record,
            record_signature=signature,
        )],
        "log_entry": [entry],
        "inclusion_request": [InclusionRequest(index=0, size=1)],
        "consistency_request": [ConsistencyRequest(size1=1, size2=2)],
        "proof_reply": [
            ProofReply(proof=(b"\x01" * 32,), leaf_hash=b"\x02" * 32),
            ProofReply(error="not_a_party_to_entry"),
        ],
        "checkpoint_reply": [CheckpointReply(signed_checkpoint="sigbus/dev/disclosure-log\n1\n")],
        "cosignature": [
            Cosignature(witness="school", public_key=b"\x03" * 32, checkpoint_size=1, line="x")
        ],
        "checkpoint_gossip": [
            CheckpointGossip(
                witness="sigbus/witness/school", signed_checkpoint="note\n", cosignature="x"
            )
        ],
    }


def all_samples() -> dict[str, list[dict[str, Any]]]:
    named: dict[str, list[BaseModel]] = {t.value: b for t, b in body_samples().items()}
    named.update(wire_samples())
    return {name: [m.model_dump(mode="json") for m in models] for name, models in named.items()}


def invalid_variants(sample: dict[str, Any], schema: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Inputs every receiver refuses: an unknown field, and each required one missing."""
    extra = copy.deepcopy(sample)
    extra["unexpected"] = 1
    yield extra
    for key in schema.get("required", []):
        yield {k: v for k, v in sample.items() if k != key}


@pytest.fixture(scope="module")
def published_schemas() -> dict[str, dict[str, Any]]:
    return schemas(contracts())


# -- the files are the models ----------------------------------------------------------


def test_committed_contracts_match_the_models() -> None:
    differing = stale(ROOT)
    assert not differing, f"{differing} differ from the models: run `{REGENERATE}`"


def test_stale_names_a_changed_and_an_extra_file(tmp_path: Path) -> None:
    for path, text in published().items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(text, encoding="utf-8")
    assert stale(tmp_path) == []
    (tmp_path / SCHEMA_DIR / "referral.schema.json").write_text("{}", encoding="utf-8")
    (tmp_path / SCHEMA_DIR / "retired.schema.json").write_text("{}", encoding="utf-8")
    assert stale(tmp_path) == [
        f"{SCHEMA_DIR}/referral.schema.json",
        f"{SCHEMA_DIR}/retired.schema.json",
    ]


def test_every_message_type_has_a_schema_and_a_sample(
    published_schemas: dict[str, dict[str, Any]],
) -> None:
    assert {c.name for c in message_contracts()} == {t.value for t in MESSAGE_TYPES}
    assert {t.value for t in MESSAGE_TYPES} <= set(published_schemas)
    assert set(body_samples()) == set(MESSAGE_TYPES), "add a sample for the new message type"
    assert set(all_samples()) == set(published_schemas)


def test_every_schema_has_id_title_description_and_dialect(
    published_schemas: dict[str, dict[str, Any]],
) -> None:
    for name, schema in published_schemas.items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"].endswith(f"/{name}.schema.json")
        assert schema["title"]
        assert len(schema["description"]) > 40
        assert schema["additionalProperties"] is False


def test_the_models_constraints_are_in_the_schemas(
    published_schemas: dict[str, dict[str, Any]],
) -> None:
    referral = published_schemas["referral"]["properties"]
    assert referral["personnummer"]["pattern"] == r"^(19|20)\d{6}-?\d{4}$"
    assert referral["reasons"]["uniqueItems"] is True
    assert referral["reasons"]["maxItems"] == 8
    opened = published_schemas["case_opened"]["properties"]
    assert opened["parties"]["not"] == {"contains": {"const": HUB}}
    note = published_schemas["commitment_status"]["properties"]["note"]["anyOf"][0]
    assert note["maxLength"] == 200
    assert "not" in note
    assert "$comment" in published_schemas["consent_event"]


def _subject_functions() -> dict[str, Any]:
    return {
        name: f
        for name, f in inspect.getmembers(subjects, inspect.isfunction)
        if name.endswith("_subject") and f.__module__ == subjects.__name__
    }


def test_every_subject_of_protocol_subjects_is_an_asyncapi_channel() -> None:
    document = yaml.safe_load((ROOT / ASYNCAPI_PATH).read_text(encoding="utf-8"))
    addresses = {c["address"] for c in document["channels"].values()}
    functions = _subject_functions()
    assert set(functions) == {
        "ingress_subject", "service_subject", "inbox_subject", "cosignature_subject",
        "gossip_subject", "urgent_subject",
    }
    for name, function in functions.items():
        params = list(inspect.signature(function).parameters)
        wanted = (
            [function("{agency}", s) for s in subjects.HUB_SERVICES]
            if params == ["agency", "service"]
            else [function("{agency}")]
        )
        missing = set(wanted) - addresses
        assert not missing, f"{name}: {missing} not in {ASYNCAPI_PATH}: run `{REGENERATE}`"
    constants = [v for k, v in vars(subjects).items() if k.endswith("_SUBJECT")]
    assert constants
    assert set(constants) - set(HUB_PRIVATE_SUBJECTS) <= addresses


def test_asyncapi_document_is_well_formed() -> None:
    document = yaml.safe_load((ROOT / ASYNCAPI_PATH).read_text(encoding="utf-8"))
    assert document["asyncapi"] == "3.0.0"
    assert document == json.loads(json.dumps(document))  # plain JSON data, nothing YAML-only
    components = document["components"]
    assert set(components["securitySchemes"]) == {"mutualTls", "nkey"}
    for key, channel in document["channels"].items():
        names = set(channel.get("parameters", {}))
        in_address = {p for p in ("agency",) if "{" + p + "}" in (channel["address"] or "")}
        assert names == in_address, key
        for ref in channel["messages"].values():
            assert ref["$ref"].removeprefix("#/components/messages/") in components["messages"]
    for key, operation in document["operations"].items():
        assert operation["channel"]["$ref"].removeprefix("#/channels/") in document["channels"]
        assert operation["action"] in ("send", "receive"), key
    for message in components["messages"].values():
        payload = message.get("payload", {})
        if "schema" in payload:
            assert payload["schemaFormat"] == SCHEMA_FORMAT
            target = ROOT / "docs" / payload["schema"]["$ref"].removeprefix("./")
            assert target.is_file(), target
    assert len(api().channels) == len(document["channels"])


# -- samples against the schemas: Python ------------------------------------------------


def _validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER
    )


def test_samples_validate_and_broken_ones_do_not(
    published_schemas: dict[str, dict[str, Any]],
) -> None:
    for name, samples in all_samples().items():
        validator = _validator(published_schemas[name])
        for sample in samples:
            errors = [e.message for e in validator.iter_errors(sample)]
            assert errors == [], f"{name}: {errors}"
            for broken in invalid_variants(sample, published_schemas[name]):
                assert not validator.is_valid(broken), name


def test_a_bad_personnummer_form_and_a_smuggled_one_are_refused(
    published_schemas: dict[str, dict[str, Any]],
) -> None:
    referral = all_samples()["referral"][0]
    validator = _validator(published_schemas["referral"])
    assert not validator.is_valid({**referral, "personnummer": YOUTH[2:]})  # 10 digits
    status = all_samples()["commitment_status"][0]
    validator = _validator(published_schemas["commitment_status"])
    assert not validator.is_valid({**status, "note": f"ring om {YOUTH}"})
    assert not validator.is_valid({**status, "commitment_id": "cm-20101231"})


# -- samples against the schemas: Node.js (Ajv) -----------------------------------------

#: Validates {schemas, cases} from stdin with Ajv's draft 2020-12 build in strict mode,
#: formats from ajv-formats; prints one verdict per case.
AJV_SCRIPT = r"""
const Ajv2020 = require("ajv/dist/2020");
const addFormats = require("ajv-formats");
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const ajv = new Ajv2020({ strict: true, allErrors: true });
addFormats(ajv);
for (const schema of input.schemas) ajv.addSchema(schema);
const verdicts = input.cases.map(([id, data]) => {
  const ok = ajv.getSchema(id)(data);
  return ok ? "valid" : ajv.errorsText(ajv.getSchema(id).errors);
});
process.stdout.write(JSON.stringify(verdicts));
"""


def _ajv(schema_list: list[dict[str, Any]], cases: list[tuple[str, Any]]) -> list[str]:
    if shutil.which("node") is None or not (NODE_MODULES / "ajv").is_dir():
        pytest.skip("ajv not installed")
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
    result = subprocess.run(
        ["node", "-e", AJV_SCRIPT],
        input=json.dumps({"schemas": schema_list, "cases": cases}),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    verdicts: list[str] = json.loads(result.stdout)
    return verdicts


def test_ajv_validates_the_published_files_and_the_samples() -> None:
    files = sorted((ROOT / SCHEMA_DIR).glob("*.schema.json"))
    by_name = {
        p.name.removesuffix(".schema.json"): json.loads(p.read_text(encoding="utf-8"))
        for p in files
    }
    schema_list = list(by_name.values())
    ids = {name: schema["$id"] for name, schema in by_name.items()}
    good = [(ids[name], s) for name, samples in all_samples().items() for s in samples]
    bad = [
        (ids[name], b)
        for name, samples in all_samples().items()
        for s in samples
        for b in invalid_variants(s, by_name[name])
    ]
    verdicts = _ajv(schema_list, good + bad)
    assert verdicts[: len(good)] == ["valid"] * len(good), verdicts[: len(good)]
    assert "valid" not in verdicts[len(good) :]


#: The AsyncAPI 3.0.0 JSON Schema from @asyncapi/specs is draft-07 and bundles the
#: draft-07 meta-schema itself, so Ajv must not add its own copy (``meta: false``).
ASYNCAPI_SCRIPT = r"""
const Ajv = require("ajv");
const addFormats = require("ajv-formats");
const specs = require("@asyncapi/specs");
const input = JSON.parse(require("fs").readFileSync(0, "utf8"));
const ajv = new Ajv({ strict: false, allErrors: true, meta: false, validateSchema: false });
addFormats(ajv);
const validate = ajv.compile(specs.schemas["3.0.0"]);
const verdicts = input.map((doc) => (validate(doc) ? "valid" : ajv.errorsText(validate.errors)));
process.stdout.write(JSON.stringify(verdicts));
"""


def test_asyncapi_document_validates_against_the_asyncapi_3_schema() -> None:
    if not (NODE_MODULES / "@asyncapi" / "specs").is_dir():
        pytest.skip("@asyncapi/specs not installed")
    document = yaml.safe_load((ROOT / ASYNCAPI_PATH).read_text(encoding="utf-8"))
    broken = copy.deepcopy(document)
    broken["operations"]["send_envelope"]["action"] = "publish"  # AsyncAPI 2 wording
    env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
    result = subprocess.run(
        ["node", "-e", ASYNCAPI_SCRIPT],
        input=json.dumps([document, broken]),
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    good, bad = json.loads(result.stdout)
    assert good == "valid"
    assert bad != "valid"


def test_the_command_writes_then_checks_and_names_what_is_stale(tmp_path: Path) -> None:
    runner = CliRunner()
    written = runner.invoke(app, ["contracts", "--root", str(tmp_path)])
    assert written.exit_code == 0, written.output
    assert f"written: {ASYNCAPI_PATH}" in written.output
    assert runner.invoke(app, ["contracts", "--root", str(tmp_path), "--check"]).exit_code == 0
    (tmp_path / SCHEMA_DIR / "meeting_notice.schema.json").write_text("{}", encoding="utf-8")
    checked = runner.invoke(app, ["contracts", "--root", str(tmp_path), "--check"])
    assert checked.exit_code == 1
    assert f"differs: {SCHEMA_DIR}/meeting_notice.schema.json" in checked.output
    assert REGENERATE in checked.output
