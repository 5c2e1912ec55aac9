"""Declarative automation: what the daemon may request by itself, beside the 02:15 schedule.

- feature_matrix[D] is rebuilt when raw_events[D+1] arrives after it was built: feedback that came
  after midnight is attributed to D's impressions (the label refresh). This is the nightly refresh
  (no schedule asks for it: one beside the daily schedule raced the daily run,
  ltr_assets.defs.schedules) and the path for a late or re-run ingestion of D+1, bounded to the
  days a training window still reads. Dagster's `any_deps_updated` ignores updates made by a run
  whose asset selection names feature_matrix (any of its days). A run of ltr_daily_job for D+1
  launched with no selection (the schedule's, the CLI's backfill) names none, so it triggers the
  refresh unless one is queued already (an operator's); the UI's launches name their assets and do
  not (docs/operations.md tells the operator to launch the refresh).
- published_weights[D] follows a newly materialized ltr_model[D] only when ltr_model's blocking
  (gate) checks passed for D, and only for the latest day (never an old partition by itself).

Runs the sensor launches carry the pipeline tag, so they wait their turn under dagster.yaml's
one-at-a-time limit like the scheduled runs.
"""

from __future__ import annotations

from datetime import timedelta

from dagster import (
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
)

from ltr_core.settings import Settings


def refresh_on_late_upstream() -> AutomationCondition:
    """A matrix that exists is rebuilt once after any upstream day (raw_events D or D+1)
    updates in a run that did not build it, within the training window (read at code-location
    load, like the partition mapping); never while a run for it is queued or in progress."""
    days = Settings.from_env().train_window_days
    return (
        AutomationCondition.in_latest_time_window(timedelta(days=days))
        & AutomationCondition.any_deps_updated().since_last_handled()
        & ~AutomationCondition.missing()
        & ~AutomationCondition.any_deps_in_progress()
        & ~AutomationCondition.in_progress()
    ).with_label("refresh_on_late_upstream")


def publish_after_passed_gate() -> AutomationCondition:
    """Eager, but only over an ltr_model whose blocking checks passed for the same day. The
    online comparison is ignored here: it only orders the nightly run (a re-run of it alone
    must not republish, and a retirement, a warning, must not hold the next candidate back)."""
    return (
        (AutomationCondition.eager() & AutomationCondition.all_deps_blocking_checks_passed())
        .ignore(AssetSelection.assets("online_comparison"))
        .with_label("eager_after_passed_gate")
    )


def automation_sensor(run_tags: dict[str, str]) -> AutomationConditionSensorDefinition:
    """The sensor that evaluates the conditions, running by default (Dagster's implicit
    default_automation_condition_sensor starts stopped), one run per request (no backfills)."""
    return AutomationConditionSensorDefinition(
        "ltr_automation_sensor",
        target=AssetSelection.all(),
        run_tags=run_tags,
        default_status=DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=60,
        emit_backfills=False,
        description="Evaluates the assets' automation conditions: refresh feature_matrix[D] "
        "after a late raw_events[D+1]; publish after a passed gate.",
    )
