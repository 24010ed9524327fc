"""Consent and legal-basis decisions. Pure: no I/O, no clock reads, no NATS.

``decide(request, rules, *, now)`` answers, per recipient, whether a release is
permitted and on which legal basis (consent, OSL 12 kap. 2 §, or a statute in
the rules file), with the consent revisions and rule ids it relied on and the
precise reasons for every deny.
"""

from sigbus.policy.engine import age_on, decide, required_consenters
from sigbus.policy.errors import EvaluationError, PolicyError, PolicyInputError, RulesError
from sigbus.policy.model import (
    CaseState,
    ConsentRecordEvent,
    ConsentRef,
    Decision,
    DecisionRequest,
    DenyCode,
    DenyReason,
    RecipientDecision,
    StatutoryAssertion,
    SubjectFacts,
    Verdict,
)
from sigbus.policy.rules import Rules, default_rules, load_rules

__all__ = [
    "CaseState",
    "ConsentRecordEvent",
    "ConsentRef",
    "Decision",
    "DecisionRequest",
    "DenyCode",
    "DenyReason",
    "EvaluationError",
    "PolicyError",
    "PolicyInputError",
    "RecipientDecision",
    "Rules",
    "RulesError",
    "StatutoryAssertion",
    "SubjectFacts",
    "Verdict",
    "age_on",
    "decide",
    "default_rules",
    "load_rules",
    "required_consenters",
]
