"""LTR_IMPRESSION_LOG=kafka with no broker to reach: /rank and /feedback answer as ever, every
event is spilled to the serving-log files (complete at shutdown), health says `spilling` with
the error, and /metrics counts the spill. (With a real broker, stopped and restarted under
traffic: tests/integration/test_serving_kafka_log.py.)"""

from __future__ import annotations

import socket
from collections.abc import Callable

from ltr_core.settings import Settings
from tests.serving.test_feedback import AUTH, TODAY, feedback
from tests.serving.test_impressions import logged_events
from tests.support.serving import (
    Publisher,
    RunningServer,
    metric_value,
    rank_body,
    wait_for,
    weights_for,
)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens there now: connecting is refused


def _unreachable_kafka(serving_env: Callable[..., Settings]) -> Settings:
    """The Kafka sink pointed at a port nothing listens on, with short timeouts."""
    return serving_env(
        LTR_IMPRESSION_LOG="kafka",
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{closed_port()}",
        LTR_IMPRESSION_KAFKA_TIMEOUT_SECONDS="1",
        LTR_IMPRESSION_KAFKA_RETRY_SECONDS="0.2",
    )


def test_an_unreachable_kafka_spills_every_event_to_the_files(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    settings = _unreachable_kafka(serving_env)
    publisher.publish(weights_for(2))
    server = start_server()
    ids = []
    with server.client() as client:
        for i in range(20):
            response = client.post("/rank", json=rank_body(4, seed=i, case_id=f"c-{i}"))
            assert response.status_code == 200
            ids.append(response.json()["request_id"])
        answer = client.post("/feedback", json=feedback(event_id="fb-1"), headers=AUTH)
        assert answer.status_code == 200 and answer.json()["accepted"] == 1

        def spilled() -> bool:
            kafka = client.get("/ltr/health").json()["event_log"]["kafka"]
            return bool(kafka["spilled"] == 20 * 4 + 1)

        wait_for(spilled, 30, "every event spilled")
        health = client.get("/ltr/health").json()["event_log"]
        metrics = client.get("/metrics").text
    assert (health["requested"], health["sink"]) == ("kafka", "kafka")
    kafka = health["kafka"]
    assert kafka["state"] == "spilling" and kafka["sent"] == 0 and kafka["lost"] == 0
    assert settings.kafka is not None and kafka["topic"] == settings.kafka.topic
    assert "connecting to 127.0.0.1:" in kafka["last_error"]
    assert metric_value(metrics, "ltr_events_spilled_total") == 81
    assert metric_value(metrics, "ltr_events_written_to_file_total") == 81
    assert metric_value(metrics, "ltr_events_sent_to_kafka_total") == 0
    assert metric_value(metrics, "ltr_event_log_kafka_connected") == 0
    server.stop()  # the shutdown completes the spill files

    events = logged_events(settings.serving_log_dir)
    assert len(events) == 81
    assert {e["request_id"] for e in events} == {*ids, "r-1"}
    assert sum(e.get("event_id") == "fb-1" for e in events) == 1


def test_events_neither_sent_nor_spilled_are_a_503_and_degrade_health(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    """Kafka unreachable and the spill file unwritable (the day's folder taken by a file; in
    production a full or read-only disk): the sink loses the events, so /feedback must not
    answer 200 for them, and health says what happened."""
    settings = _unreachable_kafka(serving_env)
    publisher.publish(weights_for(2))
    server = start_server()
    settings.serving_log_dir.mkdir(parents=True, exist_ok=True)
    (settings.serving_log_dir / TODAY).write_text("a file where the day's folder belongs")
    with server.client() as client:
        wait_for(
            lambda: client.get("/ltr/health").json()["event_log"]["kafka"]["state"] == "spilling",
            30,
            "the sink to spill",
        )
        answer = client.post("/feedback", json=feedback(event_id="fb-lost"), headers=AUTH)
        health = client.get("/ltr/health").json()
    assert answer.status_code == 503, answer.text
    assert health["status"] == "degraded"
    assert "1 events lost" in health["event_log"]["last_error"]
    assert health["event_log"]["kafka"]["lost"] == 1
