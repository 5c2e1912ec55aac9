"""The four daily-partitioned assets of the pipeline."""

from ltr_assets.assets.pipeline import feature_matrix, ltr_model, published_weights, raw_events

__all__ = ["raw_events", "feature_matrix", "ltr_model", "published_weights"]
