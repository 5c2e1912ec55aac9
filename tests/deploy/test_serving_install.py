"""The ranking service installs and runs without the pipeline.

deploy/Dockerfile.serving installs the base dependencies alone (`uv sync --locked --no-dev`).
This test builds that install from uv.lock in a fresh virtual environment (with the `test` extra:
pytest, hypothesis, httpx, and nothing of the pipeline), checks that Dagster and DuckDB (nor
pandas, pyarrow) cannot be imported there while the app can, and runs the serving tier
(tests/serving) on it. `make test` runs the serving tier only through this test
(`--ignore=tests/serving`); `make test-serving` runs it in the development venv.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.prefix) / "bin" / "uv"
# What the issue names, and what else the pipeline brings that serving must not load. Not
# aiokafka: the service produces its impression and feedback log to Kafka itself
# (LTR_IMPRESSION_LOG=kafka, ltr_serving/kafka_sink.py), so it is a base dependency now.
PIPELINE_ONLY = ("dagster", "dagster_webserver", "dagster_postgres", "duckdb")
ALSO_ABSENT = ("pandas", "pyarrow", "moto")
Completed = subprocess.CompletedProcess[str]


def _run(command: list[str], env: dict[str, str], timeout: float) -> Completed:
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def serving_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv holding the serving install (and the test extra), from the lock."""
    if not UV.exists():
        pytest.fail(f"uv is not installed at {UV} (make install bootstraps it)")
    venv = tmp_path_factory.mktemp("serving") / "venv"
    env = {
        **os.environ,
        "UV_PROJECT_ENVIRONMENT": str(venv),
        "UV_PYTHON_DOWNLOADS": "never",
        # A copy of each package: the venv must not share files with the uv cache's, which
        # another install could be changing.
        "UV_LINK_MODE": "copy",
    }
    env.pop("VIRTUAL_ENV", None)
    command = [str(UV), "sync", "--locked", "--no-dev", "--extra", "test", "--quiet"]
    command += ["--python", sys.executable]
    result = _run(command, env, timeout=600)
    assert result.returncode == 0, result.stderr
    return venv


def _python(venv: Path) -> str:
    return str(venv / "bin" / "python")


def test_the_serving_install_holds_no_pipeline(serving_venv: Path) -> None:
    probe = (
        "import importlib.util, sys\n"
        f"for name in {PIPELINE_ONLY + ALSO_ABSENT!r}:\n"
        "    if importlib.util.find_spec(name) is not None: print(name)\n"
    )
    result = _run([_python(serving_venv), "-c", probe], dict(os.environ), timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [], "importable in the serving install"
    # What the service does import loads there; and its command runs.
    importing = (
        "import ltr_serving.app, ltr_serving.server, ltr_serving.kafka_sink, "
        "ltr_core.artifacts.s3; print('ok')"
    )
    result = _run([_python(serving_venv), "-c", importing], dict(os.environ), timeout=120)
    assert result.stdout.strip() == "ok", result.stderr
    result = _run([str(serving_venv / "bin" / "ltr-serve"), "--help"], dict(os.environ), 120)
    assert result.returncode == 0 and "--port" in result.stdout, result.stderr
    # The `ltr` script is installed there too: `ltr serve` runs, the rest says what it needs.
    ltr = str(serving_venv / "bin" / "ltr")
    result = _run([ltr, "serve", "--help"], dict(os.environ), 120)
    assert result.returncode == 0 and "usage: ltr serve" in result.stdout, result.stderr
    result = _run([ltr, "registry", "verify"], dict(os.environ), 120)
    assert result.returncode == 2, result.stderr
    assert "needs the pipeline install" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.timeout(1800)
def test_the_serving_tests_pass_in_the_serving_install(serving_venv: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    command = [_python(serving_venv), "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    result = _run([*command, "tests/serving"], env, timeout=1700)
    summary = result.stdout.strip().splitlines()[-1:] or ["(no output)"]
    assert result.returncode == 0, f"{summary[0]}\n{result.stdout[-6000:]}\n{result.stderr[-3000:]}"
    assert " passed" in summary[0] and "skipped" not in summary[0], summary[0]
