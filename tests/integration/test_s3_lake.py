"""The data lake on S3 (LTR_DATA_DIR=s3://bucket/prefix) against a real S3 HTTP server (moto):
atomic object writes, and the whole daily job run on a lake shared through S3."""

from __future__ import annotations

import json
import re
import threading
from datetime import date, timedelta
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance

from ltr_assets.definitions import defs
from ltr_assets.ingest.day import ingest_day
from ltr_assets.ingest.matrix import build_feature_matrix
from ltr_assets.ingest.sources import AuditLogSource
from ltr_assets.lake import atomic
from ltr_assets.lake import s3 as s3_lake
from ltr_assets.lake.paths import Lake, lake_from_settings, read_frame
from ltr_assets.lake.s3 import S3Path, UnreadableObject, s3_filesystem
from ltr_assets.online.comparison import _read_columns
from ltr_assets.registry.local import LocalRegistry
from ltr_core.settings import Settings
from tests.conftest import write_simulated_events
from tests.support.dagster_results import check_results
from tests.support.defaults import DEFAULTS
from tests.support.ingest import local as local_path

LAKE_BUCKET = "ltr-lake"
DAYS = [date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)]


def _client(endpoint: str):  # noqa: ANN202 - a boto3 client
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip


def _keys(endpoint: str, bucket: str = LAKE_BUCKET) -> list[str]:
    pages = _client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@pytest.fixture
def lake_bucket(s3_env: str) -> str:
    _client(s3_env).create_bucket(Bucket=LAKE_BUCKET)
    return s3_env


def _root(endpoint: str) -> S3Path:
    return S3Path(s3_filesystem(endpoint, "us-east-1"), f"{LAKE_BUCKET}/lake")


def test_a_reader_sees_no_object_or_a_whole_one_never_a_partial_one(lake_bucket: str) -> None:
    target = _root(lake_bucket) / "raw_events" / "2026-11-01.parquet"
    size = 6 * 1024 * 1024  # above pyarrow's multipart threshold (5 MB parts)
    payloads = [bytes([n]) * size for n in range(1, 4)]
    seen: list[bytes | None] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def read() -> None:
        reader = S3Path(s3_filesystem(lake_bucket, "us-east-1"), target.path)
        while not stop.is_set():
            try:
                seen.append(reader.read_bytes())
            except FileNotFoundError:
                seen.append(None)
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                errors.append(exc)
                return

    thread = threading.Thread(target=read)
    thread.start()
    try:
        for payload in payloads:
            atomic.write_bytes(target, payload)
    finally:
        stop.set()
        thread.join()
    assert not errors, errors
    assert target.read_bytes() == payloads[-1]
    assert len(seen) > 3
    assert all(got is None or got in payloads for got in seen), {
        len(got) for got in seen if got is not None
    }
    # Only the object itself is left: no temporary key of any write.
    assert [k for k in _keys(lake_bucket) if not k.endswith("/")] == [
        "lake/raw_events/2026-11-01.parquet"
    ]


def test_a_failed_write_leaves_the_old_object_and_no_temporary_key(lake_bucket: str) -> None:
    target = _root(lake_bucket) / "quarantine" / "2026-11-01.jsonl"
    atomic.write_text(target, "old\n")
    with pytest.raises(RuntimeError, match="killed"), s3_lake.replacing(target) as tmp:  # noqa: PT012
        with target.fs.open_output_stream(tmp) as stream:
            stream.write(b"half of the new obj")
        assert tmp.rpartition("/")[2].startswith(".2026-11-01.jsonl.")
        assert tmp.endswith(".tmp") and tmp.partition("/")[2] in _keys(lake_bucket)
        assert target.read_text() == "old\n"  # the partial object is only under the temp key
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old\n"
    assert not [k for k in _keys(lake_bucket) if k.endswith(".tmp")]

    # A Parquet whose writing fails part-way (the second piece does not fit the schema) never
    # reaches its key.
    table_path = _root(lake_bucket) / "feature_matrix" / "2026-11-01.parquet"
    pieces = [pa.table({"x": pa.array([1, 2])}), pa.table({"x": pa.array(["not a number"])})]
    with pytest.raises(pa.ArrowException):
        atomic.write_parquet_stream(table_path, pa.schema([("x", pa.int64())]), pieces)
    assert not table_path.exists()
    assert not [k for k in _keys(lake_bucket) if k.endswith(".tmp")]


