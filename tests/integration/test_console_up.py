"""`sigbus up` serves the console and prints its URL; a taken port costs the console only."""

from __future__ import annotations

import re
import socket
import subprocess
from pathlib import Path

import httpx

from tests.integration.test_no_personnummer import REPO, SIGBUS, Session, wait_for_up


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _up(session: Session, port: int, out: Path) -> subprocess.Popen[bytes]:
    with out.open("wb") as stdout, (out.with_suffix(".stderr")).open("wb") as stderr:
        up = subprocess.Popen(
            [*SIGBUS, "up", "--data-dir", str(session.data), "--console-port", str(port)],
            cwd=REPO, stdout=stdout, stderr=stderr, env=session.env(),
        )  # fmt: skip
    wait_for_up(session.data, up)
    return up


def test_up_serves_the_console_and_a_taken_port_leaves_the_hub_running(tmp_path: Path) -> None:
    outputs = tmp_path / "out"
    outputs.mkdir()
    port = _free_port()
    first, second = Session(tmp_path / "a", outputs), Session(tmp_path / "b", outputs)
    ups = []
    try:
        ups.append(_up(first, port, outputs / "a.stdout"))
        url = re.search(r"sigbus console: (\S+)", (outputs / "a.stdout").read_text())
        assert url is not None
        assert url.group(1) == f"http://127.0.0.1:{port}/"
        login = httpx.get(f"{url.group(1)}login", timeout=10)
        assert login.status_code == 200
        assert 'for="password"' in login.text
        ups.append(_up(second, port, outputs / "b.stdout"))  # the same console port
        assert f"port {port} is in use" in (outputs / "b.stderr").read_text()
        second.run("down", "--data-dir", str(second.data))  # its hub ran all the same
        assert ups[1].wait(timeout=30) == 0
        first.run("down", "--data-dir", str(first.data))
        assert ups[0].wait(timeout=30) == 0
    finally:
        for up in ups:
            if up.poll() is None:
                up.kill()
                up.wait()
