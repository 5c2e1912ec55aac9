"""The one Definitions object of the code location `ltr_assets.definitions`."""

from __future__ import annotations

from dagster import Definitions

from ltr_assets.assets import feature_matrix, ltr_model, published_weights, raw_events
from ltr_assets.jobs import ltr_daily_job, ltr_label_refresh_job, ltr_rollback_job
from ltr_assets.resources import KafkaResource, LtrResource, S3RegistryResource
from ltr_assets.schedules import ltr_daily_schedule
from ltr_assets.sensors import SENSORS

defs = Definitions(
    assets=[raw_events, feature_matrix, ltr_model, published_weights],
    jobs=[ltr_daily_job, ltr_label_refresh_job, ltr_rollback_job],
    schedules=[ltr_daily_schedule],
    sensors=SENSORS,
    resources={"ltr": LtrResource(), "kafka": KafkaResource(), "s3": S3RegistryResource()},
)
