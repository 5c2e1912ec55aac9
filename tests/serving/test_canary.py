"""Two rankers, one answer: with a canary candidate published (candidate.json), the share of
requests `ltr_core.exploration.assign_policy` puts in the interleaved range is answered by
team-draft interleaving of the live and candidate rankings, each shown candidate logged with its
team, its team's version and the exact propensity `ltr_core.interleaving` computes. A corrupt
candidate is refused while the live version answers alone; removing the candidate stops the
interleaving after a reload."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from ltr_core.artifacts.format import MODEL_FILE
from ltr_core.events import EventRow, parse_event
from ltr_core.exploration import assign_policy, swap_propensity, swap_rate
from ltr_core.features import FEATURES
from ltr_core.interleaving import request_rng, team_draft
from ltr_core.scoring import WeightsScorer
from ltr_core.settings import Settings
from tests.support.serving import (
    TOKEN,
    Publisher,
    RunningServer,
    metric_value,
    rank_body,
    wait_for,
    weights_for,
)

AUTH = {"Authorization": f"Bearer {TOKEN}"}
REQUESTS = 200
N, TOP_K = 8, 6


def _logged(directory: Path) -> list[dict[str, Any]]:
    assert not list(directory.rglob("*.jsonl.part"))
    return [
        orjson.loads(line)
        for path in sorted(directory.rglob("*.jsonl"))
        for line in path.read_bytes().splitlines()
    ]


def _order(weights: dict[str, float], body: dict[str, Any]) -> list[int]:
    matrix = np.array([[c["features"][f] for f in FEATURES] for c in body["candidates"]])
    scores = WeightsScorer(weights).score(matrix)
    order: list[int] = np.argsort(-scores, kind="stable").tolist()
    return order


def test_a_published_candidate_is_interleaved_with_teams_and_exact_propensities(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    settings = serving_env()
    assert settings.serving.interleave_rate == 0.2  # the default
    live_weights, candidate_weights = weights_for(1), weights_for(2)
    live = publisher.publish(live_weights)
    candidate = publisher.publish(candidate_weights, candidate=True)
    server = start_server()
    body = rank_body(N, seed=5, top_k=TOP_K)
    answers = {}
    with server.client() as client:
        health = client.get("/ltr/health").json()
        for i in range(REQUESTS):
            request_id = f"q-{i}"
            answer = client.post("/rank", json={**body, "request_id": request_id})
            assert answer.status_code == 200
            answers[request_id] = answer.json()
    server.stop()
    assert health["version"] == live
    assert health["candidate"] == {
        **health["candidate"],
        "state": "loaded",
        "version": candidate,
        "interleave_rate": 0.2,
        "interleaving": True,
        "error": None,
    }

    expected = {r for r in answers if assign_policy(r, 0.0, 0.2) == "interleaved"}
    interleaved = {r for r, a in answers.items() if a["policy"] == "interleaved"}
    assert interleaved == expected
    assert 0.1 * REQUESTS < len(interleaved) < 0.3 * REQUESTS  # ~20%

    ids = [c["lawyer_id"] for c in body["candidates"]]
    live_order, candidate_order = _order(live_weights, body), _order(candidate_weights, body)
    assert live_order != candidate_order  # two rankings that differ: interleaving shows it
    events = _logged(settings.serving_log_dir)
    by_request: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_request.setdefault(event["request_id"], []).append(event)
    assert set(by_request) == set(answers)
    teams_seen = set()
    for request_id, answer in answers.items():
        shown = [c["lawyer_id"] for c in answer["candidates"]]
        logged = sorted(by_request[request_id], key=lambda e: e["rank_position"])
        assert [e["lawyer_id"] for e in logged] == shown and len(shown) == TOP_K
        assert answer["version"] == live
        if request_id not in interleaved:
            assert shown == [ids[i] for i in live_order[:TOP_K]]
            for event in logged:
                assert (event["policy"], event["algorithm_version"]) == ("deterministic", live)
                assert event["propensity"] == 1.0 and event.get("team") is None
            continue
        draft = team_draft(live_order, candidate_order, request_rng(request_id), top_k=TOP_K)
        assert shown == [ids[i] for i in draft.items]
        for event, team, propensity in zip(logged, draft.teams, draft.propensities, strict=True):
            assert event["policy"] == "interleaved"
            assert event["team"] == team
            assert event["algorithm_version"] == (live if team == "live" else candidate)
            assert event["propensity"] == pytest.approx(propensity, rel=1e-12)
            assert (
                event["deterministic_rank"] == live_order.index(ids.index(event["lawyer_id"])) + 1
            )
            row = parse_event(orjson.dumps(event))  # the pipeline's ingest takes it
            assert isinstance(row, EventRow)
            teams_seen.add(team)
    assert teams_seen == {"live", "candidate"}


def test_a_corrupt_candidate_is_refused_and_the_live_version_answers_alone(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    settings = serving_env(LTR_INTERLEAVE_RATE="1")
    live = publisher.publish(weights_for(1))
    candidate = publisher.publish(weights_for(2), candidate=True)
    model = settings.registry_dir / "versions" / candidate / MODEL_FILE
    model.write_bytes(model.read_bytes() + b"\n# tampered\n")
    server = start_server()
    with server.client() as client:
        health = client.get("/ltr/health")
        metrics = client.get("/metrics").text
        answers = [
            client.post("/rank", json=rank_body(5, seed=i, request_id=f"c-{i}")) for i in range(10)
        ]
    assert health.status_code == 200
    out = health.json()
    assert out["status"] == "ok" and out["version"] == live
    assert out["candidate"]["state"] == "refused" and not out["candidate"]["interleaving"]
    assert out["candidate"]["version"] == candidate
    labels = f'state="refused",version="{candidate}"'
    assert metric_value(metrics, "ltr_candidate_version_info", labels) == 1.0
    assert "checksum" in out["candidate"]["error"] and candidate in out["candidate"]["error"]
    assert all(a.status_code == 200 for a in answers)
    assert {a.json()["policy"] for a in answers} == {"deterministic"}
    assert {a.json()["version"] for a in answers} == {live}


def test_a_candidate_latest_names_too_is_no_candidate_and_no_error(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    """A promotion killed between moving latest.json and removing candidate.json leaves both
    naming the promoted version: it is live, and no candidate (the registry finishes the
    promotion on its next write). Serving said the candidate was refused ("has no version")."""
    serving_env(LTR_INTERLEAVE_RATE="1")
    publisher.publish(weights_for(1))
    promoted = publisher.publish(weights_for(2))
    registry = publisher.registry
    pointer = orjson.loads(registry.pointer_path.read_bytes())
    registry.candidate_path.write_bytes(orjson.dumps(pointer))  # as the killed promotion left it
    server = start_server()
    with server.client() as client:
        out = client.get("/ltr/health").json()
        answer = client.post("/rank", json=rank_body(5, request_id="half-promoted")).json()
    assert out["status"] == "ok" and out["version"] == promoted
    assert out["candidate"]["state"] == "none" and out["candidate"]["error"] is None
    assert answer["version"] == promoted and answer["policy"] != "interleaved"


def test_removing_the_candidate_stops_interleaving_after_a_reload(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    serving_env(LTR_INTERLEAVE_RATE="1")
    live = publisher.publish(weights_for(1))
    candidate = publisher.publish(weights_for(2), candidate=True)
    server = start_server()
    body = rank_body(6, seed=2)
    with server.client() as client:
        before = client.post("/rank", json={**body, "request_id": "r-before"}).json()
        publisher.registry.candidate_path.unlink()
        reload = client.post("/reload", headers=AUTH)
        after = client.post("/rank", json={**body, "request_id": "r-after"}).json()
        health = client.get("/ltr/health").json()
        # the same request id again, now that the versions changed: refused, not re-answered
        # (its first answer was logged, and this one could differ from it)
        stale = client.post("/rank", json={**body, "request_id": "r-before"})
        # a new candidate is picked up by the next reload too
        newer = publisher.publish(weights_for(3), candidate=True)
        client.post("/reload", headers=AUTH)
        again = client.post("/rank", json={**body, "request_id": "r-again"}).json()
        health_again = client.get("/ltr/health").json()
    assert stale.status_code == 409
    assert f"answered by version {live} (canary {candidate})" in stale.json()["detail"]
    assert f"now runs {live}:" in stale.json()["detail"]
    assert before["policy"] == "interleaved" and before["version"] == live
    assert reload.status_code == 200 and reload.json()["version"] == live
    assert reload.json()["candidate_state"] == "none"
    assert after["policy"] == "deterministic"
    assert health["candidate"]["state"] == "none" and health["candidate"]["version"] is None
    assert again["policy"] == "interleaved"
    assert health_again["candidate"]["version"] == newer != candidate


def test_the_poller_picks_up_a_candidate_published_after_start(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    serving_env(WEIGHTS_POLL_SECONDS="0.1")
    publisher.publish(weights_for(1))
    server = start_server()
    with server.client() as client:
        assert client.get("/ltr/health").json()["candidate"]["state"] == "none"
        candidate = publisher.publish(weights_for(2), candidate=True)

        def loaded() -> bool:
            return bool(client.get("/ltr/health").json()["candidate"]["version"] == candidate)

        wait_for(loaded, 10, "the poller to load the candidate")


def test_swap_propensities_are_conditional_on_not_being_interleaved_while_a_candidate_is_loaded(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    """With a candidate loaded the exploration policy serves 1 − interleave_rate of requests and
    swaps explore_rate / (1 − interleave_rate) of those (`ltr_core.exploration.swap_rate`)."""
    settings = serving_env(LTR_EXPLORE_RATE="0.3", LTR_EXPLORE_MAX_POSITION="4")
    live_weights = weights_for(1)
    publisher.publish(live_weights)
    publisher.publish(weights_for(2), candidate=True)
    server = start_server()
    body = rank_body(6, seed=1)
    with server.client() as client:
        answers = [
            client.post("/rank", json={**body, "request_id": f"s-{i}"}).json() for i in range(80)
        ]
    server.stop()
    policies = {a["policy"] for a in answers}
    assert policies == {"swap", "interleaved", "deterministic"}
    ids = [c["lawyer_id"] for c in body["candidates"]]
    order = [ids[i] for i in _order(live_weights, body)]
    rho = swap_rate(0.3, 0.2)
    assert rho == pytest.approx(0.375)
    events = _logged(settings.serving_log_dir)
    checked = 0
    for event in events:
        if event["policy"] in ("swap", "deterministic"):
            rank = order.index(event["lawyer_id"]) + 1
            assert event["deterministic_rank"] == rank
            expected = swap_propensity(rank, event["rank_position"], 6, rho, 4)
            assert event["propensity"] == pytest.approx(expected)
            checked += 1
    assert checked > 0


def test_a_candidate_cleared_while_latest_is_refused_stops_interleaving(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    """A rollback moves latest and clears candidate.json in one go: when this replica refuses
    the new latest, the old version serves on, but without the candidate that is gone (the
    refusal discarded that news, and the retired candidate kept its share)."""
    serving_env(LTR_INTERLEAVE_RATE="1")
    live = publisher.publish(weights_for(1))
    publisher.publish(weights_for(2), candidate=True)
    server = start_server()
    body = rank_body(6, seed=2)
    with server.client() as client:
        before = client.post("/rank", json={**body, "request_id": "r-before"}).json()
        refused = publisher.publish(weights_for(3))  # latest moves...
        (publisher.registry.versions_dir / refused / MODEL_FILE).write_text("garbage\n")
        publisher.registry.candidate_path.unlink()  # ...and the candidate is cleared
        reload = client.post("/reload", headers=AUTH)
        after = client.post("/rank", json={**body, "request_id": "r-after"}).json()
        health = client.get("/ltr/health").json()
    assert before["policy"] == "interleaved"
    assert reload.status_code == 409 and reload.json()["candidate_state"] == "none"
    assert after["policy"] == "deterministic" and after["version"] == live
    assert (health["version"], health["status"]) == (live, "degraded")
    assert health["candidate"]["state"] == "none" and not health["candidate"]["interleaving"]
