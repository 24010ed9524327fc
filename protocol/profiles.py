"""Agency profiles: what each SIG partner is, sends and may assert. Pure: bytes in.

An agency exists because the signed directory lists it; its profile (one TOML
file, ``profiles/<name>.toml``) says what it is to a SIG: its names in Swedish
and English, the message types it may send, its functions (who to call back,
who owns an action; never a named person), the plan actions it commits to, the
referral kinds it may send and the statute each asserts, and any other statute
it may assert. Nothing in the code names an agency other than through these
files, so a municipality adds a partner (the prison and probation service,
the employment service, the youth homes, the region's psychiatry, a local
association) without a code change.

One profile is the *lead*: social services, who lead the SIG and run the hub
(the municipality's socialnämnd). Lead-only message types (case records,
samtycke, invitations, meeting notices) may appear only in the lead's profile.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Iterator, Mapping
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sigbus.protocol.codes import ActionCode, ReferralKind
from sigbus.protocol.errors import ProfileError
from sigbus.protocol.ids import HUB, AgencyId, FunctionCode, MessageType
from sigbus.protocol.messages import MESSAGE_TYPES, RuleIdStr, SentBy

_Text = Annotated[str, Field(min_length=1, max_length=120)]


class _ProfileModel(BaseModel):
    # Not strict: TOML yields plain strings for enum values.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Names(_ProfileModel):
    """A display name in Swedish (the users' language) and English."""

    sv: _Text
    en: _Text

    def in_language(self, language: str) -> str:
        return self.en if language == "en" else self.sv


#: An envelope is at most 64 KiB (protocol.envelope.MAX_ENVELOPE_BYTES); the bus
#: takes at most twice that from one agency, and no deployment may raise it.
MAX_PAYLOAD_CEILING = 128 * 1024
#: The lowest ``max_payload`` a profile may set: it must admit what an agency
#: publishes with hybrid signatures (3,373-byte Ed25519+ML-DSA-65 signature and a
#: 1,168-byte sealed key, base64 in JSON: a referral envelope is about 7 KiB; a
#: witness cosignature with its ML-DSA-65 line and 1,984-byte key about 8 KiB).
MIN_PAYLOAD = 16 * 1024


class BusLimits(_ProfileModel):
    """What one agency's NATS account may use of the bus (``[limits]`` in its profile).

    The bus itself enforces these, before the hub sees anything (issue 9): a publish
    larger than ``max_payload`` is refused and the connection closed, a connection or
    subscription beyond the caps is refused. How many of its messages may wait
    undecided is the ingress stream's per-agency backlog, the same for every agency
    (``transport.bus.INGRESS_BACKLOG``); stored bytes per agency are therefore at most
    backlog × ``max_payload``, and its publish rate is bounded by the hub's decisions.
    """

    max_payload: Annotated[int, Field(ge=MIN_PAYLOAD, le=MAX_PAYLOAD_CEILING)] = MAX_PAYLOAD_CEILING
    max_connections: Annotated[int, Field(ge=1, le=1024)] = 8
    max_subscriptions: Annotated[int, Field(ge=8, le=10_000)] = 64


class AgencyProfile(_ProfileModel):
    name: AgencyId
    display_name: Names
    #: Social services: leads the SIG and runs the hub. Exactly one profile is lead.
    lead: bool = False
    sends: Annotated[tuple[MessageType, ...], Field(min_length=1)]
    #: Functions at the agency (contact function, owner of an action), with their names.
    functions: Annotated[dict[FunctionCode, Names], Field(min_length=1)]
    #: Plan actions (individuell åtgärdsplan) the agency can commit to.
    actions: tuple[ActionCode, ...] = ()
    #: Referral kinds it may send, each with the statute (rule id) the referral asserts.
    referrals: dict[ReferralKind, RuleIdStr] = Field(default_factory=dict)
    #: Other statutes it may assert on the message types those statutes cover.
    statutes: tuple[RuleIdStr, ...] = ()
    #: Its share of the bus; the defaults suit an agency with one adapter.
    limits: BusLimits = BusLimits()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.name == HUB:
            raise ValueError("'hub' is the hub's own name, not an agency profile")
        if len(set(self.sends)) != len(self.sends):
            raise ValueError("sends lists a message type twice")
        lead_only = [t for t in self.sends if MESSAGE_TYPES[t].sent_by is SentBy.LEAD]
        if lead_only and not self.lead:
            raise ValueError("only the lead agency may send " + ", ".join(lead_only))
        hub_only = [t for t in self.sends if MESSAGE_TYPES[t].sent_by is SentBy.HUB]
        if hub_only:
            raise ValueError("only the hub sends " + ", ".join(hub_only))
        if bool(self.referrals) != (MessageType.REFERRAL in self.sends):
            raise ValueError("referral kinds are listed for, and only for, a sender of referrals")
        return self

    @property
    def asserts(self) -> frozenset[str]:
        """Every statute this agency may assert."""
        return frozenset(self.statutes) | frozenset(self.referrals.values())

    def default_function(self) -> str:
        """The first function listed: the default contact in the agency's commands."""
        return next(iter(self.functions))


class Profiles(Mapping[str, AgencyProfile]):
    """Every agency profile by name, with exactly one lead."""

    def __init__(self, profiles: Iterable[AgencyProfile]) -> None:
        by_name: dict[str, AgencyProfile] = {}
        for profile in profiles:
            if profile.name in by_name:
                raise ProfileError("two profiles name the same agency")
            by_name[profile.name] = profile
        leads = [p.name for p in by_name.values() if p.lead]
        if len(leads) != 1:
            raise ProfileError(f"exactly one profile must be the lead agency, found {len(leads)}")
        self._by_name = by_name
        self.lead: str = leads[0]

    def __getitem__(self, name: str) -> AgencyProfile:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._by_name))

    def __len__(self) -> int:
        return len(self._by_name)

    def rule_ids(self) -> frozenset[str]:
        """Every rule id the profiles name: each must exist in the rules file."""
        return frozenset().union(*(p.asserts for p in self._by_name.values()))


def parse_profile(data: bytes, *, file_stem: str) -> AgencyProfile:
    """Parse one profile file; its name must match the file's (``police.toml`` holds ``police``)."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise ProfileError(f"profile {file_stem}: not valid UTF-8 TOML") from e
    try:
        profile = AgencyProfile.model_validate(doc)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or '<root>'}: {err['msg']}"
            for err in e.errors(include_url=False, include_input=False)[:5]
        )
        raise ProfileError(f"profile {file_stem}: {problems}") from e
    if profile.name != file_stem:
        raise ProfileError(f"profile {file_stem}: its name must match the file name")
    return profile
