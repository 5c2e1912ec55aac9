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


class KafkaResource(ConfigurableResource):
    """The Kafka event source, configured by KAFKA_BOOTSTRAP_SERVERS, KAFKA_TOPIC,
    KAFKA_GROUP_ID and the KAFKA_SECURITY_PROTOCOL / KAFKA_SASL_* / KAFKA_SSL_* variables when a
    run starts. Secrets stay in the environment: they are never part of the resource's config,
    its repr or a log line."""

    def source(self) -> KafkaDaySource | None:
        """The Kafka source when KAFKA_BOOTSTRAP_SERVERS is set; None means files only."""
        kafka = Settings.from_env().kafka()
        return KafkaDaySource(kafka) if kafka else None
