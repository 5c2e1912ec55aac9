"""raw_events from a real Kafka wire-protocol broker (noida-db) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections import Counter
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import numpy as np
import pyarrow.parquet as pq
import pytest
from aiokafka import AIOKafkaProducer
from dagster import AssetKey, DagsterInstance

from ltr_assets.definitions import defs
from ltr_assets.ingest.day import ingest_day
from ltr_assets.ingest.kafka import (
    KafkaDaySource,
    KafkaUnavailable,
    ensure_topic,
    event_time_ms,
    publish_events,
)
from ltr_assets.ingest.sources import AuditLogSource, DayRecord, SourceRecord
from ltr_assets.lake.paths import Lake
from ltr_assets.simulation.simulator import Simulator, SimulatorConfig
from ltr_core.events import EventRow
from ltr_core.settings import KafkaSettings
from tests.conftest import START
from tests.support.dagster_results import check_results, materialization_metadata
from tests.support.ingest import fields, local
from tests.support.kafka_broker import Broker

DAYS = [START + timedelta(days=i) for i in range(3)]


def _settings(broker: Broker, topic: str) -> KafkaSettings:
    return KafkaSettings(
        KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap, KAFKA_TOPIC=topic, KAFKA_GROUP_ID=f"g-{topic}"
    )


@pytest.fixture
def topic(kafka_broker: Broker) -> str:
    name = f"match_events_{uuid.uuid4().hex[:8]}"
    assert ensure_topic(_settings(kafka_broker, name), partitions=3)
    return name


def _arrival_order(events: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Most events arrive within a minute; 5% arrive 20-150 minutes late, across midnight too."""
    rng = np.random.default_rng(seed)
    base = np.array([np.datetime64(e["timestamp"][:-1]) for e in events], dtype="datetime64[ms]")
    delay = rng.integers(0, 60_000, len(events))
    late = rng.random(len(events)) < 0.05
    delay[late] = rng.integers(20 * 60_000, 150 * 60_000, late.sum())
    order = np.argsort(base + delay.astype("timedelta64[ms]"), kind="stable")
    return [events[i] for i in order]


def _write_jsonl(path: Path, events: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(e) + "\n" for e in events))


def _conflicting_copies(events: list[dict[str, Any]], every: int) -> list[dict[str, Any]]:
    """Copies of some events under the same id with other content: another score, or another
    score and a time a second earlier (the copy that is kept) within the same day."""
    copies = []
    for k, event in enumerate(events[::every]):
        if event.get("score") is None:
            continue
        score = round(event["score"] / 2, 6)
        if k % 2:
            copies.append({**event, "score": score})
        elif not event["timestamp"].endswith("00:00:00.000Z"):
            when = datetime.fromisoformat(event["timestamp"]) - timedelta(seconds=1)
            if when.date() == datetime.fromisoformat(event["timestamp"]).date():
                earlier = when.isoformat().replace("+00:00", "Z")
                copies.append({**event, "score": score, "timestamp": earlier})
    return copies


def test_each_day_holds_exactly_its_events_and_matches_the_files(
    kafka_broker: Broker, topic: str, tmp_path: Path
) -> None:
    """Byte-identical Parquet from Kafka and from the files, conflicting duplicates included:
    the files hold each conflicting copy after its original, the topic before it and in
    another order (partitions interleave), and the kept copy is the same."""
    events = Simulator(SimulatorConfig(start=START, days=3, seed=5, requests_per_day=60)).events()
    copies = _conflicting_copies(events, every=37)
    assert len(copies) > 10
    arrived = _arrival_order(copies[::-1] + events, seed=1)
    assert arrived != events  # out of order across the topic
    settings = _settings(kafka_broker, topic)
    assert publish_events(settings, arrived) == len(events) + len(copies)
    _write_jsonl(tmp_path / "audit.jsonl", events + copies)
    conflicts = Counter(c["timestamp"][:10] for c in copies)

    kafka_lake, file_lake = Lake(tmp_path / "kafka"), Lake(tmp_path / "files")
    source = KafkaDaySource(settings)
    files = AuditLogSource(str(tmp_path / "audit.jsonl"))
    seen: set[str] = set()
    for day in DAYS:
        report = ingest_day(source.read_day(day), day, kafka_lake, "kafka")
        expected = {e["event_id"] for e in events if e["timestamp"].startswith(day.isoformat())}
        got = local(report.parquet_path).read_bytes()
        ids = cast(
            list[str], pq.read_table(local(report.parquet_path)).column("event_id").to_pylist()
        )
        assert len(ids) == len(set(ids)) and set(ids) == expected
        assert report.duplicates == 0 and report.quarantined == 0
        assert report.conflicts == conflicts[day.isoformat()] > 0
        seen |= set(ids)
        file_report = ingest_day(files.read_day(day), day, file_lake, "audit_log")
        assert local(file_report.parquet_path).read_bytes() == got  # identical Parquet
        assert file_report.conflicting_ids == report.conflicting_ids
        again = ingest_day(source.read_day(day), day, kafka_lake, "kafka")
        assert local(again.parquet_path).read_bytes() == got  # re-materializing gives the same rows
    last_day_ids = {
        e["event_id"] for e in events if e["timestamp"] < (DAYS[-1] + timedelta(1)).isoformat()
    }
    assert seen == last_day_ids  # nothing missing, nothing from outside the three days


