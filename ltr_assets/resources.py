"""Dagster resources: the settings, the lake, the registry and the event source of a run."""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Literal

import boto3
from botocore.config import Config
from dagster import ConfigurableResource
from dagster_aws.s3 import S3Resource

from ltr_assets.config import Settings
from ltr_assets.kafka import KafkaDaySource
from ltr_assets.lake import Lake
from ltr_assets.registry import LocalRegistry
from ltr_assets.s3_registry import S3Mirror
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


class BoundedS3Resource(S3Resource):
    """dagster-aws's S3Resource with bounded timeouts and path-style addressing (MinIO), so an
    S3 outage fails in seconds and the publish can fall back to local-only."""

    connect_timeout: float = 3.0
    read_timeout: float = 15.0
    addressing_style: Literal["auto", "virtual", "path"] = "path"

    def get_client(self) -> Any:
        session = boto3.session.Session(profile_name=self.profile_name)
        return session.client(
            "s3",
            region_name=self.region_name,
            endpoint_url=self.endpoint_url,
            use_ssl=self.use_ssl,
            verify=self.verify,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
            aws_session_token=self.aws_session_token,
            config=Config(
                s3={"addressing_style": self.addressing_style},
                retries={"total_max_attempts": self.max_attempts or 1, "mode": "standard"},
                connect_timeout=self.connect_timeout,
                read_timeout=self.read_timeout,
            ),
        )


def mirror_from_settings(settings: Settings) -> S3Mirror | None:
    """The S3 mirror when S3_BUCKET is set. Credentials come from boto3's own chain
    (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles, instance roles): they are never part
    of any config, repr or log line here."""
    if not settings.s3_bucket:
        return None
    endpoint = settings.s3_endpoint or None
    client = BoundedS3Resource(
        endpoint_url=endpoint,
        region_name=settings.s3_region,
        use_ssl=not (endpoint or "").startswith("http://"),
        max_attempts=2,
    ).get_client()
    return S3Mirror(client, settings.s3_bucket, settings.s3_prefix)


class S3RegistryResource(ConfigurableResource):
    """The registry's S3/MinIO mirror, from S3_BUCKET, S3_PREFIX, S3_ENDPOINT and AWS_* when a
    run starts; None when S3_BUCKET is unset (local registry only)."""

    def mirror(self) -> S3Mirror | None:
        return mirror_from_settings(Settings.from_env())
