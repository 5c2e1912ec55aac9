"""The Kafka sink's states, with a fake producer in place of aiokafka's (no broker): records go
out keyed by request id and stamped with the event time; a record not acknowledged in time is
spilled to the files with everything after it, and the sink reconnects and sends again once
the broker is back; shutdown flushes, and spills what is unacknowledged; the files are complete.
(The real broker, stopped and restarted under traffic: tests/integration/
test_serving_kafka_log.py.)"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner

from ltr_core.kafka_client import event_key
from ltr_core.settings import KafkaSettings
from ltr_serving.impressions import FileSink, Line
from ltr_serving.kafka_sink import KafkaSink

DAY = "2026-12-02"


class FakeBroker:
    """What the fake producers reach: up or down. Down, a connection is refused and a record
    handed over is never acknowledged (as with a broker that went away mid-request)."""

    def __init__(self) -> None:
        self.up = True
        self.refuse_sends = False  # send_batch() itself fails (as when the producer is full)
        self.topic_exists = True
        self.batch_capacity = 1000  # records a batch takes before it is full
        self.records: list[tuple[str, bytes | None, bytes, int]] = []
        self.batches: list[tuple[int, list[bytes]]] = []  # (partition, values), as sent
        self.producers: list[FakeProducer] = []
        self.options: dict[str, Any] = {}

    def producer(self, **options: Any) -> FakeProducer:
        self.options = options
        producer = FakeProducer(self)
        self.producers.append(producer)
        return producer


class FakeProducer:
    def __init__(self, broker: FakeBroker) -> None:
        self.broker = broker
        self.client = self  # aiokafka's producer.client, asked for every topic's metadata
        self.stopped = False
        self.unacknowledged: list[asyncio.Future[None]] = []

    async def fetch_all_metadata(self) -> FakeProducer:
        return self

    def topics(self) -> set[str]:
        return {"events"} if self.broker.topic_exists else {"another"}

    async def start(self) -> None:
        if not self.broker.up:
            raise ConnectionRefusedError("the broker is down")

    async def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def create_batch(self) -> FakeBatch:
        return FakeBatch(self.broker.batch_capacity)

    async def send_batch(
        self, batch: FakeBatch, topic: str, *, partition: int
    ) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.broker.refuse_sends:
            raise RuntimeError("cannot take the record")
        if self.broker.up:
            self.broker.records.extend((topic, *record) for record in batch.records)
            self.broker.batches.append((partition, [record[1] for record in batch.records]))
            future.set_result(None)
        else:
            self.unacknowledged.append(future)
        return future

    async def flush(self) -> None:
        if self.unacknowledged:
            await asyncio.sleep(3600)  # never: the sink's timeout ends it

    async def stop(self) -> None:
        self.stopped = True


class FakeBatch:
    """aiokafka's BatchBuilder: takes records until full (`append` answers None)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.records: list[tuple[bytes | None, bytes, int]] = []

    def append(self, *, key: bytes | None, value: bytes, timestamp: int) -> object | None:
        if len(self.records) >= self.capacity:
            return None
        self.records.append((key, value, timestamp))
        return object()


def line(i: int, request: str = "r-1") -> Line:
    event = {"event_id": f"e-{i}", "request_id": request, "timestamp": f"{DAY}T10:00:00Z"}
    return Line(orjson.dumps(event) + b"\n", request.encode(), 1_764_669_600_000 + i, "impression")


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def spilled_ids(directory: Path) -> list[str]:
    assert not list(directory.rglob("*.part"))
    return [
        orjson.loads(text)["event_id"]
        for path in sorted(directory.rglob("*.jsonl"))
        for text in path.read_bytes().splitlines()
    ]


@pytest.fixture
def broker() -> FakeBroker:
    return FakeBroker()


def make_sink(broker: FakeBroker, directory: Path) -> KafkaSink:
    settings = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS="k:9092", KAFKA_TOPIC="events")
    return KafkaSink(
        settings,
        FileSink(directory),
        timeout_s=0.3,
        retry_s=0.1,
        producer_factory=broker.producer,
    )


def test_records_are_keyed_by_request_and_stamped_with_the_event_time(
    broker: FakeBroker, tmp_path: Path
) -> None:
    sink = make_sink(broker, tmp_path)
    sink.write(DAY, [line(0), line(1, "r-2")])
    wait_until(lambda: sink.status().sent == 2, "two records acknowledged")
    assert sink.status().state == "connected"
    assert broker.records == [
        ("events", b"r-1", line(0).data, line(0).at_ms),
        ("events", b"r-2", line(1, "r-2").data, line(1, "r-2").at_ms),
    ]
    assert broker.options["acks"] == "all" and broker.options["request_timeout_ms"] == 300
    sink.close()
    assert sink.status().state == "closed" and broker.producers[0].stopped
    assert spilled_ids(tmp_path) == []


