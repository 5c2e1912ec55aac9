"""`ltr night DAY`: one night by hand, in the foreground, on the instance in DAGSTER_HOME, as the
schedule would launch it: the run in the code location with its outcome tags, the label refresh
of the day before, and a refusal while another pipeline run is unfinished."""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from dagster import DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter
from dagster._core.events import JobFailureData, RunFailureReason
from dagster._core.storage.tags import PARTITION_NAME_TAG
from dagster._core.test_utils import create_run_for_test
from dagster._utils.interrupts import capture_interrupts

from ltr_assets.defs import launch
from ltr_assets.defs.jobs import PIPELINE_TAGS
from ltr_assets.defs.launch import (
    LOCATION_NAME,
    NIGHT_LOCK,
    LocationLauncher,
    NightInterrupted,
    night,
)
from ltr_assets.defs.refresh import stale_matrices
from ltr_assets.defs.sensors import OUTCOME_TAG, REASON_TAG
from ltr_assets.registry.local import LocalRegistry
from ltr_core.settings import Settings
from tests.conftest import write_simulated_events
from tests.support.cli import run_ltr

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Dagster instance directory with the repository's dagster.yaml, as DAGSTER_HOME."""
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copy(ROOT / "dagster.yaml", home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def test_ltr_night_runs_tags_refreshes_and_waits_for_no_one(
    ltr_home: Path, small_data_gate: None, dagster_home: Path
) -> None:
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=3)

    # Day 1 alone is refused by the gate: a decision, exit 0; nothing older to refresh.
    first = run_ltr("night", "2026-11-01", home=ltr_home)
    assert first.returncode == 0, first.stderr
    assert "night 2026-11-01: gate refused: min_samples: " in first.stdout
    assert "label refresh" not in first.stdout

    # Day 2 publishes, then day 1's matrix is rebuilt with the feedback ingested with day 2.
    # latest moved, so the service is asked to reload: without the token it cannot be (exit 1).
    second = run_ltr("night", "2026-11-02", home=ltr_home, LTR_SERVING_URL="http://127.0.0.1:9")
    assert second.returncode == 1, second.stderr
    settings = Settings.from_env()
    live = LocalRegistry(settings.registry_dir, None, settings.artifact_keys).latest_version()
    assert live is not None
    assert f"night 2026-11-02: published {live} (live)" in second.stdout
    assert "label refresh 2026-11-01: refreshed" in second.stdout
    assert "reload: FAILED LTR_RELOAD_TOKEN is not set" in second.stdout

    with DagsterInstance.get() as instance:
        morning = datetime(2026, 11, 3, tzinfo=UTC)  # day 2's window, as the sensor saw it
        assert stale_matrices(instance, morning) == []  # day 1's matrix is new again
        runs = {
            (r.job_name, r.tags[PARTITION_NAME_TAG]): r for r in instance.get_runs(RunsFilter())
        }
        assert set(runs) == {
            ("ltr_daily_job", "2026-11-01"),
            ("ltr_daily_job", "2026-11-02"),
            ("ltr_label_refresh_job", "2026-11-01"),
        }
        for run in runs.values():  # launched from the location the UI loads, as scheduled
            assert run.status == DagsterRunStatus.SUCCESS
            assert run.tags["dagster/code_location"] == LOCATION_NAME
            assert run.tags["ltr/pipeline"] == "daily"
        assert runs["ltr_daily_job", "2026-11-01"].tags[OUTCOME_TAG] == "gate_refused"
        assert runs["ltr_daily_job", "2026-11-02"].tags[REASON_TAG] == f"published {live} (live)"

        # Another pipeline run unfinished (the daemon's, say): refused before anything runs.
        busy = create_run_for_test(
            instance,
            job_name="ltr_daily_job",
            status=DagsterRunStatus.STARTED,
            tags={**PIPELINE_TAGS, PARTITION_NAME_TAG: "2026-11-03"},
        )
        refused = run_ltr("night", "2026-11-03", home=ltr_home)
        assert refused.returncode == 2
        assert f"ltr_daily_job [2026-11-03] (run {busy.run_id[:8]}) is started" in refused.stderr
        assert "one night at a time" in refused.stderr
        assert len(instance.get_runs(RunsFilter(job_name="ltr_daily_job"))) == 3

    outside = run_ltr("night", "2025-12-31", home=ltr_home)  # before LTR_START_DATE
    assert outside.returncode == 2
    assert "2025-12-31 is not a partition of ltr_daily_job" in outside.stderr
    assert "from 2026-01-01 to " in outside.stderr
    misconfigured = run_ltr("night", "2026-11-03", home=ltr_home, LTR_NUM_THREADS="abc")
    assert misconfigured.returncode == 2  # it could not start: not a failed run (1)
    assert "LTR_NUM_THREADS='abc' is not an integer" in misconfigured.stderr


