"""The serving log's files (`ltr_serving.impressions.FileSink`): one open file per day, so late
feedback interleaved with today's impressions does not make a file per alternation."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from ltr_serving import impressions
from ltr_serving.impressions import MAX_OPEN_DAYS, EventLog, FeedbackRecord, FileSink, Line


def _line(day: str, n: int) -> bytes:
    return f'{{"day": "{day}", "n": {n}}}\n'.encode()


def _files(directory: Path, pattern: str) -> list[Path]:
    return sorted(directory.rglob(pattern))


def test_events_of_two_days_alternating_go_to_one_file_per_day(tmp_path: Path) -> None:
    sink = FileSink(tmp_path)
    for n in range(100):
        for day in ("2026-12-05", "2026-12-06"):
            sink.write_data(day, _line(day, n), 1)
    assert sink.open_days == ["2026-12-05", "2026-12-06"]
    assert _files(tmp_path, "*.jsonl") == []  # nothing completed yet: both still open
    sink.close()
    complete = _files(tmp_path, "*.jsonl")
    assert [p.parent.name for p in complete] == ["2026-12-05", "2026-12-06"]
    for path in complete:
        lines = path.read_bytes().splitlines(keepends=True)
        assert lines == [_line(path.parent.name, n) for n in range(100)]
    assert _files(tmp_path, "*.part") == [] and sink.files_completed == 2


def test_past_the_open_file_limit_the_day_written_least_lately_is_completed(
    tmp_path: Path,
) -> None:
    """Today's file, written all the time, stays open while late feedback for many past days
    comes and goes."""
    sink = FileSink(tmp_path)
    today = "2026-12-06"
    past = [f"2026-11-{d:02d}" for d in range(1, MAX_OPEN_DAYS + 3)]
    for n, day in enumerate(past):
        sink.write_data(today, _line(today, n), 1)
        sink.write_data(day, _line(day, 0), 1)
    assert len(sink.open_days) == MAX_OPEN_DAYS and today in sink.open_days
    completed = [p.parent.name for p in _files(tmp_path, "*.jsonl")]
    # the past days written least lately; today and the three latest past days stay open
    assert completed == past[: len(past) - (MAX_OPEN_DAYS - 1)]
    sink.write_data(past[0], _line(past[0], 1), 1)  # a later event of that day: a new file
    assert len(_files(tmp_path / past[0], "*")) == 2
    sink.close()
    assert _files(tmp_path, "*.part") == [] and len(_files(tmp_path / today, "*.jsonl")) == 1


def test_each_days_file_is_completed_at_its_own_age_and_size(tmp_path: Path) -> None:
    sink = FileSink(tmp_path, max_age_s=0.0, max_bytes=40)
    sink.write_data("2026-12-05", _line("2026-12-05", 0), 1)
    sink.write_data("2026-12-06", _line("2026-12-06", 0) * 2, 2)  # past max_bytes: completed
    assert sink.open_days == ["2026-12-05"]
    sink.tick(0.0)  # past max_age_s
    assert sink.open_days == [] and sink.files_completed == 2


def test_a_batch_whose_second_day_fails_counts_the_written_day_as_logged(tmp_path: Path) -> None:
    """A feedback batch spans days, written one day at a time: a failure on the second day
    leaves the first written, and the counters say so (the 503 tells the client to retry; the
    events are deduplicated by event id)."""
    (tmp_path / "2026-12-07").write_text("a file where the day's folder would go")
    log = EventLog(FileSink(tmp_path), capacity=4)
    outcome: list[bool] = []
    lines = [
        ("2026-12-06", _feedback(0)),
        ("2026-12-06", _feedback(1)),
        ("2026-12-07", _feedback(2)),
    ]
    log.start()
    log.submit(FeedbackRecord(lines), outcome.append)
    log.stop()  # drains the queue
    assert outcome == [False]
    assert (log.counts.logged["feedback"], log.counts.failed) == (2, 1)
    assert log.counts.last_error is not None and "FileExistsError" in log.counts.last_error
    (written,) = _files(tmp_path, "*.jsonl")
    assert written.read_bytes() == _feedback(0).data + _feedback(1).data


def _feedback(n: int) -> Line:
    return Line(f'{{"event_id": "f-{n}"}}\n'.encode(), None, 0, "feedback")


class _Disk:
    """A disk of `capacity` bytes shared by the files `open` creates in `ltr_serving.impressions`:
    a write past it writes what fits, then raises ENOSPC (as a buffered file's flush does);
    truncating gives the space back."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        self.created = 0  # files opened for writing

    def open(self, path: Path, mode: str = "r", buffering: int = -1) -> object:
        real = open(path, mode, buffering=buffering)  # noqa: SIM115 - the sink closes it
        if "x" not in mode and "w" not in mode:
            return real
        self.created += 1
        disk = self

        class OnTheDisk:
            def write(self, data: bytes) -> int:
                room = max(disk.capacity - disk.used, 0)
                taken = real.write(bytes(data[:room]))
                disk.used += len(data[:room])
                if room < len(data):
                    raise OSError(errno.ENOSPC, "No space left on device")
                return taken or len(data)

            def truncate(self, size: int) -> int:
                disk.used -= os.fstat(real.fileno()).st_size - size
                return real.truncate(size)

            def __getattr__(self, name: str) -> object:
                return getattr(real, name)

        return OnTheDisk()


def test_a_full_disk_makes_no_file_per_failed_write_and_leaves_whole_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk: every write fails. The open file is cut back to its last whole line and
    kept (not one new, empty file per failed write); the failed events are counted as failed
    only, not also left torn in a file for the ingest to quarantine; feedback is refused; and
    once space returns the events go to the same file."""
    disk = _Disk(capacity=10 * len(_line("2026-12-06", 0)) + 7)
    monkeypatch.setattr(impressions, "open", disk.open, raising=False)
    day = "2026-12-06"
    log = EventLog(FileSink(tmp_path), capacity=4)
    for n in range(200):
        log.write_now(FeedbackRecord([(day, Line(_line(day, n), None, 0, "feedback"))]))
    assert disk.created == 1  # one file, kept open: not one more per failed write
    assert (log.counts.logged["feedback"], log.counts.failed) == (10, 190)
    assert log.counts.last_error is not None and "No space left" in log.counts.last_error
    disk.capacity += 1000  # space returns
    log.write_now(FeedbackRecord([(day, Line(_line(day, 999), None, 0, "feedback"))]))
    log.close()
    assert log.counts.logged["feedback"] == 11 and disk.created == 1
    (written,) = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert written.suffix == ".jsonl"
    assert written.read_bytes() == b"".join(_line(day, n) for n in [*range(10), 999])


def test_a_file_no_write_ever_reached_is_not_completed_as_an_empty_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk full from the start: at rotation and close the file has nothing in it and is
    deleted, not completed as an empty file for the ingest to list."""
    disk = _Disk(capacity=3)
    monkeypatch.setattr(impressions, "open", disk.open, raising=False)
    sink = FileSink(tmp_path, max_age_s=0.0)
    for day in ("2026-12-05", "2026-12-06"):
        with pytest.raises(OSError, match="No space left"):
            sink.write_data(day, _line(day, 0), 1)
    sink.tick(0.0)  # past max_age_s: rotated
    assert sink.open_days == [] and sink.files_completed == 0
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
