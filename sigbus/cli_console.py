"""`sigbus console`: serve the web console; `sigbus console add-user`: manage its users."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
import uvicorn

from sigbus.audit.signed_chain import ChainError, check_chain
from sigbus.console.app import console_for, make_app
from sigbus.console.auth import ConsoleError, Role, UsersFile, new_user
from sigbus.console.source import NatsSource
from sigbus.protocol.errors import ProtocolError, SigbusError
from sigbus.transport import config

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8470
USERS_FILE = "console-users.json"

console_app = typer.Typer(
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,
    help="The web console: cases for coordinators, the log for compliance officers.",
)

DataOpt = Annotated[Path | None, typer.Option("--data-dir", help="default var/sigbus")]
KeysOpt = Annotated[Path | None, typer.Option("--keys", help="default keys/dev")]
HostOpt = Annotated[str, typer.Option("--host", help="listen address (loopback by default)")]
PortOpt = Annotated[int, typer.Option("--port", help="listen port")]


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves the signals to its host (`sigbus up`'s broker)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def console_server(
    nats_url: str, keys: Path, data: Path, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT
) -> uvicorn.Server:
    source = NatsSource(nats_url, keys)
    app = make_app(console_for(data, source))
    cfg = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    return _QuietServer(cfg)


def console_socket(port: int, host: str = DEFAULT_HOST) -> socket.socket | None:
    """A listening socket for the console, or None if the port is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        return None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def console_url(host: str, port: int) -> str:
    return f"http://{host}:{port}/"


@console_app.callback(invoke_without_command=True)
def serve(
    ctx: typer.Context,
    host: HostOpt = DEFAULT_HOST,
    port: PortOpt = DEFAULT_PORT,
    nats: Annotated[str | None, typer.Option("--nats")] = None,
    data_dir: DataOpt = None,
    keys: KeysOpt = None,
) -> None:
    """Serve the console (a running `sigbus up` is needed) until Ctrl-C."""
    if ctx.invoked_subcommand is not None:
        return
    data = config.data_dir(data_dir)
    try:
        server = console_server(
            config.nats_url(nats, data_dir), config.keys_dir(keys), data, host, port
        )
    except (SigbusError, ProtocolError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    typer.echo(f"sigbus console: {console_url(host, port)}")
    asyncio.run(server.serve())


@console_app.command("add-user")
def add_user(
    name: str,
    role: Annotated[Role, typer.Option("--role", help="coordinator, compliance or auditor")],
    data_dir: DataOpt = None,
) -> None:
    """Add (or replace) a console user; the password is read from a prompt or stdin."""
    if sys.stdin.isatty():
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    else:
        password = sys.stdin.readline().rstrip("\n")
    path = config.data_dir(data_dir) / USERS_FILE
    try:
        UsersFile(path).add(new_user(name, role, password))
    except ConsoleError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    typer.echo(f"console user {name} ({role.value}) saved in {path}")


@console_app.command("verify")
def verify(
    nats: Annotated[str | None, typer.Option("--nats")] = None,
    data_dir: DataOpt = None,
    keys: KeysOpt = None,
) -> None:
    """Check the access log and the findings held by the hub: every record chained and
    signed by a hub signing key of the directory. Prints each chain's length and head."""
    source = NatsSource(config.nats_url(nats, data_dir), config.keys_dir(keys))

    async def run() -> list[tuple[str, int, str]]:
        out = []
        for name, chain in (("access", source.access_log()), ("findings", source.findings_log())):
            records = await chain.read()
            out.append((name, len(records), check_chain(records, chain.keys, domain=chain.domain)))
        return out

    try:
        heads = asyncio.run(run())
    except ChainError as e:
        typer.echo(f"FAIL / UNDERKÄND: {e}", err=True)
        raise typer.Exit(1) from e
    except (SigbusError, ProtocolError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    for name, count, head in heads:
        typer.echo(f"VERIFIED / GODKÄND: {name}: {count} records, head {head}")
