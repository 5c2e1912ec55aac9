"""Jobs: the daily pipeline, and the label refresh that picks up feedback that came late."""

from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetSelection,
    Config,
    OpExecutionContext,
    define_asset_job,
    in_process_executor,
    job,
    op,
)
from pydantic import Field, field_validator

from ltr_assets.defs.assets import feature_matrix, ltr_model, published_weights, raw_events
from ltr_assets.defs.checks import RETENTION_CHECK
from ltr_assets.defs.online import online_comparison
from ltr_assets.defs.partitions import daily_partitions
from ltr_assets.defs.resources import LtrResource
from ltr_assets.registry import publication
from ltr_core.artifacts.format import check_version

# Runs carrying this tag are limited to one at a time (dagster.yaml, tag_concurrency_limits).
PIPELINE_TAGS = {"ltr/pipeline": "daily"}

# The daily job's retry policy, read only where the instance enables run retries (the Postgres
# instance, deploy/dagster-postgres.yaml): a run whose worker dies or whose run breaks is retried
# at most twice (from the failed step); a run that failed because a step failed is not. A
# blocking gate check that fails is a step failure of ltr_model, and a refused gate is a
# decision, not a fault; retrying it would only refuse again.
DAILY_RETRY_TAGS = {"dagster/max_retries": "2", "dagster/retry_on_asset_or_op_failure": "false"}

# Every asset's checks except s3_published: a check in a run's plan that does not execute (on a
# night the gate refuses, published_weights does not run) shows as "Execution failed", so
# published_weights records that one itself when it publishes (ltr_assets.defs.checks). Named
# by selection, not by subtraction: the check exists only when S3 is configured.
DAILY_SELECTION = (
    AssetSelection.assets(
        raw_events, online_comparison, feature_matrix, ltr_model, published_weights
    ).without_checks()
    | AssetSelection.checks_for_assets(raw_events, online_comparison, feature_matrix, ltr_model)
    | AssetSelection.checks(AssetCheckKey(AssetKey("published_weights"), RETENTION_CHECK))
)

ltr_daily_job = define_asset_job(
    name="ltr_daily_job",
    selection=DAILY_SELECTION,
    partitions_def=daily_partitions,
    tags={**PIPELINE_TAGS, **DAILY_RETRY_TAGS},
    executor_def=in_process_executor,
    description="Ingest day D, decide on the canary candidate from D's interleaved requests, "
    "build D's matrix, train and gate a model, publish it if it passes.",
)

ltr_label_refresh_job = define_asset_job(
    name="ltr_label_refresh_job",
    selection=AssetSelection.assets(feature_matrix),
    partitions_def=daily_partitions,
    tags=PIPELINE_TAGS,
    executor_def=in_process_executor,
    description="Rebuild feature_matrix[D] once D+1 is ingested, so feedback that arrived after "
    "midnight labels D's impressions in later training windows.",
)


class RollbackConfig(Config):
    version: str = Field(description="The registry version (YYYYMMDD_HHMMSS) to make live.")

    @field_validator("version")
    @classmethod
    def _a_version_id(cls, value: str) -> str:
        """Nothing but a version id reaches the registry (no path, no trailing slash)."""
        return check_version(value)


@op(description="Validate the version (files, checksums, weights summing to 1.0, model loads), "
    "then point latest at it locally and on S3.")  # fmt: skip
def rollback_to_version(
    context: OpExecutionContext, config: RollbackConfig, ltr: LtrResource
) -> str:
    report = publication.rollback(
        ltr.registry(), ltr.mirror(), config.version, ltr.settings().scorer
    )
    context.log.info(f"latest: {report.local.previous_latest} -> {report.version}")
    if report.s3_published is False:
        context.log.warning(f"S3 pointer not moved: {report.s3_error}")
    return report.version


@job(
    description="Roll back (or forward) to a named version; the reload sensor then tells the "
    "ranking service.",
    executor_def=in_process_executor,
)
def ltr_rollback_job() -> None:
    rollback_to_version()
