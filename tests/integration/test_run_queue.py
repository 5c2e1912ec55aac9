"""The run queue of the repository's dagster.yaml, through Dagster's own queue daemon: one
pipeline run at a time, however it was launched, and nothing else held back."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import AssetKey, DagsterInstance, DagsterRunStatus
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.test_utils import instance_for_test
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import ModuleTarget

from ltr_assets.defs.concurrency import PIPELINE_POOL, holds_pipeline_pool
from ltr_assets.defs.launch import LOCATION_NAME, LocationLauncher, NightRefused, night

ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = {"module": "dagster._core.test_utils", "class": "MockedRunLauncher"}


@pytest.fixture
def workspace() -> Iterator[WorkspaceProcessContext]:
    """The repository's instance settings (its `concurrency` section), Dagster's queued run
    coordinator, and a launcher that records launches instead of starting processes."""
    local = yaml.safe_load((ROOT / "dagster.yaml").read_text())
    queued = {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"}
    overrides = {"concurrency": local["concurrency"], "run_coordinator": queued}
    target = ModuleTarget(
        module_name=LOCATION_NAME,
        attribute=None,
        working_directory=str(ROOT),
        location_name=LOCATION_NAME,
    )
    with (
        instance_for_test(overrides={**overrides, "run_launcher": LAUNCHER}) as instance,
        WorkspaceProcessContext(instance, target) as context,
    ):
        yield context


def _submit(
    workspace: WorkspaceProcessContext,
    job_name: str,
    day: str | None,
    assets: Sequence[str] | None = None,
) -> DagsterRun:
    """Queue a run as the UI does: the location's job (an asset page's `__ASSET_JOB` subset when
    `assets` are given), its execution plan, the job's tags and the partition."""
    instance: DagsterInstance = workspace.instance
    selection = [AssetKey(a) for a in assets] if assets else None
    with LocationLauncher(instance) as launcher:
        run = launcher.create_run(job_name, day, {}, assets=selection)
    instance.submit_run(run.run_id, workspace.create_request_context())
    return run


def _dequeue(workspace: WorkspaceProcessContext) -> None:
    """Two passes of the daemon's queue loop (the first pass sets a pool's default limit)."""
    from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
        QueuedRunCoordinatorDaemon,
    )

    daemon = QueuedRunCoordinatorDaemon(interval_seconds=1)
    for _ in range(2):
        list(daemon.run_iteration(workspace))


def _status(workspace: WorkspaceProcessContext, run: DagsterRun) -> DagsterRunStatus:
    found = workspace.instance.get_run_by_id(run.run_id)
    assert found is not None
    return found.status


def test_an_asset_page_run_waits_for_the_pipeline_run_in_progress(
    workspace: WorkspaceProcessContext,
) -> None:
    instance: Any = workspace.instance
    nightly = _submit(workspace, "ltr_daily_job", "2026-11-03")
    _dequeue(workspace)
    assert _status(workspace, nightly) == DagsterRunStatus.STARTING  # launched

    # Materialize on feature_matrix's page (no job tags), a rollback, and a refresh of the
    # label job: only the rollback, which holds no pool, leaves the queue.
    page = _submit(workspace, "__ASSET_JOB", "2026-11-02", assets=["feature_matrix"])
    rollback = _submit(workspace, "ltr_rollback_job", None)
    refresh = _submit(workspace, "ltr_label_refresh_job", "2026-11-02")
    assert page.tags.get("ltr/pipeline") is None
    assert holds_pipeline_pool(page) and holds_pipeline_pool(refresh)
    assert not holds_pipeline_pool(rollback)
    _dequeue(workspace)
    assert _status(workspace, rollback) == DagsterRunStatus.STARTING
    assert _status(workspace, page) == DagsterRunStatus.QUEUED
    assert _status(workspace, refresh) == DagsterRunStatus.QUEUED
    assert instance.event_log_storage.get_concurrency_info(PIPELINE_POOL).slot_count == 1

    # The nightly run ends: the oldest queued pipeline run goes, and only it.
    instance.report_run_failed(instance.get_run_by_id(nightly.run_id))
    _dequeue(workspace)
    assert _status(workspace, page) == DagsterRunStatus.STARTING
    assert _status(workspace, refresh) == DagsterRunStatus.QUEUED
    launched = {run.run_id for run in instance.run_launcher.queue()}
    assert launched == {nightly.run_id, rollback.run_id, page.run_id}

    # `ltr night` executes in its own process, past the queue: it checks the pool itself.
    with pytest.raises(NightRefused, match=r"^__ASSET_JOB \[2026-11-02\] \(run \w+\) is start"):
        night(instance, "2026-11-03", refresh=False)


def test_the_pool_has_its_limit_before_the_queue_first_sees_it(
    workspace: WorkspaceProcessContext,
) -> None:
    """Dagster gives a pool its default limit in the first queue pass that sees one of its
    runs, and does not apply it in that pass; the label refresh sensor (running wherever the
    daemon does) gives it first."""
    from dagster import build_sensor_context

    from ltr_assets.defs.refresh import label_refresh_sensor

    instance: Any = workspace.instance
    assert PIPELINE_POOL not in instance.event_log_storage.get_concurrency_keys()
    with build_sensor_context(instance=instance) as context:
        label_refresh_sensor(context)
    assert instance.event_log_storage.get_concurrency_info(PIPELINE_POOL).slot_count == 1
    # the first pass sees a page run and a nightly run queued together: one of them goes
    page = _submit(workspace, "__ASSET_JOB", "2026-11-02", assets=["raw_events"])
    nightly = _submit(workspace, "ltr_daily_job", "2026-11-03")
    _dequeue(workspace)
    statuses = {_status(workspace, page), _status(workspace, nightly)}
    assert statuses == {DagsterRunStatus.STARTING, DagsterRunStatus.QUEUED}
