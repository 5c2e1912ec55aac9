"""Run-status notifications posted to a local Slack-compatible receiver."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import DagsterInstance, build_run_status_sensor_context

from ltr_assets.definitions import defs
from ltr_assets.defs.sensors import notify_run_success
from tests.conftest import write_simulated_events
from tests.support.dagster_results import run_by_id
from tests.support.http_receiver import http_receiver


def _run_event(result, kind: str):
    return next(e for e in result.all_events if e.event_type_value == kind)


def test_published_and_refused_nights_reach_the_webhook_told_apart(
    ltr_home: Path, monkeypatch: pytest.MonkeyPatch, small_data_gate: None
) -> None:
    """A refused night is a successful run: the success sensor sees it and says it was refused,
    with the failing check (crashes: tests/integration/test_run_outcome.py)."""
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=2)
    job = defs.resolve_job_def("ltr_daily_job")
    instance = DagsterInstance.ephemeral()
    refused = job.execute_in_process(partition_key="2026-11-01", instance=instance)
    passed = job.execute_in_process(partition_key="2026-11-02", instance=instance)

    with http_receiver() as receiver:
        monkeypatch.setenv("NOTIFY_WEBHOOK_URL", receiver.url)
        for result in (refused, passed):
            notify_run_success(
                build_run_status_sensor_context(
                    sensor_name=notify_run_success.name,
                    dagster_event=_run_event(result, "PIPELINE_SUCCESS"),
                    dagster_instance=instance,
                    dagster_run=run_by_id(instance, result.run_id),
                    resources=defs.resources,
                )
            )
    refusal, success = (m["text"] for m in receiver.messages)
    assert refusal.startswith(":no_entry: ltr_daily_job [2026-11-01]")
    assert "gate refused: min_samples: " in refusal and "previous version stays live" in refusal
    assert success.startswith(":white_check_mark: ltr_daily_job [2026-11-02] succeeded")
