"""The local model registry: immutable versions, an atomic `latest` pointer, rollback.

Layout under LTR_REGISTRY_DIR:

    versions/<YYYYMMDD_HHMMSS>/ltr_weights.json   flat feature -> weight, sums to 1.0
                              /model.txt          LightGBM model
                              /metadata.json      metrics, gate, window, params, checksums
    latest.json                                   {"version", "partition", ...} (the pointer)

A version is written into a staging folder, verified, then renamed into versions/ in one step,
and only then does the pointer move: a reader never sees a half-written version. A version of an
older partition (a backfill) is published but does not move the pointer backwards unless forced.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import lightgbm as lgb

from ltr_assets import atomic
from ltr_assets.schema import FEATURES

WEIGHTS_FILE = "ltr_weights.json"
MODEL_FILE = "model.txt"
METADATA_FILE = "metadata.json"
CHECKSUMMED_FILES = (WEIGHTS_FILE, MODEL_FILE)
VERSION_FORMAT = "%Y%m%d_%H%M%S"
WEIGHT_SUM_TOLERANCE = 1e-9


class RegistryError(RuntimeError):
    """A version is missing, incomplete or invalid."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def weights_json(weights: Mapping[str, float]) -> bytes:
    """The flat weights file, in feature order."""
    return (json.dumps({f: weights[f] for f in FEATURES}, indent=2) + "\n").encode()


def validate_weights(weights_bytes: bytes) -> dict[str, float]:
    """The weights file's rules: exactly FEATURES, finite, non-negative, summing to 1.0."""
    try:
        weights = json.loads(weights_bytes)
    except ValueError as exc:
        raise RegistryError(f"{WEIGHTS_FILE} is not JSON: {exc}") from None
    if not isinstance(weights, dict):
        raise RegistryError(f"{WEIGHTS_FILE} must be an object of feature -> weight")
    if set(weights) != set(FEATURES):
        missing = sorted(set(FEATURES) - set(weights))
        extra = sorted(set(weights) - set(FEATURES))
        raise RegistryError(f"{WEIGHTS_FILE} features differ: missing {missing}, extra {extra}")
    for feature, value in weights.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RegistryError(f"weight {feature}={value!r} is not a number")
        if not math.isfinite(value) or value < 0:
            raise RegistryError(f"weight {feature}={value!r} must be finite and non-negative")
    total = math.fsum(weights.values())
    if abs(total - 1.0) > WEIGHT_SUM_TOLERANCE:
        raise RegistryError(f"weights sum to {total!r}, not 1.0")
    return {f: float(weights[f]) for f in FEATURES}


def validate_artifact(
    weights_bytes: bytes, model_bytes: bytes, metadata: Mapping[str, Any] | None
) -> dict[str, float]:
    """Every rule a live artifact must meet; returns the weights. Raises RegistryError.

    Checksums come first: LightGBM aborts the whole process on some malformed model files, so a
    model is parsed only once its bytes are known to be the ones that were published.
    """
    if metadata is not None:
        expected = metadata.get("checksums", {})
        actual = {WEIGHTS_FILE: sha256(weights_bytes), MODEL_FILE: sha256(model_bytes)}
        for name, digest in actual.items():
            if expected.get(name) != digest:
                raise RegistryError(f"checksum of {name} does not match metadata.json")
    weights = validate_weights(weights_bytes)
    try:
        booster = lgb.Booster(model_str=model_bytes.decode())
    except Exception as exc:  # LightGBM raises its own error types for a bad model
        raise RegistryError(f"{MODEL_FILE} does not load: {exc}") from None
    if booster.feature_name() != list(FEATURES):
        raise RegistryError(f"{MODEL_FILE} features {booster.feature_name()} != {list(FEATURES)}")
    return weights


@dataclass(frozen=True)
class Artifact:
    version: str
    weights: dict[str, float]
    model_text: str
    metadata: dict[str, Any]


@dataclass(frozen=True)
class PublishResult:
    version: str
    path: Path
    latest_moved: bool
    previous_latest: str | None
    reason: str


