"""Asset checks are partitioned like their assets: the instance keeps one result per check per
run, for the run's day, and a check's history reads by day."""

from __future__ import annotations

from pathlib import Path

from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    AssetPartitionStatus,
    DagsterInstance,
)
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from ltr_assets.definitions import build_definitions
from ltr_assets.defs.partitions import daily_partitions
from tests.conftest import write_simulated_events
from tests.support.dagster_results import materialization_metadata

DAYS = ("2026-11-01", "2026-11-02")


def test_each_run_records_one_result_per_check_for_its_partition(
    ltr_home: Path, small_data_gate: None
) -> None:
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=2)
    defs = build_definitions()  # S3 is not configured (ltr_home unsets it): no S3 check
    job = defs.resolve_job_def("ltr_daily_job")
    instance = DagsterInstance.ephemeral()
    runs = {
        day: job.execute_in_process(partition_key=day, instance=instance, raise_on_error=False)
        for day in DAYS
    }
    # Day 1 alone is refused by the gate (too few samples); day 2 passes and is published.
    # Both runs succeed: a refusal is the gate's decision, recorded, not a failure.
    assert runs[DAYS[0]].success and runs[DAYS[1]].success
    min_samples = AssetCheckKey.from_user_string("ltr_model:min_samples")
    (day1,) = [
        r
        for r in instance.event_log_storage.get_asset_check_execution_history(min_samples, limit=5)
        if r.partition == DAYS[0]
    ]
    assert day1.status == AssetCheckExecutionRecordStatus.FAILED
    evaluation = day1.evaluation
    assert evaluation is not None and evaluation.severity == AssetCheckSeverity.WARN
    assert evaluation.blocking
    # What the lineage and the partitions show: every day of every asset materialized, none
    # failed (a refused day planned in a failed run would be a failed partition).
    for asset in ("raw_events", "feature_matrix", "ltr_model", "published_weights"):
        status = instance.get_status_by_partition(AssetKey(asset), list(DAYS), daily_partitions)
        assert status == dict.fromkeys(DAYS, AssetPartitionStatus.MATERIALIZED), (asset, status)

    repo = defs.get_repository_def()
    for key in repo.asset_graph.asset_check_keys:
        spec = repo.asset_graph.get_check_spec(key)
        assert spec.partitions_def is not None, key
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
        by_run = {record.run_id: record for record in history}
        assert len(by_run) == len(history), f"{key}: more than one execution in a run"
        for day, result in runs.items():
            if key.asset_key.to_user_string() == "published_weights":
                # Not in the run's plan: published_weights records its checks itself, for the
                # day it published, and the gate refused day 1, so that day has none.
                by_day = [r for r in history if r.partition == day]
                assert len(by_day) == (0 if day == DAYS[0] else 1), (key, day, by_day)
                assert all(r.status == AssetCheckExecutionRecordStatus.SUCCEEDED for r in by_day), (
                    by_day
                )
                continue
            record = by_run.get(result.run_id)
            assert record is not None, (key, day)
            assert record.partition == day, (key, record)
            assert record.status in (
                AssetCheckExecutionRecordStatus.SUCCEEDED,
                AssetCheckExecutionRecordStatus.FAILED,
            ), (key, day, record.status)

    # S3 is not configured: no s3_published check, no result of one, and the publication says
    # so rather than passing a check.
    s3 = AssetCheckKey.from_user_string("published_weights:s3_published")
    assert s3 not in repo.asset_graph.asset_check_keys
    assert instance.event_log_storage.get_asset_check_execution_history(s3, limit=10) == []
    published = instance.get_latest_materialization_event(AssetKey("published_weights"))
    meta = materialization_metadata(published)
    assert meta["s3"] == "not configured" and "s3_published" not in meta

    # The gate's history reads by day: min_samples failed on day 1 and passed on day 2.
    min_samples = AssetCheckKey.from_user_string("ltr_model:min_samples")
    latest = {
        day: instance.event_log_storage.get_latest_asset_check_execution_by_key(
            [min_samples], partition_filter=PartitionKeyFilter(key=day)
        )[min_samples].status
        for day in DAYS
    }
    assert latest == {
        DAYS[0]: AssetCheckExecutionRecordStatus.FAILED,
        DAYS[1]: AssetCheckExecutionRecordStatus.SUCCEEDED,
    }
