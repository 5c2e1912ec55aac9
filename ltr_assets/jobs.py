"""Jobs: the daily pipeline, and the label refresh that picks up feedback that came late."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job, in_process_executor

from ltr_assets.assets import feature_matrix, ltr_model, published_weights, raw_events
from ltr_assets.partitions import daily_partitions

# Runs carrying this tag are limited to one at a time (dagster.yaml, tag_concurrency_limits).
PIPELINE_TAGS = {"ltr/pipeline": "daily"}

ltr_daily_job = define_asset_job(
    name="ltr_daily_job",
    selection=AssetSelection.assets(raw_events, feature_matrix, ltr_model, published_weights),
    partitions_def=daily_partitions,
    tags=PIPELINE_TAGS,
    executor_def=in_process_executor,
    description="Ingest day D, build its matrix, train and gate a model, publish it if it passes.",
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
