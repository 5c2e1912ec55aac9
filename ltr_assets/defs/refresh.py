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
from dagster._core.storage.tags import PARTITION_NAME_TAG

from ltr_assets.defs.jobs import ltr_label_refresh_job
from ltr_assets.defs.partitions import daily_partitions
from ltr_core.settings import Settings

MATRIX = AssetKey("feature_matrix")
EVENTS = AssetKey("raw_events")
_UNFINISHED = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
    DagsterRunStatus.CANCELING,
]


def _now() -> datetime:
    return datetime.now(UTC)


def stale_matrices(instance: DagsterInstance, now: datetime) -> list[tuple[str, int]]:
    """(D, the storage id of its newest input) for each day D of the training window whose
    matrix exists and is older than raw_events D or D+1, and for which no run of D or D+1 is
    queued or in progress (it may be building the matrix, or ingesting the day after)."""
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
    busy = {
        record.dagster_run.tags.get(PARTITION_NAME_TAG)
        for record in instance.get_run_records(RunsFilter(statuses=_UNFINISHED))
    }
    stale = []
    for day in days:
        newest = max(events.get(day, 0), events.get(next_day[day], 0))
        if day in matrices and newest > matrices[day] and not {day, next_day[day]} & busy:
            stale.append((day, newest))
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
    stale = stale_matrices(context.instance, _now())
    if not stale:
        reason = "every matrix of the window is newer than its raw events (or a run is due)"
        context.log.info(reason)
        return SkipReason(reason)
    # one run per newer input: a refresh that crashed is not asked for again until it changes
    requests = [RunRequest(run_key=f"refresh-{d}-{newest}", partition_key=d) for d, newest in stale]
    context.log.info(f"refreshing feature_matrix for {', '.join(d for d, _ in stale)}")
    return SensorResult(run_requests=requests)
