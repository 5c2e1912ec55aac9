"""The registry's mirror on S3/MinIO: immutable versions, a `latest/` copy and a `latest.json`
pointer moved with a conditional write, so two publishers can never interleave.

Layout: s3://$S3_BUCKET/$S3_PREFIX/<version>/{ltr_weights.json, model.txt, metadata.json},
.../latest/{same files} and .../latest.json ({"version", "partition", ...}), written last.
A version's metadata.json is uploaded last, so its presence marks a complete version.
Version ids are checked (YYYYMMDD_HHMMSS) before they become keys, and latest.json is validated
when read back, like the local registry's.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from ltr_assets.registry import (
    DOCUMENT_FILES,
    METADATA_FILE,
    MODEL_FILE,
    WEIGHTS_FILE,
    Artifact,
    InvalidPointer,
    LocalRegistry,
    RegistryError,
    check_pointer,
    check_version,
    is_version,
    sha256,
    validate_artifact,
)
from ltr_assets.signing import ArtifactKeys

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from ltr_assets.config import Settings

log = logging.getLogger("ltr.s3")
FILES_IN_ORDER = (WEIGHTS_FILE, MODEL_FILE, METADATA_FILE)  # metadata last: "complete"
POINTER = "latest.json"
T = TypeVar("T")
# A conditional write of latest.json that lost to another writer: re-read and decide again.
# (S3 answers 412 PreconditionFailed, or 409 ConditionalRequestConflict while both are in flight.)
_LOST_RACE = ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey", "404", "409")
MISSING = ("NoSuchKey", "404", "NoSuchBucket")  # the object is not there: not worth a retry
TRANSIENT = ("500", "502", "503", "504", "SlowDown", "InternalError", "ServiceUnavailable",
             "RequestTimeout", "Throttling", "ThrottlingException")  # fmt: skip


class S3Unavailable(RuntimeError):
    """S3 could not be reached or kept failing after the retries."""


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def with_retries(action: Callable[[], T], attempts: int, backoff_s: float, what: str) -> T:
    """Retry connection-level failures with exponential backoff, then raise S3Unavailable."""
    error: Exception | None = None
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except (BotoCoreError, S3Unavailable) as exc:
            error = exc
        except ClientError as exc:
            if _code(exc) not in TRANSIENT:
                raise
            error = exc
        if attempt < attempts:
            time.sleep(backoff_s * 2 ** (attempt - 1))
    raise S3Unavailable(f"{what} failed after {attempts} attempts: {error}") from error


@dataclass
class S3Mirror:
    client: Any  # a boto3 S3 client (s3_client below), or a stand-in with the same methods
    bucket: str
    prefix: str = "ltr"
    attempts: int = 3
    backoff_s: float = 1.0
    pointer_retries: int = 8
    _sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    keys: ArtifactKeys = field(default_factory=ArtifactKeys)  # verify keys: fetch requires them

    def key(self, *parts: str) -> str:
        return (
            "/".join([self.prefix.strip("/"), *parts])
            if self.prefix.strip("/")
            else "/".join(parts)
        )

    def url(self, *parts: str) -> str:
        return f"s3://{self.bucket}/{self.key(*parts)}"

    # -- reading ---------------------------------------------------------------------------

    def versions(self) -> list[str]:
        """Complete versions (their metadata.json exists), oldest first."""

        def listing() -> list[str]:
            found = set()
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.key("")):
                for item in page.get("Contents", []):
                    parts = item["Key"][len(self.key("")) :].split("/")
                    if len(parts) == 2 and is_version(parts[0]) and parts[1] == METADATA_FILE:
                        found.add(parts[0])
            return sorted(found)

        return with_retries(listing, self.attempts, self.backoff_s, f"listing {self.url()}")

    def pointer(self) -> tuple[dict[str, Any] | None, str | None]:
        """The latest.json pointer and its ETag (None, None when there is none).

        InvalidPointer (carrying the ETag, so a writer can still replace it conditionally) when
        it does not name a version id."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key(POINTER))
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None, None
            raise
        etag = response["ETag"]
        try:
            return check_pointer(json.loads(response["Body"].read()), self.url(POINTER)), etag
        except (InvalidPointer, ValueError) as exc:
            raise InvalidPointer(f"{self.url(POINTER)} is malformed: {exc}", etag) from None

    def _get(self, *parts: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=self.key(*parts))[
            "Body"
        ].read()
        return body

    def fetch(self, version: str) -> Artifact:
        """Download a version and validate it fully (checksums first), like a local load.

        Only what the artifact itself decides is a RegistryError (a refusal: missing files,
        bad JSON, failed validation). S3 failing to answer (5xx, throttling, timeouts, resets,
        denied access) is retried with backoff, then S3Unavailable: the same version may load
        once S3 recovers."""
        check_version(version)

        def download() -> tuple[bytes, bytes, bytes]:
            return (
                self._get(version, METADATA_FILE),
                self._get(version, WEIGHTS_FILE),
                self._get(version, MODEL_FILE),
            )

        try:
            metadata_bytes, weights_bytes, model_bytes = with_retries(
                download, self.attempts, self.backoff_s, f"download of {self.url(version)}"
            )
            metadata = json.loads(metadata_bytes)
        except ClientError as exc:
            if _code(exc) not in MISSING:
                raise S3Unavailable(f"reading {self.url(version)}: {exc}") from exc
            raise RegistryError(f"{self.url(version)} is incomplete: {exc}") from None
        except ValueError as exc:
            raise RegistryError(f"{self.url(version, METADATA_FILE)} is not JSON: {exc}") from None
        try:
            weights = validate_artifact(weights_bytes, model_bytes, metadata, self.keys)
        except RegistryError as exc:
            raise RegistryError(f"{self.url(version)}: {exc}") from None
        if metadata.get("version") != version:
            raise RegistryError(f"{self.url(version)}: {METADATA_FILE} names another version")
        return Artifact(version, weights, model_bytes.decode(), metadata)

    # -- writing ---------------------------------------------------------------------------

    def _put_immutable(self, key: str, body: bytes) -> None:
        """Create an object that must never change: a same-content retry is fine, a different
        content under an existing key is refused."""
        digest = sha256(body)
        try:
            self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, IfNoneMatch="*", Metadata={"sha256": digest}
            )
        except ClientError as exc:
            if _code(exc) not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
            head = self.client.head_object(Bucket=self.bucket, Key=key)
            if head.get("Metadata", {}).get("sha256") != digest:
                raise RegistryError(f"s3://{self.bucket}/{key} exists with other content") from None

    def upload_version(self, version: str, files: dict[str, bytes]) -> None:
        """Upload a version's files (metadata.json last), then verify what S3 holds."""
        check_version(version)

        # Documents (the model card) go before metadata.json, which marks the version complete.
        names = [n for n in (WEIGHTS_FILE, MODEL_FILE, *DOCUMENT_FILES) if n in files]
        names.append(METADATA_FILE)

        def upload() -> None:
            for name in names:
                self._put_immutable(self.key(version, name), files[name])
            for name in names:
                head = self.client.head_object(Bucket=self.bucket, Key=self.key(version, name))
                if head.get("Metadata", {}).get("sha256") != sha256(files[name]) or head[
                    "ContentLength"
                ] != len(files[name]):
                    raise RegistryError(f"{self.url(version, name)} does not verify")

        with_retries(upload, self.attempts, self.backoff_s, f"upload of {version}")

    def _copy_to_latest(self, version: str) -> None:
        for name in FILES_IN_ORDER:
            self.client.copy_object(
                Bucket=self.bucket,
                Key=self.key("latest", name),
                CopySource={"Bucket": self.bucket, "Key": self.key(version, name)},
            )

    def move_pointer(self, version: str, partition: str, force: bool = False) -> bool:
        """Point latest at `version` unless that moves it to an older partition (not forced).

        latest/ is copied first, then latest.json is written with If-Match on the ETag read
        before (If-None-Match when there is none). A publisher that loses the race re-reads
        the pointer and decides again; if it then stays put, it restores latest/ to the
        pointer's version, so latest/ and latest.json always end up agreeing.
        """

        check_version(version)

        def attempt() -> bool:
            copied = False
            for _ in range(self.pointer_retries):
                try:
                    current, etag = self.pointer()
                except InvalidPointer as exc:  # replaced below, conditionally on its ETag
                    log.warning("%s", exc)
                    current, etag = None, exc.etag
                if current and current.get("version") == version:
                    return True
                if current and not force and partition < current.get("partition", ""):
                    if copied:
                        self._copy_to_latest(current["version"])
                    return False
                self._copy_to_latest(version)
                copied = True
                body = json.dumps(
                    {
                        "version": version,
                        "partition": partition,
                        "moved_at": datetime.now(UTC).isoformat(),
                    }
                ).encode()
                condition = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
                try:
                    self.client.put_object(
                        Bucket=self.bucket, Key=self.key(POINTER), Body=body, **condition
                    )
                    return True
                except ClientError as exc:
                    if _code(exc) not in _LOST_RACE:
                        raise
                    log.info("latest.json changed under us; deciding again")
            raise S3Unavailable(f"latest.json kept changing: gave up after {self.pointer_retries}")

        return with_retries(attempt, self.attempts, self.backoff_s, "moving latest.json")

    def repair_latest_copy(self) -> bool:
        """Make latest/ a faithful copy of the version latest.json points at; True if it was not.

        latest.json is the atomic truth. latest/ is a convenience copy of several objects that
        no single S3 call can replace at once: a publisher killed while copying leaves it torn,
        and the next publish or sync mends it here."""
        try:
            pointer, _ = self.pointer()
        except InvalidPointer as exc:
            log.warning("not repairing latest/: %s", exc)
            return False
        if not pointer:
            return False
        version = pointer["version"]
        for name in FILES_IN_ORDER:
            try:
                copy = self.client.head_object(Bucket=self.bucket, Key=self.key("latest", name))
                source = self.client.head_object(Bucket=self.bucket, Key=self.key(version, name))
            except ClientError as exc:
                if _code(exc) not in ("404", "NoSuchKey"):
                    raise
                break
            if copy["ETag"] != source["ETag"]:
                break
        else:
            return False
        log.warning("latest/ did not match %s; copying it again", version)
        self._copy_to_latest(version)
        return True

    def delete_version(self, version: str) -> None:
        """metadata.json first: without it the version is no longer listed or complete, so a
        reader never takes a half-deleted version for a whole one."""
        check_version(version)
        for names in ((METADATA_FILE,), (WEIGHTS_FILE, MODEL_FILE, *DOCUMENT_FILES)):
            self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": self.key(version, name)} for name in names]},
            )


