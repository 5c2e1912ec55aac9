"""Launch a job of the code location the way the scheduler does, and run it in this process.

`job.execute_in_process` makes runs without a repository origin: the UI leaves them out of the
Overview timeline and the job's Runs tab, "Re-execute" warns about a different version, and the
run-status sensors (whose cursor starts after them) never tag their outcome. `LocationLauncher`
loads the code location `ltr_assets.definitions` in-process under the name workspace.yaml gives
it, creates each run from the location's job snapshot and execution plan with its origins
(as `dagster job launch` and the scheduler do), executes it here (the jobs' in-process
executor), then tags the outcome as the tagging sensors would (`ltr/outcome`, `ltr/reason`).
"""

from __future__ import annotations

import contextlib
import fcntl
import signal
import sys
import threading
import time as clock
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import FrameType, TracebackType

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    JobExecutionResult,
    RunsFilter,
)
from dagster._core.definitions.selector import JobSubsetSelector
from dagster._core.events import RunFailureReason
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.remote_representation.code_location import InProcessCodeLocation
from dagster._core.remote_representation.external import RemoteJob
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.storage.tags import PARTITION_NAME_TAG
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
from dagster._core.utils import make_new_run_id

from ltr_assets.defs.checks import S3_CHECK
from ltr_assets.defs.concurrency import ensure_pipeline_pool, holds_pipeline_pool
from ltr_assets.defs.jobs import PIPELINE_TAGS
from ltr_assets.defs.partitions import daily_partitions
from ltr_assets.defs.refresh import UNFINISHED, stale_matrices
from ltr_assets.defs.sensors import (
    COMPARISON_ASSET,
    PUBLISHED_ASSET,
    RunOutcome,
    carries_outcome,
    materialization_metadata,
    tag_run_outcome,
)

# workspace.yaml loads `python_module: ltr_assets.definitions` without a location_name, so
# Dagster names the location after the module; the demo's runs must be grouped under it.
LOCATION_NAME = "ltr_assets.definitions"
# workspace.yaml's working_directory ("."): the project root, where `ltr_assets` imports from.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class LocationLauncher:
    """The code location, loaded once, and the runs of its jobs: created with the location's
    origin and snapshots, executed in this process, tagged with their outcome."""

    def __init__(self, instance: DagsterInstance) -> None:
        self.instance = instance
        origin = InProcessCodeLocationOrigin(
            LoadableTargetOrigin(
                executable_path=sys.executable,
                module_name=LOCATION_NAME,
                working_directory=str(PROJECT_ROOT),
            ),
            location_name=LOCATION_NAME,
        )
        # its runs never pass the queue, which would give the pool its limit otherwise
        ensure_pipeline_pool(instance)
        self.location: InProcessCodeLocation = origin.create_location(instance)
        (self.repository,) = self.location.get_repositories().values()

    def remote_job(self, job_name: str, assets: Sequence[AssetKey] | None = None) -> RemoteJob:
        """The location's job, as the UI and the scheduler see it; with `assets`, the subset
        an asset page launches (job `__ASSET_JOB`)."""
        if assets is None:
            return self.repository.get_full_job(job_name)
        selector = JobSubsetSelector(
            location_name=self.location.name,
            repository_name=self.repository.name,
            job_name=job_name,
            op_selection=None,
            asset_selection=assets,
        )
        return self.location.get_job(selector)

    def create_run(
        self,
        job_name: str,
        partition_key: str | None,
        run_config: Mapping[str, object],
        run_id: str | None = None,
        assets: Sequence[AssetKey] | None = None,
    ) -> DagsterRun:
        """A NOT_STARTED run as the scheduler creates it (`run_id`, or a new one): the job's
        tags plus the partition, the location's job snapshot and execution plan, the remote
        and code origins; with `assets`, as an asset page creates it."""
        remote_job = self.remote_job(job_name, assets)
        plan = self.location.get_execution_plan(
            remote_job,
            run_config,
            step_keys_to_execute=None,
            known_state=None,
            instance=self.instance,
        )
        tags = dict(remote_job.run_tags)
        if partition_key is not None:
            tags[PARTITION_NAME_TAG] = partition_key
        return self.instance.create_run(
            job_name=job_name,
            run_id=run_id,
            run_config=run_config,
            resolved_op_selection=remote_job.resolved_op_selection,
            step_keys_to_execute=None,
            op_selection=remote_job.op_selection,
            status=DagsterRunStatus.NOT_STARTED,
            root_run_id=None,
            parent_run_id=None,
            tags=tags,
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=frozenset(assets) if assets is not None else None,
            asset_check_selection=None,
            asset_graph=self.repository.asset_graph,
        )

    def execute(self, run: DagsterRun) -> JobExecutionResult:
        """Execute a created run in this process; a failure is the run's, not raised."""
        job = self.location.get_reconstructable_job(self.repository.name, run.job_name)
        return execute_run(job, run, self.instance, raise_on_error=False)

    def execute_and_tag(self, run: DagsterRun) -> tuple[JobExecutionResult, RunOutcome | None]:
        """Execute the run, then tag its outcome as the tagging sensors do for scheduled runs
        (`carries_outcome`); the outcome is None for a run they leave untagged."""
        result = self.execute(run)
        finished = self.instance.get_run_by_id(run.run_id)
        assert finished is not None, run.run_id
        if not carries_outcome(finished):
            return result, None
        return result, tag_run_outcome(self.instance, finished)

    def launch(
        self,
        job_name: str,
        partition_key: str | None = None,
        run_config: Mapping[str, object] | None = None,
    ) -> JobExecutionResult:
        """Create, execute and tag one run of `job_name`."""
        run = self.create_run(job_name, partition_key, run_config or {})
        result, _ = self.execute_and_tag(run)
        return result

    def close(self) -> None:
        """Release the loaded location."""
        self.location.cleanup()

    def __enter__(self) -> LocationLauncher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class NightRefused(Exception):
    """The night cannot run now: the day is no partition, or another pipeline run is unfinished."""


