"""Installed, the distribution claims one import name, `sigbus`, and says where keys go."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("sigbus-*.whl")
    return built


def test_the_wheel_has_one_top_level_name_and_its_data(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert tops == {"sigbus", next(t for t in tops if t.endswith(".dist-info"))}
    for data in (
        "sigbus/policy/rules.toml",
        "sigbus/profiles/sis.toml",
        "sigbus/broker/service.py",
    ):
        assert data in names


def test_an_installed_sigbus_says_where_its_keys_go(wheel: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(site)
    # The dependencies come from this environment, after the installed sigbus.
    (Path(site) / "deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGBUS_")}
    run = subprocess.run(
        [str(python), "-m", "sigbus", "up", "--data-dir", str(tmp_path / "data")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2, run.stdout + run.stderr
    assert "sigbus keys init" in run.stderr
    assert "Traceback" not in run.stderr
    where = subprocess.run(
        [str(python), "-c", "import sigbus.broker.service as s; print(s.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(site), where  # the installed copy, not the checkout