def test_a_missing_object_reads_as_file_not_found_with_its_url(lake_bucket: str) -> None:
    missing = _root(lake_bucket) / "candidates" / "2026-11-01" / "candidate.json"
    assert not missing.exists()
    with pytest.raises(FileNotFoundError) as caught:
        missing.read_text()
    assert caught.value.filename == f"s3://{LAKE_BUCKET}/lake/candidates/2026-11-01/candidate.json"
    atomic.write_json(missing, {"a": 1})
    assert json.loads(missing.read_text()) == {"a": 1}
    assert missing.parent.exists() and missing.parent.name == "2026-11-01"
    assert _root(lake_bucket).keys() == ["candidates/2026-11-01/candidate.json"]


def test_a_damaged_object_is_named_by_its_url(lake_bucket: str) -> None:
    """Arrow names a parsed buffer `<Buffer>`: a truncated object of a training window or of
    the online comparison's days said nothing of which it was."""
    damaged = _root(lake_bucket) / "feature_matrix" / "2026-11-02.parquet"
    atomic.write_bytes(damaged, b"PAR1 truncated")
    url = f"s3://{LAKE_BUCKET}/lake/feature_matrix/2026-11-02.parquet"
    with pytest.raises(UnreadableObject, match=re.escape(f"{url} is not readable Parquet")):
        read_frame(damaged)
    with pytest.raises(UnreadableObject, match=re.escape(url)):
        _read_columns(damaged)
    raw = _root(lake_bucket) / "raw_events" / "2026-11-02.parquet"
    atomic.write_bytes(raw, b"PAR1 truncated")  # DuckDB reads a local copy: named by the URL
    with pytest.raises(UnreadableObject, match=re.escape(f"s3://{LAKE_BUCKET}/lake/raw_events/")):
        build_feature_matrix(Lake(_root(lake_bucket)), date(2026, 11, 2), 24)


def test_a_read_that_fails_on_the_network_names_the_object(lake_bucket: str) -> None:
    """Arrow's network errors name neither bucket nor key ("AWS Error NETWORK_CONNECTION
    during GetObject"): a training window's read failing so did not say which day it was."""
    target = _root(lake_bucket) / "raw_events" / "2026-11-07.parquet"
    atomic.write_bytes(target, b"PAR1 some bytes")

    class Cut:
        def __init__(self, fs: object) -> None:
            self.fs = fs

        def __getattr__(self, name: str) -> object:
            return getattr(self.fs, name)

        def open_input_file(self, path: str) -> object:
            raise OSError("AWS Error NETWORK_CONNECTION during GetObject operation: curlCode: 18")

    cut = S3Path(Cut(target.fs), target.path)  # type: ignore[arg-type]
    url = f"s3://{LAKE_BUCKET}/lake/raw_events/2026-11-07.parquet"
    with pytest.raises(OSError, match=re.escape(f"reading {url} failed: AWS Error")):
        cut.read_bytes()


def _local_lake(ltr_home: Path, root: Path) -> Lake:
    """The lake a local run writes from the same events, built in the same order as the daily
    job (day D's matrix is built before D+1 is ingested)."""
    settings = Settings.from_env()
    lake = Lake(root)
    source = AuditLogSource(settings.audit_log, max_clock_skew=timedelta(hours=24))
    for day in DAYS:
        ingest_day(source.read_day(day), day, lake, source="file")
        build_feature_matrix(lake, day, settings.feedback_window_hours)
    return lake