class NightInterrupted(Exception):
    """Ctrl-C, SIGTERM or a closed terminal (SIGHUP) stopped a run (ended, never left
    unfinished); nothing after it started. `night`: the night's report when its daily run had
    finished (the interrupt came in the label refresh)."""

    def __init__(self, run: str = "", night: NightReport | None = None) -> None:
        super().__init__(f"interrupted: {run or 'between runs'}")
        self.run = run  # "<job> [<day>] (run <id>) ended <status>"; "" between two runs
        self.night = night


def _interrupted_run(instance: DagsterInstance, job_name: str, day: str, run_id: str) -> str:
    run = instance.get_run_by_id(run_id)
    status = run.status.value.lower() if run is not None else "never created"
    return f"{job_name} [{day}] (run {run_id}) ended {status}"


@dataclass(frozen=True)
class Refresh:
    day: str
    run_id: str
    success: bool


@dataclass(frozen=True)
class NightReport:
    """What `ltr night` ran: the daily run and its outcome, and the label refreshes after it."""

    day: str
    run_id: str
    outcome: RunOutcome
    refreshes: list[Refresh] = field(default_factory=list)
    # S3 pointers the night's registry moves changed (`s3_pointers_changed`): serving reading S3
    # loads something new even when no local pointer moved (S3 catching up after an outage)
    s3_pointers_changed: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """The pipeline did its work (a gate refusal is a decision, not a failure)."""
        finished = self.outcome.outcome in ("published", "gate_refused", "succeeded")
        mirrored = S3_CHECK not in self.outcome.warnings  # replicas reading S3 see the version
        return finished and mirrored and all(refresh.success for refresh in self.refreshes)


# Held while `ltr night` checks for other pipeline runs, creates its own and runs it: a second
# `ltr night` on the same instance is refused instead of running beside it.
NIGHT_LOCK = "ltr-night.lock"


def run_night(day: str, refresh: bool = True) -> NightReport:
    """`night` on the instance in DAGSTER_HOME (`ltr night`), one at a time. An instance whose
    database cannot be reached raises InstanceUnavailable."""
    try:
        with DagsterInstance.get() as instance:
            return _night_alone(instance, day, refresh)
    except storage_errors() as exc:  # outside a run: a failure under one is raised as its own
        raise InstanceUnavailable(exc) from exc


def _night_alone(instance: DagsterInstance, day: str, refresh: bool) -> NightReport:
    """`night` under the instance's lock file."""
    lock_path = Path(instance.root_directory) / NIGHT_LOCK
    with lock_path.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise NightRefused(
                f"another `ltr night` is running on this instance ({lock_path} is locked): "
                "the pipeline runs one night at a time"
            ) from None
        with hangup_and_term_as_interrupt():
            return night(instance, day, refresh)


