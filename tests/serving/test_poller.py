"""The poller: picks up a new version by itself and never dies on a bad one."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, cast

from fastapi import FastAPI

from ltr_core.settings import Settings
from ltr_serving.state import ReloadAttempt, ServingState
from tests.support.serving import (
    Publisher,
    RunningServer,
    metric_value,
    rank_body,
    wait_for,
    weights_for,
)

POLL = 0.1


def _count_poll_ticks(server: RunningServer) -> list[float]:
    """Records each completed poller tick of the running app (its time), so a test can wait
    for ticks to have happened instead of sleeping for as long as they should take."""
    state: ServingState = cast(FastAPI, server.server.config.app).state.serving
    ticks: list[float] = []
    poll_once = state.poll_once

    def counted() -> ReloadAttempt | None:
        try:
            return poll_once()
        finally:
            ticks.append(time.monotonic())

    state.poll_once = counted  # type: ignore[method-assign]  # the poller looks it up each tick
    return ticks


def test_the_poller_loads_a_new_version_and_survives_a_bad_one(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[[], RunningServer],
) -> None:
    serving_env(WEIGHTS_POLL_SECONDS=str(POLL))
    first = publisher.publish(weights_for(1))
    server = start_server()
    with server.client() as client:

        def live() -> str | None:
            version: str | None = client.get("/ltr/health").json()["version"]
            return version

        def poll_failures() -> float:
            text = client.get("/metrics").text
            return metric_value(text, "ltr_reload_failures_total", 'trigger="poll"')

        assert live() == first
        second = publisher.publish(weights_for(2))
        wait_for(lambda: live() == second, 5, "the poller to load the new version")
        assert client.post("/rank", json=rank_body(3)).json()["version"] == second

        ticks = _count_poll_ticks(server)
        publisher.point_latest_at("20990101_000000")  # a pointer to a version that is not there
        wait_for(lambda: poll_failures() == 1.0, 5, "the poller to refuse the bad pointer")
        health = client.get("/ltr/health").json()
        assert health["version"] == second and "does not exist" in health["last_reload_error"]
        seen = len(ticks)
        # Several ticks (counted, not slept for): the same bad pointer is not retried every tick.
        wait_for(lambda: len(ticks) >= seen + 3, 5, "three more poller ticks")
        assert poll_failures() == 1.0

        third = publisher.publish(weights_for(3))  # the poller is still alive
        wait_for(lambda: live() == third, 5, "the poller to load a version after a failure")
        assert client.get("/ltr/health").json()["status"] == "ok"
        metrics = client.get("/metrics").text
    assert metric_value(metrics, "ltr_reloads_total", 'trigger="poll"') == 2.0


def test_a_vanished_pointer_is_refused_by_the_poller_and_health_says_so(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[[], RunningServer],
) -> None:
    """latest.json deleted with no flat weights file beside it: the poller tries a load once,
    is refused (the pointer is missing), the old version serves on, and health is degraded."""
    settings = serving_env(WEIGHTS_POLL_SECONDS=str(POLL))
    first = publisher.publish(weights_for(1))
    server = start_server()
    with server.client() as client:
        assert client.get("/ltr/health").json()["version"] == first
        publisher.registry.pointer_path.unlink()
        settings.weights_path.unlink(missing_ok=True)

        def poll_failures() -> float:
            text = client.get("/metrics").text
            return metric_value(text, "ltr_reload_failures_total", 'trigger="poll"')

        wait_for(lambda: poll_failures() == 1.0, 5, "the poller to refuse the missing pointer")
        health = client.get("/ltr/health").json()
        assert health["status"] == "degraded" and health["version"] == first
        assert "latest.json is missing" in health["last_reload_error"]
        assert client.post("/rank", json=rank_body(3)).json()["version"] == first


def test_a_vanished_registry_folder_does_not_switch_to_the_flat_file(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[[], RunningServer],
) -> None:
    """The registry folder gone (an unmounted volume), then an empty mount point: the poller
    used to load the flat WEIGHTS_PATH file beside it (version flat-…, the candidate dropped,
    health ok) and go back when the folder returned. The loaded versions serve on; health is
    degraded and says why until the registry is back."""
    settings = serving_env(WEIGHTS_POLL_SECONDS=str(POLL))
    live = publisher.publish(weights_for(1))
    candidate = publisher.publish(weights_for(2), candidate=True)
    assert settings.weights_path.exists()  # the registry writes the flat file beside it
    server = start_server()
    registry = settings.registry_dir
    unmounted = registry.with_name(registry.name + "-unmounted")
    with server.client() as client:

        def health() -> dict[str, Any]:
            answer: dict[str, Any] = client.get("/ltr/health").json()
            return answer

        def poll_failures() -> float:
            text = client.get("/metrics").text
            return metric_value(text, "ltr_reload_failures_total", 'trigger="poll"')

        def serves_on_and_says(why: str) -> None:
            failures = poll_failures()
            wait_for(lambda: poll_failures() >= failures + 2, 5, "the poller to fail twice")
            now = health()
            assert now["status"] == "degraded", now
            assert (now["version"], now["origin"]) == (live, str(registry / "versions" / live))
            assert (now["candidate"]["state"], now["candidate"]["version"]) == (
                "loaded",
                candidate,
            )
            assert why in now["last_reload_error"], now
            assert "does not fall back to the flat weights file" in now["last_reload_error"]
            assert client.post("/rank", json=rank_body(3)).json()["version"] == live

        assert (health()["version"], health()["candidate"]["version"]) == (live, candidate)
        registry.rename(unmounted)
        serves_on_and_says("is gone")
        registry.mkdir()  # the empty mount point
        serves_on_and_says("holds neither latest.json nor a version")

        registry.rmdir()
        unmounted.rename(registry)  # the volume is back
        wait_for(lambda: health()["status"] == "ok", 5, "health to recover")
        now = health()
        assert (now["version"], now["last_reload_error"]) == (live, None)
        assert now["candidate"]["version"] == candidate
