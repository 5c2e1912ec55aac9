"""How a Kafka partition's records are placed in days, without a broker: each record is in
exactly one day whichever days are read, a record or a few stamped ahead never end a day's read,
and an event that comes after its day's read ended, or whose record comes before its day's read
starts, is quarantined where it arrived."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from ltr_assets.ingest.kafka import (
    EARLY,
    LATE,
    PartitionClock,
    PartitionDay,
    arrival_day,
    window_start_ms,
)
from ltr_assets.ingest.sources import FUTURE
from ltr_core.events import EventRow

GRACE = timedelta(hours=2, minutes=15)
HORIZON = datetime(2026, 12, 4, tzinfo=UTC)
DAY = date(2026, 11, 2)


@dataclass(frozen=True)
class Message:
    offset: int
    timestamp: int
    value: bytes | None
    topic: str = "t"
    partition: int = 0


def _ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


def _event(offset: int, when: str | int) -> bytes:
    return json.dumps(
        {"event_type": "offer_feedback", "event_id": f"e{offset}", "timestamp": when,
         "request_id": "r", "case_id": "c", "lawyer_id": f"l{offset}", "action": "click"}
    ).encode()  # fmt: skip


def _partition(stamps: list[tuple[int, bytes | None]]) -> list[Message]:
    return [Message(i, ts, value) for i, (ts, value) in enumerate(stamps)]


def _first_at(messages: list[Message], start: int) -> Message | None:
    """offsets_for_times: the first record stamped at `start` or later."""
    return next((m for m in messages if m.timestamp >= start), None)


def _read(
    messages: list[Message], day: date, run: int, first_day: date | None = None
) -> list[tuple[int, str]]:
    """One day's read of the partition as KafkaDaySource does it: from the first record stamped
    at the window's start or later (offsets_for_times) until the clock passes the day's
    window. With `first_day`, the partition begins where the first day's read does."""
    first = _first_at(messages, window_start_ms(day, GRACE))
    if first is None:
        return []
    beginning = 0
    if first_day is not None:
        begins = _first_at(messages, window_start_ms(first_day, GRACE))
        beginning = begins.offset if begins is not None else 0
    clock = PartitionClock(run, from_start=first.offset <= beginning)
    part = PartitionDay(day, clock, HORIZON, GRACE, first_day=first_day)
    kept: list[tuple[int, str]] = []
    for message in messages[first.offset :]:
        if part.ended():
            break
        for record in part.take(message):
            if isinstance(record, EventRow):
                kept.append((int(record.event_id[1:]), "event"))
            else:
                kind = record.outcome.kind if record.outcome else "ignored"
                kept.append((int(record.origin.rsplit("@", 1)[1]), kind))
    return kept


def _stream(*stamps: str) -> list[Message]:
    """Events stamped as given, each also carrying its time as its record timestamp."""
    return _partition([(_ms(s), _event(i, s + "Z")) for i, s in enumerate(stamps)])


def test_one_record_ahead_does_not_end_the_read_and_a_run_does() -> None:
    messages = _stream(
        *[f"{DAY}T{h:02d}:00:00" for h in range(6)],
        "2026-11-05T00:00:00",  # one record ahead (offset 6)
        *[f"{DAY}T{h:02d}:00:00" for h in range(6, 12)],
        *[f"2026-11-03T03:{m:02d}:00" for m in range(3)],  # a run of three past the grace
        f"{DAY}T23:59:00",  # after the run: D's read has ended (offset 16)
    )
    assert [offset for offset, _ in _read(messages, DAY, run=3)] == [*range(6), *range(7, 13)]
    assert _read(messages, date(2026, 11, 3), run=3) == [
        (13, "event"), (14, "event"), (15, "event"), (16, LATE)]  # fmt: skip
    assert _read(messages, date(2026, 11, 5), run=3) == [(6, "event")]


def test_a_clock_ignores_a_short_burst_ahead_and_never_goes_back() -> None:
    clock = PartitionClock(3, from_start=True)
    for ts in (10, 20, 1000, 1000, 30, 40, 5, 50, 60, 70):
        clock.observe(ts)
    assert clock.watermark == 50  # the largest minimum of three in a row: 50, 60, 70
    assert not clock.passed(51) and clock.passed(50)


def test_arrival_day_is_the_day_whose_read_is_open() -> None:
    assert arrival_day(_ms(f"{DAY}T02:14:59"), GRACE) == date(2026, 11, 1)
    assert arrival_day(_ms(f"{DAY}T02:15:00"), GRACE) == DAY


BASE = _ms("2026-11-01T00:00:00")
HOUR = 3_600_000


