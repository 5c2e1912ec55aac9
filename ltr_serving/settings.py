"""The serving app's view of the project's Settings (`ltr_core.settings`, the one reader of the
environment): what the app needs, and where its artifacts come from (local registry or S3)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ltr_core.artifacts.signing import ArtifactKeys
from ltr_core.settings import ConfigError, Settings, default_max_body_bytes

if TYPE_CHECKING:
    from ltr_core.artifacts.s3 import S3Versions

DEFAULT_MAX_CANDIDATES = 1000


@dataclass(frozen=True)
class ServingSettings:
    registry_dir: Path
    weights_path: Path
    scorer: str = "weights"
    reload_token: str = field(default="", repr=False)  # never in a repr, a log line or a response
    poll_seconds: float = 300.0  # <= 0 disables the poller
    reload_timeout_s: float = 60.0  # how long a reload may read before it is given up
    max_candidates: int = DEFAULT_MAX_CANDIDATES
    source: str = "file"  # "file" (local registry / flat file) or "s3" (the registry's mirror)
    max_body_bytes: int = default_max_body_bytes(DEFAULT_MAX_CANDIDATES)  # /rank answers 413 above
    # LTR_ARTIFACT_VERIFY_KEYS (and _SIGNING_KEY): a version must be signed with one of them
    artifact_keys: ArtifactKeys = field(default_factory=ArtifactKeys)  # repr: key ids only
    score_timeout_ms: float = 1000.0  # a model-scored /rank fails with 503 past this
    base: Settings | None = field(default=None, repr=False, compare=False)  # the whole reading

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServingSettings:
        """The project's one reading of the settings (`Settings.from_env`: the environment over
        `$LTR_HOME/ltr.env`, as the pipeline, sensors and CLI read them)."""
        base = Settings.from_env(env)
        return cls(
            registry_dir=base.registry_dir,
            weights_path=base.weights_path,
            scorer=base.scorer,
            reload_token=base.reload_token,
            poll_seconds=base.poll_seconds,
            reload_timeout_s=base.reload_timeout_s,
            max_candidates=base.max_candidates,
            source=_source(base),
            max_body_bytes=base.max_body_bytes,
            artifact_keys=base.artifact_keys,
            score_timeout_ms=base.score_timeout_ms,
            base=base,
        )

    def mirror(self) -> S3Versions | None:
        """The S3 mirror to serve from, when the source is S3 (from the same reading)."""
        if self.source != "s3":
            return None
        from ltr_core.artifacts.s3 import s3_versions_from_settings  # boto3 only when S3 is used

        mirror = s3_versions_from_settings(self.base or Settings.from_env())
        if mirror is None:
            raise ConfigError("LTR_SERVING_SOURCE=s3 needs S3_BUCKET")
        return replace(mirror, keys=self.artifact_keys)

    @property
    def reload_enabled(self) -> bool:
        return bool(self.reload_token.strip())


def _source(settings: Settings) -> str:
    if settings.serving_source == "auto":
        return "s3" if settings.s3_bucket else "file"
    return settings.serving_source
