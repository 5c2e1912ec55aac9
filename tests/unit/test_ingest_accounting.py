"""Every line of an audit-log file is counted exactly once, in exactly one day, whatever it holds;
future-stamped and implausibly old events are quarantined where they arrived; conflicting copies
of an event give the same Parquet in any order."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ltr_assets.ingest.day import ingest_day
from ltr_assets.ingest.sources import (
    BEFORE_START,
    CLOCK_LINES,
    FUTURE,
    OLD,
    AuditLogSource,
    ServingLogSource,
    SourceRecord,
)
from ltr_assets.lake.paths import Lake
from ltr_core.events import EventRow, Rejection, parse_event
from tests.support.ingest import accounted, local
from tests.unit.test_events import FLAT

DAY = date(2026, 11, 25)
SKEW = timedelta(hours=24)
WRITTEN = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # the file's modification time


def _event(i: int, when: str | int, **changes: object) -> str:  # int: an epoch timestamp
    return json.dumps({**FLAT, "event_id": f"e-{i}", "lawyer_id": f"l-{i}", "timestamp": when,
                       **changes})  # fmt: skip


def _write(path: Path, lines: list[str]) -> AuditLogSource:
    path.write_text("".join(line + "\n" for line in lines))
    os.utime(path, (WRITTEN.timestamp(), WRITTEN.timestamp()))
    return AuditLogSource(str(path), max_clock_skew=SKEW)


def _days_read(source: AuditLogSource, days: list[date]) -> dict[date, list[str]]:
    """Per day, the origin ("file:line") of every record yielded, events included."""
    out: dict[date, list[str]] = {}
    for day in days:
        out[day] = []
        for record in source.read_day(day):
            if isinstance(record, SourceRecord):
                out[day].append(record.origin)
            else:
                out[day].append(f"event:{record.event_id}")
    return out


def _around(day: date, before: int, after: int) -> list[date]:
    return [day + timedelta(days=k) for k in range(-before, after + 1)]


def test_an_escaped_timestamp_key_with_a_nested_decoy_is_counted_in_its_day(
    tmp_path: Path,
) -> None:
    """The key the parser reads is "timest\\u0061mp"; the only literal "timestamp" is a decoy."""
    raw = _event(9, "2026-11-25T10:00:00Z", note={"timestamp": "2026-11-20T10:00:00Z"})
    escaped = raw.replace('"timestamp": "2026-11-25', '"timest\\u0061mp": "2026-11-25')
    lines = [_event(1, "2026-11-20T09:00:00Z"), escaped, _event(2, "2026-11-20T11:00:00Z")]
    source = _write(tmp_path / "audit.jsonl", lines)
    read = _days_read(source, _around(DAY, 7, 2))
    assert read[DAY] == ["event:e-9"]
    assert sum(len(v) for v in read.values()) == 3


def test_a_nested_timestamp_key_does_not_move_the_files_clock(tmp_path: Path) -> None:
    """A client's extra field holding a "timestamp" (sent before the event's own, as the
    service logs keys in the order sent) is not the line's time: 300 such feedback events
    stamped 2099 inside, then the service's own impressions, are all accepted. The file's clock
    reads each line's own (top-level) timestamp, not the first literal key."""
    when = "2026-11-25T10:00:00Z"
    feedback = [
        json.dumps(
            {
                "x": {"timestamp": "2099-01-01T00:00:00Z"},
                "event_type": "offer_feedback",
                "timestamp": when,
                "event_id": f"fbpoison-{i}",
                "case_id": "cp",
                "lawyer_id": f"l-{i}",
                "action": "decline",
            }
        )
        for i in range(300)
    ]
    extra = {"timestamp": "2099-01-01T00:00:00Z"}  # nested after the line's own: harmless
    shown = [_event(1000 + i, when, extra=extra) for i in range(100)]
    log = tmp_path / "serving-log"
    (log / DAY.isoformat()).mkdir(parents=True)
    _write(log / DAY.isoformat() / "a.jsonl", feedback + shown)
    # the audit-log envelope: a nested key in the context before the line's own timestamp
    context = {k: v for k, v in FLAT.items() if k not in ("timestamp", "event_id")}
    audit = [
        json.dumps(
            {
                "context": {
                    **context,
                    "event_id": f"a-{i}",
                    "meta": {"timestamp": "2099-01-01T00:00:00Z"},
                },
                "message": "match_recommendation",
                "timestamp": when,
            }
        )
        for i in range(300)
    ] + [_event(2000 + i, when) for i in range(100)]
    for source in (ServingLogSource(log, SKEW), _write(tmp_path / "audit.jsonl", audit)):
        report = ingest_day(source.read_day(DAY), DAY, Lake(tmp_path / source.name), "f")
        assert (report.accepted, report.quarantined) == (400, 0), report.reasons