def test_reading_ends_on_a_run_of_records_past_the_grace_period(kafka_broker: Broker) -> None:
    """One record past the end of the day plus the grace does not end the day's read; a run of
    `stop_records` does, and an event of the day after that run is quarantined as late in the day
    it arrived in (here D+1: the run is stamped 03:00 on D+1), not lost."""
    settings = _one_partition(kafka_broker, "grace").model_copy(update={"stop_records": 3})
    day = DAYS[0]
    stream = [
        _feedback("in-day", f"{day}T23:00:00Z"),
        _feedback("next-1", f"{DAYS[1]}T00:30:00Z"),
        _feedback("late", f"{day}T23:59:00Z"),  # within the grace
        _feedback("past-grace", f"{DAYS[1]}T03:00:00Z"),  # one record: the read goes on
        _feedback("after-one", f"{day}T23:59:30Z"),
        *[_feedback(f"run-{i}", f"{DAYS[1]}T03:0{i}:00Z") for i in range(3)],
        _feedback("too-late", f"{day}T23:59:45Z"),  # after a run of three: D's read has ended
    ]
    publish_events(settings, stream)
    source = KafkaDaySource(settings)
    assert sorted(_names(source.read(day).records)) == ["after-one", "in-day", "late"]
    assert sorted(_names(source.read(DAYS[1]).records)) == [
        "late_event:too-late", "next-1", "past-grace", "run-0", "run-1", "run-2"]  # fmt: skip


def test_a_record_from_a_skewed_clock_does_not_end_the_day(kafka_broker: Broker) -> None:
    settings = _settings(kafka_broker, f"skew_{uuid.uuid4().hex[:8]}")
    ensure_topic(settings, partitions=1)
    day = DAYS[1]
    base = {"event_type": "offer_feedback", "request_id": "r", "case_id": "c", "action": "click"}
    stream = [
        {**base, "event_id": "before", "lawyer_id": "x", "timestamp": f"{DAYS[0]}T12:00:00Z"},
        {**base, "event_id": "future", "lawyer_id": "y", "timestamp": "2027-06-01T00:00:00Z"},
        *[
            {**base, "event_id": f"d-{i}", "lawyer_id": f"l{i}", "timestamp": f"{day}T0{i}:00:00Z"}
            for i in range(8)
        ],
    ]
    publish_events(settings, stream)
    read = KafkaDaySource(settings).read(day)
    assert sorted(fields(r)["event_id"] for r in read.records) == [f"d-{i}" for i in range(8)]


