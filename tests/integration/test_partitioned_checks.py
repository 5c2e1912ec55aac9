"""Asset checks are partitioned like their assets: the instance keeps one result per check per
run, for the run's day, and a check's history reads by day. published_weights' live_version_age
is recorded for every day it materializes, a refused one too: a WARN when nothing is live or the
live version is older than LTR_LIVE_MAX_AGE_DAYS, which freshness cannot show."""

from __future__ import annotations

from pathlib import Path

import pytest
from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    AssetPartitionStatus,
    DagsterInstance,
)
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import (
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
    AssetCheckExecutionResolvedStatus,
)
from dagster._core.storage.asset_check_state import AssetCheckState, bulk_update_asset_check_state

from ltr_assets.definitions import build_definitions
from ltr_assets.defs.partitions import daily_partitions
from tests.conftest import write_simulated_events
from tests.support.dagster_results import materialization_metadata

DAYS = ("2026-11-01", "2026-11-02")
LIVE_AGE = AssetCheckKey.from_user_string("published_weights:live_version_age")


def _records(
    instance: DagsterInstance, key: AssetCheckKey, day: str
) -> list[AssetCheckExecutionRecord]:
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=50)
    return [record for record in history if record.partition == day]


def _days_by_status(instance: DagsterInstance, key: AssetCheckKey) -> dict[str, set[str]]:
    """The check's status per day as the UI's partitions view computes it."""
    state = bulk_update_asset_check_state(
        instance, [(key, daily_partitions)], {key: AssetCheckState.empty()}
    )[key]
    return {
        status.value: set(subset.subset_value.get_partition_keys())
        for status, subset in state.subsets.items()
        if status
        in (AssetCheckExecutionResolvedStatus.SUCCEEDED, AssetCheckExecutionResolvedStatus.FAILED)
    }


def test_each_run_records_one_result_per_check_for_its_partition(
    ltr_home: Path, small_data_gate: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=3)  # day 3: see the end
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
                # Not in the run's plan: published_weights records its checks itself, in its
                # run: live_version_age for every day, the others only for a day it published
                # (the gate refused day 1, so retention has no result for it).
                by_day = [r for r in history if r.partition == day]
                recorded = key == LIVE_AGE or day != DAYS[0]
                assert len(by_day) == (1 if recorded else 0), (key, day, by_day)
                assert all(r.run_id == result.run_id for r in by_day), (key, day, by_day)
                if key != LIVE_AGE and by_day:
                    assert by_day[0].status == AssetCheckExecutionRecordStatus.SUCCEEDED, by_day
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

    # live_version_age. Day 1, refused with nothing live yet: a WARN saying so, naming the check
    # the gate refused on. Day 2 published the version live now (trained on day 2: age 0).
    [nothing_live] = _records(instance, LIVE_AGE, DAYS[0])
    assert nothing_live.status == AssetCheckExecutionRecordStatus.FAILED
    evaluation = nothing_live.evaluation
    assert evaluation is not None and evaluation.severity == AssetCheckSeverity.WARN
    assert (evaluation.description or "").startswith(
        "nothing is live on 2026-11-01: no version has gone live yet; 2026-11-01's candidate "
        "was refused by the gate: min_samples: "
    )
    version = meta["version"]
    [fresh] = _records(instance, LIVE_AGE, DAYS[1])
    assert fresh.status == AssetCheckExecutionRecordStatus.SUCCEEDED
    assert fresh.evaluation is not None and fresh.evaluation.severity == AssetCheckSeverity.WARN
    assert {k: v.value for k, v in fresh.evaluation.metadata.items()} == {
        "measured_on": DAYS[1],
        "live_version": version,
        "live_partition": DAYS[1],
        "age_days": 0,
        "limit": 3,  # LTR_LIVE_MAX_AGE_DAYS' default
    }

    # Day 3 refused (a gate it cannot pass) with day 2's version still live, a day older than
    # a limit of 0 allows: published_weights[2026-11-03] materialized (freshness is satisfied),
    # and its live_version_age warns, naming the live version, its age and the refusal.
    monkeypatch.setenv("LTR_MIN_SAMPLES", "1000000")
    monkeypatch.setenv("LTR_LIVE_MAX_AGE_DAYS", "0")
    refused = job.execute_in_process(partition_key="2026-11-03", instance=instance)
    assert refused.success
    assert materialization_metadata(
        instance.get_latest_materialization_event(AssetKey("published_weights"))
    )["outcome"].startswith("not published: gate refused: min_samples: ")
    [stale] = _records(instance, LIVE_AGE, "2026-11-03")
    assert stale.status == AssetCheckExecutionRecordStatus.FAILED and stale.run_id == refused.run_id
    assert stale.evaluation is not None and stale.evaluation.severity == AssetCheckSeverity.WARN
    assert (stale.evaluation.description or "").startswith(
        f"live version {version} was trained on 2026-11-02, 1 day before 2026-11-03 (limit 0): "
        "no version of the nights since went live; 2026-11-03's candidate was refused by the "
        "gate: min_samples: "
    )
    assert {k: v.value for k, v in stale.evaluation.metadata.items()} == {
        "measured_on": "2026-11-03",
        "live_version": version,
        "live_partition": DAYS[1],
        "age_days": 1,
        "limit": 0,
    }

    # Executed on request (a UI run with the check selected), it reads the day's record back
    # and judges it against the limit set now.
    monkeypatch.setenv("LTR_LIVE_MAX_AGE_DAYS", "1")
    check_only = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_selection=set(), asset_check_selection={LIVE_AGE}
    )
    assert check_only.execute_in_process(partition_key="2026-11-03", instance=instance).success
    on_request, _ = _records(instance, LIVE_AGE, "2026-11-03")  # newest first
    assert on_request.status == AssetCheckExecutionRecordStatus.SUCCEEDED
    assert on_request.evaluation is not None
    assert (on_request.evaluation.description or "").startswith(
        f"live version {version} was trained on 2026-11-02, 1 day before 2026-11-03 (limit 1); "
        "2026-11-03's candidate was refused by the gate: min_samples: "
    )

    # The UI's partitions view counts the results published_weights recorded itself (they
    # target its materialization of the day): day 1 and day 3 failed, day 2 passed.
    assert _days_by_status(instance, LIVE_AGE) == {
        "SUCCEEDED": {DAYS[1], "2026-11-03"},  # day 3 passed on request, against a limit of 1
        "FAILED": {DAYS[0]},
    }

    # A backfill of an old day measures the live version's age at the newest night run, not at
    # the old day (where the live version would look newer than the day, and the check's latest
    # result would pass while the live version is stale).
    monkeypatch.setenv("LTR_LIVE_MAX_AGE_DAYS", "0")
    assert job.execute_in_process(partition_key=DAYS[0], instance=instance).success
    backfilled, _ = _records(instance, LIVE_AGE, DAYS[0])
    assert backfilled.status == AssetCheckExecutionRecordStatus.FAILED
    assert backfilled.evaluation is not None
    assert (backfilled.evaluation.description or "").startswith(
        f"live version {version} was trained on 2026-11-02, 1 day before 2026-11-03, the newest "
        "night run (limit 0): no version of the nights since went live; 2026-11-01's candidate "
        "was refused by the gate: min_samples: "
    )
    assert backfilled.evaluation.metadata["measured_on"].value == "2026-11-03"