@st.composite
def partitions(draw: st.DrawFn) -> list[Message]:
    """A partition in arrival order: a clock moving forward over four days, with events on
    time, late by minutes to days, ahead by hours to days, far in the future or 1970, and
    unreadable, tombstone and non-LTR messages."""
    size = draw(st.integers(1, 60))
    now = BASE + draw(st.integers(0, 24)) * HOUR
    stamps: list[tuple[int, bytes | None]] = []
    for offset in range(size):
        now += draw(st.integers(0, 6)) * HOUR // 2
        kind = draw(st.sampled_from(
            ["on_time"] * 6 + ["late", "ahead", "future", "epoch", "broken", "tombstone", "other"]
        ))  # fmt: skip
        shift = {"late": -draw(st.integers(1, 72)) * HOUR, "ahead": draw(st.integers(1, 96)) * HOUR,
                 "future": 400 * 24 * HOUR, "epoch": -now}.get(kind, 0)  # fmt: skip
        ts = now + shift
        when = datetime.fromtimestamp(ts / 1000, UTC).isoformat().replace("+00:00", "Z")
        # the record's timestamp need not be the event's own time (a broker's append time, a
        # producer's clock): up to an hour either way, and at times past the grace (a producer
        # clock hours or a day ahead or behind)
        skew = draw(st.sampled_from(
            [0, 0, 0, -HOUR, -HOUR // 60, HOUR // 60, HOUR, -3 * HOUR, 3 * HOUR, -30 * HOUR]
        ))  # fmt: skip
        ts = max(ts + skew, 0)  # record timestamps are never negative
        if kind == "broken":
            value: bytes | None = b"not json"
        elif kind == "tombstone":
            value = None
        elif kind == "other":
            value = json.dumps({"message": "http_request", "timestamp": when}).encode()
        else:
            value = _event(offset, when)
        stamps.append((ts, value))
    return _partition(stamps)


@settings(max_examples=300, deadline=None)
@given(messages=partitions(), run=st.integers(2, 6))
def test_every_record_is_placed_in_exactly_one_day(messages: list[Message], run: int) -> None:
    """Reading every day (each day's read knowing only what it reads), each record is counted
    once; only a far-future record at the head of the partition with no plausible record after
    it yet has no day."""
    days = {date(1969, 12, 31), date(1970, 1, 1)}
    days |= {date(2026, 10, 25) + timedelta(days=k) for k in range(20)}
    counts: Counter[int] = Counter()
    kinds: dict[int, str] = {}
    for day in sorted(days):
        for offset, kind in _read(messages, day, run):
            counts[offset] += 1
            kinds[offset] = kind
    assert all(n == 1 for n in counts.values()), counts
    horizon_ms = int(HORIZON.timestamp() * 1000)
    unplaced = [m for m in messages if m.offset not in counts]
    for message in unplaced:
        later = [m for m in messages[message.offset :] if m.timestamp <= horizon_ms]
        assert message.timestamp > horizon_ms and not later, (message, kinds)
    assert all(kinds[m.offset] in (FUTURE, "ignored") for m in messages
               if m.timestamp > horizon_ms and m.offset in kinds)  # fmt: skip


def test_events_whose_records_are_stamped_hours_before_them_are_never_lost() -> None:
    """A producer clock 3 h ahead of the record timestamps (more than the grace): the events of
    each day's first 45 minutes come before that day's read starts. They are quarantined as
    `early_event` by the read that reaches them (the day before), not lost."""
    start = _ms("2026-11-01T00:00:00")
    step = 5 * 60_000
    messages = []
    for i in range(3 * 288):
        when = start + i * step
        text = datetime.fromtimestamp(when / 1000, UTC).isoformat().replace("+00:00", "Z")
        messages.append(Message(i, when - 3 * HOUR, _event(i, text)))
    reads = {d: _read(messages, d, run=3) for d in (date(2026, 10, 31), *_days(3))}
    placed = Counter(offset for kept in reads.values() for offset, _ in kept)
    assert sorted(placed) == list(range(len(messages))) and set(placed.values()) == {1}
    early = {d: [o for o, kind in kept if kind == EARLY] for d, kept in reads.items()}
    # 00:00 to 00:40 of Nov 2 and Nov 3 (9 events each), in the day whose read reached them
    assert early[date(2026, 11, 1)] == list(range(288, 297))
    assert early[date(2026, 11, 2)] == list(range(576, 585))
    assert all(kind == "event" for offset, kind in reads[date(2026, 11, 3)])


def _days(n: int) -> list[date]:
    return [date(2026, 11, 1) + timedelta(days=k) for k in range(n)]


@settings(max_examples=300, deadline=None)
@given(messages=partitions(), run=st.integers(2, 6), first_day=st.integers(0, 3))
def test_from_the_first_partition_on_every_record_it_reaches_is_placed_once(
    messages: list[Message], run: int, first_day: int
) -> None:
    """Only the days from LTR_START_DATE on are read, and the partition begins, for the
    pipeline, where the first day's read does. From there every record is placed once, as
    from a partition's true beginning: a clock lagging in a sparse partition used to place
    early events in a day before the first, which no read takes."""
    first = date(2026, 11, 1) + timedelta(days=first_day)
    counts: Counter[int] = Counter()
    for day in (first + timedelta(days=k) for k in range(20)):
        for offset, _ in _read(messages, day, run, first_day=first):
            counts[offset] += 1
    assert all(n == 1 for n in counts.values()), counts
    begins = _first_at(messages, window_start_ms(first, GRACE))
    horizon_ms = int(HORIZON.timestamp() * 1000)
    for message in messages[begins.offset if begins else len(messages) :]:
        if message.offset not in counts:
            later = [m for m in messages[message.offset :] if m.timestamp <= horizon_ms]
            assert message.timestamp > horizon_ms and not later, message
