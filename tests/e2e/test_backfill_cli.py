"""A date-range backfill launched from the CLI, run by the Dagster daemon one run at a time."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from tests.conftest import write_simulated_events

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DONE = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}


def test_cli_backfill_runs_each_day_once_and_never_two_at_a_time(
    ltr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dagster_home = ltr_home / "dagster"
    dagster_home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    monkeypatch.setenv("LTR_START_DATE", "2026-11-01")
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=3)
    env = dict(os.environ)
    with DagsterInstance.get():  # create the storage now: the daemon and the CLI must not race
        pass
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    try:
        backfill = subprocess.run(
            [str(BIN / "dagster"), "job", "backfill", "-w", str(ROOT / "workspace.yaml"),
             "-j", "ltr_daily_job", "--from", "2026-11-01", "--to", "2026-11-03", "--noprompt"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert backfill.returncode == 0, backfill.stderr[-2000:]
        with DagsterInstance.get() as instance:
            deadline = time.monotonic() + 240
            while True:
                runs = instance.get_runs(RunsFilter(job_name="ltr_daily_job"))
                if len(runs) == 3 and all(r.status in DONE for r in runs):
                    break
                assert time.monotonic() < deadline, [(r.tags, r.status) for r in runs]
                time.sleep(1)
            records = instance.get_run_records(RunsFilter(job_name="ltr_daily_job"))
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)

    by_day = {r.dagster_run.tags["dagster/partition"]: r for r in records}
    assert sorted(by_day) == ["2026-11-01", "2026-11-02", "2026-11-03"]
    assert all(r.dagster_run.tags.get("ltr/pipeline") == "daily" for r in records)
    assert by_day["2026-11-01"].dagster_run.status == DagsterRunStatus.FAILURE  # min_samples
    assert by_day["2026-11-02"].dagster_run.status == DagsterRunStatus.SUCCESS
    assert by_day["2026-11-03"].dagster_run.status == DagsterRunStatus.SUCCESS
    spans = sorted((r.start_time, r.end_time) for r in records)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end <= start, "two pipeline runs overlapped"
    pointer = json.loads((ltr_home / "registry" / "latest.json").read_text())
    assert pointer["partition"] == "2026-11-03"
