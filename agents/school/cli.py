"""`sigbus school …`"""

from __future__ import annotations

from typing import Annotated

import typer

from sigbus.agents.cli_common import (
    KeysOpt,
    NatsOpt,
    PnrOpt,
    add_common_commands,
    add_plan_commands,
    referral_body,
    send,
)
from sigbus.agents.school import AGENCY
from sigbus.protocol.codes import ContactFunction, ReferralKind, ReferralReason
from sigbus.protocol.ids import AgencyId, MessageType

app = typer.Typer(
    pretty_exceptions_show_locals=False,
    help="Skolan: reports of concern, plan commitments, status, inbox.",
    no_args_is_help=True,
)
add_common_commands(app, AGENCY)
add_plan_commands(app, AGENCY)


@app.command()
def refer(
    reason: Annotated[list[ReferralReason], typer.Option(help="repeatable")],
    personnummer: PnrOpt = None,
    observed: Annotated[str | None, typer.Option(help="YYYY-MM-DD (default today)")] = None,
    contact: ContactFunction = ContactFunction.SCHOOL_COUNSELLOR,
    nats: NatsOpt = None,
    keys: KeysOpt = None,
) -> None:
    """Report concern to social services (SoL 14 kap. 1 §)."""
    body = referral_body(ReferralKind.REPORT_OF_CONCERN, personnummer, reason, observed, contact)
    send(AGENCY, nats, keys, MessageType.REFERRAL, body, case_ref=None, to=[AgencyId.SOCIAL])
