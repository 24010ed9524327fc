"""`sigbus bench`: the hub end to end beside a raw JetStream pipeline and the crypto floor.

Each run starts its own :class:`EmbeddedNats` in a temporary directory, secured as
``sigbus up`` runs it, and measures in this order: the crypto floor, the raw
pipeline (at the sigbus envelope's size and at 4 KiB), end-to-end throughput
(the largest message type at full size, and its smallest body), then latency
at each offered load. Figures are medians over the runs; each ratio is taken
within one run first (same server, same minute), then its median reported.
"""

from __future__ import annotations

import asyncio
import json
import os
import pstats
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sigbus.bench_e2e import Latency, throughput
from sigbus.bench_e2e import latency as measure_latency
from sigbus.bench_floor import crypto_floor_seconds
from sigbus.bench_pipeline import pipeline_cpu_seconds
from sigbus.bench_raw import raw_pipeline
from sigbus.bench_signatures import signature_costs
from sigbus.bench_startup import startup_bench
from sigbus.bench_withdrawal import withdrawal_latency
from sigbus.bench_world import full_size_status, open_world, small_status
from sigbus.broker.setup import hub_setup
from sigbus.svgchart import Bar, Series, bar_chart, line_chart, stack
from sigbus.transport.natsserver import EmbeddedNats

RAW_4KIB = 4096
WARM_UP_MESSAGES = 10


@dataclass(frozen=True)
class BenchSettings:
    keys: Path
    runs: int = 3
    messages: int = 300
    loads: tuple[float, ...] = (50.0, 100.0, 200.0, 500.0)
    duration_s: float = 2.0
    floor_iterations: int = 300
    profile: Path | None = None
    #: Messages queued ahead of the withdrawals (0: not measured), and how many cases.
    withdrawal_backlog: int = 10_000
    withdrawal_cases: int = 20
    #: Log sizes for the start-up figures (sigbus.bench_startup); empty: none.
    startup_sizes: tuple[int, ...] = ()
    #: Only the start-up figures (no throughput or latency runs).
    startup_only: bool = False


def progress(event: str, **values: object) -> None:
    """One line per step on stderr (the figures go to stdout)."""
    detail = " ".join(f"{k}={v}" for k, v in values.items())
    print(f"bench: {event} {detail}".rstrip(), file=sys.stderr, flush=True)


async def one_run(settings: BenchSettings, run: int, profile: Path | None) -> dict[str, Any]:
    floor = crypto_floor_seconds(settings.floor_iterations)
    progress("crypto_floor", run=run, per_core_msg_s=round(1 / floor))
    signatures = signature_costs(settings.floor_iterations).as_figures()
    progress(
        "signatures",
        run=run,
        hybrid_vs_ed25519_msg=round(signatures["sig_hybrid_vs_ed25519_msg"], 1),
        hybrid_vs_ed25519_checkpoint=round(signatures["sig_hybrid_vs_ed25519_checkpoint"], 1),
    )
    with tempfile.TemporaryDirectory(prefix="sigbus-bench-") as tmp:
        server = EmbeddedNats(Path(tmp), server_name="sigbus-bench", keys_dir=settings.keys)
        server.start()
        try:
            return signatures | await _measure(settings, run, server.url, floor, profile)
        finally:
            server.stop()


async def _measure(
    settings: BenchSettings, run: int, url: str, floor: float, profile: Path | None
) -> dict[str, Any]:
    world = await open_world(settings.keys, url, profile=profile)
    try:
        await throughput(world, full_size_status, WARM_UP_MESSAGES)  # case set up, caches warm
        full = await throughput(world, full_size_status, settings.messages)
        progress("e2e_full", run=run, msg_s=round(full.msg_per_s, 1))
        small = await throughput(world, small_status, settings.messages)
        progress("e2e_small", run=run, msg_s=round(small.msg_per_s, 1))
        latencies: list[Latency] = []
        for rate in settings.loads:
            lat = await measure_latency(world, full_size_status, rate, settings.duration_s)
            progress(
                "latency",
                run=run,
                offered=rate,
                p50_ms=round(lat.p50_ms, 1),
                p99_ms=round(lat.p99_ms, 1),
                refused=lat.refused,
            )
            latencies.append(lat)
        # The hub's pure part, on this thread, on a hub started afresh on the same log
        # once the serving one has stopped (it writes its profile as it stops).
        world.hub.stop()
        pipeline = await pipeline_cpu_seconds(world, settings.keys, url, settings.floor_iterations)
        progress("hub_pipeline", run=run, cpu_ms=round(pipeline * 1e3, 2))
    finally:
        await world.close()
    creds = hub_setup(settings.keys).creds
    raw = await raw_pipeline(url, creds, settings.messages, full.envelope_bytes)
    progress("raw", run=run, bytes=raw.payload_bytes, msg_s=round(raw.msg_per_s, 1))
    raw4k = await raw_pipeline(url, creds, settings.messages, RAW_4KIB)
    progress("raw", run=run, bytes=RAW_4KIB, msg_s=round(raw4k.msg_per_s, 1))
    withdrawal: dict[str, Any] = {}
    if settings.withdrawal_backlog > 0:
        # The same server; a hub started afresh on its log (a restart) that admits the backlog.
        wd = await withdrawal_latency(
            settings.keys, url, backlog=settings.withdrawal_backlog, cases=settings.withdrawal_cases
        )
        progress(
            "withdrawal",
            run=run,
            backlog=wd.backlog,
            p50_ms=round(wd.p50_ms, 1),
            p99_ms=round(wd.p99_ms, 1),
            retracted=wd.retracted,
            releases_after=wd.releases_after_withdrawal,
        )
        withdrawal = {f"withdrawal_{k}": v for k, v in asdict(wd).items()}
    return {
        **withdrawal,
        "e2e_msg_per_s": full.msg_per_s,
        "e2e_small_msg_per_s": small.msg_per_s,
        "raw_msg_per_s": raw.msg_per_s,
        "raw_4kib_msg_per_s": raw4k.msg_per_s,
        "crypto_floor_s_per_msg": floor,
        "crypto_floor_msg_per_s_per_core": 1 / floor,
        "hub_cpu_s_per_msg": full.hub_cpu_per_msg_s,
        "e2e_vs_raw_ratio": full.msg_per_s / raw.msg_per_s,
        "hub_cpu_vs_floor": full.hub_cpu_per_msg_s / floor,
        "hub_pipeline_cpu_s_per_msg": pipeline,
        "hub_pipeline_cpu_vs_floor": pipeline / floor,
        "envelope_bytes": full.envelope_bytes,
        "latency": [asdict(lat) for lat in latencies],
    }


