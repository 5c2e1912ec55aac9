"""raw_events reads the ranking service's own log (LTR_SERVING_LOG_DIR/<day>/*.jsonl) beside its
main source: what arrived both ways is kept once, and a missing folder is nothing, not an error."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from ltr_assets.ingest.day import EmptyDay, ingest_day, ingest_with_fallback
from ltr_assets.ingest.sources import AuditLogSource, DayRecord, ServingLogSource, SourceRecord
from ltr_assets.lake.paths import Lake
from ltr_core.codec import Interleaved, parse_request
from ltr_core.features import FEATURES
from ltr_serving.impressions import ImpressionRecord, impression_lines
from tests.support.ingest import accounted
from tests.unit.test_events import FLAT

DAY = date(2026, 11, 25)


def _event(i: int, **changes: object) -> str:
    return json.dumps({**FLAT, "event_id": f"e-{i}", "lawyer_id": f"l-{i}", **changes})


def _write(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


def _ids(report_path: object) -> list[str]:
    return sorted(str(i) for i in pq.read_table(str(report_path)).column("event_id").to_pylist())


def test_the_serving_log_is_read_beside_the_audit_log_and_deduplicated(tmp_path: Path) -> None:
    _write(tmp_path / "events" / "audit.jsonl", [_event(1), _event(2)])
    log = tmp_path / "serving-log"
    _write(log / "2026-11-25" / "a.jsonl", [_event(2), _event(3, policy="swap", propensity=0.1)])
    _write(log / "2026-11-25" / "b.jsonl.part", [_event(4)])  # still being written
    # written just after midnight: an event of the day in the next day's folder, and one of the
    # next day, which is not this day's
    _write(
        log / "2026-11-26" / "c.jsonl",
        [_event(5, timestamp="2026-11-25T23:59:59Z"), _event(6, timestamp="2026-11-26T00:10:00Z")],
    )
    _write(log / "2026-11-24" / "d.jsonl", [_event(7, timestamp="2026-11-24T12:00:00Z")])
    lake = Lake(tmp_path / "lake")
    audit = AuditLogSource(str(tmp_path / "events" / "*.jsonl"))

    report, choice = ingest_with_fallback(None, audit, DAY, lake, serving_log=ServingLogSource(log))

    assert choice.name == "audit_log" and report.source == "audit_log"
    assert report.serving_log_read == 3  # e-2, e-3 and e-5
    assert (report.read, report.accepted, report.duplicates) == (5, 4, 1)
    assert accounted(report) == report.read
    assert _ids(report.parquet_path) == ["e-1", "e-2", "e-3", "e-5"]
    table = pq.read_table(str(report.parquet_path)).to_pylist()
    swapped = next(row for row in table if row["event_id"] == "e-3")
    assert (swapped["policy"], swapped["propensity"]) == ("swap", 0.1)

    next_day, _ = ingest_with_fallback(
        None, audit, date(2026, 11, 26), lake, serving_log=ServingLogSource(log), allow_empty=True
    )
    assert _ids(next_day.parquet_path) == ["e-6"]  # e-5 is read in one partition only


def test_a_missing_folder_gives_nothing_and_is_not_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "audit.jsonl", [_event(1)])
    audit = AuditLogSource(str(tmp_path / "audit.jsonl"))
    serving = ServingLogSource(tmp_path / "never-created")
    report, _ = ingest_with_fallback(None, audit, DAY, Lake(tmp_path / "lake"), serving_log=serving)
    assert (report.read, report.accepted, report.serving_log_read) == (1, 1, 0)


def test_the_empty_day_rule_applies_to_the_sources_together(tmp_path: Path) -> None:
    nothing = AuditLogSource(str(tmp_path / "events" / "*.jsonl"))
    log = tmp_path / "serving-log"
    lake = Lake(tmp_path / "lake")
    with pytest.raises(EmptyDay, match="nor from the serving log") as refused:
        ingest_with_fallback(None, nothing, DAY, lake, serving_log=ServingLogSource(log))
    assert "no file matches it" in str(refused.value) and str(log) in str(refused.value)

    # files of other days are no evidence for DAY: the error names DAY's folders and counts
    # only theirs
    _write(log / "2026-11-20" / "a.jsonl", [])
    with pytest.raises(EmptyDay) as refused:
        ingest_with_fallback(None, nothing, DAY, lake, serving_log=ServingLogSource(log))
    assert (
        f"nor from the serving log's folders 2026-11-25/ and 2026-11-26/ under {str(log)!r} "
        "(0 files)" in str(refused.value)
    )

    _write(log / "2026-11-25" / "a.jsonl", [_event(1)])
    report, _ = ingest_with_fallback(None, nothing, DAY, lake, serving_log=ServingLogSource(log))
    assert (report.accepted, report.serving_log_read) == (1, 1)


class _DownTopic:
    """A primary source that fails part-way through the day."""

    name = "kafka"
    unavailable_errors: tuple[type[BaseException], ...] = (OSError,)

    def read_day(self, day: date) -> Iterator[DayRecord]:
        raise ConnectionError("broker unreachable")
        yield  # type: ignore[unreachable]  # a generator: the yield makes it one

    def describe(self) -> str:
        return "the Kafka topic 'match_events' at k:9092"


def test_after_a_fallback_the_serving_log_is_still_read_once(tmp_path: Path) -> None:
    _write(tmp_path / "audit.jsonl", [_event(1)])
    log = tmp_path / "serving-log"
    _write(log / "2026-11-25" / "a.jsonl", [_event(1), _event(2)])
    audit = AuditLogSource(str(tmp_path / "audit.jsonl"))
    report, choice = ingest_with_fallback(
        _DownTopic(), audit, DAY, Lake(tmp_path / "lake"), serving_log=ServingLogSource(log)
    )
    assert choice.name == "audit_log" and "broker unreachable" in choice.fallback_reason
    assert (report.read, report.accepted, report.duplicates, report.serving_log_read) == (
        3,
        2,
        1,
        2,
    )


def test_serving_log_lines_are_quarantined_naming_their_folder(tmp_path: Path) -> None:
    log = tmp_path / "serving-log"
    _write(log / "2026-11-25" / "a.jsonl", [_event(1), _event(2, propensity=2.0)])
    audit = AuditLogSource(str(tmp_path / "none" / "*.jsonl"))
    report, _ = ingest_with_fallback(
        None, audit, DAY, Lake(tmp_path / "lake"), serving_log=ServingLogSource(log)
    )
    assert (report.accepted, report.quarantined) == (1, 1)
    assert report.quarantine_path is not None
    (line,) = [json.loads(x) for x in Path(str(report.quarantine_path)).read_text().splitlines()]
    assert line["origin"] == "2026-11-25/a.jsonl:2" and "propensity 2.0" in line["reason"]


def test_every_serving_log_line_is_counted_in_exactly_one_day_wherever_it_was_filed(
    tmp_path: Path,
) -> None:
    """Lines filed in a folder of another day (a copied or restored file): those of the folder's
    day or the day before are read as events of their own day; any other is quarantined as
    `misfiled` by the read of the folder's day, and the lines without a readable time after it
    follow it there. Read over every day, each line is counted exactly once."""
    log = tmp_path / "serving-log"
    _write(
        log / "2026-11-25" / "a.jsonl",
        [
            _event(1, timestamp="2026-11-25T23:59:59Z"),
            _event(2, timestamp="2026-11-26T00:00:01Z"),  # of the next day
            "{broken",  # follows e-2
            _event(3, timestamp="2026-11-22T10:00:00Z"),  # days before
            _event(4, timestamp="2026-11-24T10:00:00Z"),  # the day before: its own day reads it
            _event(5, timestamp="2026-11-25T10:00:00Z", features={"A": 2.0}),  # bad, of the day
        ],
    )
    source = ServingLogSource(log)
    counted: dict[str, list[str]] = {}
    for offset in range(-6, 6):
        day = date.fromordinal(DAY.toordinal() + offset)
        for record in source.read_day(day):
            if isinstance(record, SourceRecord):
                kind = record.outcome.kind if record.outcome else "ignored"
                key = f"{record.origin}:{kind}"
            else:
                key = str(record.event_id)
            counted.setdefault(key, []).append(day.isoformat())
    assert counted == {
        "e-1": ["2026-11-25"],
        "e-4": ["2026-11-24"],
        "2026-11-25/a.jsonl:2:misfiled": ["2026-11-25"],
        "2026-11-25/a.jsonl:3:invalid_json": ["2026-11-25"],
        "2026-11-25/a.jsonl:4:misfiled": ["2026-11-25"],
        "2026-11-25/a.jsonl:6:bad_feature": ["2026-11-25"],
    }


def _replica_lines(request_id: str, at: str, *, canary: bool = False) -> list[str]:
    """What a replica's impression writer logs for one /rank answer at `at`: the list l-3, l-6,
    l-9 in the live model's order, or (`canary`) interleaved with a candidate as l-6, l-3, l-9."""
    features = ",".join(f'"{name}":0.5' for name in FEATURES)
    candidates = ",".join(
        f'{{"lawyer_id":"{lawyer}","features":{{{features}}}}}' for lawyer in ("l-3", "l-6", "l-9")
    )
    request = parse_request(f'{{"case_id":"c-1","candidates":[{candidates}]}}'.encode(), 10)
    when = datetime.fromisoformat(at).timestamp()
    if not canary:
        record = ImpressionRecord(
            request, request_id, "deterministic", [0, 1, 2], [0.9, 0.8, 0.7], "v-live", when, None
        )
    else:
        drafted = Interleaved(("candidate", "live", "live"), [0, 1, 2], [1, 0, 2])
        record = ImpressionRecord(
            request, request_id, "interleaved", [1, 0, 2], [0.8, 0.9, 0.7], "v-live", when, None,
            interleave_rate=0.5, interleaving=drafted, candidate_version="v-canary",
        )  # fmt: skip
    return [line.decode().rstrip("\n") for line in impression_lines(record)]


