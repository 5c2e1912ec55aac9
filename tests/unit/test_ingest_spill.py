"""raw_events of a day larger than what is held in memory: spilled in runs and merged by DuckDB,
with the same Parquet bytes, counts and conflicts as the in-memory path, and bounded memory."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ltr_assets.ingest import day as ingest
from ltr_assets.ingest.day import IngestReport, ingest_day
from ltr_assets.ingest.sources import AuditLogSource, DayRecord
from ltr_assets.lake import atomic
from ltr_assets.lake.paths import Lake
from ltr_assets.simulation.simulator import Simulator, SimulatorConfig
from ltr_core.events import Rejection
from tests.support.ingest import accounted, local
from tests.unit.test_events import FLAT

DAY = date(2026, 11, 25)


def _event(i: int, when: str, **changes: object) -> str:
    return json.dumps({**FLAT, "event_id": f"e-{i}", "lawyer_id": f"l-{i}", "timestamp": when,
                       **changes})  # fmt: skip


def _day_lines(seed: int = 7) -> list[str]:
    """A simulated day with exact copies, copies a second earlier (a retry's: duplicates),
    conflicting copies (another score; another position: shown differently), malformed lines
    and other audit records, shuffled."""
    events = Simulator(SimulatorConfig(start=DAY, days=1, seed=seed, requests_per_day=40)).events()
    rng = random.Random(seed)
    lines = [json.dumps(e) for e in events]
    for event in events[::9]:
        lines.append(json.dumps(event))  # an exact copy
    for k, event in enumerate(events[::13]):
        if k % 3 == 1 and event.get("score") is not None:
            lines.append(json.dumps({**event, "score": round(event["score"] / 3, 6)}))
        elif k % 3 == 2 and event.get("rank_position") is not None:
            lines.append(json.dumps({**event, "rank_position": event["rank_position"] + 1}))
        else:
            when = event["timestamp"].replace("Z", "+00:00")
            lines.append(json.dumps({**event, "timestamp": when[:-9] + "00+00:00"}))
    lines += ["{broken", json.dumps({"timestamp": f"{DAY}T10:00:00Z", "message": "http"})]
    lines.append(_event(10**6, f"{DAY}T11:00:00Z", features={"A": 2.0}))
    rng.shuffle(lines)
    return lines


def _ingest(tmp_path: Path, name: str, lines: list[str], **options: object) -> IngestReport:
    folder = tmp_path / name
    folder.mkdir()
    (folder / "audit.jsonl").write_text("".join(line + "\n" for line in lines))
    source = AuditLogSource(str(folder / "audit.jsonl"))
    return ingest_day(source.read_day(DAY), DAY, Lake(folder / "lake"), "f", **options)  # type: ignore[arg-type]


def _summary(report: IngestReport) -> tuple[object, ...]:
    return (
        report.read, report.accepted, report.duplicates, report.conflicts,
        report.conflicting_ids, report.shown_differently, report.shown_differently_ids,
        report.quarantined, report.ignored, report.recommendations, report.feedback,
        dict(report.reasons),
    )  # fmt: skip


def _files(report: IngestReport) -> tuple[bytes, bytes]:
    assert isinstance(report.parquet_path, Path) and isinstance(report.quarantine_path, Path)
    return report.parquet_path.read_bytes(), report.quarantine_path.read_bytes()


@pytest.mark.parametrize("chunk_rows", [1, 7, 250])
def test_a_spilled_day_gives_the_same_parquet_and_counts_as_the_in_memory_path(
    tmp_path: Path, chunk_rows: int
) -> None:
    lines = _day_lines()
    in_memory = _ingest(tmp_path, "memory", lines)
    spilled = _ingest(tmp_path, "spilled", lines, chunk_rows=chunk_rows)
    assert in_memory.accepted > 250 and in_memory.duplicates > 0
    assert in_memory.conflicts > in_memory.shown_differently > 0
    assert in_memory.quarantined == 2 and in_memory.ignored == 1
    assert _summary(spilled) == _summary(in_memory)
    assert accounted(spilled) == spilled.read
    assert _files(spilled) == _files(in_memory)
    # The work folder (runs, DuckDB's spill) is gone; only the lake's files are left.
    assert isinstance(spilled.parquet_path, Path)
    assert sorted(p.name for p in spilled.parquet_path.parent.iterdir()) == [f"{DAY}.parquet"]


def test_conflicts_across_runs_keep_the_same_copy_in_any_order(tmp_path: Path) -> None:
    """Many ids with conflicting copies spread over runs of 3 rows: the kept copy (earliest
    time, then smallest digest), the counts and the first listed ids match the in-memory path
    whatever the order, with more conflicting ids than are listed."""
    lines = []
    for i in range(30):
        lines += [
            _event(i, f"{DAY}T10:00:00Z", score=0.2),
            _event(i, f"{DAY}T10:00:00Z", score=0.3),  # same time: the smaller digest is kept
            _event(i, f"{DAY}T10:00:00Z", score=0.2),  # an exact copy
        ]
        if i % 3 == 0:  # an earlier third content: kept
            lines.append(_event(i, f"{DAY}T09:{i:02d}:00Z", score=0.9))
        else:
            lines.append(_event(i + 100, f"{DAY}T12:00:00Z"))
    expected = _ingest(tmp_path, "memory", lines)
    assert expected.conflicts == 30 + 10 and expected.duplicates == 30
    assert len(expected.conflicting_ids) == ingest.MAX_LISTED_CONFLICTS
    for n in range(3):
        order = random.Random(n).sample(lines, len(lines))
        got = _ingest(tmp_path, f"order{n}", order, chunk_rows=3)
        assert _summary(got) == _summary(expected)
        assert _files(got) == _files(expected)


def test_row_groups_do_not_depend_on_the_pieces_rows_come_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several row groups (made small here): the same bytes from one table or from DuckDB's
    batches, and the same bytes as pyarrow's write_table with that row-group size."""
    monkeypatch.setattr(atomic, "PARQUET_ROW_GROUP_ROWS", 64)
    monkeypatch.setattr(ingest, "MERGE_BATCH_ROWS", 50)
    lines = _day_lines(seed=11)
    in_memory = _ingest(tmp_path, "memory", lines)
    spilled = _ingest(tmp_path, "spilled", lines, chunk_rows=100)
    assert _files(spilled) == _files(in_memory)
    assert isinstance(in_memory.parquet_path, Path)
    table = pq.read_table(in_memory.parquet_path)
    assert pq.ParquetFile(in_memory.parquet_path).num_row_groups == -(-table.num_rows // 64)
    reference = tmp_path / "reference.parquet"
    pq.write_table(table, reference, row_group_size=64, compression="zstd", write_statistics=True)
    assert reference.read_bytes() == in_memory.parquet_path.read_bytes()


def test_an_empty_day_spilled_or_not_is_the_same_empty_file(tmp_path: Path) -> None:
    lines = [_event(1, f"{(DAY - timedelta(days=3)).isoformat()}T10:00:00Z")]
    assert _files(_ingest(tmp_path, "a", lines)) == _files(
        _ingest(tmp_path, "b", lines, chunk_rows=1)
    )


def test_a_source_failing_mid_day_leaves_the_old_files_and_no_work_folder(tmp_path: Path) -> None:
    lines = _day_lines()
    first = _ingest(tmp_path, "lake", lines)
    before = _files(first)
    records = list(AuditLogSource(str(tmp_path / "lake" / "audit.jsonl")).read_day(DAY))

    def failing() -> Iterator[DayRecord]:
        yield from records[:200]
        raise OSError("the source went away")

    with pytest.raises(OSError, match="went away"):
        ingest_day(failing(), DAY, Lake(tmp_path / "lake" / "lake"), "f", chunk_rows=50)
    assert _files(first) == before
    for part in ("raw_events", "quarantine"):
        folder = tmp_path / "lake" / "lake" / part
        assert [p.name for p in folder.iterdir()] == [
            f"{DAY}.{'parquet' if part == 'raw_events' else 'jsonl'}"
        ]


def test_chunk_rows_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chunk_rows"):
        ingest_day([], DAY, Lake(tmp_path), "f", chunk_rows=0)


def _python_peak(n_events: int, tmp_path: Path) -> int:
    """Peak memory of Python objects (tracemalloc) while ingesting n distinct events read
    lazily, with runs of 500 rows."""
    import tracemalloc

    from ltr_core.events import parse_event

    def records() -> Iterator[DayRecord]:
        for i in range(n_events):
            row = parse_event(_event(i, f"{DAY}T10:{i % 60:02d}:00Z"))
            assert row is not None and not isinstance(row, Rejection)
            yield row

    tracemalloc.start()
    try:
        report = ingest_day(records(), DAY, Lake(tmp_path / f"n{n_events}"), "f", chunk_rows=500)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.accepted == n_events
    return peak


def test_memory_held_does_not_grow_with_the_day(tmp_path: Path) -> None:
    small, large = _python_peak(2_000, tmp_path), _python_peak(12_000, tmp_path)
    assert large < 1.5 * small, (small, large)  # held in memory: it would be ~6 times


class _FailingSource:
    """A primary source that fails part-way through the day, after records were consumed."""

    name = "kafka"
    unavailable_errors: tuple[type[BaseException], ...] = (OSError,)

    def __init__(self, records: list[DayRecord], error: BaseException) -> None:
        self.records, self.error = records, error

    def read_day(self, day: date) -> Iterator[DayRecord]:
        yield from self.records
        raise self.error

    def describe(self) -> str:
        return "a failing test source"


def test_a_primary_failing_mid_day_is_replaced_by_the_fallback_from_the_start(
    tmp_path: Path,
) -> None:
    lines = _day_lines()
    expected = _ingest(tmp_path, "files", lines, chunk_rows=100)
    files = AuditLogSource(str(tmp_path / "files" / "audit.jsonl"))
    records = list(files.read_day(DAY))
    primary = _FailingSource(records[:250], ConnectionResetError("broker went away"))
    lake = Lake(tmp_path / "lake")
    report, choice = ingest.ingest_with_fallback(primary, files, DAY, lake, chunk_rows=100)
    assert choice.name == "audit_log" and "ConnectionResetError: broker went away" in (
        choice.fallback_reason
    )
    assert report.source == "audit_log" and _summary(report) == _summary(expected)
    assert _files(report) == _files(expected)


def test_a_primary_failing_with_a_bug_is_not_hidden_by_the_fallback(tmp_path: Path) -> None:
    files = AuditLogSource(str(tmp_path / "none.jsonl"))
    primary = _FailingSource([], ValueError("a bug"))
    with pytest.raises(ValueError, match="a bug"):
        ingest.ingest_with_fallback(primary, files, DAY, Lake(tmp_path / "lake"))
    assert not (tmp_path / "lake" / "raw_events" / f"{DAY}.parquet").exists()


def test_the_feature_matrix_is_streamed_in_batches_with_the_same_rows_and_figures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """feature_matrix written from DuckDB's batches, cut small here, into small row groups:
    the same rows and report figures as in one piece, and no scratch folder left."""
    from dataclasses import replace

    from ltr_assets.ingest import matrix as features

    folder = tmp_path / "day"
    folder.mkdir()
    lines = _day_lines(seed=3)
    (folder / "audit.jsonl").write_text("".join(line + "\n" for line in lines))
    lake = Lake(folder / "lake")
    ingest_day(AuditLogSource(str(folder / "audit.jsonl")).read_day(DAY), DAY, lake, "f")
    whole = features.build_feature_matrix(lake, DAY, 24)
    expected = pq.read_table(local(lake.feature_matrix(DAY)))
    assert whole.rows == expected.num_rows > 100 and whole.groups_with_positive > 0

    monkeypatch.setattr(features, "BATCH_ROWS", 17)
    monkeypatch.setattr(atomic, "PARQUET_ROW_GROUP_ROWS", 40)
    pieces = features.build_feature_matrix(lake, DAY, 24)
    assert replace(pieces, path=whole.path) == whole
    assert pq.read_table(local(lake.feature_matrix(DAY))).equals(expected)
    assert pq.ParquetFile(local(lake.feature_matrix(DAY))).num_row_groups == -(-whole.rows // 40)
    assert [p.name for p in (folder / "lake" / "feature_matrix").iterdir()] == [f"{DAY}.parquet"]


@pytest.mark.parametrize("chunk_rows", [None, 2])
def test_copies_differing_only_by_the_sign_of_zero_are_one_event_in_any_order(
    tmp_path: Path, chunk_rows: int | None
) -> None:
    """-0.0 and 0.0 are one value: two copies that differ only by it are exact duplicates on
    both paths, whichever comes first, and the kept row has the same bytes."""
    plus = _event(1, f"{DAY}T10:00:00Z", features={"A": 0.0, "M": 0.3}, score=0.0)
    minus = _event(1, f"{DAY}T10:00:00Z", features={"A": -0.0, "M": 0.3}, score=-0.0)
    others = [_event(i, f"{DAY}T11:00:00Z") for i in range(2, 5)]
    options = {} if chunk_rows is None else {"chunk_rows": chunk_rows}
    first = _ingest(tmp_path, "plus-first", [plus, minus, *others], **options)
    second = _ingest(tmp_path, "minus-first", [minus, plus, *others], **options)
    assert (first.duplicates, first.conflicts) == (1, 0)
    assert _summary(second) == _summary(first)
    assert _files(second) == _files(first)
