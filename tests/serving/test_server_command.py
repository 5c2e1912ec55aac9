"""`ltr-serve` (and `ltr serve`, which calls the same `serve`) refuses bad settings and ports
with one line naming what is wrong, before the server starts: no start-up traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _serve(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "LTR_HOME": str(tmp_path), **env}
    return subprocess.run(
        [sys.executable, "-m", "ltr_serving.server", "--host", "127.0.0.1", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_bad_setting_is_one_line_naming_the_variable(tmp_path: Path) -> None:
    done = _serve(tmp_path, "--port", "0", WEIGHTS_POLL_SECONDS="abc")
    assert done.returncode == 3
    assert done.stderr.strip() == "error: WEIGHTS_POLL_SECONDS='abc' is not a number"
    assert "Traceback" not in done.stdout + done.stderr


def test_a_port_outside_the_tcp_range_is_a_usage_error(tmp_path: Path) -> None:
    for port in ("99999", "-1", "http"):
        done = _serve(tmp_path, "--port", port)
        assert done.returncode == 2, (port, done.stderr)
        assert "argument --port" in done.stderr and "Traceback" not in done.stderr