def test_a_lists_lines_go_out_in_order_as_batches_of_its_keys_partition(
    broker: FakeBroker, tmp_path: Path
) -> None:
    """One record batch per partition, not one send per record; a key's lines stay in one
    partition (Kafka's default partitioner, as the platform's own producers place them) in the
    order they came, across batches that fill up."""
    broker.batch_capacity = 3
    sink = make_sink(broker, tmp_path)
    wait_until(lambda: sink.status().state == "connected", "connected")
    lists = {request: [line(i, request) for i in range(7)] for request in ("r-1", "r-2", "r-3")}
    for lines in lists.values():
        sink.write(DAY, lines)
    wait_until(lambda: sink.status().sent == 21, "every line acknowledged")
    sink.close()
    partitioner = DefaultPartitioner()
    for request, lines in lists.items():
        partition = partitioner(request.encode(), [0, 1, 2], [0, 1, 2])
        in_partition = [v for p, values in broker.batches if p == partition for v in values]
        assert [v for v in in_partition if v in {x.data for x in lines}] == [x.data for x in lines]
    assert {len(values) for _, values in broker.batches} <= {1, 2, 3}
    assert len(broker.batches) < 21 and spilled_ids(tmp_path) == []


def test_an_outage_spills_and_the_sink_reconnects_when_the_broker_is_back(
    broker: FakeBroker, tmp_path: Path
) -> None:
    sink = make_sink(broker, tmp_path)
    sink.write(DAY, [line(0)])
    wait_until(lambda: sink.status().sent == 1, "the first record sent")
    broker.up = False
    sink.write(DAY, [line(1), line(2)])  # handed over, never acknowledged
    # the state turns to spilling just before the unacknowledged lines are written out
    wait_until(
        lambda: sink.status().state == "spilling" and sink.status().spilled == 2,
        "spilling after the timeout, the two lines in the files",
    )
    status = sink.status()
    assert status.spilled == 2 and status.in_flight == 0
    assert status.last_error is not None and "no acknowledgement within 0.3 s" in status.last_error
    sink.write(DAY, [line(3)])  # spilling: straight to the files
    wait_until(lambda: sink.status().spilled == 3, "a record spilled directly")
    time.sleep(0.3)  # retries meanwhile fail
    assert sink.status().state == "spilling" and len(broker.producers) >= 2
    broker.up = True
    wait_until(lambda: sink.status().state == "connected", "reconnected")
    sink.write(DAY, [line(4)])
    wait_until(lambda: sink.status().sent == 2, "sent again")
    sink.close()
    assert [r[2] for r in broker.records] == [line(0).data, line(4).data]
    assert sorted(spilled_ids(tmp_path)) == ["e-1", "e-2", "e-3"]
    assert sink.status().lost == 0


def test_shutdown_spills_what_kafka_did_not_acknowledge(broker: FakeBroker, tmp_path: Path) -> None:
    sink = make_sink(broker, tmp_path)
    wait_until(lambda: sink.status().state == "connected", "connected")
    broker.up = False
    sink.write(DAY, [line(0), line(1)])
    sink.close()  # before the watchdog: the flush times out and the two are spilled
    assert sorted(spilled_ids(tmp_path)) == ["e-0", "e-1"]
    status = sink.status()
    assert (status.state, status.sent, status.spilled, status.lost) == ("closed", 0, 2, 0)


@pytest.mark.parametrize(
    ("refusal", "said"),
    [("broker down", "connecting to k:9092"), ("no topic", "topic 'events' does not exist")],
)
def test_kafka_unreachable_or_without_the_topic_spills_from_the_first_event(
    refusal: str, said: str, broker: FakeBroker, tmp_path: Path
) -> None:
    """A missing topic is never created: the sink asks for every topic's metadata, not the
    topic's (naming it makes a broker with auto-creation on create it, with a retention that
    drops old-dated events)."""
    if refusal == "broker down":
        broker.up = False
    else:
        broker.topic_exists = False
    sink = make_sink(broker, tmp_path)
    sink.write(DAY, [line(0)])
    wait_until(lambda: sink.status().spilled == 1, "spilled")
    assert sink.status().state == "spilling"
    assert said in (sink.status().last_error or "")
    sink.close()
    assert spilled_ids(tmp_path) == ["e-0"] and broker.records == []


def test_a_record_the_producer_refuses_is_spilled_with_the_rest_of_its_batch(
    broker: FakeBroker, tmp_path: Path
) -> None:
    sink = make_sink(broker, tmp_path)
    wait_until(lambda: sink.status().state == "connected", "connected")
    broker.refuse_sends = True
    sink.write(DAY, [line(0), line(1)])
    wait_until(lambda: sink.status().spilled == 2, "the batch spilled")
    status = sink.status()
    assert status.state == "spilling" and "cannot take the record" in (status.last_error or "")
    broker.refuse_sends = False
    wait_until(lambda: sink.status().state == "connected", "reconnected")
    sink.write(DAY, [line(2)])
    wait_until(lambda: sink.status().sent == 1, "sent")
    sink.close()
    assert sorted(spilled_ids(tmp_path)) == ["e-0", "e-1"]


