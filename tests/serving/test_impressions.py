"""The impression log over HTTP: every answered /rank leaves one `match_recommendation` event per
returned candidate in complete JSONL files, events the pipeline's ingest accepts; exploration
swaps and their propensities; a full queue drops and counts, never blocks; a SIGTERM'd server
process leaves complete files holding every answered request."""

from __future__ import annotations

import hashlib
import socket
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import orjson
import pytest

from ltr_core.events import EventRow, parse_event
from ltr_core.exploration import swap_propensity
from ltr_core.features import FEATURES
from ltr_core.settings import Settings
from ltr_serving.app import create_app
from ltr_serving.impressions import Line
from ltr_serving.models import RankResponse
from tests.support.serving import (
    FEEDBACK_TOKEN,
    Publisher,
    RunningServer,
    ServerProcess,
    metric_value,
    rank_body,
    wait_for,
    weights_for,
)


def log_files(directory: Path) -> tuple[list[Path], list[Path]]:
    """(complete .jsonl files, leftover .jsonl.part files) under the log directory."""
    return sorted(directory.rglob("*.jsonl")), sorted(directory.rglob("*.jsonl.part"))


def logged_events(directory: Path) -> list[dict[str, Any]]:
    complete, partial = log_files(directory)
    assert partial == [], f"incomplete files left: {partial}"
    return [orjson.loads(line) for path in complete for line in path.read_bytes().splitlines()]


