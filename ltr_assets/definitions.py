"""The one Definitions object of the code location `ltr_assets.definitions` (the UI, the Makefile
and the tests load `ltr_assets.definitions:defs`); the wiring itself is in `ltr_assets.defs`."""

from __future__ import annotations

from dagster import Definitions

from ltr_assets.defs.assets import (
    feature_matrix,
    ltr_model,
    publication_checks,
    published_weights,
    raw_events,
)
from ltr_assets.defs.automation import automation_sensor
from ltr_assets.defs.jobs import (
    PIPELINE_TAGS,
    ltr_daily_job,
    ltr_label_refresh_job,
    ltr_rollback_job,
)
from ltr_assets.defs.online import online_comparison
from ltr_assets.defs.refresh import label_refresh_sensor
from ltr_assets.defs.resources import LtrResource
from ltr_assets.defs.schedules import ltr_daily_schedule
from ltr_assets.defs.sensors import SENSORS


def build_definitions() -> Definitions:
    """The code location's Definitions. Its S3 check depends on S3_BUCKET, read here (at load):
    the tests build one after setting the environment, as a reloaded location would."""
    return Definitions(
        assets=[raw_events, online_comparison, feature_matrix, ltr_model, published_weights],
        asset_checks=publication_checks(),
        jobs=[ltr_daily_job, ltr_label_refresh_job, ltr_rollback_job],
        schedules=[ltr_daily_schedule],
        sensors=[*SENSORS, label_refresh_sensor, automation_sensor(PIPELINE_TAGS)],
        resources={"ltr": LtrResource()},
    )


defs = build_definitions()
