"""Reading what a Dagster run did, for assertions."""

from __future__ import annotations

from typing import Any

from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRun, EventLogEntry


def check_results(result: Any) -> dict[str, bool]:
    """Asset-check name -> passed, for every check evaluated in the run."""
    return {
        e.event_specific_data.check_name: e.event_specific_data.passed
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
    }


def check_metadata(result: Any, check_name: str) -> dict[str, Any]:
    """The metadata of one asset check's evaluation in the run."""
    for e in result.all_events:
        data = e.event_specific_data
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and data.check_name == check_name:
            return dict(data.metadata)
    raise KeyError(check_name)


def run_materialization_metadata(
    instance: DagsterInstance, run_id: str, asset: str
) -> dict[str, Any]:
    """An asset's materialization metadata in the run, in the order the UI lists it."""
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION):
        materialization = entry.asset_materialization
        if materialization is not None and materialization.asset_key == AssetKey(asset):
            return {k: v.value for k, v in materialization.metadata.items()}
    raise AssertionError(f"{asset} did not materialize")


def materialization_metadata(event: EventLogEntry | None) -> dict[str, Any]:
    """The metadata values of a materialization event (as instance.get_latest_... returns it),
    which the test expects to exist."""
    assert event is not None and event.asset_materialization is not None, event
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def run_by_id(instance: DagsterInstance, run_id: str) -> DagsterRun:
    """A run the test has just executed (so it is stored)."""
    run = instance.get_run_by_id(run_id)
    assert run is not None, run_id
    return run


def a_success_and_a_failure_over_an_empty_day(
    instance: DagsterInstance, monkeypatch: Any
) -> tuple[Any, Any]:
    """Two finished runs of ltr_daily_job for 2026-11-01 over an empty audit log (the day
    allowed to be empty): raw_events alone succeeds; the whole job, with a gate threshold it
    cannot read, fails (an empty window alone would be a refusal, a successful run). What the
    run-status sensors' skip tests need: one run of each status."""
    import os

    from dagster import AssetKey

    from ltr_assets.definitions import defs

    monkeypatch.setenv("LTR_ALLOW_EMPTY_DAYS", "2026-11-01")
    job = defs.resolve_job_def("ltr_daily_job")
    ok = job.execute_in_process(
        partition_key="2026-11-01", instance=instance, asset_selection=[AssetKey("raw_events")]
    )
    threshold = os.environ.get("LTR_NDCG_MIN")
    monkeypatch.setenv("LTR_NDCG_MIN", "not a number")
    failed = job.execute_in_process(
        partition_key="2026-11-01", instance=instance, raise_on_error=False
    )
    if threshold is None:
        monkeypatch.delenv("LTR_NDCG_MIN")
    else:
        monkeypatch.setenv("LTR_NDCG_MIN", threshold)
    assert ok.success and not failed.success
    return ok, failed
