"""The compose code server's health check (`ltr_assets.defs.code_server_health`) against real
`dagster code-server` processes: healthy only once the code location loads. Dagster's own
`grpc-health-check` passes a server whose definitions failed to import."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from ltr_assets.defs.code_server_health import check
from tests.support.dagster_processes import BIN, start_process, stop_process
from tests.support.kafka_broker import free_port


def _code_server(port: int, log: Path) -> subprocess.Popen[bytes]:
    return start_process(
        [str(BIN / "dagster"), "code-server", "start", "-h", "127.0.0.1", "-p", str(port),
         "-m", "ltr_assets.definitions", "--location-name", "ltr_assets.definitions"],
        log,
    )  # fmt: skip


def _settled(port: int, timeout_s: float = 120) -> tuple[int, str]:
    """The check's answer once the server answers at all (2: not up yet)."""
    deadline = time.monotonic() + timeout_s
    while (answer := check(port))[0] == 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    return answer


@pytest.mark.timeout(300)
def test_healthy_only_when_the_code_location_loads(
    ltr_home: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert check(free_port())[0] == 2  # nothing listens: not healthy (yet)
    good_port, bad_port = free_port(), free_port()
    good = _code_server(good_port, tmp_path / "good.log")
    monkeypatch.setenv("LTR_START_DATE", "not-a-date")
    assert os.environ["LTR_START_DATE"] == "not-a-date"
    bad = _code_server(bad_port, tmp_path / "bad.log")
    try:
        assert _settled(good_port) == (0, f"the code location on 127.0.0.1:{good_port} loads")
        status, text = _settled(bad_port)
        assert status == 1, text
        assert "LTR_START_DATE='not-a-date' is not a date YYYY-MM-DD" in text
    finally:
        stop_process(good)
        stop_process(bad)
