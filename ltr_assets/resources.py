"""Dagster resources: the settings, the lake, the registry and the event source of a run."""

from __future__ import annotations

from dagster import ConfigurableResource

from ltr_assets.config import Settings
from ltr_assets.kafka import KafkaDaySource
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

    def file_source(self) -> AuditLogSource:
        return AuditLogSource(self.settings().audit_log)

    def kafka_source(self) -> KafkaDaySource | None:
        """The Kafka source when KAFKA_BOOTSTRAP_SERVERS is set; None means files only."""
        kafka = self.settings().kafka()
        return KafkaDaySource(kafka) if kafka else None
