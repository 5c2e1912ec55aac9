"""Launch a job of the code location the way the scheduler does, and run it in this process.

`job.execute_in_process` makes runs without a repository origin: the UI leaves them out of the
Overview timeline and the job's Runs tab, "Re-execute" warns about a different version, and the
run-status sensors (whose cursor starts after them) never tag their outcome. `LocationLauncher`
loads the code location `ltr_assets.definitions` in-process under the name workspace.yaml gives
it, creates each run from the location's job snapshot and execution plan with its origins
(as `dagster job launch` and the scheduler do), executes it here (the jobs' in-process
executor), then tags the outcome as the tagging sensors would (`ltr/outcome`, `ltr/reason`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from dagster import DagsterInstance, DagsterRunStatus, JobExecutionResult
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import InProcessCodeLocationOrigin
from dagster._core.remote_representation.code_location import InProcessCodeLocation
from dagster._core.remote_representation.external import RemoteJob
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.storage.tags import PARTITION_NAME_TAG
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from ltr_assets.defs.sensors import TAGGED_JOBS, RunOutcome, tag_run_outcome

# workspace.yaml loads `python_module: ltr_assets.definitions` without a location_name, so
# Dagster names the location after the module; the demo's runs must be grouped under it.
LOCATION_NAME = "ltr_assets.definitions"
# workspace.yaml's working_directory ("."): the project root, where `ltr_assets` imports from.
PROJECT_ROOT = Path(__file__).resolve().parents[2]


class LocationLauncher:
    """The code location, loaded once, and the runs of its jobs: created with the location's
    origin and snapshots, executed in this process, tagged with their outcome."""

    def __init__(self, instance: DagsterInstance) -> None:
        self.instance = instance
        origin = InProcessCodeLocationOrigin(
            LoadableTargetOrigin(
                executable_path=sys.executable,
                module_name=LOCATION_NAME,
                working_directory=str(PROJECT_ROOT),
            ),
            location_name=LOCATION_NAME,
        )
        self.location: InProcessCodeLocation = origin.create_location(instance)
        (self.repository,) = self.location.get_repositories().values()

    def remote_job(self, job_name: str) -> RemoteJob:
        """The location's job, as the UI and the scheduler see it."""
        return self.repository.get_full_job(job_name)

    def create_run(
        self, job_name: str, partition_key: str | None, run_config: Mapping[str, object]
    ) -> DagsterRun:
        """A NOT_STARTED run as the scheduler creates it: the job's tags plus the partition,
        the location's job snapshot and execution plan, the remote and code origins."""
        remote_job = self.remote_job(job_name)
        plan = self.location.get_execution_plan(
            remote_job,
            run_config,
            step_keys_to_execute=None,
            known_state=None,
            instance=self.instance,
        )
        tags = dict(remote_job.run_tags)
        if partition_key is not None:
            tags[PARTITION_NAME_TAG] = partition_key
        return self.instance.create_run(
            job_name=job_name,
            run_id=None,
            run_config=run_config,
            resolved_op_selection=remote_job.resolved_op_selection,
            step_keys_to_execute=None,
            op_selection=remote_job.op_selection,
            status=DagsterRunStatus.NOT_STARTED,
            root_run_id=None,
            parent_run_id=None,
            tags=tags,
            job_snapshot=remote_job.job_snapshot,
            execution_plan_snapshot=plan.execution_plan_snapshot,
            parent_job_snapshot=remote_job.parent_job_snapshot,
            remote_job_origin=remote_job.get_remote_origin(),
            job_code_origin=remote_job.get_python_origin(),
            asset_selection=None,
            asset_check_selection=None,
            asset_graph=self.repository.asset_graph,
        )

    def execute(self, run: DagsterRun) -> JobExecutionResult:
        """Execute a created run in this process; a failure is the run's, not raised."""
        job = self.location.get_reconstructable_job(self.repository.name, run.job_name)
        return execute_run(job, run, self.instance, raise_on_error=False)

    def execute_and_tag(self, run: DagsterRun) -> tuple[JobExecutionResult, RunOutcome | None]:
        """Execute the run, then tag its outcome as the tagging sensors do for scheduled runs
        (only for the jobs they watch); the outcome is None for the other jobs."""
        result = self.execute(run)
        if run.job_name not in TAGGED_JOBS:
            return result, None
        finished = self.instance.get_run_by_id(run.run_id)
        assert finished is not None, run.run_id
        return result, tag_run_outcome(self.instance, finished)

    def launch(
        self,
        job_name: str,
        partition_key: str | None = None,
        run_config: Mapping[str, object] | None = None,
    ) -> JobExecutionResult:
        """Create, execute and tag one run of `job_name`."""
        run = self.create_run(job_name, partition_key, run_config or {})
        result, _ = self.execute_and_tag(run)
        return result

    def close(self) -> None:
        """Release the loaded location."""
        self.location.cleanup()

    def __enter__(self) -> LocationLauncher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