async def _send_raw(settings: KafkaSettings, values: list[bytes | None], ts_ms: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    await producer.start()
    try:
        for i, value in enumerate(values):
            await producer.send_and_wait(settings.topic, value=value, key=b"k%d" % i,
                                         timestamp_ms=ts_ms + i)  # fmt: skip
    finally:
        await producer.stop()


def _run_raw_events(day: date, instance: DagsterInstance):
    job = defs.resolve_job_def("ltr_daily_job")
    return job.execute_in_process(
        partition_key=day.isoformat(), instance=instance, asset_selection=[AssetKey("raw_events")]
    )


def _metadata(instance: DagsterInstance) -> dict[str, Any]:
    event = instance.get_latest_materialization_event(AssetKey("raw_events"))
    return materialization_metadata(event)


def test_malformed_messages_are_quarantined_and_the_run_succeeds(
    kafka_broker: Broker, topic: str, ltr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(kafka_broker, topic)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_broker.bootstrap)
    monkeypatch.setenv("KAFKA_TOPIC", topic)
    day = DAYS[0]
    good = {"event_type": "offer_feedback", "timestamp": f"{day}T10:00:00Z", "request_id": "r1",
            "case_id": "c1", "lawyer_id": "l1", "action": "click"}  # fmt: skip
    values = [
        json.dumps({**good, "event_id": "ok-1"}).encode(),
        b"this is not json",
        json.dumps({**good, "event_id": "no-case", "case_id": None}).encode(),
        json.dumps(
            {**good, "event_id": "typed", "event_type": "match_recommendation", "features": "high"}
        ).encode(),  # fmt: skip
        None,  # a tombstone
        json.dumps({**good, "event_id": "ok-2", "lawyer_id": "l2"}).encode(),
    ]
    ts = int(np.datetime64(f"{day}T10:00:00", "ms").astype(np.int64))
    asyncio.run(_send_raw(settings, values, ts))

    instance = DagsterInstance.ephemeral()
    result = _run_raw_events(day, instance)
    assert result.success
    meta = _metadata(instance)
    assert meta["source"] == "kafka" and meta["accepted"] == 2 and meta["quarantined"] == 4
    assert meta["quarantine_reasons"] == {
        "invalid_json": 1, "missing_id": 1, "missing_features": 1, "null_value": 1}  # fmt: skip
    lines = (ltr_home / "lake" / "quarantine" / f"{day}.jsonl").read_text().splitlines()
    origins = [json.loads(line)["origin"] for line in lines]
    assert all(o.startswith(f"{topic}/") for o in origins)
    assert check_results(result)["quarantine_ratio"] is False  # 4 of 6 is far above 5%


def test_unreachable_broker_falls_back_to_files_and_kafka_is_used_again_once_back(
    ltr_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = Broker()
    broker.start()
    try:
        name = "match_events"
        settings = _settings(broker, name)
        ensure_topic(settings, partitions=2)
        events = Simulator(
            SimulatorConfig(start=START, days=1, seed=9, requests_per_day=40)
        ).events()
        publish_events(settings, events)
        _write_jsonl(ltr_home / "events" / "audit.jsonl", events)
        monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap)
        instance = DagsterInstance.ephemeral()
        parquet = ltr_home / "lake" / "raw_events" / f"{START}.parquet"

        first = _run_raw_events(START, instance)
        assert _metadata(instance)["source"] == "kafka" and check_results(first)["source_fallback"]
        from_kafka = parquet.read_bytes()

        broker.stop()
        down = _run_raw_events(START, instance)
        assert down.success
        meta = _metadata(instance)
        assert meta["source"] == "audit_log"
        assert "cannot reach Kafka" in meta["fallback_reason"]
        assert check_results(down)["source_fallback"] is False
        assert parquet.read_bytes() == from_kafka

        broker.start()
        back = _run_raw_events(START, instance)
        assert _metadata(instance)["source"] == "kafka" and check_results(back)["source_fallback"]
        assert parquet.read_bytes() == from_kafka
    finally:
        broker.close()


async def _committed(settings: KafkaSettings) -> dict[int, int]:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(settings.group_id)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == settings.topic}


