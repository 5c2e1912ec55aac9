"""The WARN check `s3_published` as the instance records it (what the UI shows): a result only
for a day published_weights published, a pass when S3 accepted it, a WARN failure when S3 was
down, and no check at all when S3 is not configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetCheckKey, AssetCheckSeverity, AssetKey, DagsterInstance
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)

from ltr_assets.definitions import build_definitions
from tests.conftest import write_simulated_events
from tests.support.dagster_results import materialization_metadata
from tests.support.kafka_broker import free_port

S3_CHECK = AssetCheckKey(AssetKey("published_weights"), "s3_published")
RETENTION = AssetCheckKey(AssetKey("published_weights"), "retention")


def _records(instance: DagsterInstance, day: str) -> list[AssetCheckExecutionRecord]:
    history = instance.event_log_storage.get_asset_check_execution_history(S3_CHECK, limit=50)
    return [record for record in history if record.partition == day]


def test_only_published_days_have_a_result_passed_or_warned(
    s3_env: str, ltr_home: Path, monkeypatch: pytest.MonkeyPatch, small_data_gate: None
) -> None:
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=3)
    defs = build_definitions()  # loaded with S3 configured: the check is declared
    assert S3_CHECK in defs.get_repository_def().asset_graph.asset_check_keys
    job = defs.resolve_job_def("ltr_daily_job")
    assert S3_CHECK not in job.asset_layer.asset_graph.asset_check_keys  # never planned there
    instance = DagsterInstance.ephemeral()

    # Day 1: the gate refuses, published_weights does not run: no s3_published record at all
    # (no planned-never-executed row the UI would show as "Execution failed").
    refused = job.execute_in_process(
        partition_key="2026-11-01", instance=instance, raise_on_error=False
    )
    assert not refused.success
    assert _records(instance, "2026-11-01") == []

    # Day 2: S3 accepts the publish: one passed WARN check for the day.
    published = job.execute_in_process(partition_key="2026-11-02", instance=instance)
    assert published.success
    [passed] = _records(instance, "2026-11-02")
    assert passed.status == AssetCheckExecutionRecordStatus.SUCCEEDED
    assert passed.evaluation is not None and passed.evaluation.severity == AssetCheckSeverity.WARN
    meta = materialization_metadata(
        instance.get_latest_materialization_event(AssetKey("published_weights"))
    )
    assert meta["s3"] == "published" and meta["s3_published"] is True

    # A refused re-run of day 1 adds nothing, and the last result stays day 2's pass.
    job.execute_in_process(partition_key="2026-11-01", instance=instance, raise_on_error=False)
    assert _records(instance, "2026-11-01") == []
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key([S3_CHECK])
    assert latest[S3_CHECK].status == AssetCheckExecutionRecordStatus.SUCCEEDED

    # Day 3 with S3 down: the local publish stands, the check fails with WARN severity.
    monkeypatch.setenv("S3_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens
    outage = job.execute_in_process(partition_key="2026-11-03", instance=instance)
    assert outage.success
    [failed] = _records(instance, "2026-11-03")
    assert failed.status == AssetCheckExecutionRecordStatus.FAILED
    assert failed.evaluation is not None and failed.evaluation.severity == AssetCheckSeverity.WARN
    assert "S3 publish failed" in (failed.evaluation.description or "")
    # The retention check still runs in the daily job, inline, for each published day.
    retention = instance.event_log_storage.get_asset_check_execution_history(RETENTION, limit=10)
    assert {r.partition for r in retention if r.status.value == "SUCCEEDED"} >= {
        "2026-11-02",
        "2026-11-03",
    }

    # Executed on request, the check reads the record published_weights left for its day.
    monkeypatch.setenv("S3_ENDPOINT", s3_env)
    check_only = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection={S3_CHECK}
    )
    again = check_only.execute_in_process(partition_key="2026-11-02", instance=instance)
    assert again.success
    assert [r.status for r in _records(instance, "2026-11-02")] == [
        AssetCheckExecutionRecordStatus.SUCCEEDED,
        AssetCheckExecutionRecordStatus.SUCCEEDED,
    ]