class LocalRegistry:
    def __init__(self, root: Path, weights_path: Path | None = None) -> None:
        self.root = Path(root)
        self.weights_path = weights_path
        self.versions_dir = self.root / "versions"
        self.pointer_path = self.root / "latest.json"
        self._staging = self.root / ".staging"

    # -- reading ---------------------------------------------------------------------------

    def pointer(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.pointer_path.read_text())
        except FileNotFoundError:
            return None

    def latest_version(self) -> str | None:
        pointer = self.pointer()
        return pointer["version"] if pointer else None

    def versions(self) -> list[str]:
        if not self.versions_dir.exists():
            return []
        return sorted(p.name for p in self.versions_dir.iterdir() if p.is_dir())

    def baseline_for(self, partition: str) -> str | None:
        """The version a candidate for `partition` must not regress against: the live one when
        it is not newer than the partition (the nightly case), else, for a backfill, the newest
        version published for a partition at or before it. A live model trained on later days
        would have seen the backfilled day's test groups and make an unfair yardstick."""
        pointer = self.pointer()
        if pointer and pointer.get("partition", "") <= partition:
            return pointer["version"]
        for version in reversed(self.versions()):
            try:
                if self.metadata(version).get("partition", "") <= partition:
                    return version
            except RegistryError:
                continue
        return None

    def metadata(self, version: str) -> dict[str, Any]:
        path = self.versions_dir / version / METADATA_FILE
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            raise RegistryError(f"version {version} does not exist in {self.root}") from None
        except ValueError as exc:
            raise RegistryError(f"version {version}: {METADATA_FILE} is not JSON: {exc}") from None

    def load(self, version: str) -> Artifact:
        """Read and fully validate a version."""
        metadata = self.metadata(version)
        folder = self.versions_dir / version
        try:
            weights_bytes = (folder / WEIGHTS_FILE).read_bytes()
            model_bytes = (folder / MODEL_FILE).read_bytes()
        except FileNotFoundError as exc:
            raise RegistryError(f"version {version} is incomplete: {exc.filename}") from None
        weights = validate_artifact(weights_bytes, model_bytes, metadata)
        return Artifact(version, weights, model_bytes.decode(), metadata)

    def verify(self, version: str) -> list[str]:
        """Problems with a version; empty when it is valid."""
        try:
            self.load(version)
        except RegistryError as exc:
            return [str(exc)]
        return []

    # -- writing ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _new_version(self, now: datetime) -> str:
        """UTC YYYYMMDD_HHMMSS; the next free second if that one is taken."""
        while True:
            version = now.strftime(VERSION_FORMAT)
            if not (self.versions_dir / version).exists():
                return version
            now += timedelta(seconds=1)

    def publish(
        self,
        weights: Mapping[str, float],
        model_text: str,
        metadata: Mapping[str, Any],
        partition: str,
        force: bool = False,
        now: datetime | None = None,
    ) -> PublishResult:
        """Write a new immutable version, then move `latest` unless it would go backwards."""
        weights_bytes = weights_json(weights)
        model_bytes = model_text.encode()
        self._staging.mkdir(parents=True, exist_ok=True)
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        self._clean_stale_staging()
        with self._lock():
            version = self._new_version(now or datetime.now(UTC))
            full_metadata = {
                **metadata,
                "version": version,
                "partition": partition,
                "published_at": datetime.now(UTC).isoformat(),
                "features": list(FEATURES),
                "checksums": {WEIGHTS_FILE: sha256(weights_bytes), MODEL_FILE: sha256(model_bytes)},
            }
            staging = self._staging / f"{version}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
            staging.mkdir()
            atomic.write_bytes(staging / WEIGHTS_FILE, weights_bytes)
            atomic.write_bytes(staging / MODEL_FILE, model_bytes)
            atomic.write_json(staging / METADATA_FILE, full_metadata)
            validate_artifact(
                (staging / WEIGHTS_FILE).read_bytes(),
                (staging / MODEL_FILE).read_bytes(),
                json.loads((staging / METADATA_FILE).read_text()),
            )
            target = self.versions_dir / version
            os.rename(staging, target)  # atomic: the version appears whole or not at all
            previous = self.pointer()
            previous_version = previous["version"] if previous else None
            if previous and not force and partition < previous.get("partition", ""):
                return PublishResult(
                    version,
                    target,
                    False,
                    previous_version,
                    f"partition {partition} is older than latest's {previous['partition']}: "
                    "published, latest not moved",
                )
            self._move_pointer(version, partition, dict(weights))
        return PublishResult(version, target, True, previous_version, "latest moved")

    def rollback(self, version: str) -> PublishResult:
        """Point `latest` at an existing version after validating it fully."""
        artifact = self.load(version)
        with self._lock():
            previous = self.latest_version()
            self._move_pointer(version, artifact.metadata.get("partition", ""), artifact.weights)
        return PublishResult(
            version, self.versions_dir / version, True, previous, f"rolled back to {version}"
        )

    def delete_version(self, version: str) -> None:
        """Remove a version (retention); the one latest points at is never removed."""
        if version == self.latest_version():
            raise RegistryError(f"{version} is latest; roll back before deleting it")
        shutil.rmtree(self.versions_dir / version, ignore_errors=True)

    def _move_pointer(self, version: str, partition: str, weights: dict[str, float]) -> None:
        atomic.write_json(
            self.pointer_path,
            {"version": version, "partition": partition, "moved_at": datetime.now(UTC).isoformat()},
        )
        if self.weights_path is not None:
            atomic.write_bytes(self.weights_path, weights_json(weights))

    def _clean_stale_staging(self, older_than_s: float = 3600.0) -> None:
        """Remove what a publisher that died halfway left behind."""
        cutoff = time.time() - older_than_s
        for leftover in self._staging.iterdir():
            with contextlib.suppress(FileNotFoundError):  # renamed into place meanwhile
                if leftover.stat().st_mtime < cutoff:
                    shutil.rmtree(leftover, ignore_errors=True)
