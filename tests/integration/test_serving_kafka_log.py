"""The ranking service's event log to a real Kafka wire-protocol broker (noida-db):
LTR_IMPRESSION_LOG=kafka. The service runs in its own process (`ltr_serving.server.serve`, as
`ltr-serve` does) and serves /rank and /feedback the whole time while the broker hangs, is
killed, and is started again on the same port and data dir; then the service is SIGTERM'd. The
day, read as raw_events reads it (the Kafka topic and the serving-log folder, deduplicated by
event id), holds every served impression and every accepted feedback event exactly once: what
Kafka did not acknowledge in time was spilled to the files, and Kafka was used again once back.

The broker is frozen (SIGSTOP) before it is terminated because noida-db acknowledges records it
has not persisted yet: terminated under load it loses the last few records it acknowledged in
about one run in three (SIGKILL: hundreds), which no producer can tell from a delivered record.
Frozen first, it acknowledges nothing more; the service times out waiting, spills everything
unacknowledged, and the broker persists at its shutdown what it had acknowledged."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import pyarrow.parquet as pq
import pytest

from ltr_assets.ingest.day import ingest_with_fallback
from ltr_assets.ingest.kafka import KafkaDaySource, ensure_topic
from ltr_assets.ingest.sources import AuditLogSource, ServingLogSource
from ltr_assets.lake.paths import Lake
from ltr_core.settings import Settings
from tests.support.ingest import local
from tests.support.kafka_broker import Broker
from tests.support.serving import (
    FEEDBACK_TOKEN,
    Publisher,
    ServerProcess,
    metric_value,
    rank_body,
    wait_for,
    weights_for,
    writer_of,
)

AUTH = {"Authorization": f"Bearer {FEEDBACK_TOKEN}"}


def impression_id(request_id: str, lawyer_id: str) -> str:
    return "imp-" + hashlib.sha256(request_id.encode()).hexdigest()[:24] + "-" + lawyer_id


class Traffic:
    """A client thread: /rank, and feedback on every third answer, until stopped; it keeps the
    ids of every event the service answered for (served impressions, accepted feedback)."""

    def __init__(self, url: str, feedback: bool = True) -> None:
        self.url = url
        self.sends_feedback = feedback  # every third request; each waits for Kafka's ack
        self.expected: list[str] = []
        self.days: set[date] = set()
        self.ranked = 0
        self.feedback = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive()

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30.0) as client:
            i = 0
            while not self._stop.is_set():
                i += 1
                try:
                    self._one(client, i)
                except Exception as exc:  # recorded, asserted on by the test
                    self.failures.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.01)

    def _one(self, client: httpx.Client, i: int) -> None:
        response = client.post("/rank", json=rank_body(6, seed=i, case_id=f"c-{i}"))
        if response.status_code != 200:
            self.failures.append(f"/rank {response.status_code}: {response.text[:200]}")
            return
        body = response.json()
        request_id = body["request_id"]
        self.expected += [impression_id(request_id, c["lawyer_id"]) for c in body["candidates"]]
        self.days.add(datetime.now(UTC).date())
        self.ranked += 1
        if i % 3 or not self.sends_feedback:
            return
        now = datetime.now(UTC)
        event = {
            "event_type": "offer_feedback",
            "event_id": f"fb-{uuid.uuid4().hex}",
            "timestamp": now.isoformat().replace("+00:00", "Z"),
            "request_id": request_id,
            "case_id": f"c-{i}",
            "lawyer_id": body["candidates"][0]["lawyer_id"],
            "action": "click",
        }
        answer = client.post("/feedback", json=event, headers=AUTH)
        if answer.status_code != 200 or answer.json()["accepted"] != 1:
            self.failures.append(f"/feedback {answer.status_code}: {answer.text[:200]}")
            return
        self.expected.append(event["event_id"])
        self.days.add(now.date())
        self.feedback += 1


def sink_health(server: ServerProcess) -> dict[str, Any]:
    with server.client() as client:
        kafka = client.get("/ltr/health").json()["event_log"]["kafka"]
    assert isinstance(kafka, dict)
    return kafka


@pytest.fixture
def broker() -> Iterator[Broker]:
    """A broker of the test's own (the tests hang, stop and restart it), started."""
    own = Broker()
    own.start()
    try:
        yield own
    finally:
        own.close()