@dataclass
class SyncReport:
    uploaded: list[str]
    pointer_moved: bool
    pointer_version: str | None


def version_files(local: LocalRegistry, version: str) -> dict[str, bytes]:
    """The artifact's files, and the documents (model card) the version has."""
    folder = local.versions_dir / check_version(version)
    files = {name: (folder / name).read_bytes() for name in FILES_IN_ORDER}
    files.update({n: (folder / n).read_bytes() for n in DOCUMENT_FILES if (folder / n).is_file()})
    return files


def sync(local: LocalRegistry, mirror: S3Mirror, force_pointer: bool = False) -> SyncReport:
    """Upload every valid local version S3 lacks, then bring S3's pointer to the local latest
    (never backwards unless forced). This is how a publish made during an outage catches up."""
    on_s3 = set(mirror.versions())
    uploaded = []
    for version in local.versions():
        if version in on_s3:
            continue
        problems = local.verify(version)
        if problems:
            log.warning("not uploading invalid local version %s: %s", version, problems[0])
            continue
        mirror.upload_version(version, version_files(local, version))
        uploaded.append(version)
    pointer = local.pointer()
    moved = False
    if pointer:
        moved = mirror.move_pointer(pointer["version"], pointer["partition"], force=force_pointer)
    mirror.repair_latest_copy()
    return SyncReport(uploaded, moved, pointer["version"] if pointer else None)


