"""The artifact format every reader and writer of the registry shares.

A version is a folder `<YYYYMMDD_HHMMSS>/` holding `ltr_weights.json` (flat feature -> weight,
summing to 1.0), `model.txt` (LightGBM) and `metadata.json` (metrics, gate, window, params,
checksums, signature). The rules here (version ids, pointers, checksums before any model parse,
the model's structure, signatures, which scorer a version was gated for) are applied by the
pipeline when it publishes and by serving when it loads, so both refuse the same things.
"""

from __future__ import annotations

import errno
import hashlib
import json
import math
import os
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeGuard, cast

from ltr_core.artifacts.model_check import UnsafeModel, check_model_text
from ltr_core.artifacts.model_format import MAX_MODEL_BYTES, MalformedModel
from ltr_core.artifacts.signing import (
    ArtifactKeys,
    BadSignature,
    check_signature,
)
from ltr_core.features import FEATURES
from ltr_core.vocabulary import SCORERS

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
# The pointers beside versions/: `latest` (what serves) and, under LTR_ROLLOUT=canary, the
# `candidate` served to interleaved requests until it is promoted to latest or retired.
LATEST_POINTER = "latest.json"
CANDIDATE_POINTER = "candidate.json"
POINTERS = (LATEST_POINTER, CANDIDATE_POINTER)
# The most a registry reader reads of one file: model.txt up to the model's own limit, any
# other file (metadata, weights, pointers, the model card) up to MAX_FILE_BYTES. A crafted file
# (a huge or sparse one, a link to /dev/zero) is refused before it can exhaust memory.
MAX_FILE_BYTES = 16 * 1024 * 1024


class RegistryError(RuntimeError):
    """A version is missing, incomplete or invalid."""


class UnreadableFile(RegistryError):
    """A registry file this process may not read (its permissions): a version's readers skip
    or refuse it like any invalid file; a reader of the registry's own state raises it."""


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


def file_limit(name: str) -> int:
    """The most a registry reader reads of the file `name`, locally or from S3."""
    return MAX_MODEL_BYTES if name == MODEL_FILE else MAX_FILE_BYTES


def read_file(path: Path, limit: int | None = None) -> bytes:
    """A registry file's bytes, read only if it is a regular file (or a link to one) of at most
    `limit` bytes (default `file_limit`), and never more than that: a directory, FIFO, device
    or oversized file is a RegistryError naming the file, and so is one this process may not
    read (another uid's 0600 file): every reader of versions skips or refuses a RegistryError.
    FileNotFoundError when it does not exist (what that means is the caller's to say)."""
    if limit is None:
        limit = file_limit(path.name)
    try:
        # non-blocking: opening a FIFO must not wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except PermissionError as exc:  # not a passing fault (an I/O error is; it is raised)
        raise UnreadableFile(f"{path} cannot be read: {exc.strerror}") from None
    except OSError as exc:
        if exc.errno == errno.ENOTDIR:
            raise FileNotFoundError(exc.errno, exc.strerror, str(path)) from None
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise RegistryError(f"{path} is not a regular file")
        if info.st_size > limit:
            raise RegistryError(f"{path} is {info.st_size} bytes, more than {limit}")
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:  # grew while being read
        raise RegistryError(f"{path} is more than {limit} bytes")
    return data


def parse_json(data: bytes | str) -> Any:
    """json.loads, where JSON nested too deeply for the parser is a ValueError like any other
    malformed JSON (the parser raises RecursionError): a crafted file is refused, not a crash."""
    try:
        return json.loads(data)
    except RecursionError:
        raise ValueError("nested too deeply to parse") from None


def weights_json(weights: Mapping[str, float]) -> bytes:
    """The flat weights file, in feature order."""
    return (json.dumps({f: weights[f] for f in FEATURES}, indent=2) + "\n").encode()


def validate_weights(weights_bytes: bytes) -> dict[str, float]:
    """The weights file's rules: exactly FEATURES, finite, non-negative, summing to 1.0."""
    try:
        weights = parse_json(weights_bytes)
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
    LightGBM parse it. Both run in a child process (`model_check`): LightGBM aborts the whole
    process on some malformed model files, and the pure-Python check would hold the caller's
    GIL (serving's event loop) for as long as a large model takes to read.
    """
    checked = check_checksums(weights_bytes, model_bytes, metadata)
    try:
        check_signature(checked, keys or ArtifactKeys())
    except BadSignature as exc:
        raise RegistryError(f"{METADATA_FILE} {exc}") from None
    partition = checked.get("partition")  # health and the gate show it as text
    if partition is not None and not isinstance(partition, str):
        raise RegistryError(f"{METADATA_FILE} has a partition that is not a string")
    gated = checked.get("gated_scorer")
    if gated is not None and gated not in SCORERS:
        raise RegistryError(f"gated_scorer {gated!r:.50} is not one of {', '.join(SCORERS)}")
    weights = validate_weights(weights_bytes)
    try:
        model_bytes.decode()
        check_model_text(model_bytes, FEATURES)  # the structure, then LightGBM, in a child
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


def checked_artifact(
    version: str,
    weights_bytes: bytes,
    model_bytes: bytes,
    metadata: object,
    where: str,
    keys: ArtifactKeys | None = None,
) -> Artifact:
    """The artifact of `version` from its three files as read (a local folder, S3): every rule
    of `validate_artifact`, then its metadata must name that version (a version folder copied
    or renamed is refused). Each RegistryError starts with `where`, the version's location."""
    try:
        weights = validate_artifact(weights_bytes, model_bytes, metadata, keys)
    except RegistryError as exc:
        raise RegistryError(f"{where}: {exc}") from None
    checked = cast(dict[str, Any], metadata)  # validate_artifact refuses anything else
    if checked.get("version") != version:
        raise RegistryError(f"{where}: {METADATA_FILE} says {checked.get('version')!r:.50}")
    return Artifact(version, weights, model_bytes.decode(), checked)


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
