"""`sigbus police …`"""

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
from sigbus.agents.police import AGENCY
from sigbus.protocol.codes import ContactFunction, ReferralKind, ReferralReason
from sigbus.protocol.ids import AgencyId, MessageType

app = typer.Typer(
    pretty_exceptions_show_locals=False,
    help="Polisen: referrals (LUL 6 §), plan commitments, status, inbox.",
    no_args_is_help=True,
)
add_common_commands(app, AGENCY)
add_plan_commands(app, AGENCY)


@app.command()
def refer(
    reason: Annotated[list[ReferralReason], typer.Option(help="repeatable")],
    personnummer: PnrOpt = None,
    kind: ReferralKind = ReferralKind.LUL_6_NOTIFICATION,
    observed: Annotated[str | None, typer.Option(help="YYYY-MM-DD (default today)")] = None,
    contact: ContactFunction = ContactFunction.POLICE_YOUTH_UNIT,
    nats: NatsOpt = None,
    keys: KeysOpt = None,
) -> None:
    """Notify social services (LUL 6 § notification or report of concern)."""
    body = referral_body(kind, personnummer, reason, observed, contact)
    send(AGENCY, nats, keys, MessageType.REFERRAL, body, case_ref=None, to=[AgencyId.SOCIAL])