def kafka_service(
    broker: Broker,
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server_process: Callable[[], ServerProcess],
    **env: str,
) -> tuple[Settings, ServerProcess]:
    """A service logging to a fresh 3-partition topic on `broker`, connected to it."""
    settings = serving_env(
        LTR_IMPRESSION_LOG="kafka",
        KAFKA_BOOTSTRAP_SERVERS=broker.bootstrap,
        KAFKA_TOPIC=f"serving_{uuid.uuid4().hex[:8]}",
        **env,
    )
    assert settings.kafka is not None
    assert ensure_topic(settings.kafka, partitions=3)
    publisher.publish(weights_for(7))
    server = start_server_process()
    wait_for(lambda: sink_health(server)["state"] == "connected", 60, "Kafka connected")
    return settings, server


def assert_each_event_once(settings: Settings, traffic: Traffic, tmp_path: Path) -> tuple[int, int]:
    """Read the day(s) as raw_events reads them (the topic, then the serving-log folder) and
    check every event the service answered for is there exactly once, and nothing else; the
    events read from Kafka and from the files."""
    assert settings.kafka is not None
    lake = Lake(tmp_path / "lake")
    kafka_source = KafkaDaySource(settings.kafka)
    files = AuditLogSource(str(tmp_path / "no-audit-log" / "*.jsonl"))
    got: Counter[str] = Counter()
    from_kafka = from_files = 0
    for day in sorted(traffic.days):  # one day, unless the test ran over midnight UTC
        report, choice = ingest_with_fallback(
            kafka_source, files, day, lake, serving_log=ServingLogSource(settings.serving_log_dir)
        )
        assert choice.name == "kafka", choice  # the topic was read, not the fallback
        assert report.quarantined == 0 and report.conflicts == 0
        from_files += report.serving_log_read
        from_kafka += report.read - report.serving_log_read
        table = pq.read_table(local(report.parquet_path))
        got.update(cast(list[str], table.column("event_id").to_pylist()))
    expected = Counter(traffic.expected)
    assert max(expected.values()) == 1  # the client's ids are distinct
    missing = set(expected) - set(got)
    extra = set(got) - set(expected)
    assert not missing, f"{len(missing)} served events missing, e.g. {sorted(missing)[:3]}"
    assert not extra, f"{len(extra)} events nobody was answered for: {sorted(extra)[:3]}"
    assert max(got.values()) == 1  # each exactly once
    return from_kafka, from_files


@pytest.mark.timeout(600)
def test_events_survive_a_broker_outage_and_each_is_in_the_day_exactly_once(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server_process: Callable[[], ServerProcess],
    tmp_path: Path,
    broker: Broker,
) -> None:
    settings, server = kafka_service(
        broker,
        serving_env,
        publisher,
        start_server_process,
        LTR_IMPRESSION_KAFKA_TIMEOUT_SECONDS="2",
        LTR_IMPRESSION_KAFKA_RETRY_SECONDS="0.5",
    )

    traffic = Traffic(server.url)
    traffic.start()
    try:
        wait_for(lambda: sink_health(server)["sent"] >= 100, 60, "events sent to Kafka")
        broker.freeze()  # mid-traffic: the broker hangs
        wait_for(lambda: sink_health(server)["state"] == "spilling", 60, "spilling")
        down = sink_health(server)
        error = down["last_error"]  # a timeout, the sink's own or the producer's
        assert "acknowledg" in error or "sending to Kafka" in error, error
        broker.stop()  # and is killed: connections are refused from now on
        wait_for(lambda: "connecting to" in sink_health(server)["last_error"], 60, "retries")
        served_down = traffic.ranked
        wait_for(lambda: traffic.ranked >= served_down + 30, 60, "serving while down")
        wait_for(lambda: sink_health(server)["spilled"] >= 100, 60, "events spilled")
        broker.start()  # same port, same data dir
        wait_for(lambda: sink_health(server)["state"] == "connected", 60, "reconnected")
        sent_back = sink_health(server)["sent"]
        wait_for(lambda: sink_health(server)["sent"] >= sent_back + 100, 60, "sent again")
    finally:
        traffic.stop()
    with server.client() as client:
        metrics = client.get("/metrics").text
    server.process.terminate()  # SIGTERM: the lifespan drains the log and flushes Kafka
    assert server.process.wait(timeout=120) in (0, -15)

    assert traffic.failures == []  # every request was answered, none waited on Kafka
    assert traffic.ranked > 0 and traffic.feedback > 0
    for kind in ("impression", "feedback"):
        assert metric_value(metrics, "ltr_events_dropped_total", f'kind="{kind}"') == 0
        assert metric_value(metrics, "ltr_events_failed_total", f'kind="{kind}"') == 0
    assert metric_value(metrics, "ltr_events_sent_to_kafka_total") > 0
    assert metric_value(metrics, "ltr_events_spilled_total") > 0
    log_dir = settings.serving_log_dir
    assert list(log_dir.rglob("*.jsonl")) and not list(log_dir.rglob("*.part"))

    from_kafka, from_files = assert_each_event_once(settings, traffic, tmp_path)
    assert from_kafka > 0 and from_files > 0


