"""Reading the registry's S3/MinIO mirror: the `latest.json` pointer and fully validated
versions, with bounded retries (an outage raises S3Unavailable, never hangs).

Layout: s3://$S3_BUCKET/$S3_PREFIX/<version>/{ltr_weights.json, model.txt, metadata.json},
.../latest/{same files} and .../latest.json ({"version", "partition", ...}), written last.
A version's metadata.json is uploaded last, so its presence marks a complete version. Serving
reads through `S3Versions`; the pipeline's `S3Mirror` adds uploads and pointer moves.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from ltr_core.artifacts.format import (
    CANDIDATE_POINTER,
    METADATA_FILE,
    MODEL_FILE,
    WEIGHTS_FILE,
    Artifact,
    InvalidPointer,
    RegistryError,
    check_pointer,
    check_version,
    checked_artifact,
    file_limit,
    is_version,
    parse_json,
)
from ltr_core.artifacts.signing import ArtifactKeys

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

    from ltr_core.settings import Settings

log = logging.getLogger("ltr.s3")
FILES_IN_ORDER = (WEIGHTS_FILE, MODEL_FILE, METADATA_FILE)  # metadata last: "complete"
POINTER = "latest.json"
CANDIDATE = CANDIDATE_POINTER  # the canary candidate's pointer, beside latest.json
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
class S3Versions:
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

    def pointer(self, name: str = POINTER) -> tuple[dict[str, Any] | None, str | None]:
        """The latest.json pointer (or `name`: CANDIDATE) and its ETag (None, None when there
        is none).

        InvalidPointer (carrying the ETag, so a writer can still replace it conditionally) when
        it does not name a version id."""
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key(name))
        except ClientError as exc:
            if _code(exc) in ("NoSuchKey", "404"):
                return None, None
            raise
        etag = response["ETag"]
        try:
            body = _bounded_body(response, file_limit(name), self.url(name))
            return check_pointer(parse_json(body), self.url(name)), etag
        except (RegistryError, ValueError) as exc:
            raise InvalidPointer(f"{self.url(name)} is malformed: {exc}", etag) from None

    def candidate(self) -> tuple[dict[str, Any] | None, str | None]:
        """The candidate.json pointer and its ETag, read back like latest.json."""
        return self.pointer(CANDIDATE)

    def _get(self, *parts: str) -> bytes:
        """An object's bytes, refused (RegistryError) past the size a registry reader takes
        (`format.read_file`'s limits) without reading more than that."""
        response = self.client.get_object(Bucket=self.bucket, Key=self.key(*parts))
        return _bounded_body(response, file_limit(parts[-1]), self.url(*parts))

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
            metadata = parse_json(metadata_bytes)
        except ClientError as exc:
            if _code(exc) not in MISSING:
                raise S3Unavailable(f"reading {self.url(version)}: {exc}") from exc
            raise RegistryError(f"{self.url(version)} is incomplete: {exc}") from None
        except ValueError as exc:
            raise RegistryError(f"{self.url(version, METADATA_FILE)} is not JSON: {exc}") from None
        return checked_artifact(
            version, weights_bytes, model_bytes, metadata, self.url(version), self.keys
        )


def _bounded_body(response: dict[str, Any], limit: int, where: str) -> bytes:
    """A get_object response's body, at most `limit` bytes (RegistryError past it)."""
    length = response.get("ContentLength")
    if isinstance(length, int) and length > limit:
        response["Body"].close()
        raise RegistryError(f"{where} is {length} bytes, more than {limit}")
    body: bytes = response["Body"].read(limit + 1)
    if len(body) > limit:
        response["Body"].close()
        raise RegistryError(f"{where} is more than {limit} bytes")
    return body


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


def s3_versions_client(settings: Settings) -> Any | None:
    """The S3 client for the registry mirror when S3_BUCKET is set (S3_ENDPOINT, AWS_REGION);
    None means the local registry only. An http:// endpoint (a local MinIO) is spoken to
    without TLS."""
    if not settings.s3.bucket:
        return None
    endpoint = settings.s3.endpoint or None
    return s3_client(
        endpoint_url=endpoint,
        region_name=settings.s3.region,
        use_ssl=not (endpoint or "").startswith("http://"),
        max_attempts=2,
    )


def s3_versions_from_settings(settings: Settings) -> S3Versions | None:
    """The mirror, read-only, when S3_BUCKET is set; None means the local registry only."""
    client = s3_versions_client(settings)
    if client is None:
        return None
    return S3Versions(client, settings.s3.bucket, settings.s3.prefix, keys=settings.artifact_keys)
