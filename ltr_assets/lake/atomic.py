"""Atomic file replacement: a reader sees the old file or the new one, never a half-written one."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ltr_assets.lake import s3 as s3_lake
from ltr_assets.lake.s3 import S3Path

# Rows per Parquet row group (pyarrow's default for write_table) for the lake's large tables.
PARQUET_ROW_GROUP_ROWS = 1024 * 1024


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _replacing(path: Path, together: Together | None = None) -> Iterator[Path]:
    """The one atomic-write sequence: yields a temporary path beside `path` to write; then
    fsyncs it, renames it over `path` (os.replace) and fsyncs the folder. On any error the
    temporary file is removed and `path` is untouched. With `together`, the rename and the
    folder's fsync wait for `replaced_together`'s end."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)

    def replace() -> None:
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(path.parent)

    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if together is None:
        replace()
    else:
        together.add(replace, lambda: tmp.unlink(missing_ok=True))


class Together:
    """The last steps of several atomic writes, taken one right after the other once every
    file is complete: the files of one partition (raw_events and its quarantine) are then never
    replaced with a whole write or upload between them (`replaced_together`)."""

    def __init__(self) -> None:
        self._steps: list[tuple[Callable[[], None], Callable[[], None]]] = []

    def add(self, replace: Callable[[], None], discard: Callable[[], None]) -> None:
        """`replace` puts a complete temporary file in place; `discard` removes it unused."""
        self._steps.append((replace, discard))

    def _replace_all(self) -> None:
        steps, self._steps = self._steps, []
        for done, (replace, _) in enumerate(steps):
            try:
                replace()
            except BaseException:
                for _, discard in steps[done + 1 :]:
                    discard()
                raise

    def _discard_all(self) -> None:
        steps, self._steps = self._steps, []
        for _, discard in steps:
            discard()


@contextlib.contextmanager
def replaced_together() -> Iterator[Together]:
    """Yields a `Together` for `writing_file(..., together=...)`: each file is written (fsynced,
    or uploaded to its temporary key) as its block ends, and all are put in place, in the order
    their blocks ended, when this block ends without an error; on an error none is. What stays
    possible: a failure between two of those last steps (a rename, or one S3 copy each) leaves
    the files from different writes."""
    together = Together()
    try:
        yield together
    except BaseException:
        together._discard_all()
        raise
    together._replace_all()


@contextlib.contextmanager
def writing_file(path: Path | S3Path, together: Together | None = None) -> Iterator[Path]:
    """Yields a local temporary file to write (in pieces, of any size); when the block ends
    without an error, it becomes `path` with the same atomicity as `write_bytes`: locally the
    file beside `path` is fsynced and renamed over it; on S3 it is a file in the system's temp
    folder (TMPDIR), uploaded in a stream to a temporary key and then copied to its key
    (`s3_lake.stage_file`, `commit_staged`), so a large object is never held in memory. On an
    error `path` is untouched and the temporary file removed. With `together`, the last step
    (the rename, the copy) waits for the others of `replaced_together`."""
    if isinstance(path, S3Path):
        with tempfile.TemporaryDirectory(prefix="ltr-upload-") as folder:
            local = Path(folder) / path.name
            local.touch()
            yield local
            key = s3_lake.stage_file(path, local)
        target = path
        if together is None:
            s3_lake.commit_staged(target, key)
        else:
            together.add(
                lambda: s3_lake.commit_staged(target, key),
                lambda: s3_lake.discard_staged(target, key),
            )
        return
    with _replacing(path, together) as tmp:
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


def remove(path: Path | S3Path) -> None:
    """Delete a file or object if it is there."""
    if isinstance(path, S3Path):
        path.delete()
    else:
        path.unlink(missing_ok=True)


def write_json(path: Path | S3Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_parquet_stream(
    path: Path | S3Path,
    schema: pa.Schema,
    pieces: Iterable[pa.Table | pa.RecordBatch],
    together: Together | None = None,
) -> int:
    """Rows that come in pieces (batches of a query, say) to one Parquet file, atomically (zstd,
    statistics written), holding about two row groups in memory at most.
    Row groups hold PARQUET_ROW_GROUP_ROWS rows each (the last one the rest) whatever the
    pieces, and each is written from contiguous columns, so the same rows give the same bytes
    however they were cut: one table, or a query's batches. Returns the number of rows.
    `together`: as for `writing_file`."""
    rows = 0
    with writing_file(path, together) as tmp:
        writer = pq.ParquetWriter(tmp, schema, compression="zstd", write_statistics=True)
        try:
            pending: list[pa.Table] = []
            waiting = 0
            written_any = False
            for piece in pieces:
                table = (
                    pa.Table.from_batches([piece]) if isinstance(piece, pa.RecordBatch) else piece
                )
                table = table.cast(schema)
                rows += table.num_rows
                pending.append(table)
                waiting += table.num_rows
                while waiting >= PARQUET_ROW_GROUP_ROWS:
                    whole = pa.concat_tables(pending)
                    group = whole.slice(0, PARQUET_ROW_GROUP_ROWS).combine_chunks()
                    writer.write_table(group, row_group_size=PARQUET_ROW_GROUP_ROWS)
                    written_any = True
                    pending = [whole.slice(PARQUET_ROW_GROUP_ROWS)]
                    waiting -= PARQUET_ROW_GROUP_ROWS
            if waiting or not written_any:
                rest = pa.concat_tables(pending) if pending else schema.empty_table()
                writer.write_table(rest.combine_chunks(), row_group_size=PARQUET_ROW_GROUP_ROWS)
        finally:
            writer.close()
    return rows


@contextlib.contextmanager
def scratch_folder(path: Path | S3Path) -> Iterator[Path]:
    """A private folder for the work files of building `path` (runs, a database's spill):
    beside `path` on a local lake (hidden, `.<name>.<random>.work`, so on the same disk), in the
    system's temp folder (TMPDIR) for a lake on S3; removed with its content afterwards."""
    if isinstance(path, S3Path):
        folder = tempfile.mkdtemp(prefix=f"ltr-{path.name}.")
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        folder = tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".work")
    try:
        yield Path(folder)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