def _median_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(float(r[key]) for r in runs)


def summarise(settings: BenchSettings, runs: list[dict[str, Any]]) -> dict[str, Any]:
    scalar = [k for k, v in runs[0].items() if isinstance(v, int | float)]
    out: dict[str, Any] = {k: _median_of(runs, k) for k in scalar}
    out["latency"] = [
        {
            "offered_per_s": rate,
            **{
                k: statistics.median(float(r["latency"][i][k]) for r in runs)
                for k in ("p50_ms", "p99_ms", "sent", "refused", "delivered")
            },
        }
        for i, rate in enumerate(settings.loads)
    ]
    out["runs"] = settings.runs
    out["messages"] = settings.messages
    out["duration_s"] = settings.duration_s
    out["recipients"] = 2
    out["hub_cpu_method"] = (
        "the hub process's user + system CPU (its loop thread and its worker threads) "
        "over the full-size run; "
        "pipeline: thread_time of evaluate + 2 sign_record on an idle hub"
    )
    out["loadavg_1m"] = os.getloadavg()[0]
    out["per_run"] = runs
    return out


def run_bench(settings: BenchSettings) -> dict[str, Any]:
    if settings.startup_only:
        return {"startup": startup_bench(settings.keys, settings.startup_sizes)}
    runs = []
    with tempfile.TemporaryDirectory(prefix="sigbus-bench-profile-") as tmp:
        profiles = [Path(tmp) / f"run-{run}.pstats" for run in range(1, settings.runs + 1)]
        for run, path in enumerate(profiles, start=1):
            runs.append(asyncio.run(one_run(settings, run, path if settings.profile else None)))
        if settings.profile is not None:  # the hub process's loop thread, every run
            stats = pstats.Stats(*(str(p) for p in profiles), stream=sys.stderr)
            stats.dump_stats(str(settings.profile))
            stats.sort_stats("tottime").print_stats(25)
    out = summarise(settings, runs)
    if settings.startup_sizes:
        out["startup"] = startup_bench(settings.keys, settings.startup_sizes)
    return out


def render_startup(startup: list[dict[str, Any]]) -> list[str]:
    """The start-up rows (issue 11: at most 5 s and 300 MB at 1,000,000 entries)."""
    lines = [
        "",
        f"{'log entries':>12} {'cases':>7} {'start s':>8} {'peak RSS MB':>12} {'from':>9}",
    ]
    lines += [
        f"{s['entries']:12,} {s['cases']:7,} {s['seconds']:8.2f} {s['peak_rss_mb']:12.0f} "
        f"{s['started_from']:>9}"
        for s in startup
    ]
    return lines


def _bar(value: float, top: float, width: int = 30) -> str:
    return "#" * max(1, round(width * value / top)) if top > 0 else ""


def throughput_rows(result: dict[str, Any]) -> list[tuple[str, float, str]]:
    """The throughput figures beside their baselines, for the table and the chart."""
    return [
        ("raw JetStream 1 hop, same size", result["raw_msg_per_s"], "msg/s"),
        ("raw JetStream 1 hop, 4 KiB", result["raw_4kib_msg_per_s"], "msg/s"),
        ("crypto floor, per core", result["crypto_floor_msg_per_s_per_core"], "msg/s"),
        ("sigbus end to end, full size", result["e2e_msg_per_s"], "msg/s"),
        ("sigbus end to end, small body", result["e2e_small_msg_per_s"], "msg/s"),
    ]


