"""POST /rank over HTTP: the order and scores follow the live weights; bad requests get 422."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from ltr_core.features import FEATURES
from ltr_core.scoring import predict
from ltr_core.settings import Settings
from ltr_serving.models import RankResponse
from tests.support.serving import Publisher, RunningServer, rank_body, weights_for

JSON_TYPE = {"content-type": "application/json"}


def _matrix(body: dict[str, Any]) -> np.ndarray:
    return np.array([[c["features"][f] for f in FEATURES] for c in body["candidates"]])


def test_ranks_scores_and_contributions_follow_the_published_weights(
    publisher: Publisher, start_server: Callable[[], RunningServer]
) -> None:
    weights = weights_for(1)
    version = publisher.publish(weights)
    server = start_server()
    body = rank_body(40, seed=7, case_id="c-42", explain=True)
    with server.client() as client:
        response = client.post("/rank", json=body)
        plain = client.post("/rank", json={**body, "explain": False}).json()["candidates"]
        by_query = client.post("/rank?explain=true", json={**body, "explain": False}).json()
    assert response.status_code == 200, response.text
    assert all("contributions" not in c for c in plain)  # only when asked for
    assert by_query["candidates"] == response.json()["candidates"]
    out = RankResponse.model_validate(response.json())
    assert (out.case_id, out.version, out.scorer) == ("c-42", version, "weights")

    expected_scores = _matrix(body) @ np.array([weights[f] for f in FEATURES])
    expected_order = [f"l-{i}" for i in np.argsort(-expected_scores, kind="stable")]
    assert [c.lawyer_id for c in out.candidates] == expected_order
    assert [c.rank for c in out.candidates] == list(range(1, 41))
    by_id = {c.lawyer_id: c for c in out.candidates}
    for i, candidate in enumerate(body["candidates"]):
        ranked = by_id[candidate["lawyer_id"]]
        assert ranked.score == pytest.approx(expected_scores[i], abs=1e-12)
        assert ranked.contributions is not None
        assert set(ranked.contributions) == set(FEATURES)
        for f in FEATURES:
            assert ranked.contributions[f] == pytest.approx(weights[f] * candidate["features"][f])
        assert sum(ranked.contributions.values()) == pytest.approx(ranked.score)


def test_top_k_keeps_the_best_and_ties_keep_request_order(
    publisher: Publisher, start_server: Callable[[], RunningServer]
) -> None:
    publisher.publish(weights_for(2))
    server = start_server()
    body = rank_body(10, seed=3)
    tie = {"lawyer_id": "tie-b", "features": dict.fromkeys(FEATURES, 1.0)}
    body["candidates"].insert(0, {**tie, "lawyer_id": "tie-a"})
    body["candidates"].append(tie)  # the same features as tie-a, later in the list
    with server.client() as client:
        full = client.post("/rank", json=body).json()["candidates"]
        top = client.post("/rank", json={**body, "top_k": 3}).json()["candidates"]
    assert [c["lawyer_id"] for c in full[:2]] == ["tie-a", "tie-b"]  # all-ones scores 1.0: best
    assert top == full[:3]
    with server.client() as client:
        assert len(client.post("/rank", json={**body, "top_k": 99}).json()["candidates"]) == 12


def test_model_scorer_ranks_with_the_lightgbm_booster(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    model_text: str,
    start_server: Callable[[], RunningServer],
) -> None:
    serving_env(LTR_SCORER="model")
    version = publisher.publish(weights_for(3))
    server = start_server()
    body = rank_body(25, seed=11, explain=True)  # the booster has no contributions to give
    with server.client() as client:
        out = client.post("/rank", json=body).json()
    assert (out["version"], out["scorer"]) == (version, "model")
    expected = predict(lgb.Booster(model_str=model_text), _matrix(body))
    # a small booster gives equal scores: those rank by lawyer id
    ids = [f"l-{i}" for i in range(len(expected))]
    assert [c["lawyer_id"] for c in out["candidates"]] == sorted(
        ids, key=lambda lawyer: (-expected[ids.index(lawyer)], lawyer)
    )
    assert [c["score"] for c in out["candidates"]] == pytest.approx(sorted(expected, reverse=True))
    assert all("contributions" not in c for c in out["candidates"])


def _with(body: dict[str, Any], index: int, **changes: Any) -> dict[str, Any]:
    candidates = [dict(c, features=dict(c["features"])) for c in body["candidates"]]
    candidates[index].update(changes)
    return {**body, "candidates": candidates}


def _feature(body: dict[str, Any], index: int, code: str, value: Any) -> dict[str, Any]:
    features = dict(body["candidates"][index]["features"], **{code: value})
    return _with(body, index, features=features)


def _without_feature(body: dict[str, Any], index: int, code: str) -> dict[str, Any]:
    features = {k: v for k, v in body["candidates"][index]["features"].items() if k != code}
    return _with(body, index, features=features)


BASE = rank_body(6, seed=5)
F0, F1 = FEATURES[0], FEATURES[1]


def at(index: int, code: str) -> list[Any]:
    return ["candidates", index, "features", code]


# case -> (request body, where the error must point, words the message must contain)
INVALID: dict[str, tuple[dict[str, Any], list[Any], str]] = {
    "missing feature": (_without_feature(BASE, 2, F1), at(2, F1), "required"),
    "above 1": (_feature(BASE, 0, F0, 1.5), at(0, F0), "less than or equal to 1"),
    "below 0": (_feature(BASE, 1, F0, -0.01), at(1, F0), "greater than or equal to 0"),
    "a string": (_feature(BASE, 1, F0, "0.5"), at(1, F0), "valid number"),
    "a boolean": (_feature(BASE, 1, F0, True), at(1, F0), "valid number"),
    "unknown feature": (_feature(BASE, 3, "ZZ", 0.5), at(3, "ZZ"), "not permitted"),
    "empty list": ({**BASE, "candidates": []}, ["candidates"], "at least 1"),
    "no case id": ({"candidates": BASE["candidates"]}, ["case_id"], "required"),
    "no lawyer id": (_with(BASE, 0, lawyer_id=""), ["candidates", 0, "lawyer_id"], "at least 1"),
    "duplicate lawyer": (_with(BASE, 4, lawyer_id="l-0"), ["candidates"], "more than once"),
    "top_k zero": ({**BASE, "top_k": 0}, ["top_k"], "greater than or equal to 1"),
    "unknown attribute": (
        _with(BASE, 0, protected_attributes={"gender": "F", "shoe_size": "42"}),
        ["candidates", 0, "protected_attributes"],
        "unknown protected attributes",
    ),
    "blank case id": ({**BASE, "case_id": "   "}, ["case_id"], "whitespace"),
    "padded lawyer id": (
        _with(BASE, 1, lawyer_id="l-0 "),  # the ingest would strip it: l-0 twice
        ["candidates", 1, "lawyer_id"],
        "whitespace",
    ),
    "padded request id": ({**BASE, "request_id": " r-1"}, ["request_id"], "whitespace"),
    "NUL in a lawyer id": (
        _with(BASE, 2, lawyer_id="l-\u0000x"),
        ["candidates", 2, "lawyer_id"],
        "control characters",
    ),
    "top_k as a string": ({**BASE, "top_k": "2"}, ["top_k"], "valid integer"),
    "integer past 64 bits": ({**BASE, "case_id": 10**20}, ["case_id"], "valid string"),
    "not JSON": ({}, [], ""),  # replaced by raw bytes in the test
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_requests_get_a_422_naming_the_problem(
    case: str, publisher: Publisher, start_server: Callable[[], RunningServer]
) -> None:
    body, loc, message = INVALID[case]
    publisher.publish(weights_for(1))
    server = start_server()
    with server.client() as client:
        if case == "not JSON":
            response = client.post(
                "/rank", content=b'{"case_id": "c-1", "candidates": [', headers=JSON_TYPE
            )
            loc, message = [], "Invalid JSON"
        else:
            response = client.post("/rank", json=body)
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert any(e["loc"] == ["body", *loc] and message in e["msg"] for e in errors), errors


def test_not_a_number_and_oversized_lists_get_a_422(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[[], RunningServer],
) -> None:
    serving_env(LTR_MAX_CANDIDATES="5")
    publisher.publish(weights_for(1))
    server = start_server()
    with server.client() as client:
        nan = json.dumps(_feature(rank_body(2), 0, F0, float("nan")))  # bare NaN, as some send
        response = client.post("/rank", content=nan, headers={"content-type": "application/json"})
        assert response.status_code == 422
        assert "finite number" in response.text
        too_many = client.post("/rank", json=rank_body(6))
        assert too_many.status_code == 422
        assert too_many.json()["detail"][0]["loc"] == ["body", "candidates"]
        assert "at most 5 candidates" in too_many.json()["detail"][0]["msg"]
        assert client.post("/rank", json=rank_body(5)).status_code == 200
        with_attributes = _with(
            rank_body(5), 0, protected_attributes={"gender": "F", "pcd": False, "orientation": None}
        )
        assert client.post("/rank", json=with_attributes).status_code == 200


def test_default_candidate_limit_is_1000(
    publisher: Publisher, start_server: Callable[[], RunningServer]
) -> None:
    publisher.publish(weights_for(1))
    server = start_server()
    with server.client() as client:
        assert client.post("/rank", json=rank_body(1000)).status_code == 200
        response = client.post("/rank", json=rank_body(1001))
    assert response.status_code == 422 and "at most 1000" in response.text


def test_the_openapi_document_describes_rank(
    publisher: Publisher, start_server: Callable[[], RunningServer]
) -> None:
    publisher.publish(weights_for(1))
    twins = rank_body(1)
    twins["candidates"] = [
        {**twins["candidates"][0], "lawyer_id": lawyer} for lawyer in ("l-b", "l-a")
    ]
    with start_server().client() as client:
        document = client.get("/openapi.json").json()
        tied = client.post("/rank", json=twins).json()
    operation = document["paths"]["/rank"]["post"]
    # the order the description promises for equal scores is the order served
    assert "equal scores by `lawyer_id`" in operation["description"]
    assert [c["lawyer_id"] for c in tied["candidates"]] == ["l-a", "l-b"]
    body = operation["requestBody"]["content"]["application/json"]
    assert body["schema"] == {"$ref": "#/components/schemas/RankRequest"}
    features = document["components"]["schemas"]["Features"]
    assert features["required"] == list(FEATURES)
    assert "RankResponse" in document["components"]["schemas"]


def test_health_and_metrics_answer_head_and_openapi_names_reloads_refusals(
    publisher: Publisher, start_server: Callable[[], RunningServer]
) -> None:
    publisher.publish(weights_for(1))
    with start_server().client() as client:
        health, metrics = client.head("/ltr/health"), client.head("/metrics")
        document = client.get("/openapi.json").json()
    assert health.status_code == 200 and health.content == b""
    assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
    assert {"401", "403", "409", "503"} <= set(document["paths"]["/reload"]["post"]["responses"])
    described = document["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert any(kind.startswith("text/plain") for kind in described)
    assert set(document["paths"]["/ltr/health"]) == {"get"}  # HEAD is not a second operation


def test_a_body_not_declared_json_is_a_415_and_explain_must_be_a_boolean(
    publisher: Publisher, start_server: Callable[[], RunningServer]
) -> None:
    """A body with no Content-Type, or an empty one, is a 415 too, not read as JSON: a
    cross-origin page can send one without a preflight (`fetch(url, {mode: "no-cors",
    method: "POST", body: new Blob([...])})`)."""
    publisher.publish(weights_for(1))
    server = start_server()
    body = json.dumps(rank_body(3)).encode()
    huge = b'{"case_id": 100000000000000000000, "candidates": []}'
    with server.client() as client:
        plain = client.post("/rank", content=body, headers={"content-type": "text/plain"})
        form = client.post(
            "/rank", content=body, headers={"content-type": "application/x-www-form-urlencoded"}
        )
        undeclared = client.post("/rank", content=body)  # no Content-Type: not JSON either
        empty = client.post("/rank", content=body, headers={"content-type": ""})  # the same
        vendor = client.post(
            "/rank", content=body, headers={"content-type": "application/vnd.x+json; charset=utf-8"}
        )
        not_a_bool = client.post("/rank?explain=notabool", content=body, headers=JSON_TYPE)
        on = client.post("/rank?explain=on", content=body, headers=JSON_TYPE)
        last_wins = client.post("/rank?explain=true&explain=false", content=body, headers=JSON_TYPE)
        last_decides = client.post(
            "/rank?explain=maybe&explain=on", content=body, headers=JSON_TYPE
        )
        last_refused = client.post(
            "/rank?explain=on&explain=maybe", content=body, headers=JSON_TYPE
        )
        gzipped = client.post(
            "/rank",
            content=gzip.compress(body),
            headers={"content-type": "application/json", "content-encoding": "gzip"},
        )
        identity = client.post(
            "/rank", content=body, headers={**JSON_TYPE, "content-encoding": "identity"}
        )
        utf16 = client.post(
            "/rank", content=body, headers={"content-type": "application/json; charset=UTF-16"}
        )
        quoted = client.post(
            "/rank", content=body, headers={"content-type": 'application/json; charset="utf-8"'}
        )
        too_big = client.post("/rank", content=huge, headers={"content-type": "application/json"})
        after = client.post("/rank", content=body, headers=JSON_TYPE)  # the connection answers
    for refused in (plain, form, undeclared, empty):
        assert refused.status_code == 415, refused.text
        assert "Content-Type must be application/json" in refused.json()["detail"]
    assert undeclared.json()["detail"] == "Content-Type must be application/json, got none"
    assert vendor.status_code == after.status_code == 200
    assert not_a_bool.status_code == 422
    assert not_a_bool.json()["detail"][0]["loc"] == ["query", "explain"]
    assert all("contributions" in c for c in on.json()["candidates"])
    assert all("contributions" not in c for c in last_wins.json()["candidates"])
    assert all("contributions" in c for c in last_decides.json()["candidates"])
    assert last_refused.status_code == 422
    assert last_refused.json()["detail"][0]["input"] == "maybe"
    assert gzipped.status_code == 415 and "Content-Encoding 'gzip'" in gzipped.json()["detail"]
    assert identity.status_code == 200
    assert utf16.status_code == 415 and "charset 'utf-16' is not supported" in utf16.text
    assert quoted.status_code == 200
    assert too_big.status_code == 422  # not a 500: the echo of 2**66 is described
    assert too_big.json()["detail"][0]["input"] == "an integer of 67 bits"
