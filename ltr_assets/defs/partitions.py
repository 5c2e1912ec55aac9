"""Daily UTC partitions, from LTR_START_DATE up to yesterday; the registry's versions as the
partitions of the rollback job (the UI's pick-list, kept in step by `registry_versions_sensor`)."""

from __future__ import annotations

from dagster import DailyPartitionsDefinition, DynamicPartitionsDefinition

from ltr_core.settings import Settings

daily_partitions = DailyPartitionsDefinition(
    start_date=Settings.from_env().start_date, timezone="UTC", fmt="%Y-%m-%d"
)

REGISTRY_VERSIONS = "registry_versions"
registry_versions = DynamicPartitionsDefinition(name=REGISTRY_VERSIONS)
