"""The WARN checks `s3_published` and `retention` as the instance records them (what the UI
shows): a result only for a day published_weights published, a pass when S3 accepted it (or
retention deleted what it should), a WARN failure when S3 was down (or a deletion failed), and
no s3_published check at all when S3 is not configured."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import AssetCheckKey, AssetCheckSeverity, AssetKey, DagsterInstance
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)

from ltr_assets.definitions import build_definitions
from ltr_assets.registry import publication
from ltr_assets.registry.publication import PruneReport
from tests.conftest import write_simulated_events
from tests.support.dagster_results import materialization_metadata
from tests.support.kafka_broker import free_port

S3_CHECK = AssetCheckKey(AssetKey("published_weights"), "s3_published")
RETENTION = AssetCheckKey(AssetKey("published_weights"), "retention")


def _records(
    instance: DagsterInstance, day: str, key: AssetCheckKey = S3_CHECK
) -> list[AssetCheckExecutionRecord]:
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=50)
    return [record for record in history if record.partition == day]


def test_only_published_days_have_a_result_passed_or_warned(
    s3_env: str, ltr_home: Path, monkeypatch: pytest.MonkeyPatch, small_data_gate: None
) -> None:
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=3)
    defs = build_definitions()  # loaded with S3 configured: the check is declared
    assert S3_CHECK in defs.get_repository_def().asset_graph.asset_check_keys
    job = defs.resolve_job_def("ltr_daily_job")
    for key in (S3_CHECK, RETENTION):
        assert key in defs.get_repository_def().asset_graph.asset_check_keys
        assert key not in job.asset_layer.asset_graph.asset_check_keys  # never planned there
    instance = DagsterInstance.ephemeral()

    # Day 1: the gate refuses, published_weights records "not published": no s3_published
    # record at all (no planned-never-executed row the UI would show as "Execution failed").
    refused = job.execute_in_process(
        partition_key="2026-11-01", instance=instance, raise_on_error=False
    )
    assert refused.success
    refusal = materialization_metadata(
        instance.get_latest_materialization_event(AssetKey("published_weights"))
    )
    assert refusal["published"] is False and "s3" not in refusal
    assert _records(instance, "2026-11-01") == []
    assert _records(instance, "2026-11-01", RETENTION) == []

    # Day 2: S3 accepts the publish: one passed WARN check for the day.
    published = job.execute_in_process(partition_key="2026-11-02", instance=instance)
    assert published.success
    [passed] = _records(instance, "2026-11-02")
    assert passed.status == AssetCheckExecutionRecordStatus.SUCCEEDED
    assert passed.evaluation is not None and passed.evaluation.severity == AssetCheckSeverity.WARN
    assert passed.run_id == published.run_id  # a result of the publishing run, linked to it
    meta = materialization_metadata(
        instance.get_latest_materialization_event(AssetKey("published_weights"))
    )
    assert meta["s3"] == "published" and meta["s3_published"] is True

    # A refused re-run of day 1 adds nothing, and the last result stays day 2's pass.
    job.execute_in_process(partition_key="2026-11-01", instance=instance, raise_on_error=False)
    assert _records(instance, "2026-11-01") == []
    assert _records(instance, "2026-11-01", RETENTION) == []
    latest = instance.event_log_storage.get_latest_asset_check_execution_by_key([S3_CHECK])
    assert latest[S3_CHECK].status == AssetCheckExecutionRecordStatus.SUCCEEDED

    # Day 3 with S3 down: the local publish stands, the check fails with WARN severity.
    monkeypatch.setenv("S3_ENDPOINT", f"http://127.0.0.1:{free_port()}")  # nothing listens
    # ... and a version retention could not delete (how the registry reports one is tested in
    # tests/unit/test_registry_hardening.py; here, only how the night records it).
    stuck = PruneReport([], failed={"20261101T000000Z-0000": "PermissionError: read-only"})
    monkeypatch.setattr(publication, "prune_versions", lambda *_: stuck)
    outage = job.execute_in_process(partition_key="2026-11-03", instance=instance)
    assert outage.success
    [failed] = _records(instance, "2026-11-03")
    assert failed.status == AssetCheckExecutionRecordStatus.FAILED
    assert failed.evaluation is not None and failed.evaluation.severity == AssetCheckSeverity.WARN
    assert "S3 publish failed" in (failed.evaluation.description or "")
    # Retention, recorded the same way: passed on day 2, a WARN failure naming the version it
    # could not delete on day 3.
    [kept] = _records(instance, "2026-11-02", RETENTION)
    assert kept.status == AssetCheckExecutionRecordStatus.SUCCEEDED
    [incomplete] = _records(instance, "2026-11-03", RETENTION)
    assert incomplete.status == AssetCheckExecutionRecordStatus.FAILED
    for record in (kept, incomplete):
        assert record.evaluation is not None
        assert record.evaluation.severity == AssetCheckSeverity.WARN
    description = incomplete.evaluation.description if incomplete.evaluation else ""
    assert "20261101T000000Z-0000" in (description or "")

    # Executed on request, the check reads the record published_weights left for its day.
    monkeypatch.setenv("S3_ENDPOINT", s3_env)
    check_only = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection={S3_CHECK, RETENTION}
    )
    again = check_only.execute_in_process(partition_key="2026-11-02", instance=instance)
    assert again.success
    for key in (S3_CHECK, RETENTION):
        assert [r.status for r in _records(instance, "2026-11-02", key)] == [
            AssetCheckExecutionRecordStatus.SUCCEEDED,
            AssetCheckExecutionRecordStatus.SUCCEEDED,
        ]
    # Day 1, refused: its record says nothing was published, so each check passes saying so
    # (a UI run of published_weights with its checks must not fail on a refusal).
    refused_again = check_only.execute_in_process(partition_key="2026-11-01", instance=instance)
    assert refused_again.success
    for key in (S3_CHECK, RETENTION):
        [record] = _records(instance, "2026-11-01", key)
        assert record.status == AssetCheckExecutionRecordStatus.SUCCEEDED
        assert record.evaluation is not None and (record.evaluation.description or "").startswith(
            "nothing to check: not published: gate refused: min_samples: "
        )
    # Day 2 published again (a backfill re-run): its own results beside the first ones.
    republished = job.execute_in_process(partition_key="2026-11-02", instance=instance)
    assert republished.success
    assert republished.run_id in {r.run_id for r in _records(instance, "2026-11-02", RETENTION)}
    assert len(_records(instance, "2026-11-02", RETENTION)) == 3
    # Day 3's retention report, read back from its materialization: the same WARN failure.
    check_only.execute_in_process(partition_key="2026-11-03", instance=instance)
    assert [r.status for r in _records(instance, "2026-11-03", RETENTION)] == [
        AssetCheckExecutionRecordStatus.FAILED,
        AssetCheckExecutionRecordStatus.FAILED,
    ]