def _first_run_started(dagster_home: Path, timeout_s: float = 120) -> str:
    deadline = time.monotonic() + timeout_s
    with DagsterInstance.from_config(str(dagster_home)) as instance:
        while time.monotonic() < deadline:
            started = instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED]))
            if started:
                return started[0].run_id
            time.sleep(0.1)
    raise AssertionError("no run started")


@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGINT, signal.SIGTERM])
def test_a_night_stopped_by_a_closed_terminal_or_ctrl_c_ends_its_run_and_blocks_no_later_night(
    ltr_home: Path,
    small_data_gate: None,
    dagster_home: Path,
    signum: signal.Signals,
) -> None:
    """SIGHUP used to kill the command with its run left STARTED, refusing every later night
    (the daemon's too: the pipeline's one slot stayed taken); Ctrl-C failed the run and went on
    to the label refresh. Now they (and SIGTERM) end the run as failed and stop there, exit 130."""
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=2)
    env = {**os.environ, "LTR_HOME": str(ltr_home)}
    command = [sys.executable, "-m", "ltr_assets.launcher", "night", "2026-11-01"]
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        run_id = _first_run_started(dagster_home)
        process.send_signal(signum)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert f"interrupted: ltr_daily_job [2026-11-01] (run {run_id}) ended failure" in stderr
    assert "re-run `ltr night 2026-11-01`" in stderr
    with DagsterInstance.get() as instance:
        (run,) = instance.get_runs(RunsFilter())  # nothing was started after it
        assert (run.run_id, run.status) == (run_id, DagsterRunStatus.FAILURE)

    if signum == signal.SIGHUP:  # the case that held the slot: the next night is not refused
        again = run_ltr("night", "2026-11-01", home=ltr_home)
        assert again.returncode == 0, again.stderr


def test_a_second_ltr_night_on_the_instance_is_refused_while_one_runs(
    ltr_home: Path, dagster_home: Path
) -> None:
    """Two `ltr night` started together both passed the check for unfinished runs before either
    had created its run, and ran side by side; the instance's lock lets one through."""
    with (dagster_home / NIGHT_LOCK).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running `ltr night` holds it
        refused = run_ltr("night", "2026-11-01", home=ltr_home)
    assert refused.returncode == 2
    assert "another `ltr night` is running on this instance" in refused.stderr


@pytest.mark.parametrize("after_a_run", [False, True])
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_interrupt_where_sigint_is_ignored(
    signum: signal.Signals, after_a_run: bool
) -> None:
    """A script's background command starts with SIGINT ignored: SIGTERM or SIGHUP forwarded as
    a SIGINT was dropped there (outside a run, where Dagster has no handler of its own), and
    the night ran on to the end. After a run (or loading the location) Dagster gives SIGTERM
    SIGINT's handler, so SIGTERM was ignored there as well."""
    # in another thread no handler is installed, and the signal would end the test process
    assert threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(KeyboardInterrupt), launch.hangup_and_term_as_interrupt():
            if after_a_run:  # what Dagster does around a run, and loading the location
                with capture_interrupts():
                    pass
            os.kill(os.getpid(), signum)
            time.sleep(5)  # the handler runs before this ends
    finally:
        signal.signal(signal.SIGINT, previous)