def test_a_line_without_its_own_timestamp_is_not_stamped_by_a_nested_one(
    tmp_path: Path,
) -> None:
    """A line whose only "timestamp" is nested has no time of its own: it neither stamps the
    clock (so the events after it are not `old_timestamp`) nor is it skipped as another day's;
    it follows its neighbour. The audit-log context's own timestamp, without a top-level one, is
    the line's time."""
    nested = json.dumps({**{k: v for k, v in FLAT.items() if k != "timestamp"},
                         "x": {"timestamp": "2099-01-01T00:00:00Z"}})  # fmt: skip
    context = {k: v for k, v in FLAT.items() if k != "event_id"}
    context.update(event_id="ctx", timestamp="2026-11-25T09:00:00Z")
    own = json.dumps({"message": "match_recommendation", "context": context})
    lines = [nested] * 60 + [own] + [_event(i, "2026-11-25T10:00:00Z") for i in range(50)]
    source = _write(tmp_path / "audit.jsonl", lines)
    report = ingest_day(source.read_day(DAY), DAY, Lake(tmp_path / "lake"), "f")
    assert report.reasons == {"bad_timestamp": 60}
    assert report.accepted == 51


def test_an_unreadable_time_two_days_from_its_neighbour_is_counted_with_the_neighbour(
    tmp_path: Path,
) -> None:
    lines = [
        _event(1, "2026-11-25T10:00:00Z"),
        _event(2, "2026-11-27T99:99:99Z"),  # a valid date, an unreadable time
        json.dumps({"timestamp": "2026-11-21T10:00:00Z", "message": "http_request"}),  # ignored
        _event(3, "2026-11-25T11:00:00Z"),
    ]
    source = _write(tmp_path / "audit.jsonl", lines)
    read = _days_read(source, _around(DAY, 6, 4))
    assert read[DAY] == ["event:e-1", "audit.jsonl:2", "audit.jsonl:3", "event:e-3"]
    assert sum(len(v) for v in read.values()) == 4
    report = ingest_day(source.read_day(DAY), DAY, Lake(tmp_path / "lake"), "f")
    assert (report.accepted, report.quarantined, report.ignored) == (2, 1, 1)


def test_a_future_stamped_event_is_quarantined_where_it_arrived(tmp_path: Path) -> None:
    """Written on 11-26: no line can be stamped later than the end of 11-26 plus 24 h (the
    skew allowed), so one that is comes from a skewed clock."""
    lines = [
        _event(1, "2026-11-25T10:00:00Z"),
        _event(2, "2030-01-01T00:00:00Z"),  # far future
        "{not json",  # follows the last trustworthy line (e-1), not the 2030 one
        _event(3, "2026-11-27T23:59:59Z"),  # within 24 h of the end of 11-26: accepted
        _event(4, "2026-11-28T00:00:01Z"),  # past it: quarantined where it arrived (11-27)
    ]
    source = _write(tmp_path / "audit.jsonl", lines)
    read = _days_read(source, [*_around(DAY, 1, 5), date(2030, 1, 1)])
    assert read[DAY] == ["event:e-1", "audit.jsonl:2", "audit.jsonl:3"]
    assert read[date(2026, 11, 27)] == ["event:e-3", "audit.jsonl:5"]
    assert read[date(2030, 1, 1)] == [] and sum(len(v) for v in read.values()) == 5
    report = ingest_day(source.read_day(DAY), DAY, Lake(tmp_path / "lake"), "f")
    assert report.reasons == {FUTURE: 1, "invalid_json": 1}
    quarantined = [json.loads(x) for x in local(report.quarantine_path).read_text().splitlines()]
    assert "2030-01-01" in quarantined[0]["reason"] and "skewed clock" in quarantined[0]["reason"]


