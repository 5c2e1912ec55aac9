"""A skipped tick's reason where the operator sees it in the UI's tick list: the list shows the
skip reason only on hover, so each sensor writes it to the tick's log ("View logs" in the row),
and registry_versions_sensor's cursor (the list's visible Cursor column) says what it last saw.

Ticks are evaluated as the daemon does: a persistent instance (its compute log manager keeps
the tick's log lines under the tick's log key) and the Definitions' resources."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    AssetMaterialization,
    DagsterInstance,
    ScheduleEvaluationContext,
    SensorDefinition,
    SensorEvaluationContext,
    instance_for_test,
)
from dagster._core.definitions.instigation_logger import get_instigation_log_records
from dagster._core.definitions.sensor_definition import SensorExecutionData
from dagster._core.execution.build_resources import wrap_resources_for_execution

from ltr_assets.definitions import defs
from ltr_assets.defs.partitions import REGISTRY_VERSIONS
from ltr_assets.defs.schedules import ltr_daily_schedule
from ltr_assets.defs.sensors import (
    notify_run_failure,
    notify_run_success,
    registry_versions_sensor,
    reload_serving_sensor,
    tag_published_runs,
)
from ltr_assets.registry.local import LocalRegistry
from tests.support.artifacts import tiny_model_text, weights
from tests.support.dagster_results import a_success_and_a_failure_over_an_empty_day

_TICKS = itertools.count()


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with instance_for_test() as persistent:
        yield persistent


def _tick(
    sensor: SensorDefinition, instance: DagsterInstance, cursor: str | None = None
) -> SensorExecutionData:
    """One evaluation as the daemon runs it: with the instance's ref and a log key, so the
    tick's log lines are captured under it; closing the context closes the log stream. (No
    repository name: run-status sensors then match in-process runs, which carry none.)"""
    with SensorEvaluationContext(
        instance_ref=instance.get_ref(),
        cursor=cursor,
        log_key=["ltr", sensor.name, f"tick-{next(_TICKS)}"],
        instance=instance,
        sensor_name=sensor.name,
        repository_def=defs.get_repository_def(),
        resources=wrap_resources_for_execution(defs.resources),
    ) as context:
        return sensor.evaluate_tick(context)


def _logged(instance: DagsterInstance, tick: SensorExecutionData) -> list[str]:
    """The tick's log lines, as "View logs" reads them."""
    assert tick.log_key is not None, "nothing was logged for the tick"
    return [
        str(record.get("msg", "")) for record in get_instigation_log_records(instance, tick.log_key)
    ]


def test_an_asset_sensor_logs_its_skip_reason(ltr_home: Path, instance: DagsterInstance) -> None:
    instance.report_runless_asset_event(
        AssetMaterialization(asset_key=AssetKey("published_weights"), partition="2026-11-02")
    )
    tick = _tick(reload_serving_sensor, instance)
    assert tick.skip_message is not None and "LTR_SERVING_URL is not set" in tick.skip_message
    assert any(tick.skip_message in line for line in _logged(instance, tick))


def test_run_status_sensors_log_their_skip_reasons(
    ltr_home: Path, instance: DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ltr_home unsets NOTIFY_WEBHOOK_URL: the notification sensors skip, and the tagging
    sensor skips a successful run that published nothing; each reason is in its tick's log."""
    sensors = (notify_run_success, notify_run_failure, tag_published_runs)
    cursors = {s.name: _tick(s, instance).cursor for s in sensors}  # Dagster's own first tick
    a_success_and_a_failure_over_an_empty_day(instance, monkeypatch)
    for sensor in sensors:
        tick = _tick(sensor, instance, cursors[sensor.name])
        assert tick.skip_message is not None, sensor.name
        assert any(tick.skip_message in line for line in _logged(instance, tick)), sensor.name


def test_registry_versions_sensor_cursor_says_what_it_last_saw(
    ltr_home: Path, instance: DagsterInstance
) -> None:
    registry = LocalRegistry(ltr_home / "registry", ltr_home / "models" / "ltr_weights.json")
    now = datetime(2026, 11, 26, 2, 15, tzinfo=UTC)
    version = registry.publish(
        weights(0), tiny_model_text(), {"gated_scorer": "weights"}, "2026-11-25", now=now
    ).version

    first = _tick(registry_versions_sensor, instance)
    assert first.cursor == f"registry: 1 version, newest {version}"
    assert first.dynamic_partitions_requests
    assert any("last seen never" in line for line in _logged(instance, first))
    instance.add_dynamic_partitions(REGISTRY_VERSIONS, [version])  # what the daemon applies

    # In step: a skipped tick, its reason logged and its cursor (the list's column) unchanged.
    second = _tick(registry_versions_sensor, instance, first.cursor)
    assert second.skip_message == "the rollback pick-list holds the registry's 1 versions"
    assert second.cursor == first.cursor
    assert any(second.skip_message in line for line in _logged(instance, second))


def test_the_schedule_logs_why_a_tick_requested_nothing(
    ltr_home: Path, instance: DagsterInstance
) -> None:
    """A tick before LTR_START_DATE's first day has no partition to run: its reason is the
    tick's skip reason and a line in its log."""
    context = ScheduleEvaluationContext(
        instance_ref=instance.get_ref(),
        scheduled_execution_time=datetime(2025, 12, 1, 2, 15, tzinfo=UTC),
        log_key=["ltr", ltr_daily_schedule.name, "tick-early"],
        repository_def=defs.get_repository_def(),
    )
    with context:
        tick = ltr_daily_schedule.evaluate_tick(context)
    assert not tick.run_requests
    assert tick.skip_message is not None and "no daily partition 2025-11-30" in tick.skip_message
    assert tick.log_key is not None
    lines = [str(r.get("msg", "")) for r in get_instigation_log_records(instance, tick.log_key)]
    assert any(tick.skip_message in line for line in lines)
