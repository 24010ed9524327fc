"""`sigbus bench` as users run it, tiny: the JSON has every figure, and every one is > 0.

This is the only test of the bench; benches are not timed tests, so nothing here
checks a speed, only that each measurement ran and produced a number.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

REPO = Path(__file__).resolve().parents[2]

SCALARS = (
    "e2e_msg_per_s",
    "e2e_small_msg_per_s",
    "raw_msg_per_s",
    "raw_4kib_msg_per_s",
    "crypto_floor_s_per_msg",
    "crypto_floor_msg_per_s_per_core",
    "hub_cpu_s_per_msg",
    "e2e_vs_raw_ratio",
    "hub_cpu_vs_floor",
    "hub_pipeline_cpu_s_per_msg",
    "hub_pipeline_cpu_vs_floor",
    "envelope_bytes",
    "sig_ed25519_msg_s",
    "sig_hybrid_msg_s",
    "sig_hybrid_vs_ed25519_msg",
    "sig_ed25519_checkpoint_s",
    "sig_hybrid_checkpoint_s",
    "sig_hybrid_vs_ed25519_checkpoint",
)


def test_bench_json_shape_and_positive_figures(tmp_path: Path) -> None:
    chart = tmp_path / "bench.svg"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sigbus",
            "--dev",
            "bench",
            "--json",
            "--runs",
            "1",
            "--messages",
            "6",
            "--loads",
            "20,40",
            "--duration",
            "0.3",
            "--floor-iterations",
            "5",
            "--withdrawal-backlog",
            "40",
            "--withdrawal-cases",
            "2",
            "--chart",
            str(chart),
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout)
    for key in SCALARS:
        assert result[key] > 0, key
    assert result["e2e_vs_raw_ratio"] == result["e2e_msg_per_s"] / result["raw_msg_per_s"]
    assert [lat["offered_per_s"] for lat in result["latency"]] == [20.0, 40.0]
    for lat in result["latency"]:
        assert lat["delivered"] > 0
        assert 0 < lat["p50_ms"] <= lat["p99_ms"]
    assert result["runs"] == 1
    assert len(result["per_run"]) == 1
    # The fast lane behind a (tiny) backlog: both withdrawals held, nothing released after.
    assert result["withdrawal_withdrawals"] == 2
    assert result["withdrawal_p50_ms"] > 0
    assert result["withdrawal_releases_after_withdrawal"] == 0
    assert "bench: e2e_full" in done.stderr  # progress goes to stderr, figures to stdout
    # The chart draws the same figures (text in the SVG, so they can be read back).
    svg = ElementTree.parse(chart).getroot()
    texts = [t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}text")]
    assert f"{result['e2e_msg_per_s']:,.1f} msg/s" in texts
    assert f"{result['raw_msg_per_s']:,.1f} msg/s" in texts
    assert any(f"{result['e2e_vs_raw_ratio']:.3f}x" in t for t in texts)


def test_bench_refuses_bad_loads() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sigbus", "--dev", "bench", "--loads", "fast"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 2
    last_line = done.stderr.strip().splitlines()[-1]
    assert last_line == "error: --loads must be numbers separated by commas"


def test_bench_startup_figures() -> None:
    """Start-up from a snapshot at two log sizes: every figure present and positive."""
    done = subprocess.run(
        [sys.executable, "-m", "sigbus", "--dev", "bench", "--json", "--startup-only",
         "--startup-sizes", "600,300"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    startup = json.loads(done.stdout)["startup"]
    assert [s["entries"] for s in startup] == [300, 600]
    for s in startup:
        assert s["started_from"] == "snapshot"
        assert s["log_size"] == s["entries"]
        assert s["cases"] == 300
        assert s["seconds"] > 0
        assert s["peak_rss_mb"] > 0
