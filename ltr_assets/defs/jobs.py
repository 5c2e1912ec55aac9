"""Jobs: the daily pipeline, and the label refresh that picks up feedback that came late."""

from dagster import (
    AssetObservation,
    AssetSelection,
    Config,
    Failure,
    OpExecutionContext,
    Output,
    define_asset_job,
    in_process_executor,
    job,
    op,
)
from pydantic import Field, field_validator

from ltr_assets.defs.assets import (
    feature_matrix,
    live_metadata,
    ltr_model,
    published_weights,
    raw_events,
)
from ltr_assets.defs.online import online_comparison
from ltr_assets.defs.partitions import daily_partitions, registry_versions
from ltr_assets.defs.resources import LtrResource
from ltr_assets.registry import publication
from ltr_core.artifacts.format import check_version

# Runs carrying this tag are limited to one at a time (dagster.yaml, tag_concurrency_limits);
# the `ltr_pipeline` pool (ltr_assets/defs/concurrency.py) holds back the untagged ones.
PIPELINE_TAGS = {"ltr/pipeline": "daily"}

# The daily job's retry policy, read only where the instance enables run retries (the Postgres
# instance, deploy/dagster-postgres.yaml): a run whose worker dies or whose run breaks is retried
# at most twice (from the failed step); a run that failed because a step failed is not (a
# step failing on bad data fails again). A refused gate does not fail the run at all.
DAILY_RETRY_TAGS = {"dagster/max_retries": "2", "dagster/retry_on_asset_or_op_failure": "false"}

# Every asset's checks except published_weights' (s3_published, retention, live_version_age): a
# check in a run's plan that does not execute shows as "Execution failed" (and a refused night
# publishes nothing to check), so published_weights records those itself
# (ltr_assets.defs.checks). Named by selection, not by subtraction: s3_published exists only
# when S3 is configured.
DAILY_SELECTION = AssetSelection.assets(
    raw_events, online_comparison, feature_matrix, ltr_model, published_weights
).without_checks() | AssetSelection.checks_for_assets(
    raw_events, online_comparison, feature_matrix, ltr_model
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
    version: str = Field(
        default="",
        description="The registry version (YYYYMMDD_HHMMSS) to make live; leave empty when the "
        "run's partition (picked from the registry's versions) names it.",
    )

    @field_validator("version")
    @classmethod
    def _a_version_id(cls, value: str) -> str:
        """Nothing but a version id reaches the registry (no path, no trailing slash)."""
        return check_version(value) if value else value


def rollback_target(partition: str | None, configured: str) -> str:
    """The version to roll back to: the picked partition, else the configured version; both
    given and different is refused rather than guessed."""
    if partition and configured and partition != configured:
        raise Failure(
            description=f"the run's partition names {partition} but its config names "
            f"{configured}: pick one"
        )
    target = partition or configured
    if not target:
        raise Failure(
            description="no version named: pick one of the registry's versions as the run's "
            "partition, or set config `version`"
        )
    return check_version(target)


@op(description="Validate the version (files, checksums, weights summing to 1.0, model loads), "
    "then point latest at it locally and on S3.")  # fmt: skip
def rollback_to_version(
    context: OpExecutionContext, config: RollbackConfig, ltr: LtrResource
) -> Output[str]:
    partition = context.partition_key if context.has_partition_key else None
    version = rollback_target(partition, config.version)
    registry = ltr.registry()
    report = publication.rollback(registry, ltr.mirror(), version, ltr.settings().scorer)
    previous = report.local.previous_latest or ""
    # "rolled back to V", and "; candidate C cleared" when a canary candidate was cleared
    context.log.info(f"latest: {previous or '(none)'} -> {report.version}: {report.local.reason}")
    if report.s3_published is False:
        context.log.warning(f"S3 pointer not moved: {report.s3_error}")
    # published_weights' metadata says what was live when its last day was recorded: this
    # observation puts the rollback in its history, with what is live now.
    live = live_metadata(registry)  # the registry's versions table included (read once)
    context.log_event(
        AssetObservation(
            asset_key=published_weights.key,
            metadata={
                "outcome": f"{report.local.reason} (rollback run {context.run_id[:8]})",
                **live,
            },
        )
    )
    return Output(
        report.version,
        metadata={
            "live_version": report.version,
            "previous_live_version": previous,
            "change": report.local.reason,
            "s3": "not configured"
            if report.s3_published is None
            else ("pointer moved" if report.s3_published else f"failed: {report.s3_error}"),
            "versions": live["registry_versions"],
        },
    )


@job(
    description="Roll back (or forward) to a version picked from the registry's versions (this "
    "job's partitions; `registry_versions_sensor` keeps them in step with the registry, and "
    "published_weights shows them with their gate figures); the reload sensor then tells the "
    "ranking service.",
    executor_def=in_process_executor,
    partitions_def=registry_versions,
)
def ltr_rollback_job() -> None:
    rollback_to_version()
