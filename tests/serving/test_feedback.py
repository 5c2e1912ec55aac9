"""POST /feedback over HTTP: bearer auth, one event or a batch, each validated as ingest does;
bad events are named (422) while the good ones are logged and counted."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from ltr_core.events import EventRow, parse_event
from ltr_core.settings import Settings
from ltr_serving.impressions import impression_event_id
from ltr_serving.models import FeedbackResponse
from tests.serving.test_impressions import logged_events
from tests.support.serving import (
    FEEDBACK_TOKEN,
    Publisher,
    RunningServer,
    ServerProcess,
    metric_value,
    wait_for,
    weights_for,
)

AUTH = {"Authorization": f"Bearer {FEEDBACK_TOKEN}"}
AUTH_JSON = {**AUTH, "Content-Type": "application/json"}
# Events are stamped today (its first instant): the service refuses times the ingest would
# quarantine, too far in the future or more than LTR_MAX_EVENT_AGE_DAYS old.
MIDNIGHT = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
TODAY = MIDNIGHT.date().isoformat()


def feedback(lawyer: str = "l-1", **changes: Any) -> dict[str, Any]:
    event = {
        "event_type": "offer_feedback",
        "timestamp": f"{TODAY}T00:00:00Z",
        "request_id": "r-1",
        "case_id": "c-1",
        "lawyer_id": lawyer,
        "action": "click",
    }
    return {k: v for k, v in {**event, **changes}.items() if v is not None}


def test_feedback_needs_the_token_and_a_configured_log(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    publisher.publish(weights_for(1))
    server = start_server()
    with server.client() as client:
        missing = client.post("/feedback", json=feedback())
        wrong = client.post("/feedback", json=feedback(), headers={"Authorization": "Bearer x"})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert wrong.status_code == 403
    server.stop()

    serving_env(LTR_FEEDBACK_TOKEN="")
    with start_server().client() as client:
        unset = client.post("/feedback", json=feedback(), headers=AUTH)
    assert unset.status_code == 503
    assert unset.json()["detail"].startswith("feedback logging is not configured")


def test_one_event_and_a_batch_with_bad_events_named_by_field(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    settings = serving_env()
    publisher.publish(weights_for(2))
    server = start_server()
    batch = [
        feedback("l-2", action="contact"),
        feedback("l-3", action="hired"),  # not an action
        feedback("l-4", timestamp="not a time"),  # ingest refuses the time
        feedback("l-5", case_id=None),  # missing
        feedback("l-6", timestamp=int(MIDNIGHT.timestamp() * 1000)),  # epoch ms: fine
        "not an object",
        # an impression's id: the ingest would keep one of the two events
        feedback("l-7", event_id=impression_event_id("r-1", "l-7")),
        # white space at either end, which the ingest strips ("fb-1" and " fb-1" would be one
        # event there): refused, an impression's id behind it too
        feedback("l-8", event_id=" " + impression_event_id("r-1", "l-8")),
        feedback("l-9", event_id="\u3000fb-9\u00a0"),
    ]
    with server.client() as client:
        single = client.post("/feedback", json=feedback(), headers=AUTH)
        mixed = client.post("/feedback", json=batch, headers=AUTH)
        too_many = client.post("/feedback", json=[feedback()] * 1001, headers=AUTH)

        def logged() -> bool:  # the writer process reports what it wrote a moment later
            count: int = client.get("/ltr/health").json()["event_log"]["logged_feedback"]
            return count >= 3

        wait_for(logged, 60, "the feedback logged")
        health = client.get("/ltr/health").json()["event_log"]
        text = client.get("/metrics").text
    assert single.status_code == 200, single.text
    assert single.json() == {"accepted": 1, "rejected": 0, "detail": []}
    assert mixed.status_code == 422
    out = mixed.json()
    assert (out["accepted"], out["rejected"]) == (2, 7)
    locs = [tuple(e["loc"]) for e in out["detail"]]
    assert {("body", 6, "event_id"), ("body", 7, "event_id"), ("body", 8, "event_id")} <= set(locs)
    assert ("body", 1, "action") in locs
    assert ("body", 2, "timestamp") in locs
    assert ("body", 3, "case_id") in locs
    assert ("body", 5) in locs
    assert too_many.status_code == 422
    assert health["logged_feedback"] == 3
    assert metric_value(text, "ltr_events_logged_total", 'kind="feedback"') == 3
    server.stop()

    events = logged_events(settings.serving_log_dir)
    assert sorted(e["lawyer_id"] for e in events) == ["l-1", "l-2", "l-6"]
    assert all(isinstance(parse_event(orjson.dumps(e)), EventRow) for e in events)
    folders = {p.parent.name for p in settings.serving_log_dir.rglob("*.jsonl")}
    assert folders == {TODAY}  # the UTC day of the events' own time


def test_times_the_ingest_would_quarantine_and_bad_bodies_are_refused_in_the_answer_shape(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    settings = serving_env()
    publisher.publish(weights_for(3))
    server = start_server()
    batch = [
        feedback("l-1"),
        feedback("l-2", timestamp="9999-12-31T23:59:59Z"),  # the ingest: future_timestamp
        feedback("l-3", timestamp="1970-01-01T00:00:00Z"),  # the ingest: old_timestamp
        feedback("l-4", timestamp="x" * 50_000),  # its echo is cut
    ]
    with server.client() as client:
        mixed = client.post("/feedback", json=batch, headers=AUTH)
        garbage = client.post("/feedback", content=b"hello", headers=AUTH_JSON)
        not_utf8 = orjson.dumps(feedback("l-5")).replace(b'"l-5"', b'"l-\xff"')
        binary = client.post("/feedback", content=not_utf8, headers=AUTH_JSON)
        empty = client.post("/feedback", json=[], headers=AUTH)
        too_many = client.post("/feedback", json=[feedback()] * 1001, headers=AUTH)
    assert mixed.status_code == 422
    out = mixed.json()
    assert (out["accepted"], out["rejected"]) == (1, 3)
    by_index = {e["loc"][1]: e for e in out["detail"]}
    assert by_index[1]["type"] == "future_timestamp" and by_index[1]["loc"][2] == "timestamp"
    assert "LTR_MAX_CLOCK_SKEW_HOURS" in by_index[1]["msg"]
    assert by_index[2]["type"] == "old_timestamp" and "LTR_MAX_EVENT_AGE_DAYS" in by_index[2]["msg"]
    assert len(mixed.content) < 2_000  # not 100 KB of the value, twice
    (error,) = binary.json()["detail"]
    at = not_utf8.index(b"\xff")
    assert (
        error["msg"]
        == f"Invalid JSON: the body is not UTF-8 text (invalid start byte at byte {at})"
    )
    for refused, rejected in ((garbage, 0), (empty, 0), (too_many, 1001), (binary, 0)):
        assert refused.status_code == 422
        assert FeedbackResponse.model_validate(refused.json()).accepted == 0
        assert refused.json()["rejected"] == rejected
    server.stop()
    events = logged_events(settings.serving_log_dir)
    assert [e["lawyer_id"] for e in events] == ["l-1"]
    folders = {p.parent.name for p in settings.serving_log_dir.rglob("*.jsonl")}
    assert folders == {TODAY}  # no folder for the year 9999 or 1970


def test_feedback_no_scheduled_run_would_read_is_refused_as_late(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    """An event of a UTC day whose nightly read (02:15 UTC the next day) comes before a file
    written now is complete (LTR_SERVING_LOG_ROTATE_SECONDS) would be in a folder no scheduled
    run reads again: refused per event as `late_event`, naming its `timestamp` and why; the
    rest of the batch is logged, each in its own day's folder. Judged on the service's clock:
    the real one, or `X-LTR-Clock` under LTR_SIMULATED_CLOCK."""
    settings = serving_env(LTR_SERVING_LOG_ROTATE_SECONDS="300")
    publisher.publish(weights_for(3))
    five_days_ago = (MIDNIGHT - timedelta(days=5)).date().isoformat()
    server = start_server()
    with server.client() as client:
        old = client.post(
            "/feedback",
            json=[feedback("l-1"), feedback("l-2", timestamp=f"{five_days_ago}T12:00:00Z")],
            headers=AUTH,
        )
    server.stop()
    assert old.status_code == 422
    assert (old.json()["accepted"], old.json()["rejected"]) == (1, 1)
    (error,) = old.json()["detail"]
    assert error["loc"] == ["body", 1, "timestamp"] and error["type"] == "late_event"
    assert "no scheduled run would read it" in error["msg"]
    assert [e["lawyer_id"] for e in logged_events(settings.serving_log_dir)] == ["l-1"]

    simulated_log = settings.serving_log_dir.with_name("serving-log-simulated")
    settings = serving_env(LTR_SIMULATED_CLOCK="true", LTR_SERVING_LOG_DIR=str(simulated_log))
    day = [
        feedback("l-3", timestamp="2026-12-06T23:59:00Z"),  # yesterday: read at 02:15 today
        feedback("l-4", timestamp="2026-12-07T00:30:00Z"),  # today
        feedback("l-5", timestamp="2026-12-05T23:00:00Z"),  # read at 02:15 yesterday
    ]
    server = start_server()
    with server.client() as client:

        def post(clock: str, events: list[dict[str, Any]]) -> Any:
            headers = {**AUTH, "X-LTR-Clock": clock}
            return client.post("/feedback", json=events, headers=headers)

        early = post("2026-12-07T02:09:59Z", day)  # its file complete by 02:14:59
        late = post("2026-12-07T02:10:00Z", day[:1])  # ... by 02:15: too late
        unclocked = client.post("/feedback", json=day[2:], headers=AUTH)  # no time checked
        bad_clock = post("yesterday", day[:1])
    server.stop()
    assert early.status_code == 422 and (early.json()["accepted"], early.json()["rejected"]) == (
        2,
        1,
    )
    assert [(e["loc"], e["type"]) for e in early.json()["detail"]] == [
        (["body", 2, "timestamp"], "late_event")
    ]
    assert "2026-12-06 02:15 UTC" in early.json()["detail"][0]["msg"]
    assert late.status_code == 422 and late.json()["detail"][0]["type"] == "late_event"
    assert unclocked.status_code == 200
    assert bad_clock.status_code == 422 and bad_clock.json()["accepted"] == 0
    assert bad_clock.json()["detail"][0]["loc"] == ["header", "X-LTR-Clock"]
    logged = logged_events(settings.serving_log_dir)
    assert sorted(e["lawyer_id"] for e in logged) == ["l-3", "l-4", "l-5"]
    folders = {p.parent.name for p in settings.serving_log_dir.rglob("*.jsonl")}
    assert folders == {"2026-12-05", "2026-12-06", "2026-12-07"}


def test_feedback_refuses_other_media_and_long_ids_and_describes_its_errors(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    """As /rank: a body declared other than JSON, or not declared, or compressed, is a 415 (a
    browser page can post text/plain, or a Blob with no type, cross-origin); an id longer than
    /rank takes could match no impression."""
    settings = serving_env(LTR_MAX_BODY_BYTES="4096")
    publisher.publish(weights_for(4))
    server = start_server()
    line = orjson.dumps(feedback("l-1"))
    with server.client() as client:
        plain = client.post(
            "/feedback", content=line, headers={**AUTH, "content-type": "text/plain"}
        )
        undeclared = client.post("/feedback", content=line, headers=AUTH)  # a no-cors Blob
        gzipped = client.post(
            "/feedback",
            content=gzip.compress(line),
            headers={**AUTH, "content-type": "application/json", "content-encoding": "gzip"},
        )
        too_big = client.post("/feedback", json=[feedback("l-2")] * 100, headers=AUTH)
        long_id = client.post("/feedback", json=feedback("l" * 201), headers=AUTH)
        nul_id = client.post("/feedback", json=feedback("l-\u0000"), headers=AUTH)
        fine = client.post("/feedback", json=feedback("l" * 200), headers=AUTH)
        boolean_id = client.post(
            "/feedback", json={**feedback("l-1"), "lawyer_id": True}, headers=AUTH
        )
        numbered = client.post("/feedback", json={**feedback("l-1"), "lawyer_id": 7}, headers=AUTH)
        past_64_bits = orjson.dumps(feedback("l-1")).replace(b'"l-1"', str(2**70).encode())
        huge_id = client.post("/feedback", content=past_64_bits, headers=AUTH_JSON)
        same = feedback("l-1", event_id="fb-same")
        conflicting = [
            same,
            # the same event as the ingest reads it: kept (the ingest deduplicates them)
            {**dict(reversed(same.items())), "note": "a retry"},
            {**same, "timestamp": same["timestamp"].replace("Z", "+00:00")},
            feedback("l-1", event_id="fb-same", action="contract"),  # another event, same id
        ]
        reused = client.post("/feedback", json=conflicting, headers=AUTH)
        document = client.get("/openapi.json").json()
    assert plain.status_code == gzipped.status_code == undeclared.status_code == 415
    assert "Content-Type must be application/json" in plain.json()["detail"]
    assert undeclared.json()["detail"] == "Content-Type must be application/json, got none"
    assert "Content-Encoding 'gzip'" in gzipped.json()["detail"]
    assert too_big.status_code == 413 and too_big.json()["limit_bytes"] == 4096
    # one error per bad id, at the field (not one per member of a union, under pydantic's
    # internal validator names)
    assert long_id.status_code == 422
    assert [(e["loc"], e["type"]) for e in long_id.json()["detail"]] == [
        (["body", "lawyer_id"], "string_too_long")
    ]
    assert nul_id.status_code == 422
    assert [(e["loc"], e["msg"]) for e in nul_id.json()["detail"]] == [
        (["body", "lawyer_id"], "must not contain control characters (U+0000-U+001F, U+007F)")
    ]
    assert [(e["loc"], e["type"]) for e in boolean_id.json()["detail"]] == [
        (["body", "lawyer_id"], "id_type")
    ]
    assert numbered.status_code == 200
    assert fine.status_code == 200
    # the ingest reads an integer past 64 bits as a number that is no id: refused as such
    ((error),) = huge_id.json()["detail"]
    assert (error["loc"], error["type"]) == (["body", "lawyer_id"], "id_type")
    assert "at most 64 bits" in error["msg"] and "send ids as strings" in error["msg"]
    assert reused.status_code == 422
    assert (reused.json()["accepted"], reused.json()["rejected"]) == (3, 1)
    ((error),) = reused.json()["detail"]
    assert (error["loc"], error["type"]) == (["body", 3, "event_id"], "conflicting_event_id")
    assert "earlier in this batch (index 0)" in error["msg"]
    operation = document["paths"]["/feedback"]["post"]
    assert operation["security"] == [{"feedbackToken": []}]
    assert document["components"]["securitySchemes"]["feedbackToken"]["scheme"] == "bearer"
    assert "authorization" not in str(operation.get("parameters", [])).lower()
    schemas = document["components"]["schemas"]
    integer = {"type": "integer", "minimum": -(2**63), "maximum": 2**64 - 1}
    assert integer in schemas["FeedbackEvent"]["properties"]["lawyer_id"]["anyOf"]
    for code, model in (
        ("401", "ErrorResponse"),
        ("413", "BodyTooLargeResponse"),
        ("415", "ErrorResponse"),
    ):
        assert operation["responses"][code]["content"]["application/json"]["schema"] == {
            "$ref": f"#/components/schemas/{model}"
        }
    assert "limit_bytes" in schemas["BodyTooLargeResponse"]["properties"]
    reload_operation = document["paths"]["/reload"]["post"]
    assert reload_operation["security"] == [{"reloadToken": []}]
    server.stop()
    logged = [(e["lawyer_id"], e.get("event_id")) for e in logged_events(settings.serving_log_dir)]
    assert logged == [("l" * 200, None), (7, None)] + [("l-1", "fb-same")] * 3
    assert {e["action"] for e in logged_events(settings.serving_log_dir)} == {"click"}


def test_feedback_the_log_cannot_write_is_refused_not_acknowledged(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server_process: Callable[[], ServerProcess],
    tmp_path: Path,
) -> None:
    """The serving-log folder cannot be written (a path under a regular file): /feedback
    answers 503 (retry), never 200 for events that were not written, and /ltr/health says
    degraded with the error."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    serving_env(LTR_SERVING_LOG_DIR=str(blocker / "serving-log"))
    publisher.publish(weights_for(1))
    server = start_server_process()
    with server.client(headers=AUTH) as client:
        answer = client.post("/feedback", json=feedback(event_id="e-unwritten"))
        assert answer.status_code == 503, answer.text
        assert "retry" in answer.json()["detail"]
        health = client.get("/ltr/health").json()
    assert health["status"] == "degraded"
    assert health["event_log"]["logged_feedback"] == 0 and health["event_log"]["failed"] >= 1
