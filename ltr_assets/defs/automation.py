"""Declarative automation: what the daemon may request by itself, beside the 02:15 schedule and
the label refresh (`ltr_assets.defs.refresh`, a sensor of its own).

published_weights[D] follows a newly materialized ltr_model[D] only when ltr_model's blocking
(gate) checks passed for D, and only for the latest day (never an old partition by itself).

Runs the sensor launches carry the pipeline tag, so they wait their turn under dagster.yaml's
one-at-a-time limit like the scheduled runs.
"""

from __future__ import annotations

from dagster import (
    AssetSelection,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DefaultSensorStatus,
)


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
        description="Evaluates the assets' automation conditions: publish after a passed gate.",
    )
