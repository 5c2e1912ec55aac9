"""The local model registry: immutable versions, an atomic `latest` pointer, rollback.

Layout under LTR_REGISTRY_DIR:

    versions/<YYYYMMDD_HHMMSS>/ltr_weights.json   flat feature -> weight, sums to 1.0
                              /model.txt          LightGBM model
                              /metadata.json      metrics, gate, window, params, checksums
    latest.json                                   {"version", "partition", ...} (the pointer)

A version is written into a staging folder, verified, then renamed into versions/ in one step,
and only then does the pointer move: a reader never sees a half-written version. A version of an
older partition (a backfill) is published but does not move the pointer backwards unless forced.

A version id is `YYYYMMDD_HHMMSS` (UTC) and nothing else: every method taking a version, and the
pointer read back from disk, refuse anything else (a path, a trailing slash, `..`), so no name can
reach outside versions/. A deleted version is first renamed into `.trash/` (one atomic step for a
reader), then removed; what a killed writer leaves behind is cleaned by the next publish or by
`ltr registry verify --repair` (`repair()`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeGuard

from ltr_assets import atomic
from ltr_assets.config import SCORERS
from ltr_assets.model_check import UnsafeModel, check_model_text
from ltr_assets.model_format import MalformedModel, check_model_format
from ltr_assets.schema import FEATURES
from ltr_assets.signing import SIGNATURE_FIELD, ArtifactKeys, BadSignature, check_signature, sign

log = logging.getLogger("ltr.registry")

WEIGHTS_FILE = "ltr_weights.json"
MODEL_FILE = "model.txt"
METADATA_FILE = "metadata.json"
CHECKSUMMED_FILES = (WEIGHTS_FILE, MODEL_FILE)
# Documents beside the artifact (the model card): checksummed in metadata.json and checked by
# `verify`, but optional (older versions have none) and never read by serving.
MODEL_CARD_FILE = "model_card.md"
DOCUMENT_FILES = (MODEL_CARD_FILE,)
VERSION_FORMAT = "%Y%m%d_%H%M%S"
# ASCII digits only: `\d` would also take other scripts' digits, and `$` a trailing newline.
VERSION_PATTERN = re.compile(r"[0-9]{8}_[0-9]{6}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
WEIGHT_SUM_TOLERANCE = 1e-9
TRASH_DIR = ".trash"


class RegistryError(RuntimeError):
    """A version is missing, incomplete or invalid."""


class InvalidVersion(RegistryError, ValueError):
    """A name that is not a version id (YYYYMMDD_HHMMSS)."""


class InvalidPointer(RegistryError):
    """latest.json exists but does not name a valid version. `etag`: its S3 ETag, if read there
    (a writer may still replace it conditionally)."""

    def __init__(self, message: str, etag: str | None = None) -> None:
        super().__init__(message)
        self.etag = etag


def is_version(name: object) -> TypeGuard[str]:
    """True for a real UTC timestamp YYYYMMDD_HHMMSS, and nothing else."""
    if not isinstance(name, str) or not VERSION_PATTERN.fullmatch(name):
        return False
    try:
        datetime.strptime(name, VERSION_FORMAT)
    except ValueError:
        return False
    return True


def check_version(name: object) -> str:
    """`name` if it is a version id; InvalidVersion (a clear message) otherwise."""
    if not is_version(name):
        raise InvalidVersion(f"{name!r} is not a version id (YYYYMMDD_HHMMSS, UTC)")
    return name


def check_pointer(pointer: object, where: str) -> dict[str, Any]:
    """A pointer object read back from `where`: {"version": <version id>, "partition": str}."""
    if not isinstance(pointer, dict):
        raise InvalidPointer(f"{where} is not an object: {pointer!r:.100}")
    if not is_version(pointer.get("version")):
        raise InvalidPointer(f"{where} names {pointer.get('version')!r:.100}, not a version id")
    if not isinstance(pointer.get("partition", ""), str):
        raise InvalidPointer(f"{where} has a partition that is not a string")
    return pointer


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


def check_checksums(weights_bytes: bytes, model_bytes: bytes, metadata: object) -> dict[str, Any]:
    """metadata.json must be an object whose checksums match both files, always: a version
    without them (null, a list, no or malformed checksums) is refused, never trusted. Returns
    the metadata, now known to be an object."""
    if not isinstance(metadata, dict):
        raise RegistryError(
            f"{METADATA_FILE} is {type(metadata).__name__}, not an object: refused unverified"
        )
    expected = metadata.get("checksums")
    if not isinstance(expected, dict):
        raise RegistryError(f"{METADATA_FILE} has no checksums object: refused unverified")
    for name, data in ((WEIGHTS_FILE, weights_bytes), (MODEL_FILE, model_bytes)):
        digest = expected.get(name)
        if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
            raise RegistryError(f"{METADATA_FILE} has no valid sha256 for {name}: refused")
        if digest != sha256(data):
            raise RegistryError(f"checksum of {name} does not match metadata.json")
    return metadata


def validate_artifact(
    weights_bytes: bytes, model_bytes: bytes, metadata: object, keys: ArtifactKeys | None = None
) -> dict[str, float]:
    """Every rule a live artifact must meet; returns the weights. Raises RegistryError.

    Checksums come first, and are required: the model is parsed only once its bytes are known to
    be the ones that were published. With verify keys (`keys.required`), the metadata, which
    holds those checksums, must carry a valid signature (`signing`). Without them, an attacker
    able to rewrite model.txt can rewrite metadata.json too; either way the model's structure
    is then checked in pure Python (`model_format`: every child in range, every node reached
    once, bounded depth and size, the expected features, finite values), which LightGBM never
    does and whose absence lets a crafted tree hang or crash prediction. Only then does
    LightGBM parse it, in a child process first (`model_check`): it aborts the whole process on
    some malformed model files.
    """
    checked = check_checksums(weights_bytes, model_bytes, metadata)
    try:
        check_signature(checked, keys or ArtifactKeys())
    except BadSignature as exc:
        raise RegistryError(f"{METADATA_FILE} {exc}") from None
    gated = checked.get("gated_scorer")
    if gated is not None and gated not in SCORERS:
        raise RegistryError(f"gated_scorer {gated!r:.50} is not one of {', '.join(SCORERS)}")
    weights = validate_weights(weights_bytes)
    try:
        model_bytes.decode()
        check_model_format(model_bytes, FEATURES)
        check_model_text(model_bytes, FEATURES)
    except UnicodeDecodeError:
        raise RegistryError(f"{MODEL_FILE} is not UTF-8 text") from None
    except MalformedModel as exc:
        raise RegistryError(f"{MODEL_FILE} is malformed: {exc}; refused") from None
    except UnsafeModel as exc:
        raise RegistryError(f"{MODEL_FILE} {exc}") from None
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
    cleaned: list[str] = field(default_factory=list)  # leftovers of killed writers removed


def scorer_to_record(metadata: Mapping[str, Any]) -> str | None:
    """What a publish records as the version's `gated_scorer`: the gate's `gated_scorer`, else
    the candidate summary's `scorer` (what training evaluated). None when it says neither."""
    gated: str | None = metadata.get("gated_scorer", metadata.get("scorer"))
    if gated is not None and gated not in SCORERS:
        raise RegistryError(f"gated scorer {gated!r:.50} is not one of {', '.join(SCORERS)}")
    return gated


