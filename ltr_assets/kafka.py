"""The Kafka side: read exactly one UTC day from the topic, and publish events to it.

Reading day D: on every partition, start at the first offset whose record timestamp is at or
after 00:00 UTC of D (offsets_for_times), and read until the partition shows a record stamped at
or after the end of D plus the grace period (but less than a week past it: a record stamped far in
the future is a skewed clock, skipped, not a stop signal), or reaches the end offset seen when the
read began.
Events belong to the day of their own timestamp, so an event of D that arrives late is in D. An
event stamped more than `max_clock_skew` after the end of today (UTC, when the read starts) comes
from a skewed clock: it is quarantined as `future_timestamp` in the day of the record before it in
the same Kafka partition (the day it arrived), like an unreadable message, instead of waiting for
a day that has not come. The
committed offsets of the consumer group are written for operators to watch lag; they never decide
what a partition contains, so re-reading a day gives the same rows.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from ltr_assets.config import KafkaSettings
from ltr_assets.events import EventRow, Rejection, parse_event, parse_timestamp
from ltr_assets.ingest import gc_paused
from ltr_assets.sources import (
    DayRecord,
    SourceRecord,
    future_rejection,
    source_horizon,
)

log = logging.getLogger("ltr.kafka")
MAX_RECORDS_PER_POLL = 5000
SKEW_HORIZON = timedelta(days=7)


class KafkaUnavailable(RuntimeError):
    """The broker could not be reached, the topic is missing, or a read stalled."""


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """Connection and security options shared by consumer, producer and admin client."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
        # Reaching the broker is bounded by connect_timeout_s around start(); requests get
        # longer, as one fetch may carry a whole partition.
        "request_timeout_ms": int(settings.request_timeout_s * 1000),
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        from aiokafka.helpers import create_ssl_context

        options["ssl_context"] = create_ssl_context(
            cafile=settings.ssl_cafile or None,
            certfile=settings.ssl_certfile or None,
            keyfile=settings.ssl_keyfile or None,
        )
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism or "PLAIN"
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password
    return options


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


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

    def __init__(self, settings: KafkaSettings) -> None:
        self.settings = settings

    def read_day(self, day: date) -> Iterator[DayRecord]:
        return self.stream(day)

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
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        start_ms, end_ms = _ms(start), _ms(start + timedelta(days=1))
        stop_ms = end_ms + int(s.grace.total_seconds() * 1000)
        # A record stamped far beyond the day is a skewed clock, not a sign that the partition
        # has moved past the day: it must not end the read (it is read and filtered instead).
        horizon_ms = stop_ms + int(SKEW_HORIZON.total_seconds() * 1000)
        consumer = AIOKafkaConsumer(
            group_id=s.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **client_options(s),
        )
        await self._start(consumer)
        try:
            partitions = consumer.partitions_for_topic(s.topic)
            if not partitions:
                raise KafkaUnavailable(f"topic {s.topic!r} does not exist")
            tps = [TopicPartition(s.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            firsts = await consumer.offsets_for_times(dict.fromkeys(tps, start_ms))
            active: dict[TopicPartition, int] = {}
            bounds = progress.partitions
            for tp in tps:
                first = firsts.get(tp)
                if first is None or first.offset >= ends[tp]:
                    bounds[tp.partition] = (ends[tp], ends[tp])
                    continue
                consumer.seek(tp, first.offset)
                active[tp] = ends[tp]
                bounds[tp.partition] = (first.offset, first.offset)
            horizon = source_horizon(datetime.now(UTC).date(), s.max_clock_skew)
            arrived: dict[int, date] = {}  # partition -> day of the last record in time
            last_progress = time.monotonic()
            while active:
                batch = await consumer.getmany(
                    *active, timeout_ms=1000, max_records=MAX_RECORDS_PER_POLL
                )
                if not batch:
                    if time.monotonic() - last_progress > s.stall_timeout_s:
                        raise KafkaUnavailable(
                            f"reading {s.topic} stalled for {s.stall_timeout_s:.0f} s "
                            f"with {len(active)} partitions unfinished"
                        )
                    continue
                records: list[DayRecord] = []
                for tp, messages in batch.items():
                    end = active.get(tp)
                    if end is None:
                        continue
                    done = False
                    next_offset = bounds[tp.partition][1]
                    for message in messages:
                        if message.offset >= end or stop_ms <= message.timestamp < horizon_ms:
                            done = True
                            break
                        progress.scanned += 1
                        next_offset = message.offset + 1
                        records.extend(self._keep(message, day, horizon, arrived))
                    bounds[tp.partition] = (bounds[tp.partition][0], next_offset)
                    if done or next_offset >= end:
                        del active[tp]
                        consumer.pause(tp)
                if records:
                    yield records
                # The wait for the next batch counts as a stall, not the time the reader took.
                last_progress = time.monotonic()
            await self._commit_progress(consumer, bounds)
        finally:
            await consumer.stop()

    def _keep(
        self, message: Any, day: date, horizon: datetime, arrived: dict[int, date]
    ) -> Iterable[DayRecord]:
        """The message if it belongs to `day`. A message stamped past `horizon` belongs to the
        day of the record before it in its partition (`arrived`; none read yet in this pass: an
        earlier day, as every record before the first one read is stamped before `day`)."""
        value = message.value
        if value is None:
            outcome: EventRow | Rejection | None = Rejection(
                "null message value (tombstone)", "null_value"
            )
        else:
            outcome = parse_event(value)
        when = _record_time(outcome, message.timestamp)
        if when > horizon:
            outcome = future_rejection(when, horizon, "the end of today plus LTR_MAX_CLOCK_SKEW")
            home = arrived.get(message.partition)
        else:
            home = arrived[message.partition] = when.date()
        if home != day:
            return ()
        if type(outcome) is EventRow:
            return (outcome,)
        origin = f"{message.topic}/{message.partition}@{message.offset}"
        return (SourceRecord(origin, value or b"", outcome),)

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
            try:
                await consumer.commit(offsets)
            except KafkaError as exc:  # lag reporting must never fail the read
                log.warning("could not commit offsets for lag monitoring: %s", exc)


def event_time_ms(event: dict[str, Any]) -> int:
    """The record timestamp for an event: its own time (flat or audit-log envelope)."""
    return _ms(parse_timestamp(event["timestamp"]))


def _event_key(event: dict[str, Any]) -> bytes | None:
    fields = event.get("context", event)
    request = fields.get("request_id") or fields.get("case_id") or fields.get("case")
    return str(request).encode() if request else None


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
                key=_event_key(event),
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
