"""Legal bases as data: the versioned rules file and its hash.

The rules file (TOML, ``policy/rules.toml``) names every legal basis the engine
may permit on, with the statute it implements, plus the municipality settings.
Its SHA-256 goes into every decision, so a decision can always be traced to the
exact rules that made it. This module parses bytes only; reading a user-given
path is the CLI's job.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from collections.abc import Iterable
from importlib import resources
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, model_validator

from sigbus.policy._memo import memo
from sigbus.policy.errors import RulesError
from sigbus.protocol.codes import ConsentPurpose
from sigbus.protocol.ids import HUB, AgencyId, MessageType
from sigbus.protocol.messages import HUB_RECORD_TYPES

_RuleId = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,40}$")]


class _RulesModel(BaseModel):
    # Not strict: TOML yields plain strings for enum values.
    model_config = ConfigDict(extra="forbid", frozen=True)


class MunicipalitySettings(_RulesModel):
    #: Longest validity period a consent may have (valid_until - valid_from), in days.
    max_consent_days: Annotated[int, Field(ge=1, le=3660)]
    #: False lets a municipality rely on the guardians alone below 15 (FB 6 kap. 11 §:
    #: the guardians decide, with growing weight to the child's view).
    young_person_consent_required_under_15: bool = True


class ConsentRule(_RulesModel):
    """Consent as a basis: OSL 12 kap. 2 § (the secrecy can be waived by the individual)."""

    id: _RuleId
    citation: str
    purpose: ConsentPurpose
    #: Categories a consent may ever cover. Never referral or hub records.
    categories: Annotated[tuple[MessageType, ...], Field(min_length=1)]
    #: Age from which only the young person's own consent counts (guardians stop counting).
    age_of_majority: Annotated[int, Field(ge=1, le=30)] = 18
    #: Below this age the municipality setting may drop the young person's own consent.
    own_consent_optional_under: Annotated[int, Field(ge=0, le=18)] = 15

    @model_validator(mode="after")
    def _never_referral_or_hub(self) -> Self:
        bad = {MessageType.REFERRAL} | set(HUB_RECORD_TYPES)
        if bad & set(self.categories):
            raise ValueError("consent may not cover referral, case_opened or consent_event")
        return self


class StatuteRule(_RulesModel):
    """A statutory basis: one named recipient, fixed senders and categories, an age limit."""

    id: _RuleId
    title: str
    citation: str
    #: Who may assert it; absent: any agency whose profile claims it (a duty on
    #: every authority working with children, like the reporting duty).
    senders: Annotated[tuple[AgencyId, ...], Field(min_length=1)] | None = None
    #: The one recipient the statute names.
    recipient: AgencyId
    categories: Annotated[tuple[MessageType, ...], Field(min_length=1)]
    #: The subject must be younger than this many years at the decision time.
    subject_under_age: Annotated[int, Field(ge=1, le=30)]
    #: The sender must assert this statute (StatutoryAssertion.basis == id).
    #: Every shipped statute requires it; an assertion carries an evidence id.
    evidence_id_pattern: str = r"^[A-Za-z0-9_-]{1,128}$"
    #: Short code naming what the evidence is, for explanations (e.g. risk_assessment).
    evidence_kind: str = "assertion"

    @model_validator(mode="after")
    def _well_formed(self) -> Self:
        if self.recipient == HUB or HUB in (self.senders or ()):
            raise ValueError(f"statute {self.id}: the hub is never a sender or recipient")
        if set(HUB_RECORD_TYPES) & set(self.categories):
            raise ValueError(f"statute {self.id}: hub records are never released")
        try:
            re.compile(self.evidence_id_pattern)
        except re.error as e:
            raise ValueError(f"statute {self.id}: evidence_id_pattern is not a regex") from e
        return self

    @property
    def evidence_re(self) -> re.Pattern[str]:
        pattern = self.evidence_id_pattern
        return memo(self, "evidence_re", (pattern,), lambda: re.compile(pattern))


class RetentionSettings(_RulesModel):
    """How long the hub (and every adapter) keeps a message's content, per category.

    ``default_days`` holds for every category not listed in ``days``; both are
    required, so a rules file without a period fails to load (fail closed). Hub
    records (case_opened, consent_event) are the hub's decision state, kept as long
    as the case: they are never listed here."""

    default_days: Annotated[int, Field(ge=1, le=3660)]
    days: dict[MessageType, Annotated[int, Field(ge=1, le=3660)]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _no_hub_records(self) -> Self:
        if set(HUB_RECORD_TYPES) & set(self.days):
            raise ValueError("retention: hub records are hub state, not given a period")
        return self

    def period_days(self, category: MessageType) -> int:
        return self.days.get(category, self.default_days)


class ExistenceNoticeSettings(_RulesModel):
    """``[existence_notice]``: whether a party may ask the hub if another agency is involved
    with a young person (yes/no and which agencies, no content). Off unless the rules
    file says ``enabled = true``; any other value fails the load (fail closed)."""

    enabled: StrictBool = False


class Rules(_RulesModel):
    """A parsed rules file. ``sha256`` is computed by :func:`load_rules`, never read."""

    rules_version: Annotated[str, Field(min_length=1, max_length=64)]
    municipality: MunicipalitySettings
    consent: ConsentRule
    statute: Annotated[tuple[StatuteRule, ...], Field(min_length=0)] = ()
    retention: RetentionSettings
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    existence_notice: ExistenceNoticeSettings = Field(default_factory=ExistenceNoticeSettings)

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        ids = [self.consent.id, *(s.id for s in self.statute)]
        if len(set(ids)) != len(ids):
            raise ValueError("rule ids must be unique")
        return self

    # Lookups memoised by the identity of their source field (policy._memo): a
    # model_copy(update=...) with other statutes can never reuse a stale lookup.
    @property
    def statutes_by_id(self) -> dict[str, StatuteRule]:
        statutes = self.statute
        return memo(self, "statutes", (statutes,), lambda: {s.id: s for s in statutes})

    @property
    def consent_categories(self) -> frozenset[MessageType]:
        consent = self.consent
        return memo(self, "categories", (consent,), lambda: frozenset(consent.categories))

    # Convenience accessors for the municipality settings.
    @property
    def max_consent_days(self) -> int:
        return self.municipality.max_consent_days

    @property
    def young_person_consent_required_under_15(self) -> bool:
        return self.municipality.young_person_consent_required_under_15


def load_rules(data: bytes) -> Rules:
    """Parse a rules file's bytes; the rules hash is SHA-256 of exactly these bytes."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise RulesError(f"rules file is not valid UTF-8 TOML: {e}") from e
    if "sha256" in doc:
        raise RulesError("rules file must not contain 'sha256': it is computed from the bytes")
    doc["sha256"] = hashlib.sha256(data).hexdigest()
    try:
        return Rules.model_validate(doc)
    except ValidationError as e:
        raise RulesError(f"rules file does not match the schema: {_summarise(e)}") from e


def default_rules() -> Rules:
    """The rules shipped with the package (``policy/rules.toml``)."""
    data = resources.files("sigbus.policy").joinpath("rules.toml").read_bytes()
    return load_rules(data)


def check_rule_references(rules: Rules, rule_ids: Iterable[str], *, named_by: str) -> None:
    """Start-up check: every rule id that ``named_by`` (the profiles, the code) names exists.

    A profile that lets an agency assert a statute the rules file lacks would
    otherwise surface as a deny at run time; refusing to start says it at once.
    """
    known = {rules.consent.id, *rules.statutes_by_id}
    missing = sorted(set(rule_ids) - known)
    if missing:
        listed = ", ".join(missing)
        raise RulesError(f"{named_by} name rule ids missing from the rules file: {listed}")


def _summarise(e: ValidationError) -> str:
    parts = []
    for err in e.errors(include_url=False, include_input=False)[:5]:
        loc = ".".join(str(x) for x in err["loc"])
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)
