"""The nightly schedule: 02:15 UTC, for the previous day's partition, after the nights of the
CATCH_UP_DAYS before it that were missed (`_missed_nights`: Dagster's scheduler does not catch
up by itself).

The 02:15 start is the grace period for events of the previous day that reach the source late.
The label refresh of the day before (feature_matrix[D-1], so feedback that came after midnight
labels D-1's impressions in every later training window) is not scheduled: the daily run's
raw_events[D] makes the label refresh sensor request it (ltr_assets.defs.refresh) once that run
has ended, so it always runs after D is ingested. A refresh schedule beside this one raced it:
Dagster evaluates a tick's schedules in no fixed order, and a refresh that ran before
raw_events[D] existed rebuilt the same matrix. (Asked for by this schedule's own
`RunRequest(job_name=...)`, it had run as a whole ltr_daily_job of D-1: a schedule runs every
request as its own job.)
"""

from datetime import date, timedelta

from dagster import (
    AssetKey,
    DagsterInstance,
    DefaultScheduleStatus,
    RunRequest,
    RunsFilter,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)
from dagster._core.execution.backfill import BulkActionStatus
from dagster._core.storage.tags import PARTITION_NAME_TAG

from ltr_assets.defs.jobs import ltr_daily_job
from ltr_assets.defs.partitions import daily_partitions
from ltr_core.events import NIGHTLY_READ_AFTER

# 02:15 UTC: `NIGHTLY_READ_AFTER` past midnight, which /feedback's lateness bound uses too
_AT = int(NIGHTLY_READ_AFTER.total_seconds()) // 60
CRON = f"{_AT % 60} {_AT // 60} * * *"
# How many nights before the tick's day a tick runs too when they were missed (the daemon down
# over 02:15): about a long weekend; further back is a backfill's.
CATCH_UP_DAYS = 3
PUBLISHED = AssetKey("published_weights")


def nightly_partition(tick_date: date) -> str:
    """The day a tick on `tick_date` (UTC) runs: the day before."""
    return (tick_date - timedelta(days=1)).isoformat()


def _existing(context: ScheduleEvaluationContext) -> set[str]:
    """The partitions as of the tick, not the clock: the UI's "Test schedule" of a future tick
    (or the daemon catching up an old one) asks for that tick's days."""
    return set(daily_partitions.get_partition_keys(current_time=context.scheduled_execution_time))


def _too_early(context: ScheduleEvaluationContext, day: str) -> SkipReason:
    """Before LTR_START_DATE's first full day: say why on the tick, and in its log (the tick
    list shows a skip reason only on hover; "View logs" opens these lines)."""
    reason = f"no daily partition {day} yet: LTR_START_DATE is {daily_partitions.start:%Y-%m-%d}"
    context.log.info(reason)
    return SkipReason(reason)


def _missed_nights(context: ScheduleEvaluationContext, day: str, existing: set[str]) -> list[str]:
    """The CATCH_UP_DAYS days before `day`, oldest first, that exist as partitions, have no
    publication record (published or refused), no run of ltr_daily_job (launched by this
    schedule, a backfill or the UI, in any state: a queued one will run, a crashed one is the
    operator's) and no unfinished job backfill naming them (its runs may not exist yet): nights
    the daemon was down for. Dagster's scheduler does not catch up by itself: it runs only the
    latest missed tick, and a run key is unique only within a tick."""
    instance = context.instance
    recorded = instance.get_materialized_partitions(PUBLISHED)
    backfilled = _backfilled_nights(instance)
    last = date.fromisoformat(day)
    nights = [(last - timedelta(days=back)).isoformat() for back in range(CATCH_UP_DAYS, 0, -1)]
    return [
        night
        for night in nights
        if night in existing
        and night not in recorded
        and night not in backfilled
        and not _launched(instance, night)
    ]


def _backfilled_nights(instance: DagsterInstance) -> set[str]:
    """The days unfinished backfills ask for: a job backfill's partitions, an asset backfill's
    days of published_weights (its runs, made as it goes, are `__ASSET_JOB`'s)."""
    days: set[str] = set()
    for backfill in instance.get_backfills(status=BulkActionStatus.REQUESTED):
        days.update(backfill.partition_names or [])
        data = backfill.asset_backfill_data
        subset = data.target_subset.partitions_subsets_by_asset_key.get(PUBLISHED) if data else None
        if subset is not None:
            days.update(subset.get_partition_keys())
    return days


def _launched(instance: DagsterInstance, night: str) -> bool:
    """Whether a run for the night exists in any state: of ltr_daily_job, or of any job whose
    asset selection publishes (an asset backfill's, a launch from an asset page)."""
    for record in instance.get_run_records(RunsFilter(tags={PARTITION_NAME_TAG: night})):
        run = record.dagster_run
        if run.job_name == ltr_daily_job.name or PUBLISHED in (run.asset_selection or ()):
            return True
    return False


@schedule(
    cron_schedule=CRON,
    execution_timezone="UTC",
    job=ltr_daily_job,
    default_status=DefaultScheduleStatus.RUNNING,  # the product retrains every night by itself
    description="Nightly at 02:15 UTC: the previous day's partition, after any of the "
    f"{CATCH_UP_DAYS} nights before it that was missed (no run of ltr_daily_job, no "
    "publication record).",
)
def ltr_daily_schedule(context: ScheduleEvaluationContext) -> list[RunRequest] | SkipReason:
    day = nightly_partition(context.scheduled_execution_time.date())
    existing = _existing(context)
    if day not in existing:
        return _too_early(context, day)
    nights = [*_missed_nights(context, day, existing), day]  # oldest first: latest moves forward
    return [RunRequest(run_key=f"daily-{night}", partition_key=night) for night in nights]
