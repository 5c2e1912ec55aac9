"""Dagster resources: the settings, the lake, the registry and the event source of a run."""

from __future__ import annotations

from datetime import timedelta

from dagster import ConfigurableResource

from ltr_assets.config import Settings
from ltr_assets.kafka import KafkaDaySource
from ltr_assets.lake import Lake
from ltr_assets.registry import LocalRegistry
from ltr_assets.s3_registry import S3Mirror, mirror_from_settings
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
        settings = self.settings()
        skew = timedelta(hours=settings.max_clock_skew_hours)
        return AuditLogSource(settings.audit_log, max_clock_skew=skew)


class KafkaResource(ConfigurableResource):
    """The Kafka event source, configured by KAFKA_BOOTSTRAP_SERVERS, KAFKA_TOPIC,
    KAFKA_GROUP_ID and the KAFKA_SECURITY_PROTOCOL / KAFKA_SASL_* / KAFKA_SSL_* variables when a
    run starts. Secrets stay in the environment: they are never part of the resource's config,
    its repr or a log line."""

    def source(self) -> KafkaDaySource | None:
        """The Kafka source when KAFKA_BOOTSTRAP_SERVERS is set; None means files only."""
        kafka = Settings.from_env().kafka()
        return KafkaDaySource(kafka) if kafka else None


class S3RegistryResource(ConfigurableResource):
    """The registry's S3/MinIO mirror, from S3_BUCKET, S3_PREFIX, S3_ENDPOINT and AWS_* when a
    run starts; None when S3_BUCKET is unset (local registry only). The client itself is built
    by the domain (`s3_registry.s3_client`), which the CLI and the serving app use too."""

    def mirror(self) -> S3Mirror | None:
        return mirror_from_settings(Settings.from_env())
