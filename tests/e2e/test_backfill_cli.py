"""A date-range backfill launched from the CLI, run by the Dagster daemon one run at a time."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.e2e.conftest import assert_backfill_outcome, wait_for_pipeline_runs
from tests.support.dagster_processes import BIN, DAYS, ROOT


def test_cli_backfill_runs_each_day_once_and_never_two_at_a_time(
    ltr_home: Path, daemon: None
) -> None:
    backfill = subprocess.run(
        [str(BIN / "dagster"), "job", "backfill", "-w", str(ROOT / "workspace.yaml"),
         "-j", "ltr_daily_job", "--from", DAYS[0], "--to", DAYS[-1], "--noprompt"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert backfill.returncode == 0, backfill.stderr[-2000:]
    assert_backfill_outcome(wait_for_pipeline_runs(len(DAYS)), ltr_home)
