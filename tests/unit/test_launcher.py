"""The `ltr` entry point: in an install without the pipeline's dependencies `ltr serve` still
runs and every other subcommand says what it needs (the serving-only install itself is tested
in tests/deploy/test_serving_install.py); a reader that goes away is not reported as an error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ltr_assets import launcher


@pytest.fixture
def without_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in the serving-only install: the pipeline's command line cannot be imported."""
    monkeypatch.setitem(sys.modules, "ltr_assets.cli", None)  # import raises ModuleNotFoundError


@pytest.mark.usefixtures("without_pipeline")
def test_without_the_pipeline_a_subcommand_says_what_it_needs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert launcher.main(["registry", "verify"]) == launcher.NEEDS_PIPELINE
    error = capsys.readouterr().err
    assert "`ltr registry` needs the pipeline install" in error
    assert "`pipeline` extra" in error and "ltr-serve" in error


@pytest.mark.usefixtures("without_pipeline")
def test_without_the_pipeline_ltr_serve_still_runs_the_service(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:  # argparse's --help
        launcher.main(["serve", "--help"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("usage: ltr serve [-h] [--host HOST] [--port PORT]")


def test_with_the_pipeline_the_launcher_runs_its_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        launcher.main(["registry", "--help"])
    assert exited.value.code == 0
    assert "rollback" in capsys.readouterr().out


@pytest.mark.slow
def test_a_reader_that_goes_away_is_not_an_error(tmp_path: Path) -> None:
    """`ltr registry show | head`: the pipe closes before the output ends."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {**os.environ, "LTR_HOME": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    env.pop("LTR_REGISTRY_DIR", None)
    command = [sys.executable, "-m", "ltr_assets.launcher", "registry", "list"]
    try:
        done = subprocess.run(command, stdout=write_end, stderr=subprocess.PIPE, env=env, text=True)
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert done.stderr == ""  # no "error: [Errno 32] Broken pipe", no "Exception ignored"