def test_every_answered_request_logs_its_shown_candidates_as_ingestible_events(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    settings = serving_env()
    version = publisher.publish(weights_for(1))
    server = start_server()
    body = rank_body(12, seed=3, case_id="c-7", request_id="client-req-1", top_k=5)
    body["candidates"][0]["protected_attributes"] = {"gender": "f", "pcd": True}
    with server.client() as client:
        first = client.post("/rank", json=body)
        second = client.post("/rank", json=rank_body(3, seed=4, case_id="c-8"))
        client.post("/rank", json={"case_id": "c-9", "candidates": []})  # 422: nothing logged
    assert first.status_code == 200 and second.status_code == 200
    out = RankResponse.model_validate(first.json())
    assert (out.request_id, out.policy) == ("client-req-1", "deterministic")
    made = second.json()["request_id"]
    assert made.startswith("r-") and len(made) == 34
    server.stop()  # the lifespan's shutdown drains the queue and completes the files

    events = logged_events(settings.serving_log_dir)
    assert len(events) == 5 + 3
    today = datetime.now(UTC).date().isoformat()
    assert {p.parent.name for p in log_files(settings.serving_log_dir)[0]} == {today}
    by_request: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_request.setdefault(event["request_id"], []).append(event)
    assert set(by_request) == {"client-req-1", made}

    shown = by_request["client-req-1"]
    assert [e["lawyer_id"] for e in shown] == [c.lawyer_id for c in out.candidates]
    features = {c["lawyer_id"]: c["features"] for c in body["candidates"]}
    for position, (event, candidate) in enumerate(zip(shown, out.candidates, strict=True), 1):
        digest = hashlib.sha256(b"client-req-1").hexdigest()
        assert event["event_id"] == f"imp-{digest[:24]}-{candidate.lawyer_id}"
        assert event["event_type"] == "match_recommendation"
        assert event["timestamp"].endswith("Z")
        assert event["case_id"] == "c-7"
        assert event["rank_position"] == position == event["deterministic_rank"]
        assert event["score"] == candidate.score
        assert event["algorithm_version"] == version
        assert event["features"] == features[candidate.lawyer_id]
        assert (event["policy"], event["propensity"]) == ("deterministic", 1.0)
        expected_groups = {"gender": "f", "pcd": True} if candidate.lawyer_id == "l-0" else None
        assert event["lawyer_groups"] == expected_groups

    for event in events:  # what the pipeline's ingest does with each line
        row = parse_event(orjson.dumps(event))
        assert isinstance(row, EventRow), row
        assert row.event_id == event["event_id"]


def test_a_request_id_reused_for_another_list_is_a_409_and_a_retry_is_logged_once(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    """Two lists under one request id would share event ids (the ingest keeps one copy: an
    impression lost) and one query group: refused, whether the lists differ in case, top_k,
    candidates, a feature or a protected attribute, and whoever made the id. A retry of the
    same list is answered as before and not logged again (its events, stamped anew, would reach
    the ingest as duplicates)."""
    settings = serving_env()
    publisher.publish(weights_for(1))
    server = start_server()
    body = rank_body(6, seed=3, case_id="c-1", request_id="dup-1")
    retry = {**body, "candidates": body["candidates"][::-1]}  # the same list, in another order
    moved = [dict(c) for c in body["candidates"]]
    moved[0] = {**moved[0], "features": {**moved[0]["features"], "A": 0.0123}}
    flagged = [dict(c) for c in body["candidates"]]
    flagged[1] = {**flagged[1], "protected_attributes": {"gender": "F"}}
    others = [
        {**body, "case_id": "c-2"},
        {**body, "candidates": body["candidates"][:5]},
        {**body, "top_k": 3},
        {**body, "candidates": moved},
        {**body, "candidates": flagged},
    ]
    with server.client() as client:
        first = client.post("/rank", json=body)
        again = client.post("/rank", json=retry)
        refused = [client.post("/rank", json=b) for b in others]
        fresh = client.post("/rank", json={**others[0], "request_id": "dup-2"})
        made = client.post("/rank", json=rank_body(4, seed=5, case_id="c-3"))
        echoed = rank_body(3, seed=6, case_id="c-4", request_id=made.json()["request_id"])
        refused.append(client.post("/rank", json=echoed))
    assert first.status_code == again.status_code == fresh.status_code == made.status_code == 200
    assert [c["lawyer_id"] for c in again.json()["candidates"]] == [
        c["lawyer_id"] for c in first.json()["candidates"]
    ]
    for answer in refused:
        assert answer.status_code == 409, answer.text
    for answer in refused[:-1]:
        assert "request_id 'dup-1' already named another list" in answer.json()["detail"]
    assert "was made by this service for an earlier request" in refused[-1].json()["detail"]
    server.stop()
    events = logged_events(settings.serving_log_dir)
    by_request: dict[str, set[str]] = {}
    for event in events:
        by_request.setdefault(event["request_id"], set()).add(event["case_id"])
    made_id = made.json()["request_id"]
    assert by_request == {"dup-1": {"c-1"}, "dup-2": {"c-2"}, made_id: {"c-3"}}
    assert len(events) == 6 + 6 + 4  # the first answer, dup-2 and the service's id: once each
    assert len({event["event_id"] for event in events}) == len(events)


def test_exploration_swaps_positions_and_logs_exact_propensities(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    settings = serving_env(LTR_EXPLORE_RATE="0.5", LTR_EXPLORE_MAX_POSITION="4")
    publisher.publish(weights_for(2))
    server = start_server()
    answers = []
    with server.client() as client:
        # The deterministic order: a request the service did not swap (at rate 0.5 some are).
        references = [client.post("/rank", json=rank_body(6, seed=1)).json() for _ in range(20)]
        deterministic = next(r for r in references if r["policy"] == "deterministic")
        for i in range(40):
            answers.append(client.post("/rank", json=rank_body(6, seed=1, request_id=f"x-{i}")))
    server.stop()
    assert all(a.status_code == 200 for a in answers)
    policies = [a.json()["policy"] for a in answers]
    assert 5 < policies.count("swap") < 35
    order = [c["lawyer_id"] for c in deterministic["candidates"]]
    events = logged_events(settings.serving_log_dir)
    for answer in answers:
        data = answer.json()
        shown = [c["lawyer_id"] for c in data["candidates"]]
        assert [c["rank"] for c in data["candidates"]] == list(range(1, 7))
        logged = [e for e in events if e["request_id"] == data["request_id"]]
        assert [e["lawyer_id"] for e in logged] == shown
        for event in logged:
            rank = order.index(event["lawyer_id"]) + 1
            assert event["deterministic_rank"] == rank
            assert event["policy"] == data["policy"]
            assert event["propensity"] == pytest.approx(
                swap_propensity(rank, event["rank_position"], 6, 0.5, 4)
            )
        if data["policy"] == "swap":
            k = shown.index(order[0]) + 1
            assert 2 <= k <= 4
            expected = list(order)
            expected[0], expected[k - 1] = expected[k - 1], expected[0]
            assert shown == expected
        else:
            assert shown == order


def test_a_simulated_clock_header_sets_the_event_time(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    settings = serving_env(LTR_SIMULATED_CLOCK="true")
    publisher.publish(weights_for(3))
    server = start_server()
    with server.client() as client:
        headers = {"X-LTR-Clock": "2026-03-04T05:06:07Z"}
        assert client.post("/rank", json=rank_body(2), headers=headers).status_code == 200
        bad = client.post("/rank", json=rank_body(2), headers={"X-LTR-Clock": "yesterday"})
        # parsable, but before year 1 or after 9999 in UTC: no day folder, no event time
        beyond = [
            client.post("/rank", json=rank_body(2), headers={"X-LTR-Clock": clock})
            for clock in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00")
        ]
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["header", "X-LTR-Clock"]
    assert [answer.status_code for answer in beyond] == [422, 422]
    server.stop()
    events = logged_events(settings.serving_log_dir)
    assert [e["timestamp"] for e in events] == ["2026-03-04T05:06:07.000000Z"] * 2
    assert [p.parent.name for p in log_files(settings.serving_log_dir)[0]] == ["2026-03-04"]


def test_a_day_folder_linked_elsewhere_is_not_written_through_and_is_told(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
    tmp_path: Path,
) -> None:
    """The ingest reads no day folder that is a symbolic link: the service wrote a day's
    events through such a link (health ok), and they were lost to training unseen. Now its
    events fail, counted, and health says why; the link's target is not written, and an
    orphaned `.part` there is not completed at start-up either."""
    settings = serving_env(LTR_SIMULATED_CLOCK="true")
    publisher.publish(weights_for(3))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    orphan = elsewhere / f"{socket.gethostname()}-1-000001.jsonl.part"
    orphan.write_text("{}\n")
    settings.serving_log_dir.mkdir(parents=True, exist_ok=True)
    (settings.serving_log_dir / "2026-12-12").symlink_to(elsewhere)
    server = start_server()
    with server.client() as client:
        headers = {"X-LTR-Clock": "2026-12-12T10:00:00Z"}
        assert client.post("/rank", json=rank_body(3), headers=headers).status_code == 200
        wait_for(
            lambda: client.get("/ltr/health").json()["status"] == "degraded",
            10,
            "health to say the events failed",
        )
        health = client.get("/ltr/health").json()
    assert "symbolic link" in str(health["event_log"]["last_error"])
    assert [p.name for p in elsewhere.iterdir()] == [orphan.name]  # nothing written, not completed


def test_files_are_completed_once_open_for_the_rotation_age(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    """LTR_SERVING_LOG_ROTATE_SECONDS: a reader sees a file soon after its last line, without
    waiting for another day's event or the shutdown (what a simulation's nightly run needs)."""
    settings = serving_env(LTR_SERVING_LOG_ROTATE_SECONDS="0.2")
    publisher.publish(weights_for(6))
    server = start_server()
    with server.client() as client:
        assert client.post("/rank", json=rank_body(4)).status_code == 200

        def completed() -> bool:
            complete, partial = log_files(settings.serving_log_dir)
            return len(complete) == 1 and partial == []

        wait_for(completed, 60, "the file to be completed while the server runs")
    assert len(logged_events(settings.serving_log_dir)) == 4


class BlockingSink:
    """A sink whose first write waits for the test: the worker holds one record, the queue the
    next, and every record after that finds the queue full."""

    kind = "blocking"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.lines: list[Line] = []

    def write(self, day: str, lines: Sequence[Line]) -> None:
        self.entered.set()
        assert self.release.wait(30)
        self.lines.extend(lines)

    def tick(self, now: float) -> None:
        pass

    def close(self) -> None:
        pass


def test_a_full_queue_drops_and_counts_and_rank_still_answers(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    serving_env(LTR_IMPRESSION_QUEUE="1")
    publisher.publish(weights_for(4))
    sink = BlockingSink()
    server = start_server(create_app(event_sink=sink))
    with server.client() as client:
        assert client.post("/rank", json=rank_body(3)).status_code == 200
        assert sink.entered.wait(10)  # the worker holds the first record
        statuses = [client.post("/rank", json=rank_body(3)).status_code for _ in range(5)]
        assert statuses == [200] * 5  # one queued, four dropped, none waited
        health = client.get("/ltr/health").json()["event_log"]
        metrics = client.get("/metrics").text
    assert health["sink"] == "blocking" and health["queue_capacity"] == 1
    assert health["queue_depth"] == 1 and health["dropped"] == 4 * 3
    assert metric_value(metrics, "ltr_events_dropped_total", 'kind="impression"') == 12
    sink.release.set()
    server.stop()
    assert len(sink.lines) == 2 * 3  # the held record and the queued one


def test_feedback_the_log_cannot_take_is_a_503_and_nothing_is_logged(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    serving_env(LTR_IMPRESSION_QUEUE="1")
    publisher.publish(weights_for(4))
    sink = BlockingSink()
    server = start_server(create_app(event_sink=sink))
    event = {
        "event_type": "offer_feedback",
        "timestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "request_id": "r-1",
        "case_id": "c-1",
        "lawyer_id": "l-1",
        "action": "click",
    }
    auth = {"Authorization": f"Bearer {FEEDBACK_TOKEN}"}
    answers: list[httpx.Response] = []
    with server.client() as client:
        assert client.post("/rank", json=rank_body(3)).status_code == 200
        assert sink.entered.wait(10)  # the worker holds the first record
        # /feedback answers once its events are written: this one waits in the queue
        waiting = threading.Thread(
            target=lambda: answers.append(client.post("/feedback", json=event, headers=auth))
        )
        waiting.start()
        wait_for(
            lambda: client.get("/ltr/health").json()["event_log"]["queue_depth"] == 1,
            10,
            "the first feedback to be queued",
        )
        refused = client.post("/feedback", json=[event, event], headers=auth)
        assert not answers  # not written yet: not answered yet
        sink.release.set()
        waiting.join(15)
    assert [answer.status_code for answer in answers] == [200]
    assert refused.status_code == 503 and "retry" in refused.json()["detail"]
    server.stop()
    assert [line.kind for line in sink.lines] == ["impression"] * 3 + ["feedback"]


def test_a_sigtermed_server_process_leaves_complete_files_with_every_answered_request(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server_process: Callable[[], ServerProcess],
) -> None:
    settings = serving_env()
    publisher.publish(weights_for(5))
    server = start_server_process()
    ids = []
    with server.client() as client:
        for i in range(200):
            response = client.post("/rank", json=rank_body(10, seed=i, case_id=f"c-{i}"))
            assert response.status_code == 200
            ids.append(response.json()["request_id"])
        text = client.get("/metrics").text
    assert metric_value(text, "ltr_events_dropped_total", 'kind="impression"') == 0
    server.process.terminate()  # SIGTERM: uvicorn runs the lifespan's shutdown
    # uvicorn shuts down gracefully, then re-raises the signal: -15 is a clean SIGTERM exit
    assert server.process.wait(timeout=60) in (0, -15)
    events = logged_events(settings.serving_log_dir)
    assert len(events) == 200 * 10
    assert sorted({e["request_id"] for e in events}) == sorted(ids)
    assert all(isinstance(parse_event(orjson.dumps(e)), EventRow) for e in events)


def test_the_request_id_is_also_in_the_x_request_id_header(
    publisher: Publisher, start_server: Callable[..., RunningServer]
) -> None:
    """A client (a proxy, a log line) can read the id its answer was logged under without
    parsing the body: the service's own id, the client's, and one no header carries as text."""
    publisher.publish(weights_for(1))
    with start_server().client() as client:
        made = client.post("/rank", json=rank_body(4, seed=1, case_id="c-1"))
        given = client.post("/rank", json=rank_body(4, seed=1, case_id="c-2", request_id="r-7"))
        odd = "r-ação 50%"
        encoded = client.post("/rank", json=rank_body(4, seed=1, case_id="c-3", request_id=odd))
        refused = client.post("/rank", json={"case_id": "c-4", "candidates": []})
    for answer in (made, given, encoded):
        assert answer.status_code == 200, answer.text
    assert made.headers["x-request-id"] == made.json()["request_id"]
    assert made.json()["request_id"].startswith("r-")
    assert given.headers["x-request-id"] == "r-7"
    assert encoded.json()["request_id"] == odd
    assert encoded.headers["x-request-id"] == "r-a%C3%A7%C3%A3o%2050%25"
    assert unquote(encoded.headers["x-request-id"]) == odd
    assert "x-request-id" not in refused.headers  # nothing answered, nothing logged


def test_openapi_shows_request_id_policy_and_feedback(
    publisher: Publisher, start_server: Callable[..., RunningServer]
) -> None:
    publisher.publish(weights_for(6))
    with start_server().client() as client:
        schema = client.get("/openapi.json").json()
    schemas = schema["components"]["schemas"]
    request_id = schemas["RankRequest"]["properties"]["request_id"]
    assert {"type": "string", "minLength": 1, "maxLength": 200} in request_id["anyOf"]
    assert {"request_id", "policy"} <= set(schemas["RankResponse"]["required"])
    header = schema["paths"]["/rank"]["post"]["responses"]["200"]["headers"]["X-Request-ID"]
    assert "request_id" in header["description"] and header["schema"] == {"type": "string"}
    feedback = schema["paths"]["/feedback"]["post"]
    assert "FeedbackEvent" in str(feedback["requestBody"])
    assert set(schemas["FeedbackEvent"]["required"]) >= {"event_type", "case_id", "action"}
    assert "accepted" in schemas["FeedbackResponse"]["properties"]
    assert set(FEATURES) <= set(schemas["Features"]["properties"])


def test_with_the_log_off_a_request_id_still_names_one_list(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    """LTR_IMPRESSION_LOG=off (the platform logs its own impressions, by these ids): an id
    answered once is not given to another list, nor is one the service made."""
    serving_env(LTR_IMPRESSION_LOG="off")
    publisher.publish(weights_for(1))
    with start_server().client() as client:
        first = client.post("/rank", json=rank_body(3, seed=1, request_id="r-once"))
        other = client.post("/rank", json=rank_body(3, seed=2, request_id="r-once"))
        made = client.post("/rank", json=rank_body(3, seed=3)).json()["request_id"]
        sent_back = client.post("/rank", json=rank_body(3, seed=4, request_id=made))
    assert first.status_code == 200
    assert other.status_code == 409 and "already named another list" in other.text
    assert sent_back.status_code == 409 and "made by this service" in sent_back.text