def test_an_interrupt_while_the_run_is_created_or_between_runs_leaves_none_unfinished(
    ltr_home: Path, small_data_gate: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dagster writes a run's row, then the rest of its creation: an interrupt in between left
    it NOT_STARTED, refusing every later night. An interrupt after the night, before its
    refresh, was reported as one before the night had run."""
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=2)
    instance = DagsterInstance.ephemeral()
    create_run = LocationLauncher.create_run

    def interrupted_after_the_row(self: LocationLauncher, *args: Any) -> DagsterRun:
        create_run(self, *args)
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(LocationLauncher, "create_run", interrupted_after_the_row)
        with pytest.raises(NightInterrupted) as stopped:
            night(instance, "2026-11-01")
    (run,) = instance.get_runs(RunsFilter())
    assert run.status == DagsterRunStatus.CANCELED  # ended, not left NOT_STARTED
    assert run.tags[OUTCOME_TAG] == "canceled"
    assert stopped.value.run == f"ltr_daily_job [2026-11-01] (run {run.run_id}) ended canceled"
    assert stopped.value.night is None

    def interrupt(*args: Any) -> None:
        raise KeyboardInterrupt

    night(instance, "2026-11-01")  # not refused: the canceled run holds nothing
    monkeypatch.setattr(launch, "stale_matrices", interrupt)
    with pytest.raises(NightInterrupted) as between:
        night(instance, "2026-11-02")
    assert between.value.run == ""  # between two runs
    finished = between.value.night
    assert finished is not None and finished.outcome.outcome == "published"


def test_a_run_interrupted_between_steps_counts_as_interrupted() -> None:
    """Interrupted between steps, Dagster fails the run itself ("interrupted unexpectedly") with
    no step failure; a run that failed for another reason is not an interruption."""
    instance = DagsterInstance.ephemeral()
    between_steps = create_run_for_test(instance, job_name="ltr_daily_job")
    instance.report_run_failed(
        between_steps,
        job_failure_data=JobFailureData(
            error=None, failure_reason=RunFailureReason.UNEXPECTED_TERMINATION
        ),
    )
    crashed = create_run_for_test(instance, job_name="ltr_daily_job")
    instance.report_run_failed(
        crashed,
        job_failure_data=JobFailureData(error=None, failure_reason=RunFailureReason.STEP_FAILURE),
    )
    assert launch._interrupted(instance, between_steps.run_id)
    assert not launch._interrupted(instance, crashed.run_id)


def test_an_instance_whose_database_is_down_is_a_clear_error(tmp_path: Path) -> None:
    """A Postgres instance that does not answer: `ltr night` could not start (2), one line
    naming the instance, no traceback."""
    from tests.support.kafka_broker import free_port

    home = tmp_path / "dagster"
    home.mkdir()
    storage = {"hostname": "127.0.0.1", "port": free_port(), "username": "nobody",
               "password": "never-printed", "db_name": "absent",
               "scheme": "postgresql+psycopg2"}  # as deploy/dagster-postgres.yaml  # fmt: skip
    lines = ["storage:", "  postgres:", "    postgres_db:"]
    lines += [f"      {key}: {value}" for key, value in storage.items()]
    (home / "dagster.yaml").write_text("\n".join(lines) + "\n")
    done = run_ltr("night", "2026-11-03", home=tmp_path, DAGSTER_HOME=str(home))
    assert done.returncode == 2, done.stderr
    assert f"error: the Dagster instance's database (DAGSTER_HOME='{home}')" in done.stderr
    (line,) = [text for text in done.stderr.splitlines() if text.startswith("error: ")]
    assert f"port {storage['port']} failed" in line and "Connection refused" in line, line
    assert "Traceback" not in done.stderr and "never-printed" not in done.stderr


def test_a_run_the_database_failed_under_is_ended_once_it_answers_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlalchemy.exc
    from dagster._core.test_utils import instance_for_test

    with instance_for_test() as instance:
        run = create_run_for_test(
            instance, job_name="ltr_daily_job", status=DagsterRunStatus.STARTED,
            tags={**PIPELINE_TAGS, PARTITION_NAME_TAG: "2026-11-03"},
        )  # fmt: skip
        get_run_by_id = instance.get_run_by_id
        failures = iter([True, True])  # the database down for two tries

        def flaky(run_id: str) -> DagsterRun | None:
            if next(failures, False):
                raise sqlalchemy.exc.OperationalError("SELECT", {}, Exception("server closed"))
            return get_run_by_id(run_id)

        monkeypatch.setattr(instance, "get_run_by_id", flaky)
        assert launch._end_when_the_storage_answers(instance, run.run_id, 1.0, 0.01)
        ended = get_run_by_id(run.run_id)
        assert ended is not None and ended.status == DagsterRunStatus.CANCELED
        # down for longer than the patience: not ended, and said so
        other = create_run_for_test(instance, job_name="ltr_daily_job",
                                    status=DagsterRunStatus.STARTED)  # fmt: skip
        failures = iter([True] * 1000)
        assert not launch._end_when_the_storage_answers(instance, other.run_id, 0.05, 0.01)
        assert get_run_by_id(other.run_id).status == DagsterRunStatus.STARTED  # type: ignore[union-attr]
