"""Atomic file replacement: a reader sees the old file or the new one, never a half-written one."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ltr_assets import s3_lake
from ltr_assets.s3_lake import S3Path


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """The one atomic-write sequence: yields a temporary path beside `path` to write; then
    fsyncs it, renames it over `path` (os.replace) and fsyncs the folder. On any error the
    temporary file is removed and `path` is untouched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def writing_file(path: Path | S3Path) -> Iterator[Path]:
    """Yields a local temporary file to write (in pieces, of any size); when the block ends
    without an error, it becomes `path` with the same atomicity as `write_bytes`: locally the
    file beside `path` is fsynced and renamed over it; on S3 it is a file in the system's temp
    folder (TMPDIR), uploaded in a stream to a temporary key and then copied to its key
    (`s3_lake.upload_file`), so a large object is never held in memory. On an error `path` is
    untouched and the temporary file removed."""
    if isinstance(path, S3Path):
        with tempfile.TemporaryDirectory(prefix="ltr-upload-") as folder:
            local = Path(folder) / path.name
            local.touch()
            yield local
            s3_lake.upload_file(path, local)
        return
    with _replacing(path) as tmp:
        yield tmp


def write_bytes(path: Path | S3Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync it, then rename it over `path`. On S3:
    the complete object under a temporary key, then one server-side copy to its key."""
    if isinstance(path, S3Path):
        s3_lake.write_bytes(path, data)
        return
    with _replacing(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: Path | S3Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: Path | S3Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_parquet(path: Path | S3Path, table: pa.Table) -> None:
    """Parquet with a fixed writer setting so identical tables give identical bytes."""
    if isinstance(path, S3Path):
        s3_lake.write_parquet(path, table)
        return
    with _replacing(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=True)