def test_a_retry_on_another_replica_is_a_duplicate_and_another_showing_a_conflict(
    tmp_path: Path,
) -> None:
    """Replicas r1 and r2 answer the same request id: a retry (the same list seconds later)
    gives copies differing only in their timestamps, which are duplicates, the earliest kept;
    a canary roll-out's two answers (deterministic on r1, interleaved on r2) are conflicts,
    counted apart as shown differently, on both the in-memory and the spilled path."""
    day = date(2026, 11, 5)
    log = tmp_path / "serving-log"
    first, later = "2026-11-05T11:00:00+00:00", "2026-11-05T11:00:07+00:00"
    _write(log / "2026-11-05" / "r1.jsonl", [
        *_replica_lines("retry-i", first), *_replica_lines("canary-i", first),
    ])  # fmt: skip
    _write(log / "2026-11-05" / "r2.jsonl", [
        *_replica_lines("retry-i", later), *_replica_lines("canary-i", later, canary=True),
    ])  # fmt: skip
    canary_ids = sorted(json.loads(line)["event_id"] for line in _replica_lines("canary-i", first))
    source = ServingLogSource(log)
    for chunk_rows in (1_000, 2):  # in memory; spilled in runs merged by DuckDB
        lake = Lake(tmp_path / f"lake-{chunk_rows}")
        report = ingest_day(source.read_day(day), day, lake, source.name, chunk_rows=chunk_rows)

        assert (report.read, report.accepted, report.quarantined) == (12, 6, 0)
        assert (report.duplicates, report.conflicts) == (3, 3) and accounted(report) == 12
        assert report.conflicting_ids == canary_ids
        # l-3 and l-6 moved; l-9 stayed third but under another policy, team and propensity
        assert (report.shown_differently, report.shown_differently_ids) == (3, canary_ids)
        rows = pq.read_table(str(report.parquet_path)).to_pylist()
        assert {row["timestamp"].isoformat() for row in rows} == {first}  # the earliest copies
        assert {row["policy"] for row in rows} == {"deterministic"}


