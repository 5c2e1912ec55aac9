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
    DagsterRunStatus,
    DefaultSensorStatus,
    SensorResult,
    SkipReason,
    build_sensor_context,
    evaluate_automation_conditions,
)
from dagster._core.definitions.asset_daemon_cursor import AssetDaemonCursor
from dagster._core.definitions.declarative_automation.automation_condition_tester import (
    EvaluateAutomationConditionsResult,
)
from dagster._core.definitions.freshness import CronFreshnessPolicy
from dagster._core.storage.tags import RUN_KEY_TAG
from dagster._core.test_utils import create_run_for_test

from ltr_assets.definitions import defs
from ltr_assets.defs import refresh
from ltr_assets.defs.launch import LocationLauncher
from ltr_assets.defs.refresh import label_refresh_sensor as refresh_sensor
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
        "feature_matrix": None,  # the label refresh is a sensor of its own
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
    refresh = defs.get_repository_def().get_sensor_def("ltr_label_refresh_sensor")
    assert refresh.default_status == DefaultSensorStatus.RUNNING
    assert refresh.job_name == "ltr_label_refresh_job"
    assert defs.resolve_job_def("ltr_label_refresh_job").tags["ltr/pipeline"] == "daily"


def _labels(condition: AutomationCondition[Any]) -> set[str]:
    label = getattr(condition, "label", None)
    found = {label} if label else set()
    for child in condition.children:
        found |= _labels(child)
    return found


NOW = datetime(2026, 11, 3, 3, 0, tzinfo=UTC)  # the latest partition is 2026-11-02


def _refreshes(instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What the label refresh sensor asks for now: the partitions of its run requests."""
    result = _tick(instance, monkeypatch)
    if isinstance(result, SkipReason):
        return []
    assert isinstance(result, SensorResult) and result.run_requests is not None
    assert all(r.run_key and r.run_key.startswith("refresh-") for r in result.run_requests)
    return [str(r.partition_key) for r in result.run_requests]


def _tick(instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(refresh, "_now", lambda: NOW)
    with build_sensor_context(instance=instance, sensor_name=refresh_sensor.name) as context:
        return refresh_sensor(context)


def test_a_late_next_day_ingestion_requests_the_refresh_of_the_day_before(
    ltr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """raw_events[D+1] materialized after feature_matrix[D] was built (here launched with an
    asset selection, as the UI launches): the sensor asks for feature_matrix[D], and nothing
    once the refresh ran."""
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=2)
    instance = DagsterInstance.ephemeral()
    job = defs.resolve_job_def("ltr_daily_job")

    def ingest(day: str, *assets: str) -> None:
        selection = [AssetKey(a) for a in assets]
        result = job.execute_in_process(
            partition_key=day, instance=instance, asset_selection=selection
        )
        assert result.success

    ingest("2026-11-01", "raw_events", "feature_matrix")
    assert _refreshes(instance, monkeypatch) == []
    ingest("2026-11-02", "raw_events")  # the next day, ingested on its own (late)
    assert _refreshes(instance, monkeypatch) == ["2026-11-01"]
    # that refresh crashed: not launched again by itself, and the tick says so
    (stale,) = refresh.stale_matrices(instance, NOW)
    crashed = create_run_for_test(
        instance,
        job_name="ltr_label_refresh_job",
        status=DagsterRunStatus.FAILURE,
        tags={RUN_KEY_TAG: stale.run_key, "dagster/partition": "2026-11-01"},
    )
    skipped = _tick(instance, monkeypatch)
    assert isinstance(skipped, SkipReason) and skipped.skip_message == (
        f"2026-11-01's refresh for its newest raw events ran already (run "
        f"{crashed.run_id[:8]}, FAILURE) and the matrix is still older: re-run it "
        "(ltr_label_refresh_job) by hand"
    )
    ingest("2026-11-01", "feature_matrix")  # the refresh ran: nothing more to ask for
    assert _refreshes(instance, monkeypatch) == []
    ingest("2026-11-01", "raw_events")  # D itself re-ingested (a quarantine replay)
    assert _refreshes(instance, monkeypatch) == ["2026-11-01"]


def test_back_to_back_nights_request_the_refresh_once_no_run_of_the_next_day_is_due(
    ltr_home: Path, small_data_gate: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two whole nights run back to back between two ticks (the catch-up, a backfill): the
    refresh of the first is asked for (Dagster's declarative `since_last_handled` lost it:
    the matrix's build and the next day's ingestion new on one tick); not while a run of
    the next day is queued (it may be ingesting it), and nothing once the refresh ran."""
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=2)
    instance = DagsterInstance.ephemeral()
    with LocationLauncher(instance) as launcher:  # runs made as the scheduler makes them
        for day in ("2026-11-01", "2026-11-02"):
            launcher.execute(launcher.create_run("ltr_daily_job", day, {}))
        assert _refreshes(instance, monkeypatch) == ["2026-11-01"]
        queued = launcher.create_run("ltr_daily_job", "2026-11-02", {})  # a re-run waits
        waiting = _tick(instance, monkeypatch)
        assert isinstance(waiting, SkipReason) and waiting.skip_message == (
            f"2026-11-01 waits for ltr_daily_job [2026-11-02] (run {queued.run_id[:8]})"
        )
        instance.report_run_canceled(queued)
        assert _refreshes(instance, monkeypatch) == ["2026-11-01"]
        launcher.execute(launcher.create_run("ltr_label_refresh_job", "2026-11-01", {}))
    assert _refreshes(instance, monkeypatch) == []


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