@contextlib.contextmanager
def hangup_and_term_as_interrupt() -> Iterator[None]:
    """SIGHUP (the terminal closed) and SIGTERM act as Ctrl-C: Dagster then ends the run it is
    executing as failed. By default either would kill the process and leave the run STARTED for
    good, holding the pipeline's one-at-a-time slot against every later night."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    # A script's background command starts with SIGINT ignored, and Dagster, each time its own
    # handling of interrupts ends, gives SIGTERM SIGINT's handler: SIGTERM would be ignored too.
    # So SIGINT raises KeyboardInterrupt here (a terminal's Ctrl-C never reaches a background
    # process group anyway).
    previous = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler)}
    previous |= {s: signal.signal(s, _interrupt) for s in (signal.SIGHUP, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGINT's handler now (Dagster's while a run executes), called directly."""
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def night(
    instance: DagsterInstance,
    day: str,
    refresh: bool = True,
    run_config: Mapping[str, object] | None = None,
    now: datetime | None = None,
) -> NightReport:
    """Run ltr_daily_job for `day` in this process, as the schedule would launch it (same
    location, tags and outcome tags), then the label refresh of every day of its window whose
    matrix is now older than its raw events (the one before `day`: what the refresh sensor
    launches after a nightly run; the sensor itself looks only at today's window). Refused while
    another pipeline run is queued or in progress: the pipeline runs one night at a time. An
    interrupted run raises NightInterrupted, and nothing runs after it."""
    now = now or datetime.now(UTC)
    days = daily_partitions.get_partition_keys(current_time=now)
    if day not in days:
        span = f"from {days[0]} to {days[-1]}" if days else "none yet"
        raise NightRefused(
            f"{day} is not a partition of ltr_daily_job (its days run from LTR_START_DATE to "
            f"yesterday, UTC: {span})"
        )
    busy = [
        record.dagster_run
        for record in instance.get_run_records(RunsFilter(statuses=UNFINISHED))
        if holds_pipeline_pool(record.dagster_run) or _tagged_pipeline(record.dagster_run)
    ]
    if busy:
        run = busy[-1]  # records come newest first: the oldest
        partition = run.tags.get(PARTITION_NAME_TAG, "")
        raise NightRefused(
            f"{run.job_name} [{partition}] (run {run.run_id[:8]}) is {run.status.value.lower()}: "
            "the pipeline runs one night at a time; wait for it. If no process runs it any "
            "more (a killed `ltr night`, a lost run worker), end it: in the UI, Terminate, "
            "then Force termination"
        )
    config = run_config or {}
    with LocationLauncher(instance) as launcher:
        run_id, _, outcome = _run_to_the_end(launcher, "ltr_daily_job", day, config)
        assert outcome is not None, "ltr_daily_job is a tagged job"
        report = NightReport(day, run_id, outcome, s3_pointers_changed=s3_changes(instance, run_id))
        try:
            if not refresh:
                return report
            # the days of this night's window, as the sensor sees them the morning after
            morning = datetime.combine(date.fromisoformat(day) + timedelta(days=1), time(), UTC)
            for matrix in stale_matrices(instance, morning):
                if not matrix.waits_for:  # else a run someone else launched builds it
                    refresh_id, success, _ = _run_to_the_end(
                        launcher, "ltr_label_refresh_job", matrix.day, config
                    )
                    report.refreshes.append(Refresh(matrix.day, refresh_id, success))
        except NightInterrupted as interrupted:
            interrupted.night = report  # the night itself finished: say what it did
            raise
        except KeyboardInterrupt:  # between two refreshes
            raise NightInterrupted(night=report) from None
    return report


def s3_changes(instance: DagsterInstance, run_id: str) -> tuple[str, ...]:
    """The S3 pointers the run changed: the syncs of online_comparison's promotion or
    retirement and of published_weights' publication, as their records say
    (`s3_pointers_changed`)."""
    changed: list[str] = []
    for asset in (COMPARISON_ASSET, PUBLISHED_ASSET):
        names = (materialization_metadata(instance, run_id, asset) or {}).get("s3_pointers_changed")
        if isinstance(names, list):
            changed += [str(name) for name in names if str(name) not in changed]
    return tuple(changed)


def _tagged_pipeline(run: DagsterRun) -> bool:
    """A pipeline job's run (created before its assets were in the pool, or without a plan)."""
    return all(run.tags.get(key) == value for key, value in PIPELINE_TAGS.items())