def test_an_implausibly_old_event_is_quarantined_where_it_arrived(tmp_path: Path) -> None:
    """Stamped in 1970 (ISO or epoch 0) or in year 1, more than LTR_MAX_EVENT_AGE_DAYS (30)
    before the dates of the lines around it: quarantined in the day it arrived, and the
    unreadable line after it follows the last trustworthy line, not the 1970 one. At the head of
    a file, the clock is the first lines' dates, so a 1970 first line is caught too."""
    lines = [
        _event(1, "1970-01-01T00:00:00Z"),  # the file's first line
        "{not json",  # at the head: follows the next trustworthy line (e-2)
        _event(2, "2026-11-25T10:00:00Z"),
        _event(3, 0),  # epoch 0
        "{not json either",  # follows e-2, not 1970
        _event(4, "0001-01-01T00:00:00Z"),
        _event(5, "2026-10-27T10:00:00Z"),  # 29 days before: a plausible straggler, its own day
        *[_event(i, f"2026-11-25T{i:02d}:00:00Z") for i in range(6, 10)],
    ]  # the clock is the median date: most lines are right
    source = _write(tmp_path / "audit.jsonl", lines)
    days = [date(1970, 1, 1), date(1, 1, 1), date(2026, 10, 27), *_around(DAY, 1, 1)]
    read = _days_read(source, days)
    assert read[DAY] == ["audit.jsonl:1", "audit.jsonl:2", "event:e-2", "audit.jsonl:4",
                         "audit.jsonl:5", "audit.jsonl:6",
                         *[f"event:e-{i}" for i in range(6, 10)]]  # fmt: skip
    assert read[date(2026, 10, 27)] == ["event:e-5"]
    assert read[date(1970, 1, 1)] == read[date(1, 1, 1)] == []
    report = ingest_day(source.read_day(DAY), DAY, Lake(tmp_path / "lake"), "f")
    assert report.reasons == {OLD: 3, "invalid_json": 2}
    quarantined = [json.loads(x) for x in local(report.quarantine_path).read_text().splitlines()]
    assert (
        "1970-01-01" in quarantined[0]["reason"]
        and "LTR_MAX_EVENT_AGE_DAYS" in (quarantined[0]["reason"])
    )


def test_a_backfill_of_an_old_file_reads_its_old_lines_as_they_are(tmp_path: Path) -> None:
    """The bound follows the file's own dates, not today's: a file of 2020 read today (or after
    a restore that reset its modification time) quarantines nothing."""
    old_day = date(2020, 3, 1)
    lines = [_event(i, f"{old_day}T{i:02d}:00:00Z") for i in range(10)]
    path = tmp_path / "audit.jsonl"
    path.write_text("".join(line + "\n" for line in lines))  # modified now
    report = ingest_day(AuditLogSource(str(path)).read_day(old_day), old_day, Lake(tmp_path), "f")
    assert (report.accepted, report.quarantined) == (10, 0)


# -- the property: every line exactly once, whatever the lines ------------------------------

_ISO = re.compile(r'"timestamp"\s*:\s*"(\d{4}-\d{2}-\d{2})')
_NUMBER = re.compile(r'"timestamp"\s*:\s*(-?\d{1,16}(?:\.\d+)?)\s*[,}]')


def _stamp(line: str) -> int | None:
    """A line's stamp as documented: the date of its own timestamp (the top-level key, else the
    audit-log context's), an ISO date or a plain number (epoch seconds, milliseconds above
    1e11). A line that is not JSON (only the cut ones here, whose key comes first): the date
    its first literal key shows."""
    try:
        obj = json.loads(line)
    except ValueError:
        return _first_literal_stamp(line)
    if not isinstance(obj, dict):
        return None
    value = obj.get("timestamp")
    if value is None and "event_type" not in obj and isinstance(obj.get("context"), dict):
        value = obj["context"].get("timestamp")
    if isinstance(value, str):
        return _first_literal_stamp(json.dumps({"timestamp": value}))
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _first_literal_stamp(json.dumps({"timestamp": value}))
    return None


def _first_literal_stamp(line: str) -> int | None:
    if iso := _ISO.search(line):
        try:
            return date.fromisoformat(iso.group(1)).toordinal()
        except ValueError:
            pass
    if number := _NUMBER.search(line):
        value = float(number.group(1))
        seconds = value / 1000 if abs(value) > 1e11 else value
        return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=seconds)).toordinal()
    return None


