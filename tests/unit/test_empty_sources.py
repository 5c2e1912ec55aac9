"""A source that gives nothing for a day is an error naming it, unless the day is allowed to be
empty: a path or glob that matches no file, or a folder, never passes as a day without events."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from ltr_assets.ingest.day import EmptyDay, ingest_with_fallback
from ltr_assets.ingest.sources import AuditLogSource, DayRecord, SourceError
from ltr_assets.lake.paths import Lake
from tests.support.ingest import local
from tests.unit.test_events import FLAT

DAY = date(2026, 11, 25)


def _written(lake: Lake) -> list[Path]:
    folder = local(lake.raw_events(DAY)).parent
    return sorted(folder.iterdir()) if folder.exists() else []


def test_a_glob_matching_no_file_is_refused_naming_it(tmp_path: Path) -> None:
    pattern = str(tmp_path / "events" / "*.jsonl")
    lake = Lake(tmp_path / "lake")
    with pytest.raises(EmptyDay, match="no file matches it") as refused:
        ingest_with_fallback(None, AuditLogSource(pattern), DAY, lake)
    assert pattern in str(refused.value) and f"LTR_ALLOW_EMPTY_DAYS={DAY}" in str(refused.value)
    assert _written(lake) == [] and not lake.quarantine(DAY).exists()


def test_a_folder_is_refused_even_where_empty_days_are_allowed(tmp_path: Path) -> None:
    (tmp_path / "events").mkdir()
    (tmp_path / "events" / "audit.jsonl").write_text(json.dumps(FLAT) + "\n")
    folder = AuditLogSource(str(tmp_path / "events"))
    for allowed in (False, True):
        with pytest.raises(SourceError, match="is a folder") as refused:
            ingest_with_fallback(None, folder, DAY, Lake(tmp_path / "lake"), allow_empty=allowed)
        assert str(tmp_path / "events") in str(refused.value)


def test_files_without_a_line_of_the_day_are_refused_unless_the_day_is_allowed(
    tmp_path: Path,
) -> None:
    other_day = {**FLAT, "timestamp": "2026-11-20T10:00:00Z"}
    (tmp_path / "audit.jsonl").write_text(json.dumps(other_day) + "\n")
    source = AuditLogSource(str(tmp_path / "*.jsonl"))
    lake = Lake(tmp_path / "lake")
    with pytest.raises(EmptyDay, match=r"\(1 files\)"):
        ingest_with_fallback(None, source, DAY, lake)
    assert _written(lake) == []
    report, choice = ingest_with_fallback(None, source, DAY, lake, allow_empty=True)
    assert report.read == 0 and choice.name == "audit_log"
    assert report.parquet_path is not None and Path(str(report.parquet_path)).exists()


class _EmptyTopic:
    """A reachable primary source with nothing for the day."""

    name = "kafka"
    unavailable_errors: tuple[type[BaseException], ...] = (OSError,)

    def read_day(self, day: date) -> Iterator[DayRecord]:
        yield from ()

    def describe(self) -> str:
        return "the Kafka topic 'match_events' at k:9092"


def test_a_reachable_but_empty_primary_is_refused_not_replaced_by_the_fallback(
    tmp_path: Path,
) -> None:
    (tmp_path / "audit.jsonl").write_text(json.dumps(FLAT) + "\n")
    files = AuditLogSource(str(tmp_path / "audit.jsonl"))
    with pytest.raises(EmptyDay, match="the Kafka topic 'match_events' at k:9092"):
        ingest_with_fallback(_EmptyTopic(), files, DAY, Lake(tmp_path / "lake"))


def test_a_day_of_records_that_are_all_ignored_is_refused_unless_allowed(
    tmp_path: Path,
) -> None:
    """A log shipper's wrapper (the event as a string in `message`) makes every line a record
    of another kind: ignored, so 0 accepted and 0 quarantined, and every check passed on an
    empty day. Refused like a source that gives nothing."""
    wrapped = {"timestamp": f"{DAY}T10:00:00Z", "message": json.dumps(FLAT)}
    shown = {"timestamp": f"{DAY}T10:00:01Z", "message": "recommendation shown", "context": FLAT}
    (tmp_path / f"audit-{DAY}.jsonl").write_text(  # a file of its day: its undated lines too
        "".join(json.dumps(line) + "\n" for line in (wrapped, shown, wrapped))
    )
    source = AuditLogSource(str(tmp_path / "*.jsonl"))
    lake = Lake(tmp_path / "lake")
    with pytest.raises(EmptyDay, match="its 3 records were all ignored") as refused:
        ingest_with_fallback(None, source, DAY, lake)
    assert f"LTR_ALLOW_EMPTY_DAYS={DAY}" in str(refused.value)
    assert _written(lake) == [] and not lake.quarantine(DAY).exists()
    report, _ = ingest_with_fallback(None, source, DAY, lake, allow_empty=True)
    assert (report.read, report.ignored, report.accepted) == (3, 3, 0)


class _DownTopic(_EmptyTopic):
    def read_day(self, day: date) -> Iterator[DayRecord]:
        yield from ()
        raise OSError("Connection refused")


def test_an_empty_fallback_says_which_primary_failed_and_why(tmp_path: Path) -> None:
    """The files read instead of Kafka hold nothing for the day: the refusal names the topic
    and its failure too, not only the files (where the operator would look in vain)."""
    files = AuditLogSource(str(tmp_path / "*.jsonl"))
    with pytest.raises(EmptyDay) as refused:
        ingest_with_fallback(_DownTopic(), files, DAY, Lake(tmp_path / "lake"))
    message = str(refused.value)
    assert f"no record of {DAY} from the audit log" in message
    assert "read instead of the Kafka topic 'match_events' at k:9092, which failed" in message
    assert "Connection refused" in message