# -- planted links and special files are never read ---------------------------------------

SECRET = "LTR_RELOAD_TOKEN=supersecret-reload"


def _records_text(records: list[DayRecord]) -> str:
    return "".join(
        r.raw.decode(errors="replace") if isinstance(r, SourceRecord) else str(r) for r in records
    )


@pytest.mark.timeout(60)  # a FIFO opened plainly would block for good
def test_links_and_special_files_in_the_serving_log_are_skipped_never_read(
    tmp_path: Path,
) -> None:
    """A symbolic link planted in a day folder (to a secret), a day folder that is a link, a
    FIFO and a folder named like a log file: none is opened (a FIFO would block a plain open),
    each is named in `skipped`; the day's real file is read as before."""
    secret = tmp_path / "ltr.env"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    log = tmp_path / "serving-log"
    day = log / DAY.isoformat()
    _write(day / "a.jsonl", [_event(1)])
    (day / "zz.jsonl").symlink_to(secret)
    os.mkfifo(day / "fifo.jsonl")
    (day / "dir.jsonl").mkdir()
    elsewhere = tmp_path / "elsewhere"
    _write(elsewhere / "b.jsonl", [SECRET])
    (log / "2026-11-26").symlink_to(elsewhere, target_is_directory=True)
    source = ServingLogSource(log)

    records = list(source.read_day(DAY))

    assert [r.event_id for r in records if not isinstance(r, SourceRecord)] == ["e-1"]
    assert len(records) == 1 and "supersecret" not in _records_text(records)
    assert source.skipped == {
        str(day / "dir.jsonl"): "a folder",
        str(day / "fifo.jsonl"): "a FIFO",
        str(day / "zz.jsonl"): "a symbolic link",
        str(log / "2026-11-26"): "the day folder is a symbolic link",
    }
    assert source.files() == [day / "a.jsonl"]
    report = ingest_day(source.read_day(DAY), DAY, Lake(tmp_path / "lake"), "serving_log")
    assert (report.read, report.quarantined) == (1, 0)


