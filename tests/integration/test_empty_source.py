"""raw_events refuses a source that gives nothing for the day, naming it, unless the day is
allowed to be empty (LTR_ALLOW_EMPTY_DAYS); a variable in LTR_AUDIT_LOG is expanded; the
serving log (LTR_SERVING_LOG_DIR) is read beside the audit log."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance

from ltr_assets.definitions import defs
from tests.support.dagster_results import materialization_metadata
from tests.unit.test_events import FLAT

DAY = "2026-11-01"


def _run(instance: DagsterInstance):
    job = defs.resolve_job_def("ltr_daily_job")
    return job.execute_in_process(
        partition_key=DAY, instance=instance, asset_selection=[AssetKey("raw_events")],
        raise_on_error=False,
    )  # fmt: skip


def _failure(result) -> str:
    (failure,) = [e for e in result.all_events if e.is_step_failure]
    message: str = failure.step_failure_data.error.message
    return message


def test_a_source_matching_nothing_fails_the_step_naming_it_unless_the_day_is_allowed(
    ltr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    parquet = ltr_home / "lake" / "raw_events" / f"{DAY}.parquet"
    instance = DagsterInstance.ephemeral()

    monkeypatch.setenv("LTR_AUDIT_LOG", str(ltr_home / "events"))  # a folder
    folder = _run(instance)
    assert not folder.success and not parquet.exists()
    assert f"the audit log '{ltr_home / 'events'}' is a folder" in _failure(folder)

    monkeypatch.setenv("EVENTS_ROOT", str(ltr_home / "events"))
    monkeypatch.setenv("LTR_AUDIT_LOG", "${EVENTS_ROOT}/audit-*.jsonl")  # matches no file
    nothing = _run(instance)
    assert not nothing.success and not parquet.exists()
    message = _failure(nothing)
    assert f"no record of {DAY} from the audit log '{ltr_home}/events/audit-*.jsonl'" in message
    assert "no file matches it" in message and f"LTR_ALLOW_EMPTY_DAYS={DAY}" in message

    monkeypatch.setenv("LTR_ALLOW_EMPTY_DAYS", DAY)
    allowed = _run(instance)
    assert allowed.success and parquet.exists()
    event = instance.get_latest_materialization_event(AssetKey("raw_events"))
    metadata = materialization_metadata(event)
    assert metadata["read"] == 0 and metadata["empty_allowed"] is True


def test_the_serving_log_is_read_beside_the_audit_log(
    ltr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def event(i: int) -> str:
        return json.dumps({**FLAT, "event_id": f"e-{i}", "timestamp": f"{DAY}T10:00:00Z"})

    (ltr_home / "events" / "audit.jsonl").write_text(event(1) + "\n" + event(2) + "\n")
    folder = ltr_home / "elsewhere" / DAY
    folder.mkdir(parents=True)
    (folder / "part-0.jsonl").write_text(event(2) + "\n" + event(3) + "\n")
    secret = ltr_home / "secret.env"
    secret.write_text("LTR_RELOAD_TOKEN=supersecret-reload\n")
    (folder / "zz.jsonl").symlink_to(secret)  # planted: skipped, named, never read
    monkeypatch.setenv("LTR_SERVING_LOG_DIR", str(ltr_home / "elsewhere"))
    instance = DagsterInstance.ephemeral()
    result = _run(instance)
    assert result.success
    metadata = materialization_metadata(
        instance.get_latest_materialization_event(AssetKey("raw_events"))
    )
    assert metadata["source"] == "audit_log"
    assert (metadata["read"], metadata["read_from_serving_log"]) == (4, 2)
    assert (metadata["accepted"], metadata["duplicates"]) == (3, 1)
    assert metadata["skipped_files"] == {str(folder / "zz.jsonl"): "a symbolic link"}
    # what the operator reads names both sources, not the audit log alone
    assert metadata["read_from"] == "audit_log (2 records) and the serving log (2)"
    [fallback] = [
        e.event_specific_data
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION"
        and e.event_specific_data.check_name == "source_fallback"
    ]
    assert fallback.description == "read from audit_log (2 records) and the serving log (2)"
