"""`sigbus <agency> existence`: is another agency involved with this young person?

A notice of existence, without content (issue 13; :mod:`sigbus.policy.existence`).
The personnummer goes sealed to the hub like any body; the hub answers in its signed
decision notice with the agencies that are parties to an open case about the young
person, or none, and logs the query and the answer. Where the rules file does not
allow it (the default) the hub refuses with ``existence_notice_off`` (exit 1).
"""

# No ``from __future__ import annotations``: typer must see the option annotations.

from typing import Annotated

import typer

from sigbus.agents.cli_common import (
    DEFAULT_WAIT_S,
    EXIT_DENIED,
    EXIT_NO_DECISION,
    KeysOpt,
    NatsOpt,
    PnrOpt,
    TimeoutOpt,
    build,
    read_personnummer,
    run_with_adapter,
)
from sigbus.agents.notice_text import describe_notice
from sigbus.agents.runtime import Adapter
from sigbus.policy.existence import parse_detail
from sigbus.protocol.ids import MessageType, new_opaque_id
from sigbus.protocol.messages import ExistenceQuery
from sigbus.protocol.notice import DecisionNotice
from sigbus.protocol.profiles import AgencyProfile
from sigbus.protocol.reasons import ReasonCode

_ANSWERED = f"{ReasonCode.EXISTENCE_ANSWERED.value}:"


def involved_agencies(notice: DecisionNotice) -> tuple[str, ...] | None:
    """The agencies the hub's answer names; None if the notice holds no answer."""
    for item in notice.items:
        for reason in item.reasons:
            if reason.startswith(_ANSWERED):
                return parse_detail(reason.removeprefix(_ANSWERED))
    return None


def add_existence_command(app: typer.Typer, profile: AgencyProfile) -> None:
    agency = profile.name
    functions = ", ".join(profile.functions)

    @app.command()
    def existence(
        personnummer: PnrOpt = None,
        asked_by: Annotated[str, typer.Option(help=f"one of: {functions}")] = (
            profile.default_function()
        ),
        nats: NatsOpt = None,
        keys: KeysOpt = None,
        timeout: TimeoutOpt = DEFAULT_WAIT_S,
    ) -> None:
        """Ask the hub whether another agency is involved with the young person: yes or
        no and which agencies, never content. Only where the rules file allows it."""
        pnr = read_personnummer(personnummer)
        body = build(lambda: ExistenceQuery(personnummer=pnr, asked_by=asked_by))
        message_id = new_opaque_id("msg")

        async def action(adapter: Adapter) -> DecisionNotice | None:
            sent = await adapter.send(MessageType.EXISTENCE_QUERY, body, message_id=message_id)
            typer.echo(f"sent {MessageType.EXISTENCE_QUERY.value} {sent}")
            return await adapter.await_notice(sent, timeout=timeout)

        notice = run_with_adapter(agency, nats, keys, action)
        if notice is None:
            typer.echo(f"no answer from the hub within {timeout:g}s", err=True)
            raise typer.Exit(EXIT_NO_DECISION)
        for line in describe_notice(notice):
            typer.echo(line)
        agencies = involved_agencies(notice)
        if not notice.all_taken or agencies is None:
            typer.echo("no answer: the hub refused the question (see the reason above)", err=True)
            raise typer.Exit(EXIT_DENIED)
        if agencies:
            typer.echo(f"involved: yes: {', '.join(agencies)} (ask the coordinator for consent)")
        else:
            typer.echo("involved: no other agency")