def _expected_days(lines: list[str], file_day: date) -> list[date]:
    """The documented rule, without any pre-filter: each non-blank line's day."""
    horizon = datetime(WRITTEN.year, WRITTEN.month, WRITTEN.day, tzinfo=UTC) + timedelta(1) + SKEW
    present = [line.strip() for line in lines if line.strip()]
    stamps = [_stamp(line) for line in present]
    head = sorted([s for s in stamps if s is not None][:CLOCK_LINES])
    assert len(present) < CLOCK_LINES  # so the clock is the head's median throughout
    clock = head[(len(head) - 1) // 2] if head else None
    days: list[date | None] = []
    last: date | None = None
    for line in present:
        outcome = parse_event(line.encode())
        when = outcome.timestamp if isinstance(outcome, EventRow | Rejection) else None
        old = when is not None and clock is not None and clock - when.toordinal() > 30
        if when is None or when > horizon or old:
            days.append(last)  # None: at the head, waits for the next dated line
            continue
        last = when.date()
        days = [last if d is None else d for d in days]
        days.append(last)
    return [file_day if d is None else d for d in days]


STAMPS = st.builds(
    lambda d, h, zone: f"2026-11-{d:02d}T{h:02d}:30:00{zone}",
    st.integers(18, 30),
    st.integers(0, 23),
    st.sampled_from(["Z", "+00:00", "-03:00", "+09:30", ""]),
)
TIMES = STAMPS | st.sampled_from(
    ["2026-11-27T99:99:99Z", "2030-01-01T00:00:00Z", "yesterday", 1795000000, None,
     "1970-01-01T00:00:00Z", "0001-01-01T00:00:00Z", 0, 1795000000000]
)  # fmt: skip


@st.composite
def adversarial_line(draw: st.DrawFn) -> str:
    i = draw(st.integers(0, 5))  # few ids: duplicates and conflicts happen
    when = draw(TIMES)
    kind = draw(
        st.sampled_from(
            ["event", "escaped", "nested", "decoy", "audit", "other", "broken", "blank"]
        )
    )
    if kind == "event":
        return _event(i, when, score=draw(st.sampled_from([0.1, 0.83])))  # type: ignore[arg-type]
    if kind == "escaped":
        return _event(i, when, note={"timestamp": draw(STAMPS)}).replace(  # type: ignore[arg-type]
            '"timestamp": ', '"timest\\u0061mp": ', 1
        )
    if kind == "nested":  # a client's extra field, sent before the event's own time
        decoy = draw(st.sampled_from(["2099-01-01T00:00:00Z", "1970-01-01T00:00:00Z", 0]))
        return json.dumps({"x": {"timestamp": decoy}, **json.loads(_event(i, when))})  # type: ignore[arg-type]
    if kind == "decoy":
        return json.dumps({"event_type": "offer_feedback", "context": {"timestamp": when}})
    if kind == "audit":
        context = {k: v for k, v in FLAT.items() if k not in ("timestamp", "event_id")}
        return json.dumps(
            {"timestamp": when, "message": "match_recommendation", "context": context}
        )
    if kind == "other":
        return json.dumps({"timestamp": when, "message": "http_request"})
    if kind == "broken":
        return f'{{"timestamp": "{draw(STAMPS)}", "event_type": '
    return "   "


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(lines=st.lists(adversarial_line(), min_size=1, max_size=25))
def test_every_line_is_counted_exactly_once_across_all_days(
    tmp_path_factory: object, lines: list[str]
) -> None:
    folder = tmp_path_factory.mktemp("log")  # type: ignore[attr-defined]
    path = folder / "audit.jsonl"
    source = _write(path, lines)
    expected = Counter(_expected_days(lines, WRITTEN.date()))
    days = sorted({*expected, *_around(date(2026, 11, 24), 8, 10)})
    lake = Lake(folder / "lake")
    total = 0
    for day in days:
        report = ingest_day(source.read_day(day), day, lake, "f")
        assert report.read == accounted(report)
        assert report.read == expected.get(day, 0), (day, lines)
        total += report.read
    assert total == sum(1 for line in lines if line.strip())


# -- conflicting duplicates ----------------------------------------------------------------


def test_conflicting_copies_give_the_same_parquet_in_any_order(tmp_path: Path) -> None:
    lines = [
        _event(1, "2026-11-25T10:00:00Z"),
        _event(1, "2026-11-25T09:00:00Z", score=0.5),  # earlier: this copy is kept
        _event(1, "2026-11-25T10:00:00Z"),  # an exact copy of the first
        _event(2, "2026-11-25T11:00:00Z", score=0.2),
        _event(2, "2026-11-25T11:00:00Z", score=0.3),  # same time: the smaller hash is kept
        _event(3, "2026-11-25T12:00:00Z"),
    ]
    outputs = set()
    for n, order in enumerate(
        [lines, lines[::-1], lines[2:] + lines[:2], lines[1::2] + lines[::2]]
    ):
        source = _write(tmp_path / f"order{n}.jsonl", order)
        report = ingest_day(source.read_day(DAY), DAY, Lake(tmp_path / f"lake{n}"), "f")
        assert (report.accepted, report.duplicates, report.conflicts) == (3, 1, 2)
        assert report.conflicting_ids == ["e-1", "e-2"]
        outputs.add(local(report.parquet_path).read_bytes())
    assert len(outputs) == 1


def test_lines_before_the_first_partition_are_counted_by_its_read(tmp_path: Path) -> None:
    """LTR_START_DATE is the first partition: no read ever takes an earlier day, so the first
    day's read takes those lines too (an event quarantined as `before_start`, a bad line with
    its own reason) instead of leaving them counted nowhere."""
    first = DAY
    lines = [
        _event(1, "2026-11-23T10:00:00Z"),
        _event(2, "2026-11-24T23:59:59Z"),
        _event(3, "2026-11-24T23:59:59Z", features={"A": 2.0}),  # bad, and before the start
        "not json",  # follows the line before it: the 24th
        _event(4, "2026-11-25T00:00:01Z"),
        _event(5, "2026-11-26T08:00:00Z"),
    ]
    path = tmp_path / "audit.jsonl"
    _write(path, lines)
    source = AuditLogSource(str(path), max_clock_skew=SKEW, first_day=first)
    records = list(source.read_day(first))
    events = [r.event_id for r in records if isinstance(r, EventRow)]
    rejected = {
        r.origin: r.outcome.kind for r in records if isinstance(r, SourceRecord) and r.outcome
    }
    assert events == ["e-4"]
    assert rejected == {
        "audit.jsonl:1": BEFORE_START,
        "audit.jsonl:2": BEFORE_START,
        "audit.jsonl:3": "bad_feature",
        "audit.jsonl:4": "invalid_json",
    }
    later = _days_read(source, [first + timedelta(days=1)])
    assert later[first + timedelta(days=1)] == ["event:e-5"]
    # every line once: the first day's read and the next's, nothing left over
    assert len(records) + 1 == len(lines)
    # without a first day (tests, benchmarks) nothing changes
    assert [r.event_id for r in AuditLogSource(str(path), SKEW).read_day(first)
            if isinstance(r, EventRow)] == ["e-4"]  # fmt: skip
    assert len(list(AuditLogSource(str(path), SKEW).read_day(first))) == 1


def test_the_serving_logs_lines_before_the_first_partition_are_counted_once(
    tmp_path: Path,
) -> None:
    """In the first day's folder, by the first day's read; in the next day's folder, by that
    folder's own read (as strays, `misfiled`), not by the first day's read as well."""
    log = tmp_path / "serving-log"
    first, second = log / DAY.isoformat(), log / (DAY + timedelta(days=1)).isoformat()
    first.mkdir(parents=True)
    second.mkdir(parents=True)
    _write(first / "a.jsonl", [_event(1, "2026-11-24T23:59:59Z"), _event(2, "2026-11-25T01:00Z")])
    _write(second / "b.jsonl", [_event(3, "2026-11-26T01:00Z"), _event(4, "2026-11-24T10:00Z")])
    source = ServingLogSource(log, SKEW, first_day=DAY)
    counted: Counter[str] = Counter()
    kinds: dict[str, str] = {}
    for day in (DAY, DAY + timedelta(days=1), DAY + timedelta(days=2)):
        for record in source.read_day(day):
            name = record.event_id if isinstance(record, EventRow) else record.origin
            counted[name] += 1
            if isinstance(record, SourceRecord) and record.outcome:
                kinds[name] = record.outcome.kind
    assert set(counted.values()) == {1} and len(counted) == 4, counted
    assert kinds == {
        f"{DAY.isoformat()}/a.jsonl:1": BEFORE_START,
        f"{(DAY + timedelta(days=1)).isoformat()}/b.jsonl:2": "misfiled",
    }
