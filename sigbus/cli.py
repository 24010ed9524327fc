"""`sigbus`: one command, a subcommand group per role."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import structlog
import typer
from pydantic import ValidationError

import sigbus.cli_extract  # noqa: F401  (registers audit extract, verify-extract)
from sigbus.agents.cli_common import agency_app
from sigbus.agents.existence_cli import add_existence_command
from sigbus.agents.social.cli import add_lead_commands
from sigbus.agents.social.register import CaseRegister
from sigbus.audit.checkpoint import load_public_key
from sigbus.audit.errors import AuditError
from sigbus.bench import BenchSettings, print_result, render_chart, run_bench
from sigbus.broker.failover import serve_with_lease
from sigbus.broker.service import Broker
from sigbus.broker.setup import hub_setup
from sigbus.cli_audit import audit_app
from sigbus.cli_console import (
    DEFAULT_PORT,
    console_app,
    console_server,
    console_socket,
    console_url,
)
from sigbus.cli_keys import keys_app
from sigbus.cli_metrics import hub_metrics_task, stop_metrics
from sigbus.cli_policy import policy_app
from sigbus.contracts_cli import contracts_command
from sigbus.demo import run_demo
from sigbus.export import ExportSummary, export_log, export_state
from sigbus.protocol.directory import KeyUse
from sigbus.protocol.envelope import describe_invalid
from sigbus.protocol.errors import ProfileError, ProtocolError, SigbusError
from sigbus.protocol.ids import HUB, MessageType
from sigbus.protocol.profiles import Profiles
from sigbus.report import add_report_command
from sigbus.soak import FAULTS, SoakSettings, account_ok, render, run_soak
from sigbus.transport import config
from sigbus.transport.bus import connect
from sigbus.transport.errors import ConfigError, ServerError
from sigbus.transport.keystore import DirectoryWatcher, load_directory, load_trusted_directory
from sigbus.transport.logging import configure_logging
from sigbus.transport.metrics import DEFAULT_HOST as METRICS_HOST
from sigbus.transport.natsserver import EmbeddedNats, pid_alive
from sigbus.transport.profiles import load_profiles, local_profiles_stamp
from sigbus.transport.runlock import RunLock, running_pid
from sigbus.transport.storewatch import StoreWatch

log = structlog.get_logger("sigbus.cli")

app = typer.Typer(
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,
    help="sigbus: consent-gated, logged information sharing for sociala insatsgrupper (SIG).",
    no_args_is_help=True,
)
broker_app = typer.Typer(
    rich_markup_mode="markdown",
    pretty_exceptions_show_locals=False,
    help="The hub broker.",
    no_args_is_help=True,
)
app.add_typer(broker_app, name="broker")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(policy_app, name="policy")
app.add_typer(console_app, name="console")
app.command("contracts")(contracts_command)

#: How often `sigbus up` looks for a changed signed directory (seconds).
DIRECTORY_POLL_S = 2.0

DataOpt = Annotated[Path | None, typer.Option("--data-dir", help="default var/sigbus")]
KeysOpt = Annotated[Path | None, typer.Option("--keys", help="default keys/dev")]


@app.callback()
def main(
    json_logs: Annotated[bool, typer.Option("--json-logs", help="JSON lines logs")] = False,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "warning",
    insecure_dev: Annotated[
        bool,
        typer.Option("--insecure-dev", help="plaintext NATS, no identities: local debugging only"),
    ] = False,
    dev: Annotated[
        bool,
        typer.Option("--dev", help="allow the public development keys (keys/dev): never real data"),
    ] = False,
) -> None:
    configure_logging(json_output=True if json_logs else None, level=log_level)
    if insecure_dev:
        os.environ[config.INSECURE_DEV_ENV] = "1"
    if dev:
        os.environ[config.DEV_ENV] = "1"


def _fail(e: Exception) -> typer.Exit:
    typer.echo(f"error: {e}", err=True)
    return typer.Exit(2)


MetricsPortOpt = Annotated[
    int | None,
    typer.Option(
        "--metrics-port", help="serve Prometheus metrics on this port (127.0.0.1); off if unset"
    ),
]

#: What `sigbus demo --hold-open` writes to stderr once every step is done.
DEMO_HOLDING = "sigbus demo: every step done; the hub stays up until Enter (or end of input)"


@app.command()
def demo(
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="keep this run's NATS data, export and extract here, emptied first "
            "(default: a fresh temp dir)",
        ),
    ] = None,
    keys: KeysOpt = None,
    metrics_port: MetricsPortOpt = None,
    hold_open: Annotated[
        bool,
        typer.Option(
            "--hold-open",
            help="once every step is done, keep the hub (and its metrics) up until Enter",
        ),
    ] = False,
) -> None:
    """Run the whole SIG story on an embedded nats-server and check every step."""
    # The demo is what the development keys are for: it runs on a copy of them.
    os.environ[config.DEV_ENV] = "1"

    async def hold() -> None:
        # On stderr: stdout stays the report (one JSON object with --json).
        typer.echo(DEMO_HOLDING, err=True)
        await asyncio.to_thread(sys.stdin.readline)

    if metrics_port is not None:
        typer.echo(
            f"sigbus demo: hub metrics on http://{METRICS_HOST}:{metrics_port}/metrics", err=True
        )
    try:
        report = asyncio.run(
            run_demo(
                data_dir=data_dir,
                keys_dir=config.keys_dir(keys),
                metrics_port=metrics_port,
                hold=hold if hold_open else None,
            )
        )
    except (SigbusError, ProtocolError) as e:
        raise _fail(e) from e
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
    else:
        typer.echo("sigbus demo: one SIG case, end to end, on a real NATS JetStream\n")
        for line in report.lines:
            typer.echo(line)
        summary = report.as_json()
        typer.echo(
            f"\nlog length {summary['log_length']}; releases {summary['releases_by_type']};"
            f" denies {summary['denies_by_type']}; recorded {summary['recorded']};"
            f" retractions {summary['retractions']}"
        )
        typer.echo("ALL EXPECTATIONS HELD" if report.ok else "SOME EXPECTATIONS FAILED")
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def up(
    data_dir: DataOpt = None,
    keys: KeysOpt = None,
    console_port: Annotated[
        int, typer.Option("--console-port", help="the web console's port on 127.0.0.1")
    ] = DEFAULT_PORT,
    no_console: Annotated[bool, typer.Option("--no-console", help="do not serve it")] = False,
    metrics_port: MetricsPortOpt = None,
) -> None:
    """Run an embedded nats-server, the hub broker and the web console until Ctrl-C or
    `sigbus down`."""
    base = config.data_dir(data_dir)
    state_file = base / config.UP_STATE_FILE
    try:
        hub = hub_setup(config.keys_dir(keys))
    except (SigbusError, ProtocolError) as e:
        raise _fail(e) from e

    keys_path = config.keys_dir(keys)
    secured_by = None if config.insecure_dev() else keys_path

    async def reload_users(server: EmbeddedNats) -> None:
        """A directory change (an agency added, a key revoked) or a profile change (an
        agency's bus limits) re-renders the server's accounts and reloads it."""
        # Its own watcher: the broker's moves on by itself and would hide the change.
        trusted = load_trusted_directory(keys_path, now=datetime.now(UTC))
        watcher = DirectoryWatcher(keys_path, trusted)
        profiles_seen = local_profiles_stamp(keys_path)
        while True:
            await asyncio.sleep(DIRECTORY_POLL_S)
            seen, profiles_now = watcher.current, local_profiles_stamp(keys_path)
            changed = watcher.refresh() is not seen or profiles_now != profiles_seen
            profiles_seen = profiles_now
            if secured_by is None or not changed:
                continue
            if store.fault is not None:  # stopped for a store fault; reloaded when it starts
                continue
            try:
                server.reload()
            except (ConfigError, ProfileError, ProtocolError, ServerError) as e:
                # A profile or directory that does not parse: the running configuration stays.
                log.error("nats_config_not_reloaded", error=type(e).__name__)

    async def serve(server: EmbeddedNats) -> None:
        broker = hub.broker(server.url)
        await broker.start()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, broker.request_stop)
        reloader = asyncio.create_task(reload_users(server))
        watcher = asyncio.create_task(store.run())
        metrics = hub_metrics_task(broker, metrics_port)
        web = None
        if web_socket is not None:
            web = console_server(server.url, keys_path, base, port=console_port)
            web_task = asyncio.create_task(web.serve(sockets=[web_socket]))
        try:
            await broker.run()
        finally:
            reloader.cancel()
            watcher.cancel()
            await stop_metrics(metrics)
            if web is not None:
                web.should_exit = True
                await web_task

    lock = RunLock(base)
    try:
        lock.acquire()  # before the server: never two on one JetStream store
    except ConfigError as e:
        raise _fail(e) from e
    state_file.unlink(missing_ok=True)  # left by one that was killed: it points nowhere
    try:
        with EmbeddedNats(base / "nats", keys_dir=secured_by) as server:
            state_file.write_text(json.dumps({"nats_url": server.url, "pid": os.getpid()}))
            typer.echo(
                f"sigbus up: NATS {server.url}, broker running (pid {os.getpid()}). "
                "Stop with Ctrl-C or `sigbus down`."
            )
            # Bound here, so a port in use costs the console, never the hub.
            web_socket = None if no_console else console_socket(console_port)
            if web_socket is not None:
                typer.echo(f"sigbus console: {console_url('127.0.0.1', console_port)}")
            elif not no_console:
                typer.echo(f"sigbus console: not started, port {console_port} is in use", err=True)
            # A full or read-only store: stop the server, start it again when fixed.
            store = StoreWatch(server)
            try:
                asyncio.run(serve(server))
            finally:
                state_file.unlink(missing_ok=True)  # ours: we hold the lock
    finally:
        lock.release()
    typer.echo("sigbus down: broker and NATS stopped")


@app.command()
def bench(
    keys: KeysOpt = None,
    runs: Annotated[int, typer.Option(min=1, help="runs; figures are medians")] = 3,
    messages: Annotated[int, typer.Option(min=1, help="messages per throughput run")] = 300,
    loads: Annotated[str, typer.Option(help="offered loads, msg/s, comma-separated")] = (
        "50,100,200,500"
    ),
    duration: Annotated[float, typer.Option(min=0.1, help="seconds per offered load")] = 2.0,
    floor_iterations: Annotated[int, typer.Option(min=1)] = 300,
    withdrawal_backlog: Annotated[
        int, typer.Option(min=0, help="messages queued ahead of the withdrawals; 0: skip")
    ] = 10_000,
    withdrawal_cases: Annotated[int, typer.Option(min=1, help="withdrawals, one per case")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object on stdout")] = False,
    profile: Annotated[
        Path | None, typer.Option(help="cProfile the hub thread; pstats file to write")
    ] = None,
    startup_sizes: Annotated[
        str, typer.Option(help="log sizes for hub start-up time and RSS, e.g. 10000,1000000")
    ] = "",
    startup_only: Annotated[
        bool, typer.Option(help="only the start-up figures (needs --startup-sizes)")
    ] = False,
    chart: Annotated[
        Path | None, typer.Option(help="also draw the figures as an SVG chart to this file")
    ] = None,
) -> None:
    """Measure the hub end to end beside a raw JetStream pipeline and the crypto floor."""
    try:
        rates = tuple(float(x) for x in loads.split(",") if x.strip())
    except ValueError as e:
        raise _fail(ValueError("--loads must be numbers separated by commas")) from e
    try:
        sizes = tuple(int(x) for x in startup_sizes.split(",") if x.strip())
    except ValueError as e:
        raise _fail(ValueError("--startup-sizes must be whole numbers separated by commas")) from e
    if (startup_only and not sizes) or any(n < 1 for n in sizes):
        raise _fail(ValueError("--startup-sizes needs positive entry counts"))
    if not rates or min(rates) <= 0:
        raise _fail(ValueError("--loads needs at least one positive rate"))
    configure_logging(level="error")  # refused publishes at overload are counted, not logged
    settings = BenchSettings(
        keys=config.keys_dir(keys),
        runs=runs,
        messages=messages,
        loads=rates,
        duration_s=duration,
        floor_iterations=floor_iterations,
        profile=profile,
        withdrawal_backlog=withdrawal_backlog,
        withdrawal_cases=withdrawal_cases,
        startup_sizes=sizes,
        startup_only=startup_only,
    )
    try:
        result = run_bench(settings)
    except (SigbusError, ProtocolError) as e:
        raise _fail(e) from e
    except TimeoutError as e:  # a hub that stopped serving: the figures would be wrong
        raise _fail(TimeoutError("bench: not every message was handed off in time")) from e
    print_result(result, as_json=as_json, echo=typer.echo)
    if chart is not None:
        try:
            chart.write_text(render_chart(result), encoding="utf-8")
        except OSError as e:
            raise _fail(OSError(f"--chart: cannot write {chart}: {e.strerror}")) from e
        typer.echo(f"bench: chart written to {chart}", err=True)


@app.command()
def soak(
    minutes: Annotated[float, typer.Option(min=0.05, help="how long the load and faults run")] = 10,
    faults: Annotated[
        str, typer.Option(help="what to SIGKILL, comma-separated: hub, adapter, nats")
    ] = "hub,adapter,nats",
    kill_every: Annotated[float, typer.Option(min=1, help="mean seconds between kills")] = 9.0,
    seed: Annotated[int | None, typer.Option(help="seed of the fault schedule")] = None,
    work_dir: Annotated[
        Path | None, typer.Option(help="cluster, logs and stores go here (default: a temp dir)")
    ] = None,
    keys: KeysOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="the account as one JSON object")] = False,
) -> None:
    """Run load with random SIGKILLs of hubs, adapters and NATS nodes, then account for
    every message id and verify the log. Exit 1 if anything was lost or duplicated."""
    chosen = tuple(f.strip() for f in faults.split(",") if f.strip())
    unknown = sorted(set(chosen) - set(FAULTS))
    if unknown:
        raise _fail(ValueError(f"--faults: unknown {', '.join(unknown)} (use {', '.join(FAULTS)})"))
    configure_logging(level="error")
    with tempfile.TemporaryDirectory(prefix="sigbus-soak-") as tmp:
        settings = SoakSettings(
            keys=config.keys_dir(keys),
            work=work_dir or Path(tmp),
            minutes=minutes,
            faults=chosen,
            kill_every_s=kill_every,
            seed=seed,
        )
        try:
            account = run_soak(settings)
        except (SigbusError, ProtocolError) as e:
            raise _fail(e) from e
    typer.echo(json.dumps(account, indent=2) if as_json else render(account))
    if not account_ok(account):
        raise typer.Exit(1)


@app.command()
def down(data_dir: DataOpt = None) -> None:
    """Stop what `sigbus up` started."""
    base = config.data_dir(data_dir)
    state_file = base / config.UP_STATE_FILE
    # The lock names the running one even if its state file was removed.
    pid = running_pid(base)
    if pid is None:
        typer.echo("nothing to stop: no running `sigbus up` found", err=True)
        state_file.unlink(missing_ok=True)  # left by a process that is gone
        raise typer.Exit(1)
    if pid_alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
    state_file.unlink(missing_ok=True)
    typer.echo("stopped")


@broker_app.command("run")
def broker_run(
    nats: Annotated[str, typer.Option("--nats", envvar="SIGBUS_NATS_URL")],
    keys: KeysOpt = None,
    replicas: Annotated[
        int,
        typer.Option(
            min=1, help="JetStream replicas per stream (needs a cluster of that many servers)"
        ),
    ] = 1,
    ack_wait: Annotated[
        float, typer.Option(help="seconds before an unacknowledged ingress message is redelivered")
    ] = 30.0,
    metrics_port: MetricsPortOpt = None,
    metrics_host: Annotated[
        str, typer.Option(help="the metrics' address (0.0.0.0 inside a container)")
    ] = METRICS_HOST,
) -> None:
    """Run the hub against an existing NATS server (the docker-compose deployment)."""
    try:
        hub = hub_setup(config.keys_dir(keys))
    except (SigbusError, ProtocolError) as e:
        raise _fail(e) from e

    async def serve() -> None:
        # Any number of these may run: the lease holder decides, the rest stand by
        # (broker/failover.py, docs/operations.md "Two hubs").
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        metrics: list[asyncio.Task[None] | None] = []

        def make() -> Broker:
            return hub.broker(nats, ack_wait=timedelta(seconds=ack_wait), replicas=replicas)

        def active(broker: Broker) -> None:
            metrics.append(hub_metrics_task(broker, metrics_port, metrics_host))

        try:
            await serve_with_lease(
                nats, hub.creds, make, stopping, replicas=replicas, on_active=active
            )
        finally:
            for task in metrics:
                await stop_metrics(task)

    asyncio.run(serve())


def add_agency_groups(profiles: Profiles) -> None:
    """``sigbus <agency> …`` for every agency profile; the lead's group adds its commands."""
    for name in profiles:
        profile = profiles[name]
        register = CaseRegister() if profile.lead else None
        group = agency_app(profile, profiles, register)
        if MessageType.EXISTENCE_QUERY in profile.sends:
            add_existence_command(group, profile)
        if profile.lead:
            add_lead_commands(group, profile, register)
            add_report_command(group)
        app.add_typer(group, name=name)


def _profiles_or_exit() -> Profiles:
    try:
        return load_profiles(config.local_keys_dir())
    except SigbusError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)