def test_simulate_to_kafka_and_the_group_progress_is_committed(
    kafka_broker: Broker, ltr_home: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from ltr_assets.cli import main as ltr

    name = f"sim_{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_broker.bootstrap)
    monkeypatch.setenv("KAFKA_TOPIC", name)
    args = ["simulate", "--start", str(START), "--days", "2", "--seed", "4", "--to", "kafka",
            "--requests-per-day", "30", "--partitions", "2"]  # fmt: skip
    assert ltr(args) == 0
    assert f"to {name} (created)" in capsys.readouterr().out
    settings = KafkaSettings(KAFKA_BOOTSTRAP_SERVERS=kafka_broker.bootstrap, KAFKA_TOPIC=name,
                             KAFKA_GROUP_ID="ltr-raw-events")  # fmt: skip
    read = KafkaDaySource(settings).read(START)
    assert read.records and all(fields(r)["timestamp"].date() == START for r in read.records)
    committed = asyncio.run(_committed(settings))
    assert committed == {p: nxt for p, (_, nxt) in read.partitions.items()}
    assert sum(committed.values()) > 0
    # a backfill of an earlier day never moves the committed offsets backwards
    KafkaDaySource(settings).read(START - timedelta(days=1))
    assert asyncio.run(_committed(settings)) == committed


def test_a_future_stamped_record_is_quarantined_in_the_day_it_arrived(
    kafka_broker: Broker,
) -> None:
    settings = _settings(kafka_broker, f"future_{uuid.uuid4().hex[:8]}")
    ensure_topic(settings, partitions=1)
    day = DAYS[1]
    base = {"event_type": "offer_feedback", "request_id": "r", "case_id": "c", "action": "click"}
    stream = [
        {**base, "event_id": "d-0", "lawyer_id": "a", "timestamp": f"{day}T10:00:00Z"},
        {**base, "event_id": "skewed", "lawyer_id": "b", "timestamp": "2030-01-01T00:00:00Z"},
        {**base, "event_id": "d-1", "lawyer_id": "c", "timestamp": f"{day}T11:00:00Z"},
    ]
    publish_events(settings, stream)
    source = KafkaDaySource(settings)
    records = source.read(day).records
    assert [r.event_id for r in records if isinstance(r, EventRow)] == ["d-0", "d-1"]
    quarantined = [r for r in records if isinstance(r, SourceRecord)]
    outcome = quarantined[0].outcome if quarantined else None
    assert len(quarantined) == 1 and outcome is not None and outcome.kind == "future_timestamp"
    assert b'"skewed"' in quarantined[0].raw
    for other in (DAYS[0], DAYS[2], date(2030, 1, 1)):
        assert source.read(other).records == []


def test_a_day_is_streamed_poll_by_poll_not_read_whole_first(
    kafka_broker: Broker, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first records reach the ingest after one poll (10 records here), long before the day
    is read; the offsets are committed only once the whole day has been."""
    import ltr_assets.ingest.kafka as kafka

    monkeypatch.setattr(kafka, "MAX_RECORDS_PER_POLL", 10)
    settings = _settings(kafka_broker, topic)
    events = Simulator(SimulatorConfig(start=START, days=1, seed=2, requests_per_day=20)).events()
    assert publish_events(settings, events) == len(events) > 100
    progress = kafka.ReadProgress()
    stream = KafkaDaySource(settings).stream(START, progress)
    first = next(stream)
    assert isinstance(first, EventRow) and 0 < progress.scanned <= 10
    assert asyncio.run(_committed(settings)) == {}
    rest = list(stream)
    assert 1 + len(rest) == len(events) == progress.scanned
    assert asyncio.run(_committed(settings)) == {p: n for p, (_, n) in progress.partitions.items()}


def test_a_coordinator_lost_after_the_days_records_does_not_hold_up_the_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The broker stops answering once the day's records are fetched, before the group's
    offsets are committed: the commit is for lag monitoring only, so the read ends, complete
    (aiokafka retried the lost coordinator without end, and raw_events hung)."""
    import ltr_assets.ingest.kafka as kafka

    monkeypatch.setattr(kafka, "MAX_RECORDS_PER_POLL", 10)
    own = Broker()
    own.start()
    try:
        settings = _settings(own, f"commit_{uuid.uuid4().hex[:8]}")
        assert ensure_topic(settings, partitions=1)
        events = Simulator(
            SimulatorConfig(start=START, days=1, seed=3, requests_per_day=4)
        ).events()
        assert publish_events(settings, events) == len(events)
        stream = KafkaDaySource(settings).stream(START)
        records = [next(stream) for _ in events]  # every record of the day, not yet the end
        own.freeze()
        ended: list[int] = []
        reader = threading.Thread(target=lambda: ended.append(len(list(stream))), daemon=True)
        reader.start()
        reader.join(timeout=120)
        assert ended == [0], "the read did not end after its records while the broker hung"
        assert sorted(r.event_id for r in records if isinstance(r, EventRow)) == sorted(
            e["event_id"] for e in events
        )
    finally:
        own.close()


# -- a partition's read ends on a run of records past the window, never on one record ---------

_FEEDBACK = {"event_type": "offer_feedback", "request_id": "r", "case_id": "c", "action": "click"}


def _feedback(event_id: str, when: str) -> dict[str, Any]:
    return {**_FEEDBACK, "event_id": event_id, "lawyer_id": f"l-{event_id}", "timestamp": when}


def _one_partition(broker: Broker, prefix: str) -> KafkaSettings:
    settings = _settings(broker, f"{prefix}_{uuid.uuid4().hex[:8]}")
    ensure_topic(settings, partitions=1)
    return settings


def _read_days(
    source: KafkaDaySource | AuditLogSource, days: list[date]
) -> dict[date, list[DayRecord]]:
    return {
        day: list(source.read(day).records if isinstance(source, KafkaDaySource)
                  else source.read_day(day))
        for day in days
    }  # fmt: skip


def _names(records: list[DayRecord]) -> list[str]:
    """Event ids of accepted events; "kind:event id" (or the raw text) of the others."""
    out = []
    for record in records:
        if isinstance(record, EventRow):
            out.append(record.event_id)
        else:
            text = record.raw.decode(errors="replace")
            name = json.loads(text).get("event_id") if text.startswith("{") else text
            assert record.outcome is not None, record  # a rejection here, never an ignored record
            out.append(f"{record.outcome.kind}:{name}")
    return out


def test_one_fast_clock_record_does_not_end_the_days_read(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    """A record stamped past the end of the day plus the grace (but not past the source's
    horizon) in the middle of the day's records: every later event of the day is still read,
    from Kafka as from the same lines in a file, and the odd record is counted once, in its own
    day."""
    settings = _one_partition(kafka_broker, "fast")
    day = DAYS[1]
    early = [_feedback(f"a-{h}", f"{day}T{h:02d}:10:00Z") for h in range(10)]
    fast = _feedback("fast", f"{day + timedelta(days=2)}T12:00:00Z")
    late = [_feedback(f"b-{h}", f"{day}T{h:02d}:20:00Z") for h in range(10, 24)]
    stream = [*early, fast, *late]
    publish_events(settings, stream)
    _write_jsonl(tmp_path / "audit.jsonl", stream)
    expected = sorted(e["event_id"] for e in early + late)
    days = [day + timedelta(days=k) for k in range(-1, 4)]
    for source in (KafkaDaySource(settings), AuditLogSource(str(tmp_path / "audit.jsonl"))):
        read = {d: _names(records) for d, records in _read_days(source, days).items()}
        assert sorted(read[day]) == expected, source.name
        assert read[day + timedelta(days=2)] == ["fast"], source.name
        assert sum(len(names) for names in read.values()) == len(stream), source.name


def test_an_event_arriving_after_its_days_read_ended_is_quarantined_where_it_arrived(
    kafka_broker: Broker,
) -> None:
    """An event of D-1 that comes after a run of records past D-1's window (the end of D-1 plus
    the grace) is after the point where D-1's read ends: it is quarantined as late in D, the
    day it arrived, not dropped by both days."""
    settings = _one_partition(kafka_broker, "late")
    previous, day = DAYS[0], DAYS[1]
    before = [_feedback(f"p-{i}", f"{previous}T{10 + i // 10:02d}:{i % 10:02d}:00Z")
              for i in range(30)]  # fmt: skip
    # more records past D-1's window than the run that ends a read (100 by default)
    after = [_feedback(f"d-{i}", f"{day}T{3 + i // 60:02d}:{i % 60:02d}:00Z") for i in range(150)]
    straggler = _feedback("straggler", f"{previous}T23:50:00Z")
    more = [_feedback(f"e-{i}", f"{day}T{12 + i:02d}:00:00Z") for i in range(5)]
    stream = [*before, *after, straggler, *more]
    publish_events(settings, stream)
    days = [previous - timedelta(days=1), previous, day, day + timedelta(days=1)]
    read = {d: _names(records) for d, records in _read_days(KafkaDaySource(settings), days).items()}
    assert sorted(read[previous]) == sorted(e["event_id"] for e in before)
    assert sorted(read[day]) == sorted(
        [e["event_id"] for e in after + more] + ["late_event:straggler"]
    )
    assert sum(len(names) for names in read.values()) == len(stream)


def test_implausibly_old_records_are_quarantined_in_the_day_they_arrived(
    kafka_broker: Broker, tmp_path: Path
) -> None:
    """An event stamped in 1970 (record timestamp too), one stamped in year 1 (the producer's
    record timestamp is the day's) and an unreadable message stamped 1970 after them, amid a
    day's records: all three are quarantined in that day with a reason, none goes to a day that
    never runs; the same lines in a file likewise, a 1970 line at the head of the file too."""
    # a run of 5: the partition's clock is set by the day's first records (before a run's worth
    # of records, a new partition's clock is its first record's time, 00:10, still D-1's read)
    settings = _one_partition(kafka_broker, "old").model_copy(update={"stop_records": 5})
    day = DAYS[1]
    head = [_feedback(f"a-{h}", f"{day}T{h:02d}:10:00Z") for h in range(10)]
    epoch = _feedback("epoch", "1970-01-01T00:00:00Z")
    year_one = json.dumps(_feedback("year-one", "0001-01-01T00:00:00Z")).encode()
    tail = [_feedback(f"b-{h}", f"{day}T{h:02d}:20:00Z") for h in range(10, 24)]
    publish_events(settings, [*head, epoch])
    noon = int(np.datetime64(f"{day}T12:00:00", "ms").astype(np.int64))
    asyncio.run(_send_raw(settings, [b"not json"], 0))
    asyncio.run(_send_raw(settings, [year_one], noon))
    publish_events(settings, tail)
    expected = sorted(
        [e["event_id"] for e in head + tail]
        + ["old_timestamp:epoch", "old_timestamp:year-one", "old_timestamp:not json"]
    )
    kafka = _read_days(KafkaDaySource(settings), [day, date(1970, 1, 1), date(1, 1, 1)])
    assert sorted(_names(kafka[day])) == expected
    assert kafka[date(1970, 1, 1)] == kafka[date(1, 1, 1)] == []

    lines = [json.dumps(e) for e in [epoch, *head, epoch]] + ["not json", year_one.decode()]
    lines += [json.dumps(e) for e in tail]
    (tmp_path / "audit.jsonl").write_text("".join(line + "\n" for line in lines))
    files = _read_days(AuditLogSource(str(tmp_path / "audit.jsonl")),
                       [day, date(1970, 1, 1), date(1, 1, 1)])  # fmt: skip
    # in a file the unreadable line has no time of its own: it follows the nearest dated line
    assert sorted(_names(files[day])) == sorted(
        [e["event_id"] for e in head + tail]
        + ["old_timestamp:epoch", "old_timestamp:epoch", "old_timestamp:year-one",
           "invalid_json:not json"]
    )  # fmt: skip
    assert files[date(1970, 1, 1)] == files[date(1, 1, 1)] == []


async def _send(producer: AIOKafkaProducer, topic: str, event: dict[str, Any]) -> None:
    """One event into partition 0, stamped with its own time."""
    await producer.send_and_wait(
        topic,
        json.dumps(event).encode(),
        key=b"r-1",
        partition=0,
        timestamp_ms=event_time_ms(event),
    )


async def _transactions(
    settings: KafkaSettings, runs: list[tuple[list[dict[str, Any]], bool]]
) -> None:
    """A transactional producer (as Kafka Streams or Flink write): each run of events in a
    transaction of its own, committed or aborted."""
    producer = AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers, transactional_id=f"tx-{uuid.uuid4().hex}"
    )
    await producer.start()
    try:
        for events, commit in runs:
            await producer.begin_transaction()
            for event in events:
                await _send(producer, settings.topic, event)
            await (producer.commit_transaction() if commit else producer.abort_transaction())
    finally:
        await producer.stop()


@pytest.mark.parametrize("trailing", [False, True], ids=["ends-on-a-marker", "record-after"])
def test_a_transactional_producers_aborted_events_are_not_read_and_markers_end_no_read(
    kafka_broker: Broker, trailing: bool
) -> None:
    """Committed events are read, aborted ones are not (they were never events), and a
    partition that ends on a commit or abort marker (an offset no record is delivered at)
    ends the read: it stalled for the whole stall timeout, then fell back to the files."""
    settings = _one_partition(kafka_broker, "tx").model_copy(update={"stall_timeout_s": 8.0})
    day = DAYS[0]
    committed = [_feedback(f"ok-{i}", f"{day}T10:00:0{i}Z") for i in range(3)]
    aborted = [_feedback(f"aborted-{i}", f"{day}T11:00:0{i}Z") for i in range(3)]
    asyncio.run(_transactions(settings, [(committed, True), (aborted, False)]))
    if trailing:
        publish_events(settings, [_feedback("plain", f"{day}T12:00:00Z")])
    started = time.monotonic()
    records = KafkaDaySource(settings).read(day).records
    assert time.monotonic() - started < settings.stall_timeout_s
    assert sorted(_names(records)) == ["ok-0", "ok-1", "ok-2", *(["plain"] if trailing else [])]


def _open_transaction(
    settings: KafkaSettings, event: dict[str, Any], opened: threading.Event, end_after_s: float
) -> threading.Thread:
    """A transaction holding `event`, left open `end_after_s` seconds (then committed), on a
    thread of its own; `opened` is set once its record is in the partition."""

    async def run() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=settings.bootstrap_servers, transactional_id=f"tx-{uuid.uuid4()}"
        )
        await producer.start()
        try:
            await producer.begin_transaction()
            await _send(producer, settings.topic, event)
            opened.set()
            await asyncio.sleep(end_after_s)
            await producer.commit_transaction()
        finally:
            await producer.stop()

    thread = threading.Thread(target=asyncio.run, args=(run(),), daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("first", [False, True], ids=["after-a-record", "first-of-the-day"])
@pytest.mark.parametrize("ends", [True, False], ids=["ends-while-read", "stays-open"])
def test_a_transaction_open_at_read_time_holds_the_read_never_hides_what_follows(
    kafka_broker: Broker, ends: bool, first: bool
) -> None:
    """Records written after a transaction that is still open (other producers', the serving
    log's) lie past the last stable offset: a read ending there left them to no day at all.
    The read waits for the transaction; one still open at the stall timeout makes the read
    fail, saying so (the day then falls back to the files, with the check failing). So also
    when the day's first record is in the transaction: a read_committed lookup by time stops
    before it, and found nothing of the day in the partition."""
    settings = _one_partition(kafka_broker, "otx").model_copy(update={"stall_timeout_s": 6.0})
    day = DAYS[0]
    if not first:
        publish_events(settings, [_feedback("before", f"{day}T09:00:00Z")])
    opened = threading.Event()
    thread = _open_transaction(
        settings, _feedback("in-tx", f"{day}T10:00:00Z"), opened, 2.0 if ends else 10.0
    )
    assert opened.wait(30)
    publish_events(settings, [_feedback(f"after-{i}", f"{day}T11:00:0{i}Z") for i in range(3)])
    source = KafkaDaySource(settings)
    if ends:
        names = sorted(_names(source.read(day).records))
        assert names == ["after-0", "after-1", "after-2", *([] if first else ["before"]), "in-tx"]
    else:
        with pytest.raises(
            KafkaUnavailable, match="a transaction left open holds back partition 0"
        ):
            source.read(day)
    thread.join(30)


def test_a_day_behind_a_fast_clock_record_in_an_open_transaction_is_never_skipped(
    kafka_broker: Broker,
) -> None:
    """An open transaction holding one record stamped days ahead (a producer clock running
    fast), then records of D: nothing behind the transaction can be seen, so D's read cannot
    know the partition holds nothing of D. It waits, and fails loudly at the stall timeout
    (the day then falls back to the files), never returns the day without them."""
    settings = _one_partition(kafka_broker, "fast").model_copy(update={"stall_timeout_s": 4.0})
    day = DAYS[1]
    publish_events(settings, [_feedback("yesterday", f"{DAYS[0]}T09:00:00Z")])
    opened = threading.Event()
    ahead = _feedback("ahead", f"{day + timedelta(days=2)}T12:00:00Z")
    thread = _open_transaction(settings, ahead, opened, 8.0)
    assert opened.wait(30)
    publish_events(settings, [_feedback(f"d-{i}", f"{day}T10:00:0{i}Z") for i in range(3)])
    with pytest.raises(KafkaUnavailable, match="a transaction left open holds back partition 0"):
        KafkaDaySource(settings).read(day)
    thread.join(30)


def test_simulate_to_a_broker_that_is_down_is_an_error_line_not_a_traceback(
    ltr_home: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from ltr_assets.cli import main as ltr

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{port}")
    args = ["simulate", "--start", str(START), "--days", "1", "--seed", "4", "--to", "kafka",
            "--requests-per-day", "5"]  # fmt: skip
    assert ltr(args) == 1
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith(f"error: publishing to match_events at 127.0.0.1:{port} failed: ")
    assert "KafkaConnectionError" in error and "Traceback" not in error
