"""A Dagster deployment on 127.0.0.1 for end-to-end tests: instance, daemon and webserver over
the project's workspace.yaml, with three simulated days of events."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from dagster import DagsterInstance, DagsterRunStatus, RunRecord, RunsFilter

from tests.conftest import write_simulated_events
from tests.support.dagster_processes import (
    BIN,
    DAYS,
    ROOT,
    start_process,
    stop_process,
    wait_for_webserver,
)
from tests.support.kafka_broker import free_port

DONE = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
_start, _stop = start_process, stop_process


@pytest.fixture
def dagster_home(ltr_home: Path, monkeypatch: pytest.MonkeyPatch, small_data_gate: None) -> Path:
    home = ltr_home / "dagster"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("LTR_START_DATE", DAYS[0])
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=len(DAYS))
    with DagsterInstance.get():  # create the storage now: the processes below must not race
        pass
    return home


@pytest.fixture
def daemon(dagster_home: Path) -> Iterator[None]:
    """dagster-daemon: dequeues runs (tag concurrency), runs schedules and sensors."""
    process = _start([str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")])
    yield
    _stop(process)


@pytest.fixture
def webserver(dagster_home: Path) -> Iterator[str]:
    port = free_port()
    process = _start(
        [str(BIN / "dagster-webserver"), "-h", "127.0.0.1", "-p", str(port),
         "-w", str(ROOT / "workspace.yaml")]
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_webserver(url)
        yield url
    finally:
        _stop(process)


def wait_for_pipeline_runs(count: int, timeout_s: float = 240) -> list[RunRecord]:
    """The run records of ltr_daily_job's backfill runs once `count` have finished (a schedule
    tick that happens to fall inside the test is not one of them)."""
    with DagsterInstance.get() as instance:
        deadline = time.monotonic() + timeout_s
        while True:
            records = [
                r
                for r in instance.get_run_records(RunsFilter(job_name="ltr_daily_job"))
                if "dagster/backfill" in r.dagster_run.tags
            ]
            runs = [r.dagster_run for r in records]
            if len(runs) >= count and all(r.status in DONE for r in runs):
                return records
            assert time.monotonic() < deadline, [(r.tags, r.status) for r in runs]
            time.sleep(1)


def wait_for_outcome_tags(count: int, timeout_s: float = 180) -> dict[str, str]:
    """Partition -> ltr/outcome of the backfill's runs, once the daemon's run-status sensors
    have tagged `count` of them."""
    with DagsterInstance.get() as instance:
        deadline = time.monotonic() + timeout_s
        while True:
            runs = [
                r.dagster_run
                for r in instance.get_run_records(RunsFilter(job_name="ltr_daily_job"))
                if "dagster/backfill" in r.dagster_run.tags
            ]
            tagged = {
                r.tags["dagster/partition"]: r.tags["ltr/outcome"]
                for r in runs
                if "ltr/outcome" in r.tags
            }
            if len(tagged) >= count:
                return tagged
            assert time.monotonic() < deadline, tagged
            time.sleep(1)


def assert_backfill_outcome(records: list[RunRecord], ltr_home: Path) -> None:
    """Day 1 alone fails its samples gate (a successful run that publishes nothing); days 2
    and 3 publish; never two runs at a time."""
    import json

    by_day = {r.dagster_run.tags["dagster/partition"]: r for r in records}
    assert sorted(by_day) == DAYS
    assert all(r.dagster_run.tags.get("ltr/pipeline") == "daily" for r in records)
    statuses = {day: r.dagster_run.status for day, r in by_day.items()}
    if set(statuses.values()) != {DagsterRunStatus.SUCCESS}:
        with DagsterInstance.get() as instance:
            errors = {
                day: [e.message for e in instance.all_logs(r.dagster_run.run_id)
                      if e.dagster_event is not None and e.dagster_event.is_failure]
                for day, r in by_day.items()
            }  # fmt: skip
        raise AssertionError(f"{statuses}: {errors}")
    spans: list[tuple[float, float]] = []
    for r in records:
        assert r.start_time is not None and r.end_time is not None  # every run has finished
        spans.append((r.start_time, r.end_time))
    spans.sort()
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert end <= start, "two pipeline runs overlapped"
    pointer = json.loads((ltr_home / "registry" / "latest.json").read_text())
    assert pointer["partition"] == DAYS[-1]