add_agency_groups(_profiles_or_exit())


def entrypoint() -> None:
    """Console script: bad input anywhere exits 2 naming *where*, never echoing values
    (pydantic's own message would print the input, which may be a personnummer)."""
    try:
        app()
    except ValidationError as e:
        typer.echo(f"error: invalid input at {describe_invalid(e)}", err=True)
        sys.exit(2)
    except SigbusError as e:  # the one root: every sigbus error says what, never a traceback
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)


@audit_app.command("export-state")
def audit_export_state(
    out: Annotated[Path, typer.Option("--out", help="state dump file to write")],
    nats: Annotated[str | None, typer.Option("--nats")] = None,
    data_dir: DataOpt = None,
    keys: KeysOpt = None,
) -> None:
    """Dump the hub state stream (ciphertext only) for `audit check-state`; as the hub
    (the auditor identity reads the log and nothing else, not even state ciphertext)."""

    async def run() -> int:
        nc = await connect(
            config.nats_url(nats, data_dir),
            name="audit-export-state",
            creds=hub_setup(config.keys_dir(keys)).creds,
        )
        try:
            return await export_state(nc.jetstream(), out)
        finally:
            await nc.close()

    try:
        count = asyncio.run(run())
    except (SigbusError, ProtocolError, AuditError) as e:
        raise _fail(e) from e
    typer.echo(f"exported {count} state records to {out}")


