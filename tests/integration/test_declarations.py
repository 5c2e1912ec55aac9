"""What the Definitions declare for the operator: freshness and declarative automation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from dagster import (
    AssetCheckEvaluation,
    AssetKey,
    AutomationCondition,
    AutomationConditionSensorDefinition,
    DagsterInstance,
    DefaultSensorStatus,
    evaluate_automation_conditions,
)
from dagster._core.definitions.asset_daemon_cursor import AssetDaemonCursor
from dagster._core.definitions.declarative_automation.automation_condition_tester import (
    EvaluateAutomationConditionsResult,
)
from dagster._core.definitions.freshness import CronFreshnessPolicy

from ltr_assets.definitions import defs
from ltr_assets.defs.launch import LocationLauncher
from tests.conftest import write_simulated_events


def test_published_weights_is_overdue_without_a_publication_by_six_utc() -> None:
    (spec,) = defs.resolve_assets_def("published_weights").specs
    policy = spec.freshness_policy
    assert isinstance(policy, CronFreshnessPolicy)
    assert policy.deadline_cron == "0 6 * * *"
    assert policy.timezone == "UTC"
    assert policy.lower_bound_delta == timedelta(hours=6)  # any publication after midnight UTC


def test_automation_conditions_are_attached_and_their_sensor_runs() -> None:
    conditions = {
        asset: defs.resolve_assets_def(asset).automation_conditions_by_key.get(AssetKey(asset))
        for asset in ("raw_events", "feature_matrix", "ltr_model", "published_weights")
    }
    assert {name: c.get_label() if c else None for name, c in conditions.items()} == {
        "raw_events": None,
        "feature_matrix": "refresh_on_late_upstream",
        "ltr_model": None,
        "published_weights": "eager_after_passed_gate",
    }
    published = conditions["published_weights"]
    assert published is not None
    labels = _labels(published)
    assert {"eager", "all_deps_blocking_checks_passed"} <= labels
    sensor = defs.get_repository_def().get_sensor_def("ltr_automation_sensor")
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    assert isinstance(sensor, AutomationConditionSensorDefinition)
    assert sensor.run_tags == {"ltr/pipeline": "daily"}  # queued under the one-at-a-time limit


def _labels(condition: AutomationCondition[Any]) -> set[str]:
    label = getattr(condition, "label", None)
    found = {label} if label else set()
    for child in condition.children:
        found |= _labels(child)
    return found


# Dagster's own evaluate_automation_conditions selects with a beta parameter internally.
@pytest.mark.filterwarnings("ignore:Parameter `include_sources`:dagster.BetaWarning")
def test_a_late_next_day_ingestion_requests_the_refresh_of_the_day_before(
    ltr_home: Path,
) -> None:
    """raw_events[D+1] materialized after feature_matrix[D] was built: the automation
    conditions request feature_matrix[D] (and nothing else), once."""
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=2)
    instance = DagsterInstance.ephemeral()
    job = defs.resolve_job_def("ltr_daily_job")
    now = datetime(2026, 11, 3, 3, 0, tzinfo=UTC)  # the latest partition is 2026-11-02

    def ingest(day: str, *assets: str) -> None:
        selection = [AssetKey(a) for a in assets]
        result = job.execute_in_process(
            partition_key=day, instance=instance, asset_selection=selection
        )
        assert result.success

    ingest("2026-11-01", "raw_events", "feature_matrix")
    first = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=now)
    assert first.total_requested == 0

    ingest("2026-11-02", "raw_events")  # the next day, ingested on its own (late)
    second = evaluate_automation_conditions(
        defs=defs, instance=instance, evaluation_time=now, cursor=first.cursor
    )
    assert second.get_requested_partitions(AssetKey("feature_matrix")) == {"2026-11-01"}
    assert second.total_requested == 1

    ingest("2026-11-01", "feature_matrix")  # the refresh ran: nothing more to ask for
    third = evaluate_automation_conditions(
        defs=defs, instance=instance, evaluation_time=now, cursor=second.cursor
    )
    assert third.total_requested == 0


@pytest.mark.filterwarnings("ignore:Parameter `include_sources`:dagster.BetaWarning")
def test_a_whole_daily_run_of_the_next_day_requests_the_refresh_unless_one_is_queued(
    ltr_home: Path, small_data_gate: None
) -> None:
    """A whole ltr_daily_job run (the schedule, the UI's job launch, a backfill: no asset
    selection) of D+1 requests feature_matrix[D]'s refresh by itself (the nightly refresh: no
    schedule asks for it); with a refresh of D queued already (an operator's) it asks for
    nothing."""
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=2)
    now = datetime(2026, 11, 3, 3, 0, tzinfo=UTC)
    for queued in (False, True):
        instance = DagsterInstance.ephemeral()
        built = defs.resolve_job_def("ltr_daily_job").execute_in_process(
            partition_key="2026-11-01",
            instance=instance,
            asset_selection=[AssetKey("raw_events"), AssetKey("feature_matrix")],
        )
        assert built.success
        first = evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=now)
        with LocationLauncher(instance) as launcher:  # runs made as the scheduler makes them
            if queued:  # created, not started: a refresh waiting in the queue
                launcher.create_run("ltr_label_refresh_job", "2026-11-01", {})
            night = launcher.create_run("ltr_daily_job", "2026-11-02", {})
            assert night.asset_selection is None
            launcher.execute(night)
        second = evaluate_automation_conditions(
            defs=defs, instance=instance, evaluation_time=now, cursor=first.cursor
        )
        requested = second.get_requested_partitions(AssetKey("feature_matrix"))
        assert requested == (set() if queued else {"2026-11-01"}), queued


@pytest.mark.filterwarnings("ignore:Parameter `include_sources`:dagster.BetaWarning")
def test_published_weights_follows_only_a_model_whose_gate_passed(
    ltr_home: Path, small_data_gate: None
) -> None:
    """ltr_model built without publishing: a refused day is not published by the automation;
    a passed day is."""
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=2)
    instance = DagsterInstance.ephemeral()
    job = defs.resolve_job_def("ltr_daily_job")
    # everything the daily job runs before published_weights (online_comparison included: a
    # dependency that was never materialized keeps eager() from requesting published_weights)
    model_only = [
        AssetKey("raw_events"),
        AssetKey("online_comparison"),
        AssetKey("feature_matrix"),
        AssetKey("ltr_model"),
    ]
    published = AssetKey("published_weights")

    def evaluate(
        day_after: int, cursor: AssetDaemonCursor | None = None
    ) -> EvaluateAutomationConditionsResult:
        now = datetime(2026, 11, day_after, 3, 0, tzinfo=UTC)  # latest partition: the day before
        return evaluate_automation_conditions(
            defs=defs, instance=instance, evaluation_time=now, cursor=cursor
        )

    baseline = evaluate(2)
    refused = job.execute_in_process(
        partition_key="2026-11-01", instance=instance, asset_selection=model_only,
        raise_on_error=False,
    )  # fmt: skip
    # min_samples fails on one day of data: a WARN failure of a blocking check, which the
    # automation must honour although Dagster itself does not block on it
    assert refused.success
    (evaluation,) = [
        e.event_specific_data
        for e in refused.all_events
        if isinstance(e.event_specific_data, AssetCheckEvaluation)
        and e.event_specific_data.check_name == "min_samples"
    ]
    assert not evaluation.passed and evaluation.blocking
    after_refusal = evaluate(2, baseline.cursor)
    assert after_refusal.get_requested_partitions(published) == set()

    passed = job.execute_in_process(
        partition_key="2026-11-02", instance=instance, asset_selection=model_only
    )
    assert passed.success
    after_pass = evaluate(3, after_refusal.cursor)
    assert after_pass.get_requested_partitions(published) == {"2026-11-02"}