@pytest.mark.timeout(600)
def test_a_writer_killed_with_records_unacknowledged_loses_none_of_them(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server_process: Callable[[], ServerProcess],
    tmp_path: Path,
    broker: Broker,
) -> None:
    """The broker hangs for a moment, so records sit in the writer's producer unacknowledged,
    and the writer is killed then (the OOM killer): a frame counts as written only once Kafka
    acknowledged (or a file took) each of its records, so the next writer gets those frames
    again, and every served impression and every feedback event answered 200 is in the day
    exactly once."""
    settings, server = kafka_service(
        broker,
        serving_env,
        publisher,
        start_server_process,
        LTR_IMPRESSION_KAFKA_TIMEOUT_SECONDS="30",  # no spilling during the freeze
    )
    # the second client sends no feedback: it never waits for Kafka, so records pile up in the
    # producer while the broker hangs (the first soon waits on its /feedback)
    traffic, more = Traffic(server.url), Traffic(server.url, feedback=False)
    traffic.start()
    more.start()
    try:
        wait_for(lambda: sink_health(server)["sent"] >= 100, 60, "events sent to Kafka")
        broker.freeze()
        # beyond what reached the socket: records wait in the producer's own buffers (the
        # clients soon wait too: /feedback answers once Kafka acknowledged its event)
        wait_for(lambda: sink_health(server)["in_flight"] >= 20, 60, "records in flight")
        os.kill(writer_of(server), signal.SIGKILL)
        broker.thaw()
        with server.client() as client:
            wait_for(
                lambda: client.get("/ltr/health").json()["event_log"]["writer_restarts"] == 1,
                60,
                "a new writer",
            )
        wait_for(lambda: sink_health(server)["sent"] >= 100, 60, "the new writer sending")
    finally:
        traffic.stop()
        more.stop()
    server.process.terminate()
    assert server.process.wait(timeout=120) in (0, -15)
    assert traffic.failures == more.failures == [] and traffic.feedback > 0
    traffic.expected += more.expected
    traffic.days |= more.days
    assert_each_event_once(settings, traffic, tmp_path)


def _json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


@pytest.mark.timeout(600)
def test_a_hung_broker_leaves_only_json_lines_and_no_unretrieved_future(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server_process: Callable[..., ServerProcess],
    tmp_path: Path,
    broker: Broker,
) -> None:
    """The broker hung for 20 s under traffic, then back: what the server and its writer
    process write to stderr (aiokafka's errors, their tracebacks, asyncio's, the sink's own)
    is one JSON object a line (docs/deployment.md, "Logs"), and the sink leaves no future
    with an error nobody read (asyncio's "Future exception was never retrieved")."""
    stderr = tmp_path / "server.stderr"
    settings, server = kafka_service(
        broker,
        serving_env,
        publisher,
        lambda: start_server_process(stderr=stderr),
        LTR_IMPRESSION_KAFKA_TIMEOUT_SECONDS="2",
        LTR_IMPRESSION_KAFKA_RETRY_SECONDS="0.5",
    )
    traffic = Traffic(server.url)
    traffic.start()
    try:
        wait_for(lambda: sink_health(server)["sent"] >= 100, 60, "events sent to Kafka")
        broker.freeze()
        wait_for(lambda: sink_health(server)["state"] == "spilling", 60, "spilling")
        time.sleep(20)  # hung: reconnections time out, dropped producers' requests expire
        broker.thaw()
        wait_for(lambda: sink_health(server)["state"] == "connected", 60, "reconnected")
        sent_back = sink_health(server)["sent"]
        wait_for(lambda: sink_health(server)["sent"] >= sent_back + 100, 60, "sent again")
    finally:
        traffic.stop()
    server.process.terminate()
    assert server.process.wait(timeout=120) in (0, -15)
    assert traffic.failures == []

    lines = [line for line in stderr.read_text().splitlines() if line.strip()]
    not_json = [line for line in lines if not _json_object(line)]
    assert not_json == [], f"{len(not_json)} of {len(lines)} lines are not JSON: {not_json[:5]}"
    entries = [json.loads(line) for line in lines]
    loggers = {entry["logger"] for entry in entries}
    assert any(name.startswith("aiokafka") for name in loggers), loggers  # its lines, as JSON
    unretrieved = [e for e in entries if "never retrieved" in e["message"]]
    assert unretrieved == [], unretrieved[:2]
