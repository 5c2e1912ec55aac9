"""Sensors: tell the ranking service to reload after a publication; notify on run outcomes.

The reload sensor asks the service to load whatever `latest` points at, never a partition named
in the event (asset sensors coalesce events between ticks). Run-status sensors watch every job of
the location, so backfills (which may run as asset jobs) notify too.
"""

from dagster import (
    AssetKey,
    DagsterRunStatus,
    DefaultSensorStatus,
    EventLogEntry,
    RunFailureSensorContext,
    RunStatusSensorContext,
    SensorEvaluationContext,
    SkipReason,
    asset_sensor,
    run_failure_sensor,
    run_status_sensor,
)

from ltr_assets.config import Settings
from ltr_assets.defs.jobs import ltr_rollback_job
from ltr_assets.defs.resources import LtrResource
from ltr_assets.notify import notify, request_reload


def _reload_outcome(settings: Settings, after: str) -> SkipReason:
    """POST /reload. A refused artifact (409) is final: notify once and move on (the old
    version serves). The service down or erroring: fail this tick, so the next one retries and
    the UI shows it; the service's own poller is the fallback."""
    if not settings.serving_url:
        return SkipReason(
            f"LTR_SERVING_URL is not set: no reload requested after {after}; the service's own "
            "poller (WEIGHTS_POLL_SECONDS) will pick the new version up"
        )
    delivery = request_reload(settings.serving_url, settings.reload_token)
    if delivery.ok:
        return SkipReason(f"serving reloaded after {after}")
    if delivery.status == 409:
        notify(
            settings.notify_webhook_url,
            f":warning: the ranking service refused the new artifact after {after}: "
            f"{delivery.error}. The previous version keeps serving.",
        )
        return SkipReason(f"serving refused the artifact: {delivery.error}")
    raise RuntimeError(
        f"reload request failed after {delivery.attempts} attempts: {delivery.error}"
    )


@asset_sensor(
    asset_key=AssetKey("published_weights"),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="After published_weights materializes, POST /reload to LTR_SERVING_URL.",
    required_resource_keys={"ltr"},  # a resource parameter breaks evaluate_tick in 1.13
)
def reload_serving_sensor(
    context: SensorEvaluationContext, asset_event: EventLogEntry
) -> SkipReason:
    ltr: LtrResource = context.resources.ltr
    return _reload_outcome(ltr.settings(), f"publication in run {asset_event.run_id[:8]}")


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    monitored_jobs=[ltr_rollback_job],
    default_status=DefaultSensorStatus.RUNNING,
    description="After a rollback run succeeds, POST /reload to LTR_SERVING_URL.",
)
def reload_after_rollback_sensor(context: RunStatusSensorContext, ltr: LtrResource) -> SkipReason:
    return _reload_outcome(ltr.settings(), f"rollback run {context.dagster_run.run_id[:8]}")


def _notify_skip(ltr: LtrResource, context: RunStatusSensorContext) -> SkipReason | None:
    """Without a webhook there is nobody to tell: say so on the tick (the UI shows it) rather
    than "0 runs requested" with the reason only in the logs."""
    if ltr.settings().notify_webhook_url:
        return None
    run = context.dagster_run
    return SkipReason(
        f"NOTIFY_WEBHOOK_URL is not set: run {run.run_id[:8]} of {run.job_name} "
        f"({run.status.value}) was not notified"
    )


@run_status_sensor(
    run_status=DagsterRunStatus.SUCCESS,
    default_status=DefaultSensorStatus.RUNNING,
    description="Posts run successes to NOTIFY_WEBHOOK_URL.",
)
def notify_run_success(context: RunStatusSensorContext, ltr: LtrResource) -> SkipReason | None:
    if skipped := _notify_skip(ltr, context):
        return skipped
    run = context.dagster_run
    partition = run.tags.get("dagster/partition", "-")
    notify(
        ltr.settings().notify_webhook_url,
        f":white_check_mark: {run.job_name} [{partition}] succeeded (run {run.run_id[:8]})",
    )
    return None


@run_failure_sensor(
    default_status=DefaultSensorStatus.RUNNING,
    description="Posts run failures (including a failed gate) to NOTIFY_WEBHOOK_URL.",
)
def notify_run_failure(context: RunFailureSensorContext, ltr: LtrResource) -> SkipReason | None:
    if skipped := _notify_skip(ltr, context):
        return skipped
    run = context.dagster_run
    partition = run.tags.get("dagster/partition", "-")
    message = context.failure_event.message if context.failure_event else "failed"
    notify(
        ltr.settings().notify_webhook_url,
        f":x: {run.job_name} [{partition}] failed (run {run.run_id[:8]}): {message}",
    )
    return None


SENSORS = [
    reload_serving_sensor,
    reload_after_rollback_sensor,
    notify_run_success,
    notify_run_failure,
]
