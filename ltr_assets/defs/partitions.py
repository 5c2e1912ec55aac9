"""Daily UTC partitions, from LTR_START_DATE up to yesterday."""

from __future__ import annotations

from dagster import DailyPartitionsDefinition

from ltr_core.settings import Settings

daily_partitions = DailyPartitionsDefinition(
    start_date=Settings.from_env().start_date, timezone="UTC", fmt="%Y-%m-%d"
)