def _run_to_the_end(
    launcher: LocationLauncher, job_name: str, day: str, config: Mapping[str, object]
) -> tuple[str, bool, RunOutcome | None]:
    """Create and execute one run: its id, whether it succeeded, its outcome if tagged. Whatever
    stops this process on the way (Ctrl-C before the run started, an error), the run is not
    left unfinished: it would block every later night."""
    instance = launcher.instance
    # The id is known before Dagster writes the run: an interrupt may come between its row and
    # the rest of its creation.
    run_id = make_new_run_id()
    try:
        run = launcher.create_run(job_name, day, config, run_id)
        result, outcome = launcher.execute_and_tag(run)
        interrupted = _interrupted(instance, run_id)
    except KeyboardInterrupt:  # before or after Dagster's own handling of interrupts
        _end_unfinished(instance, run_id)
        raise NightInterrupted(_interrupted_run(instance, job_name, day, run_id)) from None
    except BaseException as exc:
        if not isinstance(exc, storage_errors()):
            _end_unfinished(instance, run_id)
            raise
        # the instance's database failed under the run: end it once the database answers again
        ended = _end_when_the_storage_answers(instance, run_id)
        label = f"{job_name} [{day}] (run {run_id[:8]})"
        raise InstanceUnavailable(exc, run=label, left_unfinished=not ended) from exc
    if interrupted:
        raise NightInterrupted(_interrupted_run(instance, job_name, day, run_id))
    return run_id, result.success, outcome


def storage_errors() -> tuple[type[Exception], ...]:
    """What the instance's storage raises when its database cannot be reached or fails (SQLite
    or Postgres, after dagster-postgres's own retries)."""
    import sqlalchemy.exc

    errors: list[type[Exception]] = [sqlalchemy.exc.SQLAlchemyError]
    try:
        from dagster_postgres.utils import DagsterPostgresException
    except ImportError:  # an instance without Postgres support
        pass
    else:
        errors.append(DagsterPostgresException)
    return tuple(errors)


class InstanceUnavailable(Exception):
    """The Dagster instance's database could not be reached or failed: before any run (`run`
    None), or under one, which is then ended unless `left_unfinished` (the database did not
    come back in time: the run stays STARTED and holds back every later night)."""

    def __init__(
        self, error: BaseException, run: str | None = None, left_unfinished: bool = False
    ) -> None:
        super().__init__(_error_line(error))
        self.run = run
        self.left_unfinished = left_unfinished


def _error_line(error: BaseException) -> str:
    """The error's first line, and its innermost cause's when that says more (dagster-postgres's
    "too many retries for DB connection" wraps the host, port and refusal)."""

    def first(exc: BaseException) -> str:
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()

    inner = error
    while inner.__cause__ is not None or inner.__context__ is not None:
        inner = inner.__cause__ or inner.__context__  # type: ignore[assignment]
    outer, root = first(error), first(inner)
    return outer if inner is error or root in outer else f"{outer}: {root}"


# How long `ltr night` keeps trying to end its run after the instance's database failed under
# it, and how often (a restarting database is usually back within this).
END_RUN_RETRY_S = 60.0
END_RUN_RETRY_EVERY_S = 5.0


def _end_when_the_storage_answers(
    instance: DagsterInstance,
    run_id: str,
    patience_s: float = END_RUN_RETRY_S,
    every_s: float = END_RUN_RETRY_EVERY_S,
) -> bool:
    """`_end_unfinished`, retried while the database fails, for up to `patience_s`: whether
    the run was ended (or had ended)."""
    deadline = clock.monotonic() + patience_s
    while True:
        try:
            _end_unfinished(instance, run_id)
            return True
        except storage_errors():
            if clock.monotonic() + every_s > deadline:
                return False
            clock.sleep(every_s)


def _end_unfinished(instance: DagsterInstance, run_id: str) -> None:
    """Mark the run canceled if it exists and has not finished (interrupted before it started,
    or while it was being created), tagged as such."""
    run = instance.get_run_by_id(run_id)
    if run is not None and run.status in UNFINISHED:
        instance.report_run_canceled(run, message="`ltr night` was stopped before the run ended")
        ended = instance.get_run_by_id(run_id)
        assert ended is not None, run_id
        tag_run_outcome(instance, ended)


def _interrupted(instance: DagsterInstance, run_id: str) -> bool:
    """Whether the run ended because the process was interrupted (Ctrl-C, or a SIGTERM or
    SIGHUP `hangup_and_term_as_interrupt` forwards): a step failed with Dagster's interruption
    error, or, interrupted between steps, the run itself ("interrupted unexpectedly")."""
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        data = entry.dagster_event.step_failure_data if entry.dagster_event else None
        error = data.error if data is not None else None
        if error is not None and error.cls_name == "DagsterExecutionInterruptedError":
            return True
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.RUN_FAILURE):
        failure = entry.dagster_event.job_failure_data if entry.dagster_event else None
        reason = failure.failure_reason if failure is not None else None
        if reason == RunFailureReason.UNEXPECTED_TERMINATION:
            return True
    return False