def test_the_daily_job_runs_on_a_lake_shared_through_s3(
    lake_bucket: str,
    ltr_home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    small_data_gate: None,
) -> None:
    write_simulated_events(ltr_home / "events" / "audit.jsonl", days=3)
    monkeypatch.setenv("LTR_DATA_DIR", f"s3://{LAKE_BUCKET}/lake/")
    settings = Settings.from_env()
    assert settings.lake_url == f"s3://{LAKE_BUCKET}/lake"
    job = defs.resolve_job_def("ltr_daily_job")
    instance = DagsterInstance.ephemeral()
    registry = LocalRegistry(ltr_home / "registry", ltr_home / "models" / "ltr_weights.json")

    # Day 1 alone: too few test groups, nothing published (as on a local lake).
    first = job.execute_in_process(
        partition_key="2026-11-01", instance=instance, raise_on_error=False
    )
    assert check_results(first)["min_samples"] is False
    assert registry.latest_version() is None
    # Day 2: the two-day window, read back from S3, passes and is published.
    second = job.execute_in_process(partition_key="2026-11-02", instance=instance)
    assert second.success
    version = registry.latest_version()
    assert version is not None
    metadata = registry.load(version).metadata
    assert metadata["partition"] == "2026-11-02"
    assert metadata["training_window"]["present"] == ["2026-11-01", "2026-11-02"]
    # Day 3: a three-day window from S3; its candidate is trained and lands in the lake.
    third = job.execute_in_process(
        partition_key="2026-11-03", instance=instance, raise_on_error=False
    )
    assert "ltr_model" in {
        e.asset_key.to_user_string()
        for e in third.all_events
        if e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key is not None
    }

    keys = _keys(lake_bucket)
    for day in DAYS:
        d = day.isoformat()
        assert {
            f"lake/raw_events/{d}.parquet",
            f"lake/quarantine/{d}.jsonl",
            f"lake/feature_matrix/{d}.parquet",
            f"lake/candidates/{d}/candidate.json",
            f"lake/candidates/{d}/ltr_weights.json",
            f"lake/candidates/{d}/model.txt",
        } <= set(keys), keys
    assert not [k for k in keys if k.endswith(".tmp")], keys
    assert not (ltr_home / "lake").exists()  # nothing went to the local default lake
    candidate = lake_from_settings(settings).candidate(DAYS[2]) / "candidate.json"
    summary = json.loads(candidate.read_text())
    assert summary["training_window"]["present"] == [d.isoformat() for d in DAYS]

    # The same events through a local lake give the same Parquet, byte for byte.
    local = _local_lake(ltr_home, tmp_path / "local-lake")
    s3 = lake_from_settings(settings)
    for day in DAYS:
        for part in (Lake.raw_events, Lake.feature_matrix):
            on_s3, on_disk = part(s3, day), part(local, day)
            assert isinstance(on_s3, S3Path) and isinstance(on_disk, Path)
            on_s3_table = pq.read_table(pa.BufferReader(on_s3.read_bytes()))
            assert on_s3_table.equals(pq.read_table(on_disk)), (part, day)
            assert on_s3.read_bytes() == on_disk.read_bytes(), (part, day)
        assert s3.quarantine(day).read_bytes() == local.quarantine(day).read_bytes()


