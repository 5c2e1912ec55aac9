"""The /rank request path: a capped body (413 before parsing), the OpenAPI description of what
it answers, and the FastAPI-free codec that serving and the gate's latency check share."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import numpy as np
import orjson
import pytest

from ltr_core import codec
from ltr_core.codec import LatencyReport
from ltr_core.features import FEATURES, PROTECTED_ATTRIBUTES
from ltr_core.scoring import WeightsScorer
from ltr_core.settings import Settings
from ltr_core.vocabulary import ScorerName
from tests.support.serving import (
    FEEDBACK_TOKEN,
    Publisher,
    RunningServer,
    metric_value,
    rank_body,
    wait_for,
    weights_for,
)


def test_a_body_over_the_cap_gets_a_413_before_it_is_parsed(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[[], RunningServer],
) -> None:
    settings = serving_env(LTR_MAX_BODY_BYTES="20000")
    assert settings.serving.max_body_bytes == 20000
    publisher.publish(weights_for(1))
    server = start_server()
    with server.client() as client:
        huge = b'{"case_id": "c", "candidates": [' + b" " * 15_000_000 + b"]}"
        response = client.post("/rank", content=huge, headers={"content-type": "application/json"})
        assert response.status_code == 413
        assert response.json()["limit_bytes"] == 20000
        assert "LTR_MAX_BODY_BYTES" in response.json()["detail"]
        assert client.get("/ltr/health").status_code == 200
        assert client.post("/rank", json=rank_body(20)).status_code == 200  # 20 fit in 20 kB


def test_a_chunked_body_is_abandoned_once_over_the_cap(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[[], RunningServer],
) -> None:
    """No Content-Length: the server reads chunks until the cap, then answers, while the client
    has not even finished sending (it never will: the 413 is read mid-body)."""
    serving_env(LTR_MAX_BODY_BYTES="20000")
    publisher.publish(weights_for(1))
    server = start_server()
    url = urlparse(server.url)
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        sock.sendall(
            b"POST /rank HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b" " * 4096
        for _ in range(8):  # 32 kB: past the cap, far from a complete body
            sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413")


def test_a_client_that_leaves_mid_body_is_counted_as_gone_not_as_a_bad_request(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[[], RunningServer],
) -> None:
    """A client that closes its connection before its body's end (a timeout, a crash) is nobody
    to answer: /rank and /feedback time it under 499, /rank counts it abandoned, and neither
    logs an error or counts a 422 (which reads as a client sending bad bodies)."""
    serving_env()
    publisher.publish(weights_for(1))
    server = start_server()
    url = urlparse(server.url)
    for path in ("/rank", "/feedback"):
        with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
            sock.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Authorization: Bearer {FEEDBACK_TOKEN}\r\nContent-Length: 1000\r\n\r\n"
                '{"case_id": "c-1", "candidates": ['.encode()
            )
    with server.client() as client:

        def timed(path: str, status: int) -> float:
            labels = f'method="POST",route="{path}",status="{status}"'
            text = client.get("/metrics").text
            return metric_value(text, "ltr_http_request_duration_seconds_count", labels)

        wait_for(lambda: timed("/feedback", 499) == 1, 10, "the /feedback request to end")
        wait_for(lambda: timed("/rank", 499) == 1, 10, "the /rank request to end")
        metrics = client.get("/metrics").text
        assert metric_value(metrics, "ltr_rank_abandoned_total") == 1.0
        for path in ("/rank", "/feedback"):
            assert [timed(path, status) for status in (422, 500)] == [0, 0], path
        assert client.post("/rank", json=rank_body(3)).status_code == 200


def test_the_openapi_document_describes_413_422_explain_and_the_four_attributes(
    publisher: Publisher, start_server: Callable[[], RunningServer]
) -> None:
    publisher.publish(weights_for(1))
    with start_server().client() as client:
        document = client.get("/openapi.json").json()
        assert client.get("/docs").status_code == 200
        assert client.get("/no-such-page").status_code == 404
        metrics = client.get("/metrics").text
    # FastAPI's own pages are timed under their paths, not as unmatched requests
    for route, status in (("/openapi.json", 200), ("/docs", 200), ("unmatched", 404)):
        labels = f'method="GET",route="{route}",status="{status}"'
        assert metric_value(metrics, "ltr_http_request_duration_seconds_count", labels) == 1
    operation = document["paths"]["/rank"]["post"]
    schemas = document["components"]["schemas"]
    assert set(operation["responses"]) >= {"200", "413", "422", "503"}
    ref = operation["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    assert schemas[ref.rsplit("/", 1)[1]]["properties"]["detail"]["type"] == "array"
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/RankResponse"
    }
    assert [p["name"] for p in operation["parameters"]] == ["explain"]
    attributes = schemas["ProtectedAttributes"]
    assert tuple(attributes["properties"]) == PROTECTED_ATTRIBUTES
    assert attributes["additionalProperties"] is False
    assert "explain" in schemas["RankRequest"]["properties"]


def test_the_route_answers_exactly_what_the_codec_produces(
    publisher: Publisher, start_server: Callable[[], RunningServer]
) -> None:
    weights = weights_for(5)
    version = publisher.publish(weights)
    # with the client's request id: otherwise the service makes a random one
    body = orjson.dumps(rank_body(30, seed=4, top_k=7, explain=True, request_id="q-1"))
    with start_server().client() as client:
        response = client.post("/rank", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert response.content == codec.handle(body, WeightsScorer(weights), version, 1000)
    assert len(response.json()["candidates"]) == 7  # top_k bounds the answer


class RecordingScorer:
    """A real weights scorer that also records the list sizes it was asked to score."""

    kind: ScorerName = "weights"

    def __init__(self) -> None:
        self.inner = WeightsScorer(weights_for(1))
        self.sizes: list[int] = []

    def score(self, matrix: np.ndarray) -> np.ndarray:
        self.sizes.append(matrix.shape[0])
        return self.inner.score(matrix)


def test_the_gate_times_the_request_path_at_the_data_sizes_and_at_the_maximum() -> None:
    scorer = RecordingScorer()
    timing = codec.time_request_path_groups(scorer, [5, 12, 12, 30], 200, n=1000, warmup=12)
    data, at_max = timing.groups
    assert (data.sizes, at_max.sizes) == ((5, 12, 30), (200,))
    assert data.report.queries == at_max.report.queries == 1000
    assert scorer.sizes.count(200) == 1012  # warm-up and 1,000 timed requests at the maximum
    assert scorer.sizes.count(12) == 2 * scorer.sizes.count(5)  # sizes weigh as given
    worst = codec.time_request_path(RecordingScorer(), [5, 12], 200, n=1000, warmup=10)
    assert isinstance(worst, LatencyReport) and worst.queries == 1000
    assert 0 < worst.p50_ms <= worst.p95_ms <= worst.p99_ms


def _with_attributes(body: dict[str, Any], attributes: dict[str, Any]) -> dict[str, Any]:
    body["candidates"][0]["protected_attributes"] = attributes
    return body


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (rank_body(3, top_k=2.5), "valid integer"),
        ({**rank_body(2), "explain": "maybe"}, "valid boolean"),
        (rank_body(2, extra_field=1), "not permitted"),
        # lax forms are refused as the schema reads, never converted
        (rank_body(4, top_k="2"), "valid integer"),
        (rank_body(4, top_k=True), "valid integer"),
        ({**rank_body(2), "explain": "true"}, "valid boolean"),
        ({**rank_body(2), "explain": 1}, "valid boolean"),
        (_with_attributes(rank_body(2), {"gender": 0}), "valid boolean"),
        (_with_attributes(rank_body(2), {"pcd": 1}), "valid string"),
        # control characters in ids: no id needs one, and ids are written into logs
        (rank_body(2, case_id="c\n1"), "control characters"),
        (rank_body(2, request_id="r\u007f"), "control characters"),
        (
            {
                **rank_body(2),
                "candidates": [{**rank_body(1)["candidates"][0], "lawyer_id": "\u0000"}],
            },
            "control characters",
        ),
    ],
)
def test_the_codec_refuses_what_the_schema_refuses_with_fastapis_shape(
    body: dict[str, Any], message: str
) -> None:
    with pytest.raises(codec.RequestError) as refused:
        codec.parse_request(orjson.dumps(body), 1000)
    assert any(message in e["msg"] and e["loc"][0] == "body" for e in refused.value.errors)


def test_both_paths_accept_the_same_body_and_read_features_in_order() -> None:
    """The exact path (the pydantic models, for what msgspec declines) accepts what the fast
    path accepts and reads the features in the same FEATURES order."""
    body = rank_body(4, seed=2, top_k=2)
    exact = codec._parse_exactly(orjson.dumps(body), 1000, False)
    expected = [[c["features"][f] for f in FEATURES] for c in body["candidates"]]
    assert exact.top_k == 2 and np.array_equal(exact.matrix, np.array(expected))
    fast = codec.parse_request(orjson.dumps(body), 1000)
    assert fast.fast and not exact.fast
    assert np.array_equal(fast.matrix, exact.matrix) and fast.ids == exact.ids


def test_rank_is_timed_by_status_and_an_unexpected_failure_is_a_logged_500(
    publisher: Publisher,
    start_server: Callable[[], RunningServer],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """POST /rank bypasses Starlette's middleware stack (`ServingApp`): it must still land in the
    latency histogram under its route and status, and an exception inside it must still give a
    500 with a body, a log line, and a server that keeps answering."""
    publisher.publish(weights_for(1))
    server = start_server()
    out_of_range = rank_body(5)
    out_of_range["candidates"][2]["features"][FEATURES[0]] = 1.5
    with server.client() as client:
        assert client.post("/rank", json=rank_body(5)).status_code == 200
        refused = client.post("/rank", json=out_of_range)
        assert refused.status_code == 422  # the range is checked on the matrix, then explained
        assert refused.json()["detail"][0]["loc"] == [
            "body",
            "candidates",
            2,
            "features",
            FEATURES[0],
        ]
        assert client.get("/rank").status_code == 405  # other methods: FastAPI's stack

        def broken_rank(*args: object) -> bytes:
            raise RuntimeError("scorer exploded")

        monkeypatch.setattr(codec, "rank_request", broken_rank)
        failed = client.post("/rank", json=rank_body(5))
        assert failed.status_code == 500
        assert failed.json() == {"detail": "internal server error"}
        assert "unexpected error in POST /rank" in caplog.text
        monkeypatch.undo()
        assert client.post("/rank", json=rank_body(5)).status_code == 200
        text = client.get("/metrics").text
    # list sizes are observed in batches, flushed at every scrape: 3 parsed lists of 5
    assert metric_value(text, "ltr_rank_candidates_count") == 3.0
    assert metric_value(text, "ltr_rank_candidates_sum") == 15.0
    name = "ltr_http_request_duration_seconds_count"
    for status, count in (("200", 2.0), ("422", 1.0), ("500", 1.0), ("405", 1.0)):
        method = "GET" if status == "405" else "POST"
        labels = f'method="{method}",route="/rank",status="{status}"'
        assert metric_value(text, name, labels) == count, (status, text)


def test_a_405_names_every_method_the_path_answers(
    publisher: Publisher, start_server: Callable[[], RunningServer]
) -> None:
    """The Allow header of a 405 lists exactly the methods that path serves: HEAD beside GET on
    every GET path (health checks and scrapers use it), POST alone on the POST endpoints."""
    publisher.publish(weights_for(1))
    server = start_server()
    with server.client() as client:
        paths = [*client.get("/openapi.json").json()["paths"], "/docs", "/redoc"]
        for path in paths:
            refused = client.request("PATCH", path)
            assert refused.status_code == 405, path
            allowed = refused.headers["allow"].split(", ")
            for method in allowed:
                answer = client.request(method, path, json={} if method == "POST" else None)
                assert answer.status_code != 405, (path, method)
            if "GET" in allowed:
                assert "HEAD" in allowed, path
        assert client.request("DELETE", "/ltr/health").headers["allow"] == "GET, HEAD"
        assert client.request("PUT", "/rank").headers["allow"] == "POST"
