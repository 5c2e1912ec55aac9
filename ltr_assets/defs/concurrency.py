"""The pipeline's concurrency pool: one run at a time that materialises a pipeline asset.

Every pipeline asset belongs to the pool `ltr_pipeline`. The instance (`concurrency.pools` in
dagster.yaml and deploy/'s instances: granularity `run`, default limit 1) lets one run that
holds the pool leave the queue at a time, however it was launched: the nightly schedule, a
backfill, a sensor's request or an asset page (`__ASSET_JOB`, which carries no job tags, so the
`ltr/pipeline` tag limit beside it cannot hold it back). Runs of other jobs (rollback) hold no
pool and are never queued behind the pipeline.
"""

from dagster import DagsterInstance
from dagster._core.storage.dagster_run import DagsterRun

PIPELINE_POOL = "ltr_pipeline"


def holds_pipeline_pool(run: DagsterRun) -> bool:
    """Whether the run materialises a pipeline asset (its plan, as Dagster recorded it when the
    run was created, has a step in the pool)."""
    concurrency = run.run_op_concurrency
    return concurrency is not None and PIPELINE_POOL in (concurrency.all_pools or ())


def ensure_pipeline_pool(instance: DagsterInstance) -> bool:
    """Give the pool its limit (the instance's default) if it has none yet; whether it did.
    Dagster creates it only in the first queue pass that sees a queued run of the pool, and
    does not apply it in that pass: a run queued then (an asset page's) could start beside the
    pipeline run in progress. Runs `ltr night` executes never pass the queue at all."""
    storage = instance.event_log_storage
    if instance.global_op_concurrency_default_limit is None:
        return False  # an instance without a default limit: nothing to create
    if not storage.supports_global_concurrency_limits:
        return False
    if PIPELINE_POOL in storage.get_concurrency_keys():
        return False
    return storage.initialize_concurrency_limit_to_default(PIPELINE_POOL)
