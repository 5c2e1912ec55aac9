"""The Kafka side: read exactly one UTC day from the topic, and publish events to it.

Reading day D: on every partition, start at the first offset whose record timestamp is at or
after 00:00 UTC of D minus the grace period (offsets_for_times; a record timestamp may be a
little earlier than the event's own time), and read until the partition's clock
(`PartitionClock`) passes the end of D plus the grace period, or the end offset seen when the
read began is reached.
The clock passes a time when `stop_records` records in a row are stamped at or after it: one
record, or a few, stamped ahead by a wrong clock never end the read.

Events belong to the day of their own timestamp, so an event of D that arrives within the grace
is in D. An event of D that comes after the partition's clock passed the end of D plus the grace
(after the point where D's read ends) is quarantined as `late_event` in the day it arrived (see
`arrival_day`), so it is counted once, in a day whose read reaches it, instead of in none; one
whose record comes before D's read starts (its record stamped more than the grace before the
event's own time, and no record before it reaching D's start) as `early_event`, likewise. An
event stamped more than `max_clock_skew` after the end of today (UTC, when the read starts) comes
from a skewed clock: it is quarantined as `future_timestamp` in the day it arrived too, instead of
waiting for a day that has not come; one stamped more than `max_event_age` before the partition's
clock (a clock reset to 1970, say) as `old_timestamp`, instead of going to a day that never runs.
The committed offsets of the consumer group are written for operators to watch lag; they never
decide what a partition contains, so re-reading a day gives the same rows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from ltr_assets.ingest.day import gc_paused
from ltr_assets.ingest.sources import (
    DEFAULT_MAX_EVENT_AGE,
    DayRecord,
    SourceRecord,
    before_start_rejection,
    future_rejection,
    old_rejection,
    source_horizon,
)
from ltr_core.events import EventRow, Rejection, parse_event, parse_timestamp
from ltr_core.kafka_client import client_options, event_key
from ltr_core.settings import KafkaSettings

log = logging.getLogger("ltr.kafka")
MAX_RECORDS_PER_POLL = 5000
# The group's offsets are committed within this many KAFKA_CONNECT_TIMEOUT_SECONDS (two round
# trips to the coordinator: read the committed offsets, commit), or not at all this time.
COMMIT_TIMEOUTS = 4
EARLY = "early_event"
LATE = "late_event"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class KafkaUnavailable(RuntimeError):
    """The broker could not be reached, the topic is missing, or a read stalled."""


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def _day_start_ms(day: date) -> int:
    return _ms(datetime(day.year, day.month, day.day, tzinfo=UTC))


def window_start_ms(day: date, grace: timedelta) -> int:
    """Where the read of `day` starts: the grace before 00:00 of the day, so that an event of
    the day whose record timestamp is a little earlier than its own time (a topic stamped with
    the broker's append time, a producer with its own clock) is read by its day (never
    negative: record timestamps are not)."""
    return max(_day_start_ms(day) - int(grace.total_seconds() * 1000), 0)


def window_end_ms(day: date, grace: timedelta) -> int:
    """Where the read of `day` may end: the end of the day plus the grace."""
    return _day_start_ms(day) + int((timedelta(days=1) + grace).total_seconds() * 1000)


def arrival_day(reference_ms: int, grace: timedelta) -> date:
    """The day a record arrived in, when its own time cannot say: the one day D whose read is
    open at a partition clock of `reference_ms` and whose read has begun, i.e. the end of D-1
    plus the grace <= reference < the end of D plus the grace. D's read reaches the record: it
    began (a record stamped in D came before) and has not ended (its window is not passed)."""
    return (_at(reference_ms) - grace).date()


class PartitionClock:
    """How far one partition's time has got, as far as one read can tell, robust to wrong
    clocks.

    The watermark is the highest time that `run` records in a row have all reached (the largest
    minimum of any `run` consecutive record timestamps so far; records past the source's horizon
    are left out). One record, or fewer than `run` in a row, stamped ahead never moves it; a
    record stamped far behind delays it by at most `run` records and never lowers it.

    A read of day D starts at the first record stamped at its window's start S (the grace before
    00:00 of D) or later, so every record before is stamped before S. Windows reaching back
    before the start are therefore unknown to the read but below S, as is its watermark until
    `run` records are read: every comparison the read makes with a time from S on (does D's
    read end here? did this record arrive in D?) comes out as in a read from the partition's
    beginning. So each record is placed in the same day whichever day is read
    (tests/unit/test_kafka_placement.py, with record timestamps up to an hour off the events'
    own times).

    At a partition's beginning (`from_start`) there is no watermark before `run` records; the
    first record's timestamp (the record's own, for the first one) stands in as the time of
    arrival, the same in every read that starts there."""

    def __init__(self, run: int, from_start: bool) -> None:
        self.run = run
        self.from_start = from_start
        self.watermark: int | None = None
        self.first: int | None = None
        self._seen = 0
        self._window: deque[tuple[int, int]] = deque()  # (index, ms), timestamps increasing

    def observe(self, timestamp_ms: int) -> None:
        index = self._seen
        self._seen += 1
        if self.first is None:
            self.first = timestamp_ms
        window = self._window
        while window and window[-1][1] >= timestamp_ms:
            window.pop()
        window.append((index, timestamp_ms))
        if window[0][0] <= index - self.run:
            window.popleft()
        if self._seen >= self.run:
            low = window[0][1]
            if self.watermark is None or low > self.watermark:
                self.watermark = low

    def passed(self, moment_ms: int) -> bool:
        """`run` records in a row were stamped at or after `moment_ms`."""
        return self.watermark is not None and self.watermark >= moment_ms

    def reference(self, own_ms: int | None) -> int | None:
        """The partition's time where the next record arrives (its own record timestamp, when it
        is the first of the partition); None when this read cannot know it, i.e. before the day
        read (the read started after the partition's beginning)."""
        if self.watermark is not None:
            return self.watermark
        if not self.from_start:
            return None
        return self.first if self.first is not None else own_ms


def late_rejection(when: datetime, watermark_ms: int, window_end: int) -> Rejection:
    """An event read after its day's read ended: quarantined where it arrived."""
    return Rejection(
        f"timestamp {when.isoformat()}: the partition's clock had reached "
        f"{_at(watermark_ms).isoformat()}, past {_at(window_end).isoformat()} (the end of "
        f"{when.date()} plus LTR_KAFKA_GRACE_MINUTES, over LTR_KAFKA_STOP_RECORDS records in a "
        "row), where the read of its day ends: it arrived late",
        LATE,
    )


def early_rejection(when: datetime, record_ms: int, window_start: int) -> Rejection:
    """An event whose record came before where its day's read starts: quarantined where it
    arrived (its day's read never reaches it)."""
    return Rejection(
        f"timestamp {when.isoformat()}: its record is stamped {_at(record_ms).isoformat()}, and "
        f"no record before it reaches {_at(window_start).isoformat()} (00:00 of {when.date()} "
        "minus LTR_KAFKA_GRACE_MINUTES), where the read of its day starts: it arrived early "
        "(the producer's clock is ahead of the record timestamps)",
        EARLY,
    )


def _record_time(outcome: EventRow | Rejection | None, record_ts_ms: int) -> datetime:
    """An event's own time; the record timestamp when the event's time is unreadable."""
    if type(outcome) is EventRow:
        return outcome.timestamp
    if type(outcome) is Rejection and outcome.timestamp is not None:
        return outcome.timestamp
    return datetime.fromtimestamp(record_ts_ms / 1000, tz=UTC)


@dataclass(repr=False)
class KafkaRead:
    records: list[DayRecord]
    partitions: dict[int, tuple[int, int]]  # partition -> (first offset read, next offset)
    scanned: int  # records looked at, including other days'

    def __repr__(self) -> str:
        # Short on purpose: asyncio formats a finished task's result (reprlib calls repr()), and
        # a repr of a million records took seconds.
        return f"KafkaRead({len(self.records)} records, partitions={self.partitions})"


@dataclass
class ReadProgress:
    """How far a streamed read got: filled in as the records are read."""

    partitions: dict[int, tuple[int, int]] = field(default_factory=dict)
    scanned: int = 0


class PartitionDay:
    """One partition's share of the read of `day`: which of its records are the day's, and where
    the read ends (the partition's clock passes the end of the day plus the grace).

    An event belongs to the day of its own time (an unreadable message: its record timestamp's)
    unless no right clock gives that time or its day's read had ended when it came: then it
    belongs to the day it arrived in (`arrival_day`, from the clock), quarantined with the reason:
    `future_timestamp` past `horizon`; `old_timestamp` more than `max_event_age` before the
    partition's clock (the bound follows the partition's own time, not today's, so a backfill of
    an old day reads its records as they are); `late_event` when the clock had passed the end of
    its day plus the grace; `early_event` when its day is later than the day read and no record
    so far (this one included) is stamped at or after where that day's read starts (the grace
    before its 00:00): that read starts at the first such record (offsets_for_times), after this
    one, and would never see it; `before_start` for an event of a day before `first_day`
    (LTR_START_DATE), which no read takes (nor is anything placed before it). A record that is
    not an LTR event stays ignored, placed the same way.
    At a partition's beginning, a record to be placed by the clock before the clock has any time
    waits for the first record that gives it one."""

    def __init__(
        self,
        day: date,
        clock: PartitionClock,
        horizon: datetime,
        grace: timedelta,
        max_event_age: timedelta = DEFAULT_MAX_EVENT_AGE,
        first_day: date | None = None,
    ) -> None:
        self.day = day
        self.first_day = first_day
        self.clock = clock
        self.horizon = horizon
        self.grace = grace
        self.max_event_age = max_event_age
        self._max_age_ms = int(max_event_age.total_seconds() * 1000)
        self.stop_ms = window_end_ms(day, grace)
        self._horizon_ms = _ms(horizon)
        self._waiting: list[tuple[Any, EventRow | Rejection | None]] = []
        # The highest record timestamp so far. Every record before this read's first one is
        # stamped before its window's start, so this equals the partition's own up to here.
        self._highest_ms = -1

    def ended(self) -> bool:
        return self.clock.passed(self.stop_ms)

    def _arrived_in(self, reference_ms: int) -> date:
        """`arrival_day`, never before the first partition (no read takes those days)."""
        day = arrival_day(reference_ms, self.grace)
        return max(day, self.first_day) if self.first_day is not None else day

    def take(self, message: Any) -> list[DayRecord]:
        """The message if it is the day's, and any waiting message it lets be placed in it."""
        value = message.value
        if value is None:
            outcome: EventRow | Rejection | None = Rejection(
                "null message value (tombstone)", "null_value"
            )
        else:
            outcome = parse_event(value)
        when = _record_time(outcome, message.timestamp)
        self._highest_ms = max(self._highest_ms, message.timestamp)
        clock = self.clock
        stamped = message.timestamp if message.timestamp <= self._horizon_ms else None
        reference = clock.reference(stamped)
        problem: Rejection | None = None
        if when > self.horizon:
            why = "the end of today plus LTR_MAX_CLOCK_SKEW_HOURS"
            problem = future_rejection(when, self.horizon, why)
        elif reference is not None and _ms(when) < reference - self._max_age_ms:
            what = "the partition's clock where it arrived"
            problem = old_rejection(when, _at(reference), self.max_event_age, what)
        elif clock.watermark is not None:
            window_end = window_end_ms(when.date(), self.grace)
            if clock.passed(window_end):
                problem = late_rejection(when, clock.watermark, window_end)
        if problem is None and self.first_day is not None and when.date() < self.first_day:
            problem = before_start_rejection(when, self.first_day)
        if problem is None and when.date() > self.day:
            window_start = window_start_ms(when.date(), self.grace)
            if self._highest_ms < window_start:
                problem = early_rejection(when, message.timestamp, window_start)
        kept: list[DayRecord] = []
        if problem is None:
            if when.date() == self.day:
                kept.append(_day_record(message, outcome))
        else:
            if outcome is not None:
                outcome = problem
            if reference is None:
                if clock.from_start:
                    self._waiting.append((message, outcome))
            elif self._arrived_in(reference) == self.day:
                kept.append(_day_record(message, outcome))
        if stamped is not None:
            clock.observe(stamped)
            if self._waiting:
                reference = clock.reference(None)
                if reference is not None and self._arrived_in(reference) == self.day:
                    kept.extend(_day_record(m, o) for m, o in self._waiting)
                self._waiting.clear()
        return kept


def _day_record(message: Any, outcome: EventRow | Rejection | None) -> DayRecord:
    if type(outcome) is EventRow:
        return outcome
    origin = f"{message.topic}/{message.partition}@{message.offset}"
    return SourceRecord(origin, message.value or b"", outcome)


async def _next_batch(batches: AsyncIterator[list[DayRecord]]) -> list[DayRecord]:
    return await anext(batches)


class KafkaDaySource:
    """Reads one UTC day of events from the topic."""

    name = "kafka"
    unavailable_errors: tuple[type[BaseException], ...] = (
        KafkaUnavailable,
        KafkaError,
        OSError,
        TimeoutError,
    )

    def __init__(self, settings: KafkaSettings, first_day: date | None = None) -> None:
        self.settings = settings
        # LTR_START_DATE: for the pipeline a partition begins where the first day's read does
        self.first_day = first_day

    def read_day(self, day: date) -> Iterator[DayRecord]:
        return self.stream(day)

    def describe(self) -> str:
        return f"the Kafka topic {self.settings.topic!r} at {self.settings.bootstrap_servers}"

    def stream(self, day: date, progress: ReadProgress | None = None) -> Iterator[DayRecord]:
        """The day's records as they are fetched, one poll's batch at a time, so a day is never
        held in memory here (the ingest bounds what it keeps). The consumer lives on an event
        loop of its own, driven between batches; stopping the iteration early stops the
        consumer. The group's offsets are committed once the whole day has been read."""
        progress = ReadProgress() if progress is None else progress
        with asyncio.Runner() as runner:
            batches = self._batches(day, progress)
            try:
                while True:
                    try:
                        batch = runner.run(_next_batch(batches))
                    except StopAsyncIteration:
                        return
                    yield from batch
            finally:
                runner.run(batches.aclose())

    def read(self, day: date) -> KafkaRead:
        """The whole day in memory (for tests and tools; the ingest streams `read_day`)."""
        progress = ReadProgress()
        with gc_paused():
            records = list(self.stream(day, progress))
        return KafkaRead(records, progress.partitions, progress.scanned)

    async def _start(self, client: Any) -> None:
        try:
            await asyncio.wait_for(client.start(), self.settings.connect_timeout_s)
        except (KafkaError, OSError, TimeoutError) as exc:
            await client.stop()
            raise KafkaUnavailable(
                f"cannot reach Kafka at {self.settings.bootstrap_servers}: "
                f"{type(exc).__name__}: {exc}"
            ) from None

    async def _batches(
        self, day: date, progress: ReadProgress
    ) -> AsyncGenerator[list[DayRecord], None]:
        s = self.settings
        start_ms = window_start_ms(day, s.grace)
        consumer = AIOKafkaConsumer(
            group_id=s.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # a transactional producer's aborted records are not events (they are skipped, and
            # a transaction still open holds the read back until it ends: `_uncommitted_offsets`)
            isolation_level="read_committed",
            **client_options(s),
        )
        await self._start(consumer)
        try:
            partitions = consumer.partitions_for_topic(s.topic)
            if not partitions:
                raise KafkaUnavailable(f"topic {s.topic!r} does not exist")
            tps = [TopicPartition(s.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            horizon = source_horizon(datetime.now(UTC).date(), s.max_clock_skew)
            first_start = (
                window_start_ms(self.first_day, s.grace) if self.first_day is not None else None
            )
            ends, firsts, starts = await self._uncommitted_offsets(tps, start_ms, first_start)
            beginnings = dict(await consumer.beginning_offsets(tps))
            for tp, found in starts.items():  # the pipeline's beginning: the first day's start
                if found is not None:
                    beginnings[tp] = max(beginnings[tp], found.offset)
            active: dict[TopicPartition, int] = {}
            bounds = progress.partitions
            parts: dict[int, PartitionDay] = {}
            for tp in tps:
                first = firsts.get(tp)
                if first is None or first.offset >= ends[tp]:
                    bounds[tp.partition] = (ends[tp], ends[tp])
                    continue
                consumer.seek(tp, first.offset)
                active[tp] = ends[tp]
                bounds[tp.partition] = (first.offset, first.offset)
                clock = PartitionClock(s.stop_records, from_start=first.offset <= beginnings[tp])
                parts[tp.partition] = PartitionDay(
                    day, clock, horizon, s.grace, s.max_event_age, self.first_day
                )
            last_progress = time.monotonic()
            while active:
                batch = await consumer.getmany(
                    *active, timeout_ms=1000, max_records=MAX_RECORDS_PER_POLL
                )
                records: list[DayRecord] = []
                for tp, messages in batch.items():
                    end = active.get(tp)
                    if end is None:
                        continue
                    part = parts[tp.partition]
                    done = False
                    next_offset = bounds[tp.partition][1]
                    for message in messages:
                        if message.offset >= end or part.ended():
                            done = True
                            break
                        progress.scanned += 1
                        next_offset = message.offset + 1
                        records.extend(part.take(message))
                    bounds[tp.partition] = (bounds[tp.partition][0], next_offset)
                    if done or next_offset >= end or part.ended():
                        del active[tp]
                        consumer.pause(tp)
                marked = await _ended_on_markers(consumer, active, bounds)
                if records:
                    yield records
                if not batch and not marked:
                    if time.monotonic() - last_progress > s.stall_timeout_s:
                        raise KafkaUnavailable(
                            f"reading {s.topic} stalled for {s.stall_timeout_s:.0f} s "
                            f"with {len(active)} partitions unfinished"
                            + _held_back(consumer, active)
                        )
                    continue
                # The wait for the next batch counts as a stall, not the time the reader took.
                last_progress = time.monotonic()
            await self._report_progress(consumer, bounds)
        finally:
            await consumer.stop()

    async def _uncommitted_offsets(
        self, tps: list[TopicPartition], start_ms: int, first_start_ms: int | None
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, Any], dict[TopicPartition, Any]]:
        """Where each partition ends (its high watermark), and the first offsets at `start_ms`
        and at `first_start_ms` (the first partition's start; None: no lookup), open
        transactions included. The read's own consumer is `read_committed`, whose end offsets
        and timestamp lookups stop before a transaction still open: taken so, the records from
        it on (other producers', the serving log's) would be read by no day at all, since the
        next day's read starts at its own time. So the read goes to the high watermark, waiting
        for such a transaction to end (committed or aborted) like any other record not yet
        there, up to the stall timeout."""
        client = AIOKafkaConsumer(**client_options(self.settings))  # read_uncommitted
        await self._start(client)
        try:
            ends: dict[TopicPartition, int] = await client.end_offsets(tps)
            firsts = await client.offsets_for_times(dict.fromkeys(tps, start_ms))
            starts: dict[TopicPartition, Any] = {}
            if first_start_ms is not None:
                starts = await client.offsets_for_times(dict.fromkeys(tps, first_start_ms))
            return ends, firsts, starts
        finally:
            await client.stop()

    async def _report_progress(
        self, consumer: AIOKafkaConsumer, bounds: dict[int, tuple[int, int]]
    ) -> None:
        """Commit the group's offsets, bounded in time: lag reporting must never fail or hold up
        a read that is complete (aiokafka retries a lost group coordinator without end)."""
        bound = COMMIT_TIMEOUTS * self.settings.connect_timeout_s
        try:
            await asyncio.wait_for(self._commit_progress(consumer, bounds), bound)
        except (KafkaError, OSError, TimeoutError) as exc:
            log.warning(
                "could not commit offsets for lag monitoring (the day's read is complete): %s: %s",
                type(exc).__name__,
                exc,
            )

    async def _commit_progress(
        self, consumer: AIOKafkaConsumer, bounds: dict[int, tuple[int, int]]
    ) -> None:
        """Commit how far the group has read, for lag monitoring; never backwards (backfills)."""
        offsets = {}
        for partition, (_, next_offset) in bounds.items():
            tp = TopicPartition(self.settings.topic, partition)
            committed = await consumer.committed(tp)
            if committed is None or next_offset > committed:
                offsets[tp] = next_offset
        if offsets:
            await consumer.commit(offsets)


async def _ended_on_markers(
    consumer: AIOKafkaConsumer,
    active: dict[TopicPartition, int],
    bounds: dict[int, tuple[int, int]],
) -> bool:
    """Finish the partitions whose position reached their end without a record there: a
    transaction's commit or abort marker takes an offset and is never delivered, so waiting
    for a record at the end offset would stall. Whether any was finished."""
    finished = False
    for tp, end in list(active.items()):
        if await consumer.position(tp) >= end:
            bounds[tp.partition] = (bounds[tp.partition][0], end)
            del active[tp]
            consumer.pause(tp)
            finished = True
    return finished


def _held_back(consumer: AIOKafkaConsumer, active: dict[TopicPartition, int]) -> str:
    """For a stalled read: the partitions whose last stable offset stops before their end (a
    transaction left open), as a clause of the error."""
    held = []
    for tp, end in active.items():
        stable = consumer.last_stable_offset(tp)
        if stable is not None and 0 <= stable < end:
            held.append(f"{tp.partition} (offsets {stable}-{end - 1})")
    if not held:
        return ""
    return (
        f"; a transaction left open holds back partition {', '.join(held)}: the read waits "
        "for it to commit or abort (Kafka aborts it after the producer's transaction timeout)"
    )


def event_time_ms(event: dict[str, Any]) -> int:
    """The record timestamp for an event: its own time (flat or audit-log envelope)."""
    return _ms(parse_timestamp(event["timestamp"]))


async def _produce(settings: KafkaSettings, events: Iterable[dict[str, Any]]) -> int:
    producer = AIOKafkaProducer(linger_ms=5, max_batch_size=256 * 1024, **client_options(settings))
    try:
        await asyncio.wait_for(producer.start(), settings.connect_timeout_s)
    except (KafkaError, OSError, TimeoutError) as exc:
        await producer.stop()
        raise KafkaUnavailable(f"cannot reach Kafka: {type(exc).__name__}: {exc}") from None
    sent = 0
    try:
        for event in events:
            await producer.send(
                settings.topic,
                key=event_key(event),
                value=orjson.dumps(event),
                timestamp_ms=event_time_ms(event),
            )
            sent += 1
        await producer.flush()
    finally:
        await producer.stop()
    return sent


def publish_events(settings: KafkaSettings, events: Iterable[dict[str, Any]]) -> int:
    """Publish events (the platform's producer side): the event time is the record timestamp
    and the request id the key, so one recommendation list stays in one partition, in order."""
    return asyncio.run(_produce(settings, events))


async def _ensure_topic(settings: KafkaSettings, partitions: int) -> bool:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(**client_options(settings))
    await admin.start()
    try:
        response = await admin.create_topics(
            [
                NewTopic(
                    settings.topic,
                    num_partitions=partitions,
                    replication_factor=1,
                    topic_configs={"retention.ms": "-1"},
                )
            ]
        )
        for _, code, message in getattr(response, "topic_errors", []):
            if code not in (0, 36):  # 36: the topic already exists
                raise KafkaUnavailable(f"creating topic {settings.topic}: {message}")
            return int(code) == 0
        return True
    finally:
        await admin.close()


def ensure_topic(settings: KafkaSettings, partitions: int = 3) -> bool:
    """Create the topic with retention.ms=-1 (events carry their own, possibly old, times and
    time-based retention would drop them at once); True if it was created."""
    return asyncio.run(_ensure_topic(settings, partitions))
