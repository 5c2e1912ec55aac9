"""The one Dagster resource: the run's settings, and the lake, registry, sources and S3 mirror
built from them.

The environment is read once per run (`setup_for_execution`, through `ltr_core.settings`, the one
reader of the environment), and every asset, op and sensor of that run or tick is handed the same
Settings: a variable changed while a run is going does not reach half of it. Only the partitions
and the training window's partition mapping read LTR_START_DATE and LTR_TRAIN_WINDOW_DAYS earlier,
when the code location loads (`partitions.py`, `assets.py`): Dagster needs them to draw the
asset graph.
"""

from __future__ import annotations

from dagster import ConfigurableResource, InitResourceContext
from pydantic import PrivateAttr

from ltr_assets.ingest.kafka import KafkaDaySource
from ltr_assets.ingest.sources import AuditLogSource, ServingLogSource
from ltr_assets.lake.paths import Lake, lake_from_settings
from ltr_assets.registry.local import LocalRegistry
from ltr_assets.registry.s3_mirror import S3Mirror, mirror_from_settings
from ltr_core.settings import Settings


class LtrResource(ConfigurableResource):
    """The settings of a run, read from the environment when the run (or sensor tick) starts.
    Secrets (Kafka SASL, the reload token, the webhook URL) stay in the environment and in
    Settings: they are never part of the resource's config, its repr or a log line."""

    _settings: Settings | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: InitResourceContext) -> None:
        self._settings = Settings.from_env()

    def settings(self) -> Settings:
        if self._settings is None:  # not set up by Dagster (a direct call): read, keep nothing
            return Settings.from_env()
        return self._settings

    def lake(self) -> Lake:
        """The local lake, or the one shared on S3 when LTR_DATA_DIR is s3://bucket/prefix."""
        return lake_from_settings(self.settings())

    def registry(self) -> LocalRegistry:
        settings = self.settings()
        return LocalRegistry(settings.registry_dir, settings.weights_path, settings.artifact_keys)

    def file_source(self) -> AuditLogSource:
        settings = self.settings()
        bounds = settings.event_time
        return AuditLogSource(
            settings.audit_log,
            max_clock_skew=bounds.max_clock_skew,
            max_event_age=bounds.max_event_age,
            first_day=settings.first_day,
        )

    def serving_log_source(self) -> ServingLogSource:
        """What the ranking service logged itself (LTR_SERVING_LOG_DIR), read beside the main
        source."""
        settings = self.settings()
        bounds = settings.event_time
        return ServingLogSource(
            settings.serving_log_dir,
            max_clock_skew=bounds.max_clock_skew,
            max_event_age=bounds.max_event_age,
            first_day=settings.first_day,
        )

    def kafka_source(self) -> KafkaDaySource | None:
        """The Kafka source when KAFKA_BOOTSTRAP_SERVERS is set; None means files only."""
        settings = self.settings()
        kafka = settings.kafka
        return KafkaDaySource(kafka, first_day=settings.first_day) if kafka else None

    def mirror(self) -> S3Mirror | None:
        """The registry's S3/MinIO mirror (S3_BUCKET, S3_PREFIX, S3_ENDPOINT, AWS_*); None when
        S3_BUCKET is unset (local registry only). The client is built by the domain
        (`s3_registry.s3_client`), which the CLI and the serving app use too."""
        return mirror_from_settings(self.settings())