def test_a_day_spilled_to_disk_gives_the_same_objects_on_s3_and_leaves_no_scratch(
    lake_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A day larger than the rows held in memory (runs of 50 here) ingested into the S3 lake:
    its runs and DuckDB's spill go to the local temp folder, the objects are uploaded from
    local files, and they are byte for byte the local in-memory lake's; nothing is left in
    the temp folder or under a temporary key."""
    import tempfile

    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    write_simulated_events(tmp_path / "audit.jsonl", days=1, requests_per_day=30)
    source = AuditLogSource(str(tmp_path / "audit.jsonl"), max_clock_skew=timedelta(hours=24))
    day = date(2026, 11, 1)
    s3 = Lake(_root(lake_bucket))
    local = Lake(tmp_path / "local")
    on_s3 = ingest_day(source.read_day(day), day, s3, "f", chunk_rows=50)
    on_disk = ingest_day(source.read_day(day), day, local, "f")
    assert on_s3.accepted == on_disk.accepted > 200
    assert s3.raw_events(day).read_bytes() == local_path(local.raw_events(day)).read_bytes()
    assert s3.quarantine(day).read_bytes() == local_path(local.quarantine(day)).read_bytes()
    build_feature_matrix(s3, day, DEFAULTS.feedback_window_hours)
    build_feature_matrix(local, day, DEFAULTS.feedback_window_hours)
    assert s3.feature_matrix(day).read_bytes() == local_path(local.feature_matrix(day)).read_bytes()
    assert list(scratch.iterdir()) == []
    assert not [k for k in _keys(lake_bucket) if k.endswith(".tmp")]


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_day_whose_quarantine_cannot_be_written_replaces_neither_file(
    lake_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """A re-run of a day whose quarantine fails to upload (S3 gone) or to sync (a full disk):
    raw_events and the quarantine both stay the earlier run's. The raw_events object used to be
    in place before the quarantine's upload began, so such a failure left a new raw_events
    beside the old quarantine."""
    import errno
    import os

    write_simulated_events(tmp_path / "all.jsonl", days=1, requests_per_day=30)
    full = (tmp_path / "all.jsonl").read_text().splitlines(keepends=True)
    (tmp_path / "day.jsonl").write_text("".join(full[: len(full) // 2]))
    day = date(2026, 11, 1)
    lake = Lake(_root(lake_bucket)) if where == "s3" else Lake(tmp_path / "lake")

    def ingest() -> int:
        source = AuditLogSource(str(tmp_path / "day.jsonl"), max_clock_skew=timedelta(hours=24))
        return ingest_day(source.read_day(day), day, lake, "f").accepted

    before = ingest()
    old_raw, old_quarantine = lake.raw_events(day).read_bytes(), lake.quarantine(day).read_bytes()
    bad = full[0].replace('"rank_position":1,', '"rank_position":"abc",', 1)
    assert bad != full[0]
    (tmp_path / "day.jsonl").write_text("".join(full) + bad)
    if where == "s3":
        stage = s3_lake.stage_file

        def failing(target: S3Path, local: Path) -> str:
            if target.name.endswith(".jsonl"):
                raise OSError("AWS Error NETWORK_CONNECTION during UploadPart")
            return stage(target, local)

        monkeypatch.setattr(s3_lake, "stage_file", failing)
    else:
        fsync = os.fsync

        def refusing(fd: int) -> None:
            if os.readlink(f"/proc/self/fd/{fd}").endswith(".tmp") and ".jsonl." in os.readlink(
                f"/proc/self/fd/{fd}"
            ):
                raise OSError(errno.ENOSPC, "No space left on device")
            fsync(fd)

        monkeypatch.setattr(os, "fsync", refusing)
    with pytest.raises(OSError):
        ingest()
    assert lake.raw_events(day).read_bytes() == old_raw
    assert lake.quarantine(day).read_bytes() == old_quarantine
    if where == "s3":
        assert not [k for k in _keys(lake_bucket) if k.endswith(".tmp")]
    else:
        assert not list((tmp_path / "lake").rglob("*.tmp"))
    if where == "s3":  # (not monkeypatch.undo(): it would drop the S3 credentials too)
        monkeypatch.setattr(s3_lake, "stage_file", stage)
    else:
        monkeypatch.setattr(os, "fsync", fsync)
    assert ingest() > before  # the re-run replaces both
    assert lake.raw_events(day).read_bytes() != old_raw
    assert "abc" in lake.quarantine(day).read_text()
