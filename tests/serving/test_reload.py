"""Reload over HTTP: auth, atomic swap under load, refusal of bad artifacts, the flat file."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ltr_core.artifacts.format import MODEL_FILE, WEIGHTS_FILE, sha256, weights_json
from ltr_core.features import FEATURES
from ltr_core.settings import Settings
from ltr_serving.routers.reload import LEGACY_RELOAD_PATH
from tests.support.serving import (
    TOKEN,
    Publisher,
    RunningServer,
    ServerProcess,
    metric_value,
    rank_body,
    wait_for,
    weights_for,
)

AUTH = {"Authorization": f"Bearer {TOKEN}"}
RELOAD_PATHS = ["/reload", LEGACY_RELOAD_PATH]


@pytest.mark.parametrize("path", RELOAD_PATHS)
def test_reload_needs_the_bearer_token(
    path: str,
    publisher: Publisher,
    start_server: Callable[[], RunningServer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    old = publisher.publish(weights_for(1))
    server = start_server()
    new = publisher.publish(weights_for(2))
    with server.client() as client:
        missing = client.post(path)
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        assert client.post(path, headers={"Authorization": f"Basic {TOKEN}"}).status_code == 401
        assert client.post(path, headers={"Authorization": "Bearer"}).status_code == 401
        wrong = client.post(path, headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 403
        assert TOKEN not in wrong.text
        assert client.post(path, headers={"Authorization": f"Bearer {TOKEN}x"}).status_code == 403
        assert client.get("/ltr/health").json()["version"] == old  # nothing reloaded so far

        ok = client.post(path, headers=AUTH)
        assert ok.status_code == 200, ok.text
        assert ok.json() == {
            "reloaded": True,
            "version": new,
            "previous_version": old,
            "error": None,
            "candidate_state": "none",
            "candidate_version": None,
            "candidate_error": None,
        }
        assert client.post("/rank", json=rank_body(3)).json()["version"] == new
        metrics = client.get("/metrics").text
    assert metric_value(metrics, "ltr_reloads_total", 'trigger="api"') == 1.0
    logs = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line]
    messages = [entry["message"] for entry in logs]
    assert messages.count("reload refused: wrong token") == 2 and "reloaded" in messages
    assert all(TOKEN not in json.dumps(entry) for entry in logs)
    assert metric_value(metrics, "ltr_live_version_info",
                        f'scorer="weights",source="file",version="{new}"') == 1.0  # fmt: skip
    assert metric_value(metrics, "ltr_live_version_info",
                        f'scorer="weights",source="file",version="{old}"') == 0.0  # fmt: skip


def test_a_token_being_rotated_accepts_the_new_and_the_old_one(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[[], RunningServer],
) -> None:
    """LTR_RELOAD_TOKEN=new,old while the sensors move to the new token: either reloads, any
    other token (or the two joined) is refused. The feedback token rotates alike."""
    serving_env(LTR_RELOAD_TOKEN=" new-token , old-token ", LTR_FEEDBACK_TOKEN="new-fb,old-fb")
    publisher.publish(weights_for(1))
    server = start_server()
    feedback = {"event_type": "offer_feedback", "timestamp": "x", "case_id": "c"}
    with server.client() as client:
        for token, expected in (
            ("new-token", 200),
            ("old-token", 200),
            ("new-token,old-token", 403),
            ("other", 403),
            ("new-fb", 403),
        ):
            headers = {"Authorization": f"Bearer {token}"}
            assert client.post("/reload", headers=headers).status_code == expected, token
        for token, expected in (("new-fb", 422), ("old-fb", 422), ("new-token", 403)):
            headers = {"Authorization": f"Bearer {token}"}
            answer = client.post("/feedback", json=feedback, headers=headers)
            assert answer.status_code == expected, token  # 422: past the token, a bad event


def test_reload_is_disabled_without_a_configured_token(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[[], RunningServer],
) -> None:
    serving_env(LTR_RELOAD_TOKEN=None)
    publisher.publish(weights_for(1))
    server = start_server()
    with server.client() as client:
        for path in RELOAD_PATHS:
            for headers in ({}, AUTH, {"Authorization": "Bearer wrong"}):
                response = client.post(path, headers=headers)
                assert response.status_code == 403
                assert "disabled" in response.json()["detail"]
        assert client.get("/ltr/health").json()["reload_enabled"] is False


def test_reload_under_sustained_load_fails_no_request(
    publisher: Publisher, start_server_process: Callable[[], ServerProcess]
) -> None:
    """4,000 /rank calls from 8 concurrent clients while a new version is published and loaded:
    every response is a 200 ranked wholly by the old or wholly by the new version.

    The server runs in its own process and each client is a thread with its own connection
    (httpx's sync client in threads drives more load per CPU than its async client)."""
    old_weights = weights_for(1)
    old = publisher.publish(old_weights)
    weights = {old: old_weights}
    server = start_server_process()
    total, clients = 4000, 8
    bodies = [rank_body(20, seed=s) for s in range(8)]
    payloads = [json.dumps(b).encode() for b in bodies]
    matrices = [np.array([[c["features"][f] for f in FEATURES] for c in b["candidates"]])
                for b in bodies]  # fmt: skip
    results: list[tuple[float, float, int, dict[str, Any] | None, int]] = []
    lock = threading.Lock()
    issued = 0

    def client_thread() -> None:
        nonlocal issued
        headers = {"content-type": "application/json"}
        with server.client() as client:
            while True:
                with lock:
                    if issued >= total:
                        return
                    issued += 1
                    b = issued % len(bodies)
                started = time.monotonic()
                response = client.post("/rank", content=payloads[b], headers=headers)
                ended = time.monotonic()
                body = response.json() if response.status_code == 200 else None
                with lock:
                    results.append((started, ended, response.status_code, body, b))

    threads = [threading.Thread(target=client_thread) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(results) >= total // 4, 30, "a quarter of the load on the old version")
        new_weights = weights_for(2)
        new = publisher.publish(new_weights)
        weights[new] = new_weights
        with server.client() as client:
            reload_started = time.monotonic()
            response = client.post("/reload", headers=AUTH)
            reload_ended = time.monotonic()
        assert response.status_code == 200 and response.json()["version"] == new, response.text
        assert len(results) < total * 3 // 4, "the load ended too soon after the reload"
    finally:
        for thread in threads:
            thread.join(timeout=60)

    assert len(results) == total
    failed = [status for _, _, status, _, _ in results if status != 200]
    assert failed == [], f"{len(failed)} failed requests: {failed[:5]}"
    seen = {body["version"] for *_, body, _ in results if body}
    assert seen == {old, new}
    vectors = {v: np.array([w[f] for f in FEATURES]) for v, w in weights.items()}
    for started, ended, _, body, b in results:
        assert body is not None  # every request succeeded
        version = body["version"]
        if ended < reload_started:
            assert version == old
        if started > reload_ended:
            assert version == new
        # the version tag names the weights that really produced these scores and this order
        ranked = [int(c["lawyer_id"][2:]) for c in body["candidates"]]
        scores = np.array([c["score"] for c in body["candidates"]])
        expected = matrices[b] @ vectors[version]
        assert np.allclose(scores, expected[ranked], rtol=0, atol=1e-12)
        assert np.all(np.diff(scores) <= 0)


def _corrupt(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\ngarbage that changes the checksum\n")


@pytest.mark.parametrize("broken_file", [MODEL_FILE, WEIGHTS_FILE])
def test_a_corrupted_artifact_is_refused_and_the_old_version_serves(
    broken_file: str, publisher: Publisher, start_server: Callable[[], RunningServer]
) -> None:
    old = publisher.publish(weights_for(1))
    server = start_server()
    bad = publisher.publish(weights_for(2))
    _corrupt(publisher.registry.versions_dir / bad / broken_file)
    publisher.point_latest_at(bad)
    with server.client() as client:
        response = client.post("/reload", headers=AUTH)
        assert response.status_code == 409
        refused = response.json()
        assert refused["reloaded"] is False and refused["version"] == old
        assert f"checksum of {broken_file} does not match" in refused["error"]
        health = client.get("/ltr/health")
        assert health.status_code == 200
        assert health.json()["version"] == old and health.json()["status"] == "degraded"
        assert health.json()["last_reload"]["ok"] is False
        assert f"checksum of {broken_file}" in health.json()["last_reload_error"]
        assert client.post("/rank", json=rank_body(5)).json()["version"] == old
        metrics = client.get("/metrics").text
        assert metric_value(metrics, "ltr_reload_failures_total", 'trigger="api"') == 1.0
        assert metric_value(metrics, "ltr_reloads_total", 'trigger="api"') == 0.0

        fixed = publisher.publish(weights_for(3))  # the next good publication goes live
        assert client.post("/reload", headers=AUTH).json()["version"] == fixed
        health = client.get("/ltr/health").json()
        assert health["status"] == "ok" and health["last_reload_error"] is None


def test_weights_that_do_not_sum_to_one_are_refused_despite_valid_checksums(
    publisher: Publisher, start_server: Callable[[], RunningServer]
) -> None:
    old = publisher.publish(weights_for(1))
    server = start_server()
    bad = publisher.publish(weights_for(2))
    folder = publisher.registry.versions_dir / bad
    skewed = {f: w * 0.9 for f, w in weights_for(2).items()}
    (folder / WEIGHTS_FILE).write_bytes(weights_json(skewed))
    metadata = json.loads((folder / "metadata.json").read_text())
    metadata["checksums"][WEIGHTS_FILE] = sha256((folder / WEIGHTS_FILE).read_bytes())
    (folder / "metadata.json").write_text(json.dumps(metadata))
    with server.client() as client:
        response = client.post("/reload", headers=AUTH)
        assert response.status_code == 409 and "not 1.0" in response.json()["error"]
        assert client.post("/rank", json=rank_body(2)).json()["version"] == old


def test_the_flat_weights_file_serves_when_there_is_no_registry(
    serving_env: Callable[..., Settings], start_server: Callable[[], RunningServer]
) -> None:
    settings = serving_env()
    weights = weights_for(4)
    settings.weights_path.parent.mkdir(parents=True, exist_ok=True)
    settings.weights_path.write_bytes(weights_json(weights))
    server = start_server()
    with server.client() as client:
        health = client.get("/ltr/health").json()
        assert health["version"].startswith("flat-") and health["source"] == "file"
        assert health["origin"] == str(settings.weights_path)
        out = client.post("/rank", json=rank_body(4, seed=2)).json()
        assert out["version"] == health["version"]
        first = max(out["candidates"], key=lambda c: c["score"])
        assert out["candidates"][0] == first

        settings.weights_path.write_text(json.dumps({**weights, FEATURES[0]: -0.5}))
        refused = client.post("/reload", headers=AUTH)
        assert refused.status_code == 409 and "non-negative" in refused.json()["error"]
        assert client.post("/rank", json=rank_body(2)).json()["version"] == health["version"]


def test_model_scorer_refuses_the_flat_file_and_health_says_why(
    serving_env: Callable[..., Settings], start_server: Callable[[], RunningServer]
) -> None:
    settings = serving_env(LTR_SCORER="model")
    settings.weights_path.parent.mkdir(parents=True, exist_ok=True)
    settings.weights_path.write_bytes(weights_json(weights_for(4)))
    server = start_server()
    with server.client() as client:
        health = client.get("/ltr/health")
        assert health.status_code == 503
        assert health.json()["status"] == "unavailable" and health.json()["version"] is None
        assert "LTR_SCORER=model" in health.json()["last_reload_error"]
        rank = client.post("/rank", json=rank_body(2))
        assert rank.status_code == 503 and "/ltr/health" in rank.json()["detail"]
        metrics = client.get("/metrics").text
    assert metric_value(metrics, "ltr_reload_failures_total", 'trigger="startup"') == 1.0


def test_nothing_published_yet_serves_503_until_a_reload_finds_a_version(
    publisher: Publisher, start_server: Callable[[], RunningServer]
) -> None:
    server = start_server()
    with server.client() as client:
        assert client.get("/ltr/health").status_code == 503
        assert "nothing to load" in client.get("/ltr/health").json()["last_reload_error"]
        assert client.post("/rank", json=rank_body(2)).status_code == 503
        version = publisher.publish(weights_for(1))
        assert client.post("/reload", headers=AUTH).json()["version"] == version
        assert client.post("/rank", json=rank_body(2)).status_code == 200


def test_a_pointer_that_is_not_a_file_is_refused_visibly_and_the_old_version_serves(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[[], RunningServer],
) -> None:
    serving_env(WEIGHTS_POLL_SECONDS="0.1")
    old = publisher.publish(weights_for(1))
    server = start_server()
    pointer = publisher.registry.pointer_path
    with server.client() as client:
        pointer.unlink()
        pointer.mkdir()  # latest.json a directory: the reload must say so, not die

        def refused() -> bool:
            return "not a regular file" in (
                client.get("/ltr/health").json()["last_reload_error"] or ""
            )

        wait_for(refused, 5, "the poller to refuse the pointer")
        health = client.get("/ltr/health").json()
        assert health["version"] == old and health["status"] == "degraded"
        response = client.post("/reload", headers=AUTH)
        assert response.status_code == 409, response.text  # refused, not "reload in progress"
        assert "not a regular file" in response.json()["error"]
        assert client.post("/rank", json=rank_body(3)).json()["version"] == old
        pointer.rmdir()
        fixed = publisher.publish(weights_for(2))
        wait_for(lambda: client.get("/ltr/health").json()["version"] == fixed, 5, "recovery")


def test_a_registry_that_lost_its_pointer_does_not_fall_back_to_the_flat_file(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[[], RunningServer],
) -> None:
    settings = serving_env()
    old = publisher.publish(weights_for(1))
    assert settings.weights_path.exists()  # the registry writes the flat file beside it
    server = start_server()
    publisher.registry.pointer_path.unlink()
    with server.client() as client:
        response = client.post("/reload", headers=AUTH)
        assert response.status_code == 409, response.text
        assert "not falling back to the flat weights file" in response.json()["error"]
        assert client.get("/ltr/health").json()["version"] == old
        assert client.post("/rank", json=rank_body(3)).json()["version"] == old


def test_a_model_file_that_is_a_device_is_refused_without_reading_it(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[[], RunningServer],
) -> None:
    serving_env(LTR_RELOAD_TIMEOUT_SECONDS="5")
    old = publisher.publish(weights_for(1))
    server = start_server()
    bad = publisher.publish(weights_for(2))
    model = publisher.registry.versions_dir / bad / MODEL_FILE
    model.unlink()
    model.symlink_to("/dev/zero")  # read whole, an endless file exhausts the service's memory
    with server.client() as client:
        response = client.post("/reload", headers=AUTH)
        assert response.status_code == 409, response.text
        assert "not a regular file" in response.json()["error"]
        assert client.post("/rank", json=rank_body(3)).json()["version"] == old
