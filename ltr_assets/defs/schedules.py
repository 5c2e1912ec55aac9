"""The nightly schedule: 02:15 UTC, for the previous day's partition.

The 02:15 start is the grace period for events of the previous day that reach the source late.
Each tick also asks for a label refresh of the day before (feature_matrix[D-1]), which runs after
the daily run because it needs raw_events[D]: feedback that came after midnight then labels
D-1's impressions in every later training window.
"""

from collections.abc import Iterator
from datetime import date, timedelta

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from ltr_assets.defs.jobs import ltr_daily_job, ltr_label_refresh_job
from ltr_assets.defs.partitions import daily_partitions

CRON = "15 2 * * *"


def nightly_partitions(tick_date: date) -> tuple[str, str]:
    """(the day to run, the day whose labels to refresh) for a tick on `tick_date` (UTC)."""
    day = tick_date - timedelta(days=1)
    return day.isoformat(), (day - timedelta(days=1)).isoformat()


@schedule(
    cron_schedule=CRON,
    execution_timezone="UTC",
    job=ltr_daily_job,
    default_status=DefaultScheduleStatus.RUNNING,  # the product retrains every night by itself
    description="Nightly at 02:15 UTC: the previous day's partition, then a label refresh of "
    "the day before it.",
)
def ltr_daily_schedule(
    context: ScheduleEvaluationContext,
) -> Iterator[RunRequest | SkipReason]:
    when = context.scheduled_execution_time
    day, refresh = nightly_partitions(when.date())
    # The partitions as of the tick, not the clock: the UI's "Test schedule" of a future tick
    # (or the daemon catching up an old one) asks for that tick's days.
    existing = set(daily_partitions.get_partition_keys(current_time=when))
    if day not in existing and refresh not in existing:
        # Before LTR_START_DATE's first full day: say why on the tick, and in its log (the tick
        # list shows a skip reason only on hover; "View logs" opens these lines).
        reason = (
            f"no daily partition {day} yet: LTR_START_DATE is {daily_partitions.start:%Y-%m-%d}"
        )
        context.log.info(reason)
        yield SkipReason(reason)
        return
    if day in existing:
        yield RunRequest(run_key=f"daily-{day}", partition_key=day)
    if refresh in existing:
        yield RunRequest(
            run_key=f"refresh-{refresh}",
            job_name=ltr_label_refresh_job.name,
            partition_key=refresh,
            tags={"dagster/priority": "-1"},
        )
