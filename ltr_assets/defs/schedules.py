"""The nightly schedule: 02:15 UTC, for the previous day's partition.

The 02:15 start is the grace period for events of the previous day that reach the source late.
A second schedule at the same minute asks for a label refresh of the day before
(ltr_label_refresh_job: feature_matrix[D-1]), which runs after the daily run because it needs
raw_events[D]: feedback that came after midnight then labels D-1's impressions in every later
training window. It is a schedule of its own because Dagster's scheduler runs every request of
a schedule as the schedule's job (a `RunRequest.job_name` is honoured by sensors only): asked
for by the daily schedule, the refresh ran as a whole ltr_daily_job of D-1, retraining and
republishing that night. Its lower priority queues it behind the daily run under the one-at-a-
time pipeline limit; should it run first all the same, raw_events[D] arriving afterwards makes
the automation sensor refresh D-1 again (ltr_assets.defs.automation).
"""

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


@schedule(
    cron_schedule=CRON,
    execution_timezone="UTC",
    job=ltr_daily_job,
    default_status=DefaultScheduleStatus.RUNNING,  # the product retrains every night by itself
    description="Nightly at 02:15 UTC: the previous day's partition.",
)
def ltr_daily_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    day, _ = nightly_partitions(context.scheduled_execution_time.date())
    if day not in _existing(context):
        return _too_early(context, day)
    return RunRequest(run_key=f"daily-{day}", partition_key=day)


@schedule(
    cron_schedule=CRON,
    execution_timezone="UTC",
    job=ltr_label_refresh_job,
    default_status=DefaultScheduleStatus.RUNNING,
    description="Nightly at 02:15 UTC, queued behind the daily run: rebuild feature_matrix of "
    "the day before the previous day, so feedback that came after midnight labels it.",
)
def ltr_label_refresh_schedule(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    _, refresh = nightly_partitions(context.scheduled_execution_time.date())
    if refresh not in _existing(context):
        return _too_early(context, refresh)
    return RunRequest(
        run_key=f"refresh-{refresh}", partition_key=refresh, tags={"dagster/priority": "-1"}
    )
