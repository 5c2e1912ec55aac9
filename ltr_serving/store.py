"""Where the live artifact comes from: a WeightStore loads "whatever latest points at".

The seam is the `WeightStore` protocol: `current_marker()` is a cheap change detector for the
poller and `load()` returns a fully validated artifact or raises. `LocalWeightStore` is the
implementation for a local registry (or the flat WEIGHTS_PATH file where there is no registry,
never in place of one that went away); `S3WeightStore` implements the same two methods over the
registry's S3/MinIO mirror, with the `latest` pointer's ETag as the marker, and reports source
"s3". A store that cannot be read just now raises StoreUnavailable: the poll or reload fails as
retryable and the loaded version serves on.

The canary candidate. `load_candidate()` returns the version `candidate.json` names, validated
exactly as `load()` validates latest's, or None when there is no candidate.json; the marker
covers both pointers, so the poller sees a candidate appear, change or go away.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from botocore.exceptions import ClientError

from ltr_core.artifacts.format import (
    Artifact,
    RegistryError,
    read_file,
    sha256,
    validate_weights,
)
from ltr_core.artifacts.s3 import (
    CANDIDATE,
    MISSING,
    TRANSIENT,
    S3Versions,
    _code,
    s3_versions_from_settings,
)
from ltr_core.artifacts.signing import ArtifactKeys
from ltr_core.artifacts.store import LocalVersions
from ltr_core.settings import ConfigError, Settings

Source = Literal["file", "s3"]
log = logging.getLogger("ltr_serving.store")


class StoreError(RuntimeError):
    """Nothing loadable: no artifact, an invalid one, or one the configured scorer cannot run.
    `version`: the version the pointer named, when it was read that far."""

    version: str | None = None


class StoreUnavailable(StoreError):
    """The store could not be read just now (S3 or disk I/O): worth retrying as it is."""


@dataclass(frozen=True)
class StoredArtifact:
    """A validated artifact; `model_text` is None for the flat weights file (weights only)."""

    version: str
    weights: dict[str, float]
    model_text: str | None
    source: Source
    origin: str  # where it was read from, for health and logs
    partition: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    flat: bool = False  # the flat WEIGHTS_PATH file: weights only, no metadata, no gate record

    @classmethod
    def of(cls, artifact: Artifact, source: Source, origin: str) -> StoredArtifact:
        """A registry version (local or S3), already validated by the registry."""
        return cls(
            version=artifact.version,
            weights=artifact.weights,
            model_text=artifact.model_text,
            source=source,
            origin=origin,
            partition=artifact.metadata.get("partition"),
            metadata=artifact.metadata,
        )


class WeightStore(Protocol):
    source: Source

    def current_marker(self) -> str | None:
        """An opaque value that changes whenever `load()` would return something else; None
        when there is nothing new to see now. StoreUnavailable when the store cannot be read:
        the poll fails (retried by the next one) and the loaded version serves on."""
        ...

    def load(self) -> StoredArtifact:
        """The artifact `latest` points at, fully validated; raises StoreError otherwise."""
        ...

    def load_candidate(self) -> StoredArtifact | None:
        """The artifact `candidate.json` points at, fully validated; None when there is no
        candidate; StoreError (StoreUnavailable) like `load`."""
        ...


class LocalWeightStore:
    """`<registry>/latest.json` when it exists, else the flat WEIGHTS_PATH file, which stands
    in only for a deployment without a registry: once this store has seen the registry's
    pointer, a registry gone (deleted, an unmounted volume) or empty is a store that cannot be
    read (StoreUnavailable), never a switch to the flat file.

    The marker is the checksum of the pointer (or flat) file. It is recomputed only when the
    file's inode, mtime or size changed, so a poll of an unchanged registry costs one stat().
    """

    source: Source = "file"

    def __init__(
        self, registry_dir: Path, weights_path: Path, scorer: str, keys: ArtifactKeys | None = None
    ) -> None:
        self.registry = LocalVersions(registry_dir, keys=keys)  # verify keys: signed versions only
        self.weights_path = Path(weights_path)
        self.scorer = scorer
        self._lock = threading.Lock()
        self._markers: dict[Path, tuple[tuple[int, int, int], str]] = {}  # path -> (stat, marker)
        self._seen_registry = False  # latest.json was there once: the flat file never stands in

    def _active_file(self) -> Path | None:
        for path in (self.registry.pointer_path, self.weights_path):
            if path.exists():
                return path
        return None

    def current_marker(self) -> str | None:
        path = self._active_file()
        if path is None:
            # Neither pointer nor flat file: a marker of its own, so the poller tries a load
            # once and its refusal ("nothing to load") shows in health, instead of nothing.
            return f"{self.registry.pointer_path.name}:missing"
        latest = self._file_marker(path)
        if latest is None:
            return None
        candidate = self._file_marker(self.registry.candidate_path)
        return latest if candidate is None else f"{latest}+{candidate}"

    def _file_marker(self, path: Path) -> str | None:
        try:
            stat = path.stat()
        except FileNotFoundError:  # replaced between exists() and stat(); the next poll sees it
            return None
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            cached = self._markers.get(path)
            if cached is not None and cached[0] == key:
                return cached[1]
        try:
            marker = f"{path.name}:{sha256(read_file(path))}"
        except FileNotFoundError:
            return None
        except (RegistryError, OSError) as exc:
            # Unreadable (a directory, a device, too big, no permission): a marker of its own,
            # so the poller tries it once and the refusal shows in health and metrics; the
            # next change of the file is seen by its stat key.
            marker = f"{path.name}:unreadable:{exc}"
        with self._lock:
            self._markers[path] = (key, marker)
        return marker

    def load(self) -> StoredArtifact:
        if self.registry.pointer_path.exists():
            self._seen_registry = True
            return self._load_version()
        if self.registry.versions():
            # The flat file stands in only where there is no registry: a registry without a
            # pointer lost it (deleted, or a writer killed mid-move), and serving the flat
            # file then would silently change what ranks.
            raise StoreError(
                f"{self.registry.pointer_path} is missing while {self.registry.versions_dir} "
                "holds versions: not falling back to the flat weights file; point latest at a "
                "version (`ltr registry rollback VERSION`)"
            )
        if self._seen_registry:
            # Neither pointer nor versions where this store read a registry before: the folder is
            # gone or empty (an unmounted volume), a store to retry as it is.
            state = (
                "holds neither latest.json nor a version"
                if self.registry.root.is_dir()
                else "is gone"
            )
            raise StoreUnavailable(
                f"the registry {self.registry.root} {state} (an unmounted volume?): this replica "
                "served from it, so it does not fall back to the flat weights file; the loaded "
                "version serves on until the registry is back"
            )
        if self.weights_path.exists():
            return self._load_flat()
        raise StoreError(
            f"nothing to load: neither {self.registry.pointer_path} nor {self.weights_path} exists"
        )

    def load_candidate(self) -> StoredArtifact | None:
        """The candidate; None when there is none, also when latest.json names it already (a
        promotion stopped half-way: it is the live version, `LocalVersions.candidate`)."""
        if not self.registry.candidate_path.exists():
            return None
        try:
            return self._load_version(candidate=True)
        except _NoCandidate:
            return None

    def _load_version(self, candidate: bool = False) -> StoredArtifact:
        path = self.registry.candidate_path if candidate else self.registry.pointer_path
        try:
            pointer = self.registry.candidate() if candidate else self.registry.pointer()
            if candidate and pointer is None:  # gone, or named by latest.json too
                raise _NoCandidate
            if not isinstance(pointer, dict) or not isinstance(pointer.get("version"), str):
                raise StoreError(f"{path} has no version: {pointer!r}")
            version = pointer["version"]
        except OSError as exc:
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        except (RegistryError, ValueError) as exc:
            raise StoreError(f"{type(exc).__name__}: {exc}") from exc
        try:
            # LocalVersions.load verifies checksums before LightGBM parses the model.
            artifact = self.registry.load(version)
        except OSError as exc:
            raise _naming(StoreUnavailable(f"{type(exc).__name__}: {exc}"), version) from exc
        except (RegistryError, ValueError) as exc:
            raise _naming(StoreError(f"{type(exc).__name__}: {exc}"), version) from exc
        return StoredArtifact.of(artifact, self.source, str(self.registry.versions_dir / version))

    def _load_flat(self) -> StoredArtifact:
        if self.registry.keys.required:
            raise StoreError(
                f"{self.weights_path} carries no signature and LTR_ARTIFACT_VERIFY_KEYS is set: "
                f"only a signed registry version is served ({self.registry.pointer_path} is "
                "missing)"
            )
        if self.scorer != "weights":
            raise StoreError(
                f"LTR_SCORER={self.scorer} needs a registry version with a model "
                f"({self.registry.pointer_path} is missing); the flat {self.weights_path} "
                "only serves the weights scorer"
            )
        try:
            data = read_file(self.weights_path)
            weights = validate_weights(data)
        except (RegistryError, OSError) as exc:
            raise StoreError(f"{self.weights_path}: {exc}") from exc
        # The flat file carries no version id: name it by its content so health and responses
        # still say exactly what ranked them.
        return StoredArtifact(
            version=f"flat-{sha256(data)[:12]}",
            weights=weights,
            model_text=None,
            source=self.source,
            origin=str(self.weights_path),
            flat=True,
        )


class _NoCandidate(Exception):
    """candidate.json names no candidate after all (see `LocalWeightStore.load_candidate`)."""


class S3WeightStore:
    """`latest.json` on S3/MinIO (the registry's mirror). The marker is the pointer's ETag, one
    HEAD request per poll; a load downloads the version and validates it fully, checksums
    before the model is parsed."""

    source: Source = "s3"

    def __init__(self, mirror: S3Versions, scorer: str) -> None:
        self.mirror = mirror
        self.scorer = scorer

    def current_marker(self) -> str | None:
        """StoreUnavailable while latest.json cannot be read (S3 unreachable, or a transient
        error such as 503): a failed poll, shown in health, not "nothing changed". A missing or
        denied latest.json, and a candidate.json S3 will not show (403: a reader without
        s3:ListBucket is denied a missing key), are markers of their own: the poller still
        loads a new latest, and a load that fails says why in health. None only while
        candidate.json cannot be read (latest.json could: the next poll reads both again)."""
        url = self.mirror.url("latest.json")
        try:
            head = self.mirror.client.head_object(
                Bucket=self.mirror.bucket, Key=self.mirror.key("latest.json")
            )
        except ClientError as exc:
            if _code(exc) in TRANSIENT:
                raise StoreUnavailable(f"cannot read {url}: ClientError: {exc}") from exc
            log.warning("cannot read %s: %s", url, exc)
            return "latest.json:missing" if _code(exc) in MISSING else f"latest.json:{_code(exc)}"
        except Exception as exc:  # S3 unreachable: the poll failed, the loaded version serves
            raise StoreUnavailable(f"cannot read {url}: {type(exc).__name__}: {exc}") from exc
        try:
            candidate = self.mirror.client.head_object(
                Bucket=self.mirror.bucket, Key=self.mirror.key(CANDIDATE)
            )
        except ClientError as exc:
            if _code(exc) in MISSING:
                return str(head["ETag"])
            log.warning("cannot read %s: %s", self.mirror.url(CANDIDATE), exc)
            return None if _code(exc) in TRANSIENT else f"{head['ETag']}+{CANDIDATE}:{_code(exc)}"
        except Exception as exc:  # S3 unreachable: nothing new to see now
            log.warning("cannot read %s: %s", self.mirror.url(CANDIDATE), exc)
            return None
        return f"{head['ETag']}+{candidate['ETag']}"

    def load(self) -> StoredArtifact:
        artifact = self._load(candidate=False)
        if artifact is None:  # cannot happen: a missing latest.json is a StoreError
            raise StoreError(f"{self.mirror.url('latest.json')} names no version")
        return artifact

    def load_candidate(self) -> StoredArtifact | None:
        return self._load(candidate=True)

    def _load(self, candidate: bool) -> StoredArtifact | None:
        name = CANDIDATE if candidate else "latest.json"
        version: str | None = None
        try:
            pointer, _ = self.mirror.candidate() if candidate else self.mirror.pointer()
            if candidate and pointer is None:
                return None
            if pointer is None:
                raise StoreError(
                    f"{self.mirror.url(name)} does not exist: nothing is published there yet, "
                    "or it was deleted (`ltr registry sync --force` writes it again)"
                )
            if not isinstance(pointer.get("version"), str):
                raise StoreError(f"{self.mirror.url(name)} has no version: {pointer!r}")
            version = pointer["version"]
            artifact = self.mirror.fetch(version)
        except StoreError:
            raise
        except RegistryError as exc:  # the artifact itself is invalid
            raise _naming(StoreError(f"{type(exc).__name__}: {exc}"), version) from exc
        except Exception as exc:  # S3 unreachable or erroring: keep serving, retry later
            raise StoreUnavailable(f"{type(exc).__name__}: {exc}") from exc
        return StoredArtifact.of(artifact, self.source, self.mirror.url(artifact.version))


def _naming(error: StoreError, version: object) -> StoreError:
    error.version = version if isinstance(version, str) else None
    return error


def build_store(
    registry_dir: Path,
    weights_path: Path,
    scorer: str,
    mirror: S3Versions | None = None,
    keys: ArtifactKeys | None = None,
) -> WeightStore:
    """S3 when a mirror is given (LTR_SERVING_SOURCE=s3, or auto with S3_BUCKET set; it carries
    its own keys), else the local registry / flat file, checked with `keys`."""
    if mirror is not None:
        return S3WeightStore(mirror, scorer)
    return LocalWeightStore(registry_dir, weights_path, scorer, keys)


def serving_mirror(settings: Settings) -> S3Versions | None:
    """The S3 mirror to serve from when serving reads S3 (LTR_SERVING_SOURCE=s3, or auto with
    S3_BUCKET set), carrying the settings' artifact keys; None for the local registry."""
    if settings.serving_store != "s3":
        return None
    mirror = s3_versions_from_settings(settings)
    if mirror is None:
        raise ConfigError("LTR_SERVING_SOURCE=s3 needs S3_BUCKET")
    return mirror