class NotServable(RegistryError):
    """A valid version that a serving process running another scorer would refuse."""


def check_servable(metadata: Mapping[str, Any], scorer: str) -> None:
    """The one acceptance rule for a registry version, applied by serving before it goes live
    and by rollback before the pointer moves: the version must record the scorer its gate
    evaluated (`gated_scorer`, and nothing else stands in for it), and it must be `scorer`."""
    version = metadata.get("version", "?")
    gated = metadata.get("gated_scorer")
    if gated is None:
        raise NotServable(
            f"version {version} records no gated_scorer, so nothing says its gate evaluated "
            f"the {scorer} scorer (LTR_SCORER) that serving runs; refused"
        )
    if gated != scorer:
        raise NotServable(
            f"version {version} was gated for the {gated!s:.50} scorer, but serving runs "
            f"LTR_SCORER={scorer}; refused"
        )


class LocalRegistry:
    """`keys`: the signing key signs every version published here; verify keys make every
    read (load, verify, rollback, publish's own check) require a valid signature."""

    def __init__(
        self, root: Path, weights_path: Path | None = None, keys: ArtifactKeys | None = None
    ) -> None:
        self.root = Path(root)
        self.weights_path = weights_path
        self.keys = keys or ArtifactKeys()
        self.versions_dir = self.root / "versions"
        self.pointer_path = self.root / "latest.json"
        self._staging = self.root / ".staging"
        self._trash = self.root / TRASH_DIR

    # -- reading ---------------------------------------------------------------------------

    def pointer(self) -> dict[str, Any] | None:
        """The latest pointer; None when there is none. InvalidPointer when latest.json does
        not name a version id (not JSON, not an object, a path, a trailing slash...)."""
        try:
            raw = self.pointer_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            pointer = json.loads(raw)
        except ValueError as exc:
            raise InvalidPointer(f"{self.pointer_path} is not JSON: {exc}") from None
        return check_pointer(pointer, str(self.pointer_path))

    def latest_version(self) -> str | None:
        pointer = self.pointer()
        return pointer["version"] if pointer else None

    def versions(self) -> list[str]:
        """Version folders, oldest first; anything else under versions/ is not a version."""
        if not self.versions_dir.exists():
            return []
        return sorted(
            p.name for p in self.versions_dir.iterdir() if is_version(p.name) and p.is_dir()
        )

    def baseline_for(self, partition: str) -> str | None:
        """The version a candidate for `partition` must not regress against: the live one when
        it is not newer than the partition (the nightly case), else, for a backfill, the newest
        version published for a partition at or before it. A live model trained on later days
        would have seen the backfilled day's test groups and make an unfair yardstick."""
        pointer = self.pointer()
        if pointer and pointer.get("partition", "") <= partition:
            version: str = pointer["version"]
            return version
        for version in reversed(self.versions()):
            try:
                if self.metadata(version).get("partition", "") <= partition:
                    return version
            except RegistryError:
                continue
        return None

    def metadata(self, version: str) -> dict[str, Any]:
        path = self.versions_dir / check_version(version) / METADATA_FILE
        try:
            metadata = json.loads(path.read_text())
        except FileNotFoundError:
            raise RegistryError(f"version {version} does not exist in {self.root}") from None
        except ValueError as exc:
            raise RegistryError(f"version {version}: {METADATA_FILE} is not JSON: {exc}") from None
        if not isinstance(metadata, dict):
            raise RegistryError(
                f"version {version}: {METADATA_FILE} is {type(metadata).__name__}, not an object"
            )
        return metadata

    def load(self, version: str) -> Artifact:
        """Read and fully validate a version (checksums before the model is parsed)."""
        metadata = self.metadata(version)
        folder = self.versions_dir / version
        try:
            weights_bytes = (folder / WEIGHTS_FILE).read_bytes()
            model_bytes = (folder / MODEL_FILE).read_bytes()
        except FileNotFoundError as exc:
            raise RegistryError(f"version {version} is incomplete: {exc.filename}") from None
        try:
            weights = validate_artifact(weights_bytes, model_bytes, metadata, self.keys)
        except RegistryError as exc:
            raise RegistryError(f"version {version}: {exc}") from None
        if metadata.get("version") != version:
            raise RegistryError(
                f"version {version}: {METADATA_FILE} says {metadata.get('version')!r:.50}"
            )
        return Artifact(version, weights, model_bytes.decode(), metadata)

    def verify(self, version: str) -> list[str]:
        """Problems with a version; empty when it is valid. InvalidVersion for a bad name.
        Documents (the model card) listed in the checksums must be there and match."""
        check_version(version)
        try:
            artifact = self.load(version)
        except RegistryError as exc:
            return [str(exc)]
        problems = []
        checksums = artifact.metadata["checksums"]
        for name in DOCUMENT_FILES:
            if name not in checksums:
                continue
            try:
                data = (self.versions_dir / version / name).read_bytes()
            except FileNotFoundError:
                problems.append(f"version {version}: {name} is listed in checksums but missing")
                continue
            if sha256(data) != checksums[name]:
                problems.append(f"version {version}: checksum of {name} does not match")
        return problems

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

    def _previous_pointer(self) -> tuple[dict[str, Any] | None, str]:
        """The pointer before a move; a malformed one counts as none (the move repairs it)."""
        try:
            return self.pointer(), ""
        except InvalidPointer as exc:
            log.warning("replacing a malformed pointer: %s", exc)
            return None, f"; replaced a malformed latest.json ({exc})"

    def publish(
        self,
        weights: Mapping[str, float],
        model_text: str,
        metadata: Mapping[str, Any],
        partition: str,
        force: bool = False,
        now: datetime | None = None,
        documents: Callable[[Mapping[str, Any]], Mapping[str, bytes]] | None = None,
    ) -> PublishResult:
        """Write a new immutable version, then move `latest` unless it would go backwards.

        `gated_scorer` (or the candidate summary's `scorer`) is recorded as the version's
        `gated_scorer`: serving refuses a version gated for another scorer than it runs.
        `documents` renders files of DOCUMENT_FILES (the model card) from the version's full
        metadata (so they can name the version); they are checksummed with the rest. With a
        signing key, metadata.json carries a signature over all of it (`signing`).
        """
        weights_bytes = weights_json(weights)
        model_bytes = model_text.encode()
        gated = scorer_to_record(metadata)
        with self._lock():
            cleaned = self._clean_leftovers()
            self._staging.mkdir(parents=True, exist_ok=True)
            self.versions_dir.mkdir(parents=True, exist_ok=True)
            version = self._new_version(now or datetime.now(UTC))
            full_metadata = {
                **metadata,
                "version": version,
                "partition": partition,
                "published_at": datetime.now(UTC).isoformat(),
                "features": list(FEATURES),
                "checksums": {WEIGHTS_FILE: sha256(weights_bytes), MODEL_FILE: sha256(model_bytes)},
            }
            if gated is not None:
                full_metadata["gated_scorer"] = gated
            extra = dict(documents(full_metadata)) if documents is not None else {}
            unknown = set(extra) - set(DOCUMENT_FILES)
            if unknown:
                raise RegistryError(f"not a registry document: {sorted(unknown)}")
            full_metadata["checksums"].update({name: sha256(b) for name, b in extra.items()})
            full_metadata.pop(SIGNATURE_FIELD, None)
            if self.keys.signing is not None:  # last: it covers everything above
                full_metadata[SIGNATURE_FIELD] = sign(full_metadata, self.keys.signing)
            staging = self._staging / f"{version}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
            staging.mkdir()
            for name, data in extra.items():
                atomic.write_bytes(staging / name, data)
            atomic.write_bytes(staging / WEIGHTS_FILE, weights_bytes)
            atomic.write_bytes(staging / MODEL_FILE, model_bytes)
            atomic.write_json(staging / METADATA_FILE, full_metadata)
            try:
                validate_artifact(
                    (staging / WEIGHTS_FILE).read_bytes(),
                    (staging / MODEL_FILE).read_bytes(),
                    json.loads((staging / METADATA_FILE).read_text()),
                    self.keys,
                )
            except BaseException:
                shutil.rmtree(staging, ignore_errors=True)
                raise
            target = self.versions_dir / version
            os.rename(staging, target)  # atomic: the version appears whole or not at all
            previous, note = self._previous_pointer()
            previous_version = previous["version"] if previous else None
            if previous and not force and partition < previous.get("partition", ""):
                return PublishResult(
                    version,
                    target,
                    False,
                    previous_version,
                    f"partition {partition} is older than latest's {previous['partition']}: "
                    "published, latest not moved",
                    cleaned,
                )
            self._move_pointer(version, partition, dict(weights))
        return PublishResult(
            version, target, True, previous_version, "latest moved" + note, cleaned
        )

    def rollback(self, version: str, scorer: str | None = None) -> PublishResult:
        """Point `latest` at an existing version after validating it fully and, with `scorer`
        (LTR_SCORER), checking that serving would accept it (`check_servable`).

        Validation and the move happen under the registry's lock, so a concurrent publish's
        retention cannot delete the version between the two."""
        check_version(version)
        with self._lock():
            artifact = self.load(version)
            if scorer is not None:
                check_servable(artifact.metadata, scorer)
            previous, note = self._previous_pointer()
            self._move_pointer(version, artifact.metadata.get("partition", ""), artifact.weights)
        return PublishResult(
            version,
            self.versions_dir / version,
            True,
            previous["version"] if previous else None,
            f"rolled back to {version}{note}",
        )

    def pointed_versions(self) -> dict[str, str]:
        """pointer file name -> the version it names, for every pointer there is. InvalidPointer
        when one is malformed (what it names is then unknown)."""
        latest = self.latest_version()
        return {self.pointer_path.name: latest} if latest else {}

    def delete_version(self, version: str) -> None:
        """Remove a version (retention). Never one a pointer names at the moment of deletion
        (checked under the lock that rollback and publish move pointers under), and nothing at
        all while a pointer is malformed (what it meant to protect is unknown). The folder is
        renamed into .trash/ first, so a reader sees the whole version or none of it."""
        check_version(version)
        with self._lock():
            for pointer, named in self.pointed_versions().items():  # InvalidPointer: refuse
                if named == version:
                    raise RegistryError(f"{version} is named by {pointer}; it is not deleted")
            self._discard(self.versions_dir / version)

    def repair(self) -> list[str]:
        """Remove what killed writers left behind (see `_clean_leftovers`); what was removed."""
        with self._lock():
            return self._clean_leftovers()

    def _discard(self, folder: Path) -> None:
        """Rename into .trash/ (atomic for readers), then delete."""
        self._trash.mkdir(parents=True, exist_ok=True)
        doomed = self._trash / f"{folder.name}.{uuid.uuid4().hex[:8]}"
        try:
            os.rename(folder, doomed)
        except FileNotFoundError:
            return
        shutil.rmtree(doomed, ignore_errors=True)

    def _move_pointer(self, version: str, partition: str, weights: dict[str, float]) -> None:
        atomic.write_json(
            self.pointer_path,
            {"version": version, "partition": partition, "moved_at": datetime.now(UTC).isoformat()},
        )
        if self.weights_path is not None:
            atomic.write_bytes(self.weights_path, weights_json(weights))

    def _clean_leftovers(self) -> list[str]:
        """Under the lock, so no writer is halfway: temporary files of killed atomic writes of
        latest.json and WEIGHTS_PATH, staging folders, the trash, and version folders that a
        killed deletion left incomplete (a version is renamed into place whole, so an
        incomplete one that latest does not name can only be a half-deleted one)."""
        removed: list[Path] = []
        tmp_patterns = [(self.root, f".{self.pointer_path.name}.*.tmp")]
        if self.weights_path is not None:
            tmp_patterns.append((self.weights_path.parent, f".{self.weights_path.name}.*.tmp"))
        for folder, pattern in tmp_patterns:
            if folder.is_dir():
                for leftover in folder.glob(pattern):
                    leftover.unlink(missing_ok=True)
                    removed.append(leftover)
        for folder in (self._staging, self._trash):
            if folder.is_dir():
                for leftover in folder.iterdir():
                    shutil.rmtree(leftover, ignore_errors=True)
                    removed.append(leftover)
        try:
            latest = self.latest_version()
        except InvalidPointer:
            latest = None  # incomplete folders are kept while latest is unknown
        else:
            for version in self.versions():
                folder = self.versions_dir / version
                complete = all(
                    (folder / name).is_file() for name in (*CHECKSUMMED_FILES, METADATA_FILE)
                )
                if version != latest and not complete:
                    try:
                        self._discard(folder)
                    except OSError as exc:  # housekeeping: never what fails a publish
                        log.warning("could not remove the leftover %s: %s", folder, exc)
                        continue
                    removed.append(folder)
        for path in removed:
            log.warning("removed the leftover of a killed writer: %s", path)
        return [str(path) for path in removed]
