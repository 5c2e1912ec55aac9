"""The demo's runs are launched from the code location, as scheduled runs are: on a real
Dagster instance, each run carries the location's origin (so the UI lists it in the timeline
and the job's Runs tab, and re-executes it without a version warning), its partition, and the
tags operators filter on: ltr/outcome and the one-line ltr/reason."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from dagster import DagsterInstance, DagsterRun, RunsFilter
from dagster._core.storage.tags import PARTITION_NAME_TAG

from ltr_assets.defs.launch import LOCATION_NAME, LocationLauncher
from ltr_assets.defs.sensors import OUTCOME_TAG, REASON_MAX_CHARS, REASON_TAG
from ltr_assets.registry.local import LocalRegistry
from ltr_core.settings import Settings
from tests.conftest import write_simulated_events
from tests.support.dagster_results import run_by_id

ROOT = Path(__file__).resolve().parents[2]
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def test_the_location_is_named_as_workspace_yaml_names_it() -> None:
    """workspace.yaml gives no location_name, so Dagster names the location after the module:
    the demo's runs must be grouped under that name."""
    (entry,) = yaml.safe_load((ROOT / "workspace.yaml").read_text())["load_from"]
    module = entry["python_module"]
    assert module["module_name"] == LOCATION_NAME
    assert module.get("location_name", LOCATION_NAME) == LOCATION_NAME
    assert (ROOT / module["working_directory"]).resolve() == ROOT


def _launched(
    launcher: LocationLauncher, instance: DagsterInstance, job: str, day: str
) -> DagsterRun:
    result = launcher.launch(job, day, QUIET)
    run = run_by_id(instance, result.run_id)
    assert run.remote_job_origin is not None and run.job_code_origin is not None
    assert run.remote_job_origin.location_name == LOCATION_NAME
    assert run.remote_job_origin.job_name == job
    assert run.job_code_origin.repository_origin.code_pointer.module == LOCATION_NAME  # type: ignore[attr-defined]
    assert run.tags["dagster/code_location"] == LOCATION_NAME
    assert run.tags[PARTITION_NAME_TAG] == day
    assert run.tags["ltr/pipeline"] == "daily"  # the job's own tags, as a scheduled run has
    # the UI's "Re-execute" compares the run's snapshot with the location's: the same
    assert run.job_snapshot_id == launcher.remote_job(job).identifying_job_snapshot_id
    return run


def test_launched_runs_carry_the_origin_partition_outcome_and_reason(
    ltr_home: Path, small_data_gate: None
) -> None:
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=3)
    instance = DagsterInstance.ephemeral()
    with LocationLauncher(instance) as launcher:
        # Day 1 alone fails min_samples: refused by the gate, and the reason says so.
        refused = _launched(launcher, instance, "ltr_daily_job", "2026-11-01")
        assert refused.is_success and refused.tags[OUTCOME_TAG] == "gate_refused"
        # (one day's few test lists cannot show the clicks' signal either: click_signal too)
        reason = refused.tags[REASON_TAG]
        assert re.fullmatch(r"gate refused: min_samples: \d+ vs 100(; click_signal: .*)?", reason)

        # Day 2 publishes: the reason names the version published_weights materialized.
        published = _launched(launcher, instance, "ltr_daily_job", "2026-11-02")
        settings = Settings.from_env()
        registry = LocalRegistry(settings.registry_dir, None, settings.artifact_keys)
        assert published.tags[OUTCOME_TAG] == "published"
        assert published.tags[REASON_TAG] == f"published {registry.latest_version()} (live)"

        # A label refresh is launched alike; like scheduled ones, it carries no outcome tag.
        refresh = _launched(launcher, instance, "ltr_label_refresh_job", "2026-11-01")
        assert refresh.is_success and OUTCOME_TAG not in refresh.tags

        # Day 3 with day 2's matrix corrupted: ltr_model raises, a crash, with its step.
        (ltr_home / "lake" / "feature_matrix" / "2026-11-02.parquet").write_bytes(b"not parquet")
        crashed = _launched(launcher, instance, "ltr_daily_job", "2026-11-03")
        assert crashed.tags[OUTCOME_TAG] == "crashed"
        assert crashed.tags[REASON_TAG].startswith("crashed: ltr_model: ")
        # the user's exception, not Dagster's wrapper around it
        assert "Error occurred while executing" not in crashed.tags[REASON_TAG]
        # A refresh that crashes is tagged like a crashed night: the runs list shows it.
        (ltr_home / "lake" / "raw_events" / "2026-11-02.parquet").write_bytes(b"not parquet")
        crashed_refresh = launcher.launch("ltr_label_refresh_job", "2026-11-02", QUIET)
        assert not crashed_refresh.success
        tags = run_by_id(instance, crashed_refresh.run_id).tags
        assert tags[OUTCOME_TAG] == "crashed"
        assert tags[REASON_TAG].startswith("crashed: feature_matrix: ")
    for run in (refused, published, crashed):
        assert "\n" not in run.tags[REASON_TAG] and len(run.tags[REASON_TAG]) <= REASON_MAX_CHARS

    # what an operator filters on in the runs list
    gate_refused = instance.get_runs(RunsFilter(tags={OUTCOME_TAG: "gate_refused"}))
    assert [r.run_id for r in gate_refused] == [refused.run_id]
    in_location = instance.get_runs(RunsFilter(tags={"dagster/code_location": LOCATION_NAME}))
    assert len(in_location) == 5
