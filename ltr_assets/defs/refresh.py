"""The label refresh: feature_matrix[D] reads raw_events D and D+1 (the feedback that came after
midnight labels D's impressions), so `label_refresh_sensor` rebuilds it (ltr_label_refresh_job)
when either input's latest materialization is newer than the matrix's, for the days a training
window still reads, once no run for D or D+1 is queued or in progress.

This is the nightly refresh of D-1 (no schedule asks for it: one beside the daily schedule raced
the daily run, ltr_assets.defs.schedules) and the refresh after a late or re-run ingestion of
D+1, whoever launched it. It compares what the instance holds, not what changed between two
ticks: the declarative condition it replaces (`any_deps_updated().since_last_handled()`) lost
the refresh of D when D's matrix and D+1's ingestion were both new on one tick (nights run back
to back: the catch-up, a backfill), and ignored runs launched from the UI.

Its runs carry the pipeline tag (the job's), so they wait their turn under dagster.yaml's
one-at-a-time limit like the scheduled runs.
"""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    RunRequest,
    RunsFilter,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)
from dagster._core.storage.tags import PARTITION_NAME_TAG, RUN_KEY_TAG

from ltr_assets.defs.concurrency import PIPELINE_POOL, ensure_pipeline_pool
from ltr_assets.defs.jobs import ltr_label_refresh_job
from ltr_assets.defs.partitions import daily_partitions
from ltr_core.settings import Settings

MATRIX = AssetKey("feature_matrix")
EVENTS = AssetKey("raw_events")
UNFINISHED = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class StaleMatrix:
    """A day whose matrix is older than its raw events, D's or D+1's."""

    day: str
    newest: int  # the storage id of its newest input: one refresh per newer ingestion
    waits_for: str = ""  # a run of D or D+1 queued or in progress: the refresh waits for it

    @property
    def run_key(self) -> str:
        return f"refresh-{self.day}-{self.newest}"


def stale_matrices(instance: DagsterInstance, now: datetime) -> list[StaleMatrix]:
    """Each day D of the training window whose matrix exists and is older than raw_events D or
    D+1, with the run of D or D+1 it waits for, if one is queued or in progress (it may be
    building the matrix, or ingesting the day after)."""
    window = Settings.from_env().train_window_days
    days = daily_partitions.get_partition_keys(current_time=now)[-window:]
    if not days:
        return []
    storage = instance.event_log_storage
    materialized = DagsterEventType.ASSET_MATERIALIZATION
    next_day = {d: (date.fromisoformat(d) + timedelta(days=1)).isoformat() for d in days}
    matrices = storage.get_latest_storage_id_by_partition(MATRIX, materialized, set(days))
    events = storage.get_latest_storage_id_by_partition(
        EVENTS, materialized, set(days) | set(next_day.values())
    )
    busy: dict[str, str] = {}  # partition -> a run of it not finished
    for record in instance.get_run_records(RunsFilter(statuses=UNFINISHED)):
        run = record.dagster_run
        partition = run.tags.get(PARTITION_NAME_TAG)
        if partition:
            busy.setdefault(partition, f"{run.job_name} [{partition}] (run {run.run_id[:8]})")
    stale = []
    for day in days:
        newest = max(events.get(day, 0), events.get(next_day[day], 0))
        if day in matrices and newest > matrices[day]:
            waits_for = busy.get(day) or busy.get(next_day[day]) or ""
            stale.append(StaleMatrix(day, newest, waits_for))
    return stale


@sensor(
    name="ltr_label_refresh_sensor",
    job=ltr_label_refresh_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="Rebuilds feature_matrix[D] (ltr_label_refresh_job) when raw_events D or D+1 "
    "materialized after it, within the training window, once no run of D or D+1 is queued or "
    "in progress: the nightly label refresh, and the one after a late or re-run ingestion.",
)
def label_refresh_sensor(context: SensorEvaluationContext) -> SensorResult | SkipReason:
    if ensure_pipeline_pool(context.instance):  # this sensor runs wherever the daemon does
        context.log.info(f"gave the concurrency pool {PIPELINE_POOL} the instance's default limit")
    requests, notes = [], []
    for matrix in stale_matrices(context.instance, _now()):
        # one run per newer input: a refresh that crashed is not launched again by itself
        tried = context.instance.get_run_records(
            RunsFilter(tags={RUN_KEY_TAG: matrix.run_key}), limit=1
        )
        if matrix.waits_for:
            notes.append(f"{matrix.day} waits for {matrix.waits_for}")
        elif tried:
            run = tried[0].dagster_run
            notes.append(
                f"{matrix.day}'s refresh for its newest raw events ran already (run "
                f"{run.run_id[:8]}, {run.status.value}) and the matrix is still older: "
                "re-run it (ltr_label_refresh_job) by hand"
            )
        else:
            requests.append(RunRequest(run_key=matrix.run_key, partition_key=matrix.day))
    if requests:
        days = ", ".join(str(r.partition_key) for r in requests)
        context.log.info("; ".join([f"refreshing feature_matrix for {days}", *notes]))
        return SensorResult(run_requests=requests)
    reason = "; ".join(notes) or "every matrix of the window is newer than its raw events"
    context.log.info(reason)
    return SkipReason(reason)
