"""Dagster resources: the settings, the lake, the registry and the event source of a run."""

from __future__ import annotations

from dagster import ConfigurableResource

from ltr_assets.config import Settings
from ltr_assets.lake import Lake
from ltr_assets.registry import LocalRegistry
from ltr_assets.sources import AuditLogSource


class LtrResource(ConfigurableResource):
    """Reads the environment when a run starts (config.Settings), so a run sees current values."""

    def settings(self) -> Settings:
        return Settings.from_env()

    def lake(self) -> Lake:
        return Lake(self.settings().data_dir)

    def registry(self) -> LocalRegistry:
        settings = self.settings()
        return LocalRegistry(settings.registry_dir, settings.weights_path)

    def source(self) -> AuditLogSource:
        return AuditLogSource(self.settings().audit_log)
