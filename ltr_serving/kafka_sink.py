"""The Kafka sink of the event log (LTR_IMPRESSION_LOG=kafka): the events go to KAFKA_TOPIC, the
topic the pipeline's raw_events reads, each as one record: the event's JSON as the value, its
request id as the key (one recommendation list, and the feedback on it, in one partition, in
order), its own time as the record timestamp (the Kafka source places records in days by it).

Nothing served is lost and no request waits on Kafka:

- The sink has its own thread running an asyncio loop, where the producer lives. `write` (called
  by the event log's writer, never by a request) hands the lines over and returns. When more
  than `max_pending` lines are not yet settled (sent or spilled), Kafka is taking events more
  slowly than they come: `write` spills the new lines to a file of its own instead of waiting
  (the queue is full, so they spill), and counts them as spilled.
- Every step that involves Kafka is bounded by LTR_IMPRESSION_KAFKA_TIMEOUT_SECONDS: connecting,
  handing a record to the producer, its acknowledgement. When one fails or times out, the sink
  turns to *spilling*: the lines not acknowledged (those handed over, in flight, and every later
  one) are written to the file sink under LTR_SERVING_LOG_DIR (`FileSink`, the folder raw_events
  reads beside the topic), the producer is dropped, and a new one is tried every
  LTR_IMPRESSION_KAFKA_RETRY_SECONDS; once one connects, events go to Kafka again.
- At shutdown (`close`) the producer is flushed; what it could not send in time is spilled, and
  the spill files are completed.

So each event reaches Kafka or the files, and a few (those in flight when Kafka failed, whose
acknowledgement was lost) may reach both: the ingest keeps one copy per event id (the ids are
deterministic), so the day holds each event exactly once. Health (`status`) says whether the sink
is connected or spilling, with the last error; /metrics counts what was sent and spilled.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, Literal

from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import DefaultPartitioner
from prometheus_client import Counter, Gauge

from ltr_core.kafka_client import client_options
from ltr_core.settings import KafkaSettings
from ltr_serving.impressions import FileSink, Line

log = logging.getLogger("ltr_serving.kafka_sink")

SinkState = Literal["connecting", "connected", "spilling", "closed"]
DEFAULT_MAX_PENDING = 50_000  # lines handed over and not yet sent or spilled
_ROUND_LINES = 10_000  # at most this many backlog lines are batched before the batches go out
_HOUSEKEEPING_S = 0.25  # how often the loop looks at retries, stale records and the spill file


@dataclass(frozen=True)
class KafkaSinkStatus:
    """What /ltr/health shows of the sink."""

    state: SinkState
    topic: str
    bootstrap_servers: str
    since: datetime  # when the sink entered `state`
    sent: int
    spilled: int
    lost: int  # neither sent nor written to a file (the spill failed too)
    in_flight: int  # taken by `write`, not yet acknowledged by Kafka nor spilled
    last_error: str | None
    last_error_at: datetime | None


# One line on its way: its day (for a spill), the line, and its number in the order `write`
# took the lines (`settled_lines`).
_Item = tuple[str, Line, int]


@dataclass(slots=True)
class _InFlight:
    """One record batch handed to the producer (one partition's lines, acknowledged together)."""

    items: list[_Item]
    at: float  # the loop's clock when it was handed to the producer


class _Batch:
    """A partition's record batch being filled (aiokafka's `BatchBuilder`) and its lines."""

    __slots__ = ("builder", "items", "partition")

    def __init__(self, builder: Any, partition: int) -> None:
        self.builder = builder
        self.partition = partition
        self.items: list[_Item] = []


class KafkaSink:
    """An `EventSink` producing to Kafka and spilling to `spill` (a `FileSink`) when Kafka does
    not take the events in time. `write`, `tick` and `close` are called by the event log's
    worker thread; everything else runs on the sink's own loop thread, which alone touches the
    producer and the spill file."""

    kind = "kafka"

    def __init__(
        self,
        settings: KafkaSettings,
        spill: FileSink,
        *,
        timeout_s: float,
        retry_s: float,
        max_pending: int = DEFAULT_MAX_PENDING,
        sent: Counter | None = None,
        spilled: Counter | None = None,
        lost: Counter | None = None,
        connected: Gauge | None = None,
        producer_factory: Callable[..., Any] = AIOKafkaProducer,
    ) -> None:
        self.settings = settings
        self.producer_factory = producer_factory  # the producer's class (tests pass a fake)
        self.spill = spill
        # the caller's own spill file, for lines past `max_pending` (`write`)
        self.overflow = FileSink(
            spill.directory,
            max_bytes=spill.max_bytes,
            max_age_s=spill.max_age_s,
            written=spill.written,
        )
        self.overflow.prefix += "-overflow"  # its own file names beside the spill file's
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self.max_pending = max_pending
        self._sent_counter = sent
        self._spilled_counter = spilled
        self._lost_counter = lost  # labelled by kind (the event log's `failed`)
        self._connected_gauge = connected
        # read by health from other threads; written on the loop thread
        self.state: SinkState = "connecting"
        self.since = datetime.now(UTC)
        self.sent = 0
        self.spilled = 0
        self.lost = 0
        self.last_error: str | None = None
        self.last_error_at: datetime | None = None
        # the writer's side: how many lines are not settled yet (and the counters it updates)
        self._pending_lock = threading.Lock()
        self._pending = 0
        # Lines are numbered in the order `write` takes them; every line numbered below
        # `_settled_upto` is settled (sent, spilled or lost), and `_early` holds the numbers of
        # those settled ahead of it (a min-heap): what `settled_lines` tells the writer process.
        self._taken = 0
        self._settled_upto = 0
        self._early: list[int] = []
        self._lost_numbers: list[int] = []  # lines settled as lost (a min-heap): `lost_before`
        self._closing = False
        # the loop's side
        self._producer: Any = None  # AIOKafkaProducer (aiokafka is untyped)
        # (day, lines, the first line's number)
        self._backlog: deque[tuple[str, list[Line], int]] = deque()
        self._in_flight: dict[int, _InFlight] = {}
        self._partitioner = DefaultPartitioner()  # Kafka's own: murmur2 of the key
        self._tokens = itertools.count()
        self._drainer: asyncio.Task[None] | None = None
        self._connector: asyncio.Task[None] | None = None
        self._retry_at = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="ltr-kafka-sink", daemon=True)
        self._thread.start()
        self._loop.call_soon_threadsafe(self._begin)

    # --- the writer's side ------------------------------------------------------------------------

    def write(self, day: str, lines: Sequence[Line]) -> None:
        """Hand the lines to the loop; when `max_pending` lines are unsettled already (Kafka
        takes events more slowly than they come), write them to the overflow file instead,
        on this thread: the caller never waits on Kafka and nothing is dropped."""
        batch = list(lines)
        with self._pending_lock:
            first = self._taken
            self._taken += len(batch)
            full = self._pending > 0 and self._pending + len(batch) > self.max_pending
            self._pending += len(batch)
        numbers = range(first, first + len(batch))
        if full:
            self._settled(numbers, lost=not self._to_file(self.overflow, day, batch))
            return
        try:
            self._loop.call_soon_threadsafe(self._accept, day, batch, first)
        except RuntimeError:  # the loop is closed: the caller counts the lines as failed
            self._settled(numbers)
            raise

    def written_lines(self) -> int:
        """How many lines `write` has taken."""
        with self._pending_lock:
            return self._taken

    def settled_lines(self) -> int:
        """Every line `write` took before this many is settled: sent to Kafka (acknowledged),
        spilled to a file, or lost and counted. What the writer process confirms by."""
        with self._pending_lock:
            return self._settled_upto

    def lost_before(self, end: int) -> list[int]:
        """The numbers below `end` of lines settled as lost (neither sent nor spilled), each
        told once: the writer process fails the frames that held them."""
        with self._pending_lock:
            lost = self._lost_numbers
            told = []
            while lost and lost[0] < end:
                told.append(heapq.heappop(lost))
            return told

    def tick(self, now: float) -> None:
        """Rotate the overflow file when due (the loop rotates its spill file on its own)."""
        self.overflow.tick(now)

    def _to_file(self, files: FileSink, day: str, lines: Sequence[Line]) -> bool:
        """Spill lines to `files` (`overflow` on the writer's thread, `spill` on the loop's: a
        file sink is touched by one thread). A file failing too: the lines are lost and counted
        (False)."""
        try:
            files.write(day, lines)
        except Exception as exc:
            with self._pending_lock:
                self.lost += len(lines)
            if self._lost_counter is not None:
                for line in lines:
                    self._lost_counter.labels(line.kind).inc()
            self._error(exc, f"spilling {len(lines)} events to {files.directory}")
            return False
        with self._pending_lock:
            self.spilled += len(lines)
        if self._spilled_counter is not None:
            self._spilled_counter.inc(len(lines))
        return True

    def close(self) -> None:
        """Flush the producer (spilling what it cannot send in time), complete the spill file
        and stop the loop thread. Bounded: a few times the timeout (the spill file is complete
        after at most about twice the timeout)."""
        self._closing = True
        try:
            self.overflow.close()
        except Exception as exc:
            self._error(exc, "completing the overflow file")
        if not self._thread.is_alive():  # the loop died: nothing else touches the spill file
            self.spill.close()
            return
        done = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        try:
            done.result(timeout=6 * self.timeout_s + 10)
        except Exception as exc:  # timed out, or the shutdown itself failed
            self._error(exc, "closing the Kafka sink")
        finally:
            with contextlib.suppress(RuntimeError):  # closed already
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def status(self) -> KafkaSinkStatus:
        return KafkaSinkStatus(
            state=self.state,
            topic=self.settings.topic,
            bootstrap_servers=self.settings.bootstrap_servers,
            since=self.since,
            sent=self.sent,
            spilled=self.spilled,
            lost=self.lost,
            in_flight=self._pending,
            last_error=self.last_error,
            last_error_at=self.last_error_at,
        )

    def _settled(self, numbers: Sequence[int], lost: bool = False) -> None:
        with self._pending_lock:
            self._pending -= len(numbers)
            if lost:
                for number in numbers:
                    heapq.heappush(self._lost_numbers, number)
            early = self._early
            for number in numbers:
                if number != self._settled_upto:
                    heapq.heappush(early, number)
                    continue
                self._settled_upto += 1
                while early and early[0] == self._settled_upto:
                    heapq.heappop(early)
                    self._settled_upto += 1

    # --- the loop thread ------------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def _begin(self) -> None:
        self._connector = self._spawn(self._connect())
        self._loop.call_later(_HOUSEKEEPING_S, self._housekeeping)

    def _spawn(self, coroutine: Any) -> asyncio.Task[Any]:
        task = self._loop.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _set_state(self, state: SinkState) -> None:
        if state != self.state:
            self.state = state
            self.since = datetime.now(UTC)
            log.info("Kafka sink %s", state, extra={"topic": self.settings.topic})
        if self._connected_gauge is not None:
            self._connected_gauge.set(1 if state == "connected" else 0)

    def _error(self, exc: BaseException, doing: str) -> None:
        text = str(exc) or "no detail"
        self.last_error = f"{doing}: {type(exc).__name__}: {text}"
        self.last_error_at = datetime.now(UTC)
        log.warning("Kafka sink: %s", self.last_error, extra={"topic": self.settings.topic})

    def _accept(self, day: str, lines: list[Line], first: int) -> None:
        if self._producer is None and self.state != "connecting" and not self._backlog:
            self._spill_entry(day, lines, first)
            return
        self._backlog.append((day, lines, first))
        if self._producer is not None and (self._drainer is None or self._drainer.done()):
            self._drainer = self._spawn(self._drain())

    async def _connect(self) -> None:
        """One attempt: connected (the backlog drains to Kafka), or spilling until the next."""
        options = client_options(self.settings)
        options["request_timeout_ms"] = int(self.timeout_s * 1000)
        producer = self.producer_factory(
            acks="all", linger_ms=5, max_batch_size=256 * 1024, **options
        )
        adopted = False
        try:
            async with asyncio.timeout(self.timeout_s):
                await producer.start()
                # A missing topic fails here, not on the first record; asked of every topic's
                # metadata, since naming it makes a broker with auto-creation on (Kafka's
                # default) create it with its own retention, which would drop old-dated events.
                metadata = await producer.client.fetch_all_metadata()
                if self.settings.topic not in metadata.topics():
                    raise LookupError(
                        f"topic {self.settings.topic!r} does not exist: create it with "
                        "retention.ms=-1 (the service never creates it)"
                    )
                await producer.partitions_for(self.settings.topic)
            adopted = True
        except Exception as exc:
            self._error(exc, f"connecting to {self.settings.bootstrap_servers}")
            self._retry_at = self._loop.time() + self.retry_s
            self._set_state("spilling")
            self._spill_backlog()
        finally:
            if not adopted:
                await self._stop_producer(producer)
        if not adopted:
            return
        self._producer = producer
        self._set_state("connected")
        if self._backlog and (self._drainer is None or self._drainer.done()):
            self._drainer = self._spawn(self._drain())

    async def _drain(self) -> None:
        """Hand the backlog to the producer in order, as record batches: each line goes to its
        key's partition (Kafka's default partitioner), a partition's lines in the order they
        came. One batch per partition and round, not one `send` per record: aiokafka's per-record
        path costs several times the CPU, in the process that also expands the events."""
        while self._backlog:
            producer = self._producer
            if producer is None:
                self._spill_backlog()
                return
            entries = self._take_round()
            batches: list[_Batch] | None = None
            handed = 0
            error: Exception | None = None
            try:
                async with asyncio.timeout(self.timeout_s):
                    partitions = sorted(await producer.partitions_for(self.settings.topic))
                    batches = self._fill_batches(producer, partitions, entries)
                    for batch in batches:
                        future = await producer.send_batch(
                            batch.builder, self.settings.topic, partition=batch.partition
                        )
                        if self._producer is not producer:  # failed meanwhile: spill the rest
                            future.add_done_callback(_outcome)  # this batch too: read its end
                            break
                        token = next(self._tokens)
                        self._in_flight[token] = _InFlight(batch.items, self._loop.time())
                        future.add_done_callback(partial(self._delivered, token, producer))
                        handed += 1
            except Exception as exc:
                error = exc
            finally:  # what was not handed over is spilled
                if batches is None:
                    for entry in entries:
                        self._spill_entry(*entry)
                else:
                    self._write_items([item for b in batches[handed:] for item in b.items])
            if error is not None:
                self._fail(error, producer, "sending to Kafka")

    def _take_round(self) -> list[tuple[str, list[Line], int]]:
        """Take the backlog's next entries, up to `_ROUND_LINES` lines (at least one entry)."""
        entries = []
        taken = 0
        while self._backlog and taken < _ROUND_LINES:
            entries.append(self._backlog.popleft())
            taken += len(entries[-1][1])
        return entries

    def _fill_batches(
        self, producer: Any, partitions: list[int], entries: list[tuple[str, list[Line], int]]
    ) -> list[_Batch]:
        """The entries' lines as record batches: full batches in the order they filled, then
        each partition's last one."""
        ready: list[_Batch] = []
        filling: dict[int, _Batch] = {}
        last_key: bytes | None = None
        partition = 0
        for day, lines, first in entries:
            for offset, line in enumerate(lines):
                if line.key is None or line.key != last_key:  # a list's lines share their key
                    partition = self._partitioner(line.key, partitions, partitions)
                    last_key = line.key
                batch = filling.get(partition)
                if batch is None or not batch.builder.append(
                    key=line.key, value=line.data, timestamp=line.at_ms
                ):  # none yet, or full (it goes out): the line starts the partition's next one
                    if batch is not None:
                        ready.append(batch)
                    batch = filling[partition] = _Batch(producer.create_batch(), partition)
                    # a batch's first record always fits (Kafka refuses it if it is too big)
                    batch.builder.append(key=line.key, value=line.data, timestamp=line.at_ms)
                batch.items.append((day, line, first + offset))
        return ready + list(filling.values())

    def _delivered(self, token: int, producer: Any, future: asyncio.Future[Any]) -> None:
        # read first, even for a batch spilled already: a failure nobody reads is logged by
        # asyncio as "Future exception was never retrieved" (and handled by nobody)
        error = _outcome(future)
        entry = self._in_flight.pop(token, None)
        if entry is None:  # spilled already (an outage, or shutdown): its failure is moot
            return
        if error is None:
            self.sent += len(entry.items)
            if self._sent_counter is not None:
                self._sent_counter.inc(len(entry.items))
            self._settled([seq for _, _, seq in entry.items])
            return
        self._write_items(entry.items)
        self._fail(error, producer, "Kafka did not acknowledge a record batch")

    def _fail(self, exc: BaseException, producer: Any, doing: str) -> None:
        """Kafka failed: spill what is in flight, drop the producer, retry later."""
        if producer is not self._producer or producer is None:
            return  # an older producer's failure: handled when it happened
        self._error(exc, doing)
        self._producer = None
        self._retry_at = self._loop.time() + self.retry_s
        self._set_state("spilling")
        entries, self._in_flight = self._in_flight, {}
        self._write_items([item for entry in entries.values() for item in entry.items])
        self._spawn(self._stop_producer(producer))
        # the backlog, if any, is spilled by the drainer when it sees no producer

    async def _stop_producer(self, producer: Any) -> None:
        """Stop a producer, bounded: an unreachable broker must not hold the loop. Its
        unacknowledged records were spilled already; stopping waits for them to be sent or to
        expire (the producer's request timeout is the sink's timeout), hence twice that."""
        try:
            await asyncio.wait_for(producer.stop(), 2 * self.timeout_s + 1)
        except Exception as exc:
            log.warning("a Kafka producer did not stop cleanly: %s: %s", type(exc).__name__, exc)

    def _housekeeping(self) -> None:
        if self.state == "closed":
            return
        now = self._loop.time()
        try:
            if self._in_flight and self._producer is not None:
                oldest = next(iter(self._in_flight.values()))
                if now - oldest.at > self.timeout_s:
                    waited = TimeoutError(
                        f"no acknowledgement within {self.timeout_s:g} s "
                        "(LTR_IMPRESSION_KAFKA_TIMEOUT_SECONDS)"
                    )
                    self._fail(waited, self._producer, "waiting for Kafka")
            if (
                self._producer is None
                and not self._closing
                and (self._connector is None or self._connector.done())
                and now >= self._retry_at
            ):
                self._connector = self._spawn(self._connect())
            self.spill.tick(now)
        except Exception as exc:
            self._error(exc, "housekeeping")
        self._loop.call_later(_HOUSEKEEPING_S, self._housekeeping)

    def _spill_backlog(self) -> None:
        while self._backlog:
            self._spill_entry(*self._backlog.popleft())

    def _spill_entry(self, day: str, lines: list[Line], first: int) -> None:
        """Spill one backlog entry: its lines, numbered from `first`."""
        self._write_spill(day, lines, range(first, first + len(lines)))

    def _write_items(self, items: Sequence[_Item]) -> None:
        """Spill lines of any days (`_write_spill`, day by day)."""
        by_day: dict[str, tuple[list[Line], list[int]]] = {}
        for day, line, seq in items:
            lines, numbers = by_day.setdefault(day, ([], []))
            lines.append(line)
            numbers.append(seq)
        for day, (lines, numbers) in by_day.items():
            self._write_spill(day, lines, numbers)

    def _write_spill(self, day: str, lines: Sequence[Line], numbers: Sequence[int]) -> None:
        """Write lines to the files; each is settled, as spilled or (the files failing too) as
        lost."""
        if not lines:
            return
        written = False
        try:
            written = self._to_file(self.spill, day, lines)
        finally:
            self._settled(numbers, lost=not written)

    async def _shutdown(self) -> None:
        """Send what is handed over, flush the producer, spill what it could not send in time,
        and complete the spill file."""
        if self._connector is not None and not self._connector.done():
            self._connector.cancel()
            with contextlib.suppress(BaseException):
                await self._connector
        drainer = self._drainer
        if drainer is not None and not drainer.done():
            try:
                await asyncio.wait_for(asyncio.shield(drainer), self.timeout_s)
            except Exception as exc:
                self._fail(exc, self._producer, "sending to Kafka at shutdown")
                drainer.cancel()
                with contextlib.suppress(BaseException):
                    await drainer
        producer = self._producer
        if producer is not None:
            try:
                async with asyncio.timeout(self.timeout_s):
                    await producer.flush()
                    while self._in_flight and self._producer is producer:
                        await asyncio.sleep(0.01)  # the delivery callbacks
            except Exception as exc:
                self._fail(exc, producer, "flushing to Kafka at shutdown")
            if self._in_flight:
                waited = TimeoutError("records unacknowledged at shutdown")
                self._fail(waited, producer, "flushing to Kafka at shutdown")
            if self._producer is producer:
                self._producer = None
                await self._stop_producer(producer)
        self._spill_backlog()
        self._set_state("closed")
        try:
            self.spill.close()
        except Exception as exc:
            self._error(exc, "completing the spill file")
        others = [t for t in self._tasks if t is not asyncio.current_task()]
        if others:  # stopping the producers dropped at an outage
            await asyncio.wait(others, timeout=self.timeout_s)
            for task in others:
                task.cancel()
            await asyncio.wait(others, timeout=1.0)


def _outcome(future: asyncio.Future[Any]) -> BaseException | None:
    """A producer's delivery future's error (None: delivered), read, so asyncio never logs
    it as "never retrieved"."""
    if future.cancelled():
        return asyncio.CancelledError("the batch was cancelled")
    return future.exception()
