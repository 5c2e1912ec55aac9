"""Run the `ltr` CLI as a process, on a home of the test's own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_ltr(*argv: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m ltr_assets.launcher ARGV` (what the `ltr` script runs) with LTR_HOME=`home`
    and `env`; the settings that would point it elsewhere (registry, weights file, S3, serving
    URL, signing keys) are removed from the inherited environment unless `env` sets them."""
    environment = {**os.environ, "LTR_HOME": str(home), **env}
    for name in (
        "LTR_REGISTRY_DIR",
        "WEIGHTS_PATH",
        "S3_BUCKET",
        "LTR_SERVING_URL",
        "LTR_ARTIFACT_SIGNING_KEY",
        "LTR_ARTIFACT_VERIFY_KEYS",
    ):
        if name not in env:
            environment.pop(name, None)
    command = [sys.executable, "-m", "ltr_assets.launcher", *argv]
    return subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