def s3_client(
    *,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    use_ssl: bool = True,
    max_attempts: int = 2,
    connect_timeout: float = 3.0,
    read_timeout: float = 15.0,
    addressing_style: Literal["auto", "virtual", "path"] = "path",
) -> S3Client:
    """A boto3 S3 client with bounded timeouts and retries, so an S3 outage fails in seconds and
    a publish can fall back to local-only, and path-style addressing (MinIO). Credentials come
    from boto3's own chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles, instance roles):
    they are never part of any config, repr or log line here."""
    import boto3  # only when S3 is used: serving from local files never loads it
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        region_name=region_name,
        endpoint_url=endpoint_url,
        use_ssl=use_ssl,
        config=Config(
            s3={"addressing_style": addressing_style},
            retries={"total_max_attempts": max_attempts or 1, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        ),
    )


def mirror_from_settings(settings: Settings) -> S3Mirror | None:
    """The S3 mirror when S3_BUCKET is set (S3_PREFIX, S3_ENDPOINT, AWS_REGION); None means the
    local registry only. An http:// endpoint (a local MinIO) is spoken to without TLS."""
    if not settings.s3_bucket:
        return None
    endpoint = settings.s3_endpoint or None
    client = s3_client(
        endpoint_url=endpoint,
        region_name=settings.s3_region,
        use_ssl=not (endpoint or "").startswith("http://"),
        max_attempts=2,
    )
    return S3Mirror(client, settings.s3_bucket, settings.s3_prefix, keys=settings.artifact_keys)