@audit_app.command("export")
def audit_export(
    out: Annotated[Path, typer.Option("--out", help="export file to write")],
    nats: Annotated[str | None, typer.Option("--nats")] = None,
    data_dir: DataOpt = None,
    keys: KeysOpt = None,
) -> None:
    """Export the disclosure log, its latest checkpoint and cosignatures (a server is needed)."""

    async def run() -> ExportSummary:
        directory = load_directory(config.keys_dir(keys))
        log_key = directory.key_by_use(HUB, KeyUse.LOG, at=datetime.now(UTC))
        keys_path = config.keys_dir(keys)
        nc = await connect(
            config.nats_url(nats, data_dir),
            name="audit-export",
            creds=config.auditor_credentials(keys_path),  # read-only, never the hub's keys
        )
        try:
            return await export_log(
                nc.jetstream(),
                out,
                load_public_key(log_key.public_key),
                witnesses=[e.agency for e in directory.agencies if e.agency != HUB],
            )
        finally:
            await nc.close()

    try:
        summary = asyncio.run(run())
    except (SigbusError, ProtocolError, AuditError) as e:
        raise _fail(e) from e
    typer.echo(
        f"exported {summary.entries} entries to {summary.path} "
        f"(cosigned by {', '.join(summary.witnesses) or 'no witness'})"
    )