def render_chart(result: dict[str, Any]) -> str:
    """The figures as one SVG: throughput beside its baselines, latency against the
    offered load, and start-up time against the log's size when measured."""
    panels = []
    if "runs" in result:
        panels.append(
            bar_chart(
                f"Throughput, median of {result['runs']} runs "
                f"(end to end / raw = {result['e2e_vs_raw_ratio']:.3f}x)",
                [Bar(label, value, unit) for label, value, unit in throughput_rows(result)],
            )
        )
        latency = result["latency"]
        panels.append(
            line_chart(
                "Latency at a fixed offered load",
                [
                    Series(name, [(lat["offered_per_s"], lat[key]) for lat in latency])
                    for name, key in (("p50", "p50_ms"), ("p99", "p99_ms"))
                ],
                x_label="offered msg/s",
                y_label="ms",
            )
        )
    if result.get("startup"):
        panels.append(
            line_chart(
                "Hub start-up",
                [
                    Series("seconds", [(s["entries"], s["seconds"]) for s in result["startup"]]),
                    Series(
                        "peak RSS / 100 MB",
                        [(s["entries"], s["peak_rss_mb"] / 100) for s in result["startup"]],
                    ),
                ],
                x_label="log entries",
                y_label="s",
            )
        )
    return stack(f"sigbus bench (load average {result.get('loadavg_1m', 0.0):.2f})", panels)


def render_table(result: dict[str, Any]) -> str:
    rows = throughput_rows(result)
    top = max(v for _, v, _ in rows)
    lines = [
        f"sigbus bench: median of {result['runs']} runs, {result['messages']} messages each, "
        f"2 recipients, envelope {result['envelope_bytes']:.0f} bytes, "
        f"load average {result['loadavg_1m']:.2f}",
        "",
    ]
    lines += [
        f"{label:32} {value:10,.1f} {unit}  {_bar(value, top)}" for label, value, unit in rows
    ]
    lines += [
        "",
        f"end to end / raw (same run):    {result['e2e_vs_raw_ratio']:.3f}x",
        f"hub CPU per message:            {result['hub_cpu_s_per_msg'] * 1e3:.2f} ms "
        f"({result['hub_cpu_vs_floor']:.2f}x the crypto floor of "
        f"{result['crypto_floor_s_per_msg'] * 1e3:.2f} ms)",
        f"  of which the pure pipeline:   {result['hub_pipeline_cpu_s_per_msg'] * 1e3:.2f} ms "
        f"({result['hub_pipeline_cpu_vs_floor']:.2f}x the floor; the rest is NATS I/O)",
        "",
        "signatures, sign + verify (CPU, one core; same run):",
        _sig_line("per message", result, "msg"),
        _sig_line("per checkpoint", result, "checkpoint"),
        "",
        f"{'offered msg/s':>14} {'p50 ms':>9} {'p99 ms':>9} {'refused':>8}  p99",
    ]
    worst = max((lat["p99_ms"] for lat in result["latency"]), default=0.0)
    lines += [
        f"{lat['offered_per_s']:14.0f} {lat['p50_ms']:9.1f} {lat['p99_ms']:9.1f} "
        f"{lat['refused']:8.0f}  {_bar(lat['p99_ms'], worst)}"
        for lat in result["latency"]
    ]
    if "withdrawal_p99_ms" in result:
        lines += [
            "",
            f"withdrawal behind {result['withdrawal_backlog']:,.0f} queued messages "
            f"({result['withdrawal_withdrawals']:.0f} withdrawals): "
            f"p50 {result['withdrawal_p50_ms']:.1f} ms, p99 {result['withdrawal_p99_ms']:.1f} ms; "
            f"{result['withdrawal_retracted']:.0f} releases pulled back, "
            f"{result['withdrawal_releases_after_withdrawal']:.0f} released after a withdrawal",
        ]
    return "\n".join(lines)


def _sig_line(label: str, result: dict[str, Any], what: str) -> str:
    ed, hybrid = result[f"sig_ed25519_{what}_s"], result[f"sig_hybrid_{what}_s"]
    return (
        f"  {label + ':':16} Ed25519 {ed * 1e6:8.1f} us   "
        f"hybrid Ed25519+ML-DSA-65 {hybrid * 1e6:8.1f} us   "
        f"({result[f'sig_hybrid_vs_ed25519_{what}']:.1f}x)"
    )


def print_result(result: dict[str, Any], *, as_json: bool, echo: Callable[[str], None]) -> None:
    if as_json:
        echo(json.dumps(result, sort_keys=True))
    elif "runs" not in result:  # --startup-only
        echo("\n".join(["sigbus bench: hub start-up", *render_startup(result["startup"])]))
    else:
        table = render_table(result)
        if "startup" in result:
            table += "\n" + "\n".join(render_startup(result["startup"]))
        echo(table)