@pytest.mark.timeout(60)  # a FIFO opened plainly would block for good
def test_a_file_swapped_for_a_link_after_it_was_listed_is_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listed as a regular file, then replaced by a link (or a FIFO) before it is opened: the
    open does not follow the link (O_NOFOLLOW) nor wait on the FIFO (O_NONBLOCK)."""
    secret = tmp_path / "ltr.env"
    secret.write_text(SECRET + "\n")
    log = tmp_path / "serving-log"
    day = log / DAY.isoformat()
    _write(day / "a.jsonl", [_event(1)])
    _write(day / "b.jsonl", [_event(2)])
    source = ServingLogSource(log)
    listed = source.day_files(DAY)
    (day / "a.jsonl").unlink()
    (day / "a.jsonl").symlink_to(secret)
    (day / "b.jsonl").unlink()
    os.mkfifo(day / "b.jsonl")
    monkeypatch.setattr(source, "day_files", lambda day: listed)

    assert list(source.read_day(DAY)) == []
    assert source.skipped == {
        str(day / "a.jsonl"): "a symbolic link",
        str(day / "b.jsonl"): "a FIFO",
    }


def test_an_audit_log_glob_skips_planted_links_a_configured_path_is_followed(
    tmp_path: Path,
) -> None:
    secret = tmp_path / "ltr.env"
    secret.write_text(SECRET + "\n")
    events = tmp_path / "events"
    _write(events / "a.jsonl", [_event(1)])
    (events / "zz.jsonl").symlink_to(secret)
    os.mkfifo(events / "fifo.jsonl")
    _write(tmp_path / "other" / "b.jsonl", [SECRET])
    (events / "sub").symlink_to(tmp_path / "other", target_is_directory=True)
    _write(events / "real" / "c.jsonl", [_event(3)])

    flat = AuditLogSource(str(events / "*.jsonl"))
    records = list(flat.read_day(DAY))
    assert [r.event_id for r in records if not isinstance(r, SourceRecord)] == ["e-1"]
    assert flat.skipped == {
        str(events / "fifo.jsonl"): "a FIFO",
        str(events / "zz.jsonl"): "a symbolic link",
    }
    nested = AuditLogSource(str(events / "*" / "*.jsonl"))
    assert [r.event_id for r in nested.read_day(DAY)] == ["e-3"]  # type: ignore[union-attr]
    assert nested.skipped == {
        str(events / "sub" / "b.jsonl"): f"{str(events / 'sub')!r} is a symbolic link"
    }

    # the operator's own path, a link to the real file (a logrotate "current" link, say)
    (tmp_path / "current.jsonl").symlink_to(events / "a.jsonl")
    configured = AuditLogSource(str(tmp_path / "current.jsonl"))
    assert [r.event_id for r in configured.read_day(DAY)] == ["e-1"]  # type: ignore[union-attr]
    assert configured.skipped == {}
