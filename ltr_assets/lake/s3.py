"""The data lake on S3 (LTR_DATA_DIR=s3://bucket/prefix), through pyarrow's S3 filesystem.

`S3Path` is the lake's path type on S3: the subset of `pathlib.Path` the lake's readers use
(`/`, `name`, `parent`, `exists`, `read_bytes`, `read_text`), so a `Lake` rooted at an S3Path
hands out S3Paths and the ingest, features, training and candidate code reads them like local
files. Writes keep the local atomicity rule: a reader sees no object or the whole one, never a
partial one. The complete object is first written under a temporary key beside the final one
(`.<name>.<random>.tmp`; a failed or interrupted write leaves at most that key, never a partial
final object), then copied server-side to its final key with one CopyObject (atomic per object
on S3, up to 5 GB) and the temporary key deleted.

Credentials come from the AWS SDK's own chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY,
profiles, instance roles), as for the registry's S3 mirror: they are never part of the settings,
a repr or a log line. DuckDB reads what pyarrow hands it (Arrow datasets), never its httpfs
extension.
"""

from __future__ import annotations

import contextlib
import errno
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import pyarrow as pa
import pyarrow.fs as pafs

from ltr_core.s3_url import S3_SCHEME

READ_ATTEMPTS = 5


def s3_filesystem(endpoint: str = "", region: str = "us-east-1") -> pafs.S3FileSystem:
    """pyarrow's S3 filesystem for S3_ENDPOINT (empty: AWS; else an http(s) URL, as the
    settings check it) and AWS_REGION; an http:// endpoint (MinIO, a test server) is spoken
    to without TLS, with path-style addressing."""
    options: dict[str, object] = {
        "region": region,
        "connect_timeout": 3.0,
        "request_timeout": 30.0,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=3),
    }
    if endpoint:
        parsed = urlparse(endpoint)
        if parsed.scheme not in {"http", "https"}:
            raise ValueError(f"S3_ENDPOINT {endpoint!r} is not an http(s) URL")
        options["endpoint_override"] = parsed.netloc + parsed.path.rstrip("/")
        options["scheme"] = parsed.scheme
    return pafs.S3FileSystem(**options)  # type: ignore[arg-type]


@dataclass(frozen=True)
class S3Path:
    """An object key of the lake on S3: `path` is "bucket/key" as pyarrow's filesystem names it."""

    fs: pafs.FileSystem = field(repr=False, compare=False)
    path: str

    def __truediv__(self, name: str) -> S3Path:
        return S3Path(self.fs, f"{self.path.rstrip('/')}/{name}")

    def __str__(self) -> str:
        return S3_SCHEME + self.path

    @property
    def name(self) -> str:
        return self.path.rstrip("/").rpartition("/")[2]

    @property
    def parent(self) -> S3Path:
        return S3Path(self.fs, self.path.rstrip("/").rpartition("/")[0])

    def exists(self) -> bool:
        """An object, or a "folder" (a prefix other keys lie under)."""
        return bool(self.fs.get_file_info(self.path).type != pafs.FileType.NotFound)

    def is_file(self) -> bool:
        return bool(self.fs.get_file_info(self.path).type == pafs.FileType.File)

    def read_bytes(self) -> bytes:
        """The whole object, as one version of it: read with a single ranged GET of the size
        just looked up (pyarrow's streaming reads are several GETs, and an object replaced
        between two of them would read as a mix of both). A GET returns one version; if the
        object was replaced by one of another size in between, the lengths disagree and the
        read is retried."""
        for _ in range(READ_ATTEMPTS):
            try:
                with self.fs.open_input_file(self.path) as handle:
                    size = handle.size()
                    data: bytes = handle.read_at(size, 0) if size else b""  # type: ignore[call-arg]  # stubs lack offset
            except FileNotFoundError:
                raise FileNotFoundError(errno.ENOENT, "no such object", str(self)) from None
            except OSError as exc:  # Arrow's message names neither bucket nor key
                raise OSError(f"reading {self} failed: {exc}") from exc
            after = self.fs.get_file_info(self.path)
            if len(data) == size and after.type == pafs.FileType.File and after.size == size:
                return data
        raise OSError(f"{self} kept changing while it was read ({READ_ATTEMPTS} attempts)")

    def read_text(self) -> str:
        return self.read_bytes().decode()

    def keys(self) -> list[str]:
        """Every object key under this prefix, relative to it, sorted."""
        selector = pafs.FileSelector(self.path, allow_not_found=True, recursive=True)
        base = self.path.rstrip("/") + "/"
        return sorted(
            info.path[len(base) :]
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File
        )

    def delete(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.path)


@contextlib.contextmanager
def replacing(target: S3Path) -> Iterator[str]:
    """Yields a temporary key beside `target` to write the complete object to; then copies it
    to `target` in one server-side copy and deletes it. On any error the temporary key is
    deleted and `target` is untouched."""
    tmp = _temporary_key(target)
    try:
        yield tmp
        target.fs.copy_file(tmp, target.path)  # one CopyObject: the object appears whole
    finally:
        discard_staged(target, tmp)


def write_bytes(target: S3Path, data: bytes) -> None:
    with replacing(target) as tmp, target.fs.open_output_stream(tmp) as stream:
        stream.write(data)


UPLOAD_PIECE = 8 * 2**20  # bytes read from the local file per write (pyarrow uploads in parts)


def stage_file(target: S3Path, local: Path) -> str:
    """A local file uploaded whole, streamed piece by piece (never whole in memory), to a
    temporary key beside `target`, which is not touched: `commit_staged` makes it `target`
    (with `write_bytes`'s atomicity), `discard_staged` drops it. The key is deleted on an error
    here."""
    tmp = _temporary_key(target)
    try:
        _upload(target, tmp, local)
    except BaseException:
        discard_staged(target, tmp)
        raise
    return tmp


def commit_staged(target: S3Path, tmp: str) -> None:
    """One server-side copy of a staged key to `target` (the object appears whole), then the
    staged key deleted."""
    try:
        target.fs.copy_file(tmp, target.path)
    finally:
        discard_staged(target, tmp)


def discard_staged(target: S3Path, tmp: str) -> None:
    with contextlib.suppress(OSError):
        target.fs.delete_file(tmp)


def _temporary_key(target: S3Path) -> str:
    return f"{target.parent.path}/.{target.name}.{secrets.token_hex(8)}.tmp"


def _upload(target: S3Path, key: str, local: Path) -> None:
    with target.fs.open_output_stream(key) as stream, local.open("rb") as handle:
        while piece := handle.read(UPLOAD_PIECE):
            stream.write(piece)


class UnreadableObject(ValueError):
    """A lake object on S3 that is no Parquet (damaged, truncated), named by its URL."""


@contextlib.contextmanager
def named_parquet_errors(path: S3Path) -> Iterator[None]:
    """Parquet parsed from an object's bytes: Arrow names the buffer `<Buffer>`, so an error
    would not say which of a window's objects is damaged; re-raised naming the object."""
    try:
        yield
    except pa.ArrowException as exc:
        raise UnreadableObject(f"{path} is not readable Parquet: {exc}") from exc
