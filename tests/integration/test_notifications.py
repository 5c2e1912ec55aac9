"""Run-status notifications posted to a local Slack-compatible receiver."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterInstance, build_run_status_sensor_context

from ltr_assets.definitions import defs
from ltr_assets.defs.sensors import notify_run_failure, notify_run_success
from tests.conftest import write_simulated_events
from tests.support.dagster_results import run_by_id
from tests.support.http_receiver import http_receiver


def _run_event(result, kind: str):
    return next(e for e in result.all_events if e.event_type_value == kind)


def test_success_and_failure_messages_reach_the_webhook(
    ltr_home: Path, monkeypatch: pytest.MonkeyPatch, small_data_gate: None
) -> None:
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=2)
    job = defs.resolve_job_def("ltr_daily_job")
    instance = DagsterInstance.ephemeral()
    failed = job.execute_in_process(partition_key="2026-11-01", instance=instance,
                                    raise_on_error=False)  # fmt: skip
    passed = job.execute_in_process(partition_key="2026-11-02", instance=instance)
    assert not failed.success and passed.success

    with http_receiver() as receiver:
        monkeypatch.setenv("NOTIFY_WEBHOOK_URL", receiver.url)
        notify_run_failure(
            build_run_status_sensor_context(
                sensor_name=notify_run_failure.name,
                dagster_event=_run_event(failed, "PIPELINE_FAILURE"),
                dagster_instance=instance,
                dagster_run=run_by_id(instance, failed.run_id),
                resources=defs.resources,
            ).for_run_failure()
        )
        notify_run_success(
            build_run_status_sensor_context(
                sensor_name=notify_run_success.name,
                dagster_event=_run_event(passed, "PIPELINE_SUCCESS"),
                dagster_instance=instance,
                dagster_run=run_by_id(instance, passed.run_id),
                resources=defs.resources,
            )
        )
    failure, success = (m["text"] for m in receiver.messages)
    assert failure.startswith(":no_entry: ltr_daily_job [2026-11-01]")
    assert "gate refused: min_samples" in failure
    assert success.startswith(":white_check_mark: ltr_daily_job [2026-11-02] succeeded")