def test_the_record_key_is_the_request_id_else_the_case_id() -> None:
    assert event_key({"request_id": "r-1", "case_id": "c-1"}) == b"r-1"
    assert event_key({"request_id": None, "case_id": 7}) == b"7"
    assert event_key({"context": {"request_id": "r-2"}, "case_id": "c"}) == b"r-2"
    assert event_key({"event_id": "e"}) is None
    # the ids as the ingest reads them: stripped; blank or not an id is no key
    assert event_key({"request_id": " r-1 ", "case_id": "c-1"}) == b"r-1"
    assert event_key({"request_id": "  ", "case_id": "c-1"}) == b"c-1"
    assert event_key({"request_id": True, "case_id": 0}) == b"0"


def test_lines_past_max_pending_spill_to_the_overflow_file_without_waiting(
    broker: FakeBroker, tmp_path: Path
) -> None:
    settings = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS="k:9092", KAFKA_TOPIC="events")
    sink = KafkaSink(
        settings,
        FileSink(tmp_path),
        timeout_s=2.0,  # the unacknowledged records stay pending while the test writes
        retry_s=0.1,
        max_pending=3,
        producer_factory=broker.producer,
    )
    wait_until(lambda: sink.status().state == "connected", "connected")
    broker.up = False  # records are taken and never acknowledged: they stay pending
    sink.write(DAY, [line(0), line(1), line(2)])
    started = time.monotonic()
    sink.write(DAY, [line(3), line(4)])  # no room: the overflow file, at once
    sink.write(DAY, [line(5)])
    assert time.monotonic() - started < 1.0
    status = sink.status()
    assert status.spilled == 3 and status.state == "connected"
    assert [p.name.split("-")[-2] for p in tmp_path.rglob("*.jsonl*")] == ["overflow"]
    sink.close()  # the three pending lines time out and spill too
    assert sorted(spilled_ids(tmp_path)) == [f"e-{i}" for i in range(6)]


def test_lines_count_as_settled_only_once_kafka_acknowledged_or_a_file_took_them(
    broker: FakeBroker, tmp_path: Path
) -> None:
    """`settled_lines` (what the writer process confirms frames by) moves past a line only
    when it and every line taken before it are acknowledged or spilled: a line merely handed
    to the producer is not settled, and one settled ahead of an earlier one waits for it."""
    sink = make_sink(broker, tmp_path)
    sink.write(DAY, [line(0), line(1)])
    wait_until(lambda: sink.settled_lines() == 2, "two acknowledged")
    broker.up = False
    sink.write(DAY, [line(2), line(3)])  # handed over as one batch, not acknowledged
    wait_until(lambda: sink.status().in_flight == 2, "two lines in flight")
    assert (sink.written_lines(), sink.settled_lines()) == (4, 2)
    wait_until(lambda: sink.settled_lines() == 4, "spilled after the timeout")
    sink.close()
    assert spilled_ids(tmp_path) == ["e-2", "e-3"] and sink.status().lost == 0


def test_settled_lines_advance_over_numbers_settled_out_of_order(tmp_path: Path) -> None:
    """Kafka acknowledges partitions independently: numbers settled ahead wait in a heap until
    the ones before them settle."""
    sink = make_sink(FakeBroker(), tmp_path)
    with sink._pending_lock:
        sink._taken, sink._pending = 5, 5
    sink._settled([1, 3])
    assert sink.settled_lines() == 0
    sink._settled([0])
    assert sink.settled_lines() == 2
    sink._settled([4, 2])
    assert sink.settled_lines() == 5
    sink.close()


def test_a_batch_that_fails_after_it_was_spilled_leaves_no_unread_error(
    broker: FakeBroker, tmp_path: Path
) -> None:
    """Batches spilled at the sink's own timeout fail later in the producer (aiokafka's request
    timeout, its close): the sink reads those errors too (the lines are in the files already),
    so asyncio logs no "Future exception was never retrieved" (seen in the compose stack with
    the broker paused)."""
    sink = make_sink(broker, tmp_path)
    sink.write(DAY, [line(0)])
    wait_until(lambda: sink.status().sent == 1, "the first record sent")
    broker.up = False
    sink.write(DAY, [line(1), line(2)])  # handed over, never acknowledged
    wait_until(lambda: sink.status().spilled == 2, "the unacknowledged lines spilled")
    producer = broker.producers[0]
    assert producer.unacknowledged

    def producer_gives_up() -> None:
        for future in producer.unacknowledged:
            future.set_exception(TimeoutError("the request timed out"))
        producer.unacknowledged.clear()

    reported: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: reported.append(record.getMessage())  # type: ignore[method-assign]
    logging.getLogger("asyncio").addHandler(handler)  # asyncio reports there
    try:
        sink._loop.call_soon_threadsafe(producer_gives_up)
        time.sleep(0.2)  # the done callbacks run; the futures are dropped
        gc.collect()
        sink.close()
    finally:
        logging.getLogger("asyncio").removeHandler(handler)
    assert [message for message in reported if "never retrieved" in message] == []
    assert sorted(spilled_ids(tmp_path)) == ["e-1", "e-2"] and sink.status().lost == 0
