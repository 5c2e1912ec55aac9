"""A model-scored /rank that cannot be scored within LTR_SCORE_TIMEOUT_MS fails alone (503), and
the service keeps answering: tested with a real server process and a real model that is slow
to score (2,000 trees, each a chain of 63 splits every row goes down), and on the pool itself."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any, TypeVar

import httpx
import pytest

from ltr_core.settings import Settings
from ltr_serving.app import create_app
from ltr_serving.scoring_pool import ScoringBusy, ScoringPool, ScoringTimeout
from tests.serving.test_impressions import logged_events
from tests.support.model_texts import chain, write_model
from tests.support.serving import (
    Publisher,
    RunningServer,
    ServerProcess,
    metric_value,
    rank_body,
    wait_for,
    weights_for,
)

T = TypeVar("T")


@cache
def slow_model() -> str:
    """Valid and bounded, but 2,000 x 63 splits a row: a 1,000-candidate list takes LightGBM
    seconds, a single candidate about a millisecond."""
    return write_model([chain(63, feature=i) for i in range(2000)])


def _scoring(client: httpx.Client) -> dict[str, Any]:
    scoring: dict[str, Any] = client.get("/ltr/health").json()["scoring"]
    return scoring


@pytest.mark.timeout(300)
def test_a_request_that_cannot_be_scored_in_time_fails_alone(
    serving_env: Callable[..., Settings],
    start_server_process: Callable[[], ServerProcess],
) -> None:
    settings = serving_env(LTR_SCORER="model", LTR_SCORE_TIMEOUT_MS="100")
    assert settings.serving.score_timeout_ms == 100.0
    version = Publisher(settings, slow_model()).publish(weights_for(1))
    server = start_server_process()
    big, small = rank_body(1000), rank_body(1)
    retried = rank_body(1, seed=7, request_id="r-refused-then-retried")
    with httpx.Client(base_url=server.url, timeout=30) as client:
        start = time.perf_counter()
        slow = client.post("/rank", json=big)
        elapsed = time.perf_counter() - start
        assert slow.status_code == 503, slow.text[:200]
        assert "scoring took longer than LTR_SCORE_TIMEOUT_MS=100 ms" in slow.json()["detail"]
        # The worker is still in LightGBM: counted, and the service answers meanwhile.
        scoring = _scoring(client)
        assert (scoring["stuck"], scoring["workers"], scoring["timeout_ms"]) == (1, 4, 100.0)
        assert client.post("/rank", json=small).json()["version"] == version
        assert elapsed < 5.0

        # Every worker stuck: the next request is refused at once instead of queueing.
        wait_for(lambda: _scoring(client)["busy"] == 0, 120, "the stuck worker to return")
        with ThreadPoolExecutor(4) as senders:
            answers = list(senders.map(lambda _: client.post("/rank", json=big), range(4)))
        assert [a.status_code for a in answers] == [503] * 4
        wait_for(lambda: _scoring(client)["busy"] == 4, 10, "four busy workers")
        start = time.perf_counter()
        busy = client.post("/rank", json=retried)
        assert busy.status_code == 503 and "all 4 scoring workers are busy" in busy.text
        assert time.perf_counter() - start < 1.0
        assert client.get("/ltr/health").json()["status"] == "ok"

        wait_for(lambda: _scoring(client)["busy"] == 0, 120, "the stuck workers to return")
        assert _scoring(client)["stuck"] == 0
        assert client.post("/rank", json=small).status_code == 200
        # the refused request's retry is its first answer: logged (3 impressions in all)
        assert client.post("/rank", json=retried).status_code == 200

        def impressions() -> float:
            text = client.get("/metrics").text
            return metric_value(text, "ltr_events_logged_total", 'kind="impression"')

        wait_for(lambda: impressions() == 3.0, 10, "three logged impressions")
        metrics = client.get("/metrics").text
    assert metric_value(metrics, "ltr_scoring_refused_total", 'reason="timeout"') == 5.0
    assert metric_value(metrics, "ltr_scoring_refused_total", 'reason="busy"') == 1.0
    assert metric_value(metrics, "ltr_scoring_workers_stuck") == 0.0
    assert server.process.poll() is None


@pytest.mark.timeout(300)
def test_a_burst_larger_than_the_pool_is_answered_not_refused(
    serving_env: Callable[..., Settings],
    start_server_process: Callable[[], ServerProcess],
) -> None:
    """16 model-scored requests at once, each tens of milliseconds of LightGBM, on 4 workers:
    the ones without a worker wait in line within LTR_SCORE_TIMEOUT_MS and are all answered.
    (Refused at once before: 503 "all 4 scoring workers are busy" with nothing stuck.)"""
    serving_env(LTR_SCORER="model", LTR_SCORE_TIMEOUT_MS="60000")
    Publisher(settings := Settings.from_env(), slow_model()).publish(weights_for(1))
    assert settings.scorer == "model"
    server = start_server_process()
    bodies = [rank_body(40, seed=i) for i in range(16)]
    with httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.post("/rank", json=bodies[0]).status_code == 200  # warm
        with ThreadPoolExecutor(16) as senders:
            answers = list(senders.map(lambda b: client.post("/rank", json=b), bodies))
        assert [a.status_code for a in answers] == [200] * 16, answers[0].text[:200]
        scoring = _scoring(client)
        assert (scoring["busy"], scoring["waiting"], scoring["stuck"]) == (0, 0, 0)
        metrics = client.get("/metrics").text
    assert metric_value(metrics, "ltr_scoring_refused_total", 'reason="busy"') == 0.0
    assert metric_value(metrics, "ltr_scoring_requests_waiting") == 0.0


def test_the_weights_scorer_is_not_sent_to_the_pool(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server_process: Callable[[], ServerProcess],
) -> None:
    """The linear scorer is bounded and stays on the event loop: a tiny timeout never fails it."""
    serving_env(LTR_SCORE_TIMEOUT_MS="1")
    publisher.publish(weights_for(1))
    with start_server_process().client() as client:
        for _ in range(20):
            assert client.post("/rank", json=rank_body(1000)).status_code == 200
        assert _scoring(client)["busy"] == 0


class _RefusesTheFirstAfterItsRetryIsScoring(ScoringPool):
    """A scoring pool whose first job waits until a second is submitted, is refused (a
    timeout), and only then lets the second finish: a request and its retry in flight together,
    the first refused."""

    def __init__(self) -> None:
        super().__init__(timeout_s=10.0)
        self.submitted = 0
        self.first_refused = asyncio.Event()

    async def run(self, fn: Callable[[], T]) -> T:
        self.submitted += 1
        if self.submitted == 1:
            while self.submitted < 2:
                await asyncio.sleep(0.005)
            self.first_refused.set()
            raise ScoringTimeout("scoring took longer than the test allows")
        await self.first_refused.wait()
        return fn()


def test_a_retry_answered_while_its_first_request_is_refused_logs_the_list(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    """The first answer under a request id logs it, whichever request gives it: here the retry,
    admitted while the first was scoring, and answered after the first was refused."""
    settings = serving_env(LTR_SCORER="model")
    publisher.publish(weights_for(1))
    app = create_app()
    server = start_server(app)
    app.state.serving.scoring = _RefusesTheFirstAfterItsRetryIsScoring()
    body = rank_body(4, seed=2, request_id="r-raced")
    retry = {**body, "candidates": body["candidates"][::-1]}
    with ThreadPoolExecutor(2) as senders, server.client() as first, server.client() as second:
        refused = senders.submit(first.post, "/rank", json=body)
        wait_for(lambda: refused.running(), 5, "the first request to be sent")
        time.sleep(0.2)  # the first request is admitted and waits in the pool
        answered = senders.submit(second.post, "/rank", json=retry)
        statuses = sorted([refused.result().status_code, answered.result().status_code])
    assert statuses == [200, 503]
    server.stop()  # the lifespan's shutdown writes what the log holds
    events = logged_events(settings.serving_log_dir)
    assert [e["request_id"] for e in events] == ["r-raced"] * 4


class _HeldUntilReleased(ScoringPool):
    """A scoring pool that holds each job until `release` is set, then scores it."""

    def __init__(self) -> None:
        super().__init__(timeout_s=30.0)
        self.release = threading.Event()
        self.held = 0

    async def run(self, fn: Callable[[], T]) -> T:
        self.held += 1
        while not self.release.is_set():
            await asyncio.sleep(0.005)
        self.held -= 1
        return fn()


def test_a_request_whose_client_gave_up_while_it_was_scored_is_not_logged(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server: Callable[..., RunningServer],
) -> None:
    """A client that closes its connection while its request waits for the scoring pool never
    sees the list: it is not logged as shown (its impressions would read as examined and not
    clicked), it is counted, and a retry under the same id is answered and logged once."""
    settings = serving_env(LTR_SCORER="model")
    publisher.publish(weights_for(1))
    app = create_app()
    server = start_server(app)
    pool = _HeldUntilReleased()
    app.state.serving.scoring = pool
    gave_up = rank_body(3, seed=4, request_id="r-gave-up")
    waited = rank_body(2, seed=5, request_id="r-waited")
    with ThreadPoolExecutor(1) as sender, server.client() as client:
        try:
            patient = sender.submit(client.post, "/rank", json=waited)
            impatient = httpx.Client(base_url=server.url, timeout=0.3)
            with pytest.raises(httpx.ReadTimeout), impatient:
                impatient.post("/rank", json=gave_up)
            wait_for(lambda: pool.held == 2, 5, "both requests to wait for the pool")
            time.sleep(0.2)  # the closed connection reaches the server
        finally:
            pool.release.set()
        assert patient.result().status_code == 200

        def impressions() -> float:
            text = client.get("/metrics").text
            return metric_value(text, "ltr_events_logged_total", 'kind="impression"')

        wait_for(lambda: impressions() >= 2, 10, "the answered request's impressions")
        time.sleep(0.5)  # a few of the writer's reports
        assert impressions() == 2  # the patient client's 2, none of the 3 never shown
        metrics = client.get("/metrics").text
        assert metric_value(metrics, "ltr_rank_abandoned_total") == 1.0
        retried = client.post("/rank", json=gave_up)
        assert retried.status_code == 200 and retried.json()["request_id"] == "r-gave-up"
        wait_for(lambda: impressions() == 5, 10, "the retry's impressions")
    server.stop()  # the lifespan's shutdown writes what the log holds
    logged = sorted(e["request_id"] for e in logged_events(settings.serving_log_dir))
    assert logged == ["r-gave-up"] * 3 + ["r-waited"] * 2


# -- the pool ----------------------------------------------------------------------------------


def _blocked_until(release: threading.Event, answer: str) -> Callable[[], str]:
    """A scorer that holds its worker until `release` is set, then answers."""

    def blocked() -> str:
        release.wait(30)
        return answer

    return blocked


async def _until_idle(pool: ScoringPool) -> None:
    """Until no worker is busy (the released ones returned), at most 2 s."""
    for _ in range(200):
        if pool.busy == 0:
            break
        await asyncio.sleep(0.01)


def test_the_pool_times_out_counts_stuck_workers_and_refuses_when_full() -> None:
    release = threading.Event()

    blocked = _blocked_until(release, "late")

    async def scenario() -> None:
        pool = ScoringPool(timeout_s=0.05, workers=2)
        assert await pool.run(lambda: "quick") == "quick"
        for _ in range(2):
            with pytest.raises(ScoringTimeout, match="LTR_SCORE_TIMEOUT_MS=50 ms"):
                await pool.run(blocked)
        assert (pool.busy, pool.stuck) == (2, 2)
        start = time.perf_counter()
        with pytest.raises(ScoringBusy, match="all 2 scoring workers are busy"):
            await pool.run(lambda: "refused")
        assert time.perf_counter() - start < 0.05  # refused without waiting
        release.set()
        await _until_idle(pool)
        assert (pool.busy, pool.stuck) == (0, 0)
        assert await pool.run(lambda: "again") == "again"
        with pytest.raises(ZeroDivisionError):  # the scorer's own error reaches the caller
            await pool.run(lambda: 1 // 0)
        assert pool.busy == 0
        pool.shutdown()

    asyncio.run(scenario())


def test_a_request_waits_in_line_for_a_worker_within_the_timeout() -> None:
    """With every worker busy (none stuck) a request waits, first come first served, and is
    scored when one returns; one that no worker frees in time fails with a timeout; a full line
    and a line behind only stuck workers refuse at once."""
    release = threading.Event()
    order: list[str] = []

    blocked = _blocked_until(release, "first")

    def quick(name: str) -> Callable[[], str]:
        def score() -> str:
            order.append(name)
            return name

        return score

    async def scenario() -> None:
        pool = ScoringPool(timeout_s=5.0, workers=1, max_waiting=2)
        first = asyncio.create_task(pool.run(blocked))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(pool.run(quick("second")))
        await asyncio.sleep(0.01)
        third = asyncio.create_task(pool.run(quick("third")))
        await asyncio.sleep(0.05)
        assert (pool.busy, pool.waiting) == (1, 2)
        start = time.perf_counter()
        with pytest.raises(ScoringBusy, match="2 requests wait for one"):
            await pool.run(quick("refused"))
        assert time.perf_counter() - start < 0.05  # a full line refuses without waiting
        release.set()
        assert list(await asyncio.gather(first, second, third)) == ["first", "second", "third"]
        assert order == ["second", "third"]  # in the order they came
        assert (pool.busy, pool.waiting) == (0, 0)
        pool.shutdown()

    asyncio.run(scenario())


def test_a_request_that_waited_still_has_the_whole_timeout_to_be_scored() -> None:
    """One worker, a 200 ms timeout, jobs of 120 ms: the second waits 120 ms, then is scored
    in 120 ms; neither fails nor counts as stuck (a budget shared by the wait and the scoring
    left it 80 ms: a timeout, and a worker counted stuck that no job ever held for long)."""

    def job() -> str:
        time.sleep(0.12)
        return "scored"

    async def scenario() -> None:
        pool = ScoringPool(timeout_s=0.2, workers=1)
        answers = await asyncio.gather(pool.run(job), pool.run(job))
        assert list(answers) == ["scored", "scored"]
        assert (pool.busy, pool.stuck, pool.waiting) == (0, 0, 0)
        pool.shutdown()

    asyncio.run(scenario())


def test_a_request_that_leaves_the_line_passes_its_turn_on() -> None:
    """Timed out or cancelled in line: the worker that comes free goes to the next request,
    and none is lost from the pool. Behind stuck workers only, a request is refused at once."""
    release = threading.Event()

    blocked = _blocked_until(release, "blocked")

    async def scenario() -> None:
        pool = ScoringPool(timeout_s=5.0, workers=1)
        first = asyncio.create_task(pool.run(blocked))
        await asyncio.sleep(0.02)
        cancelled = asyncio.create_task(pool.run(lambda: "never"))
        waiting = asyncio.create_task(pool.run(lambda: "next"))
        await asyncio.sleep(0.02)
        assert pool.waiting == 2
        cancelled.cancel()
        await asyncio.sleep(0.01)
        assert pool.waiting == 1
        release.set()  # the worker returns: it goes to the request still in line
        assert await first == "blocked" and await waiting == "next"
        assert (pool.busy, pool.stuck, pool.waiting) == (0, 0, 0)

        release.clear()
        pool.timeout_s = 0.2
        first = asyncio.create_task(pool.run(blocked))
        await asyncio.sleep(0.02)
        with pytest.raises(ScoringTimeout, match="no scoring worker came free within"):
            await pool.run(lambda: "late")  # the first holds the worker past the timeout
        with pytest.raises(ScoringTimeout, match="scoring took longer"):
            await first
        assert (pool.busy, pool.stuck, pool.waiting) == (1, 1, 0)
        with pytest.raises(ScoringBusy, match="busy with requests that timed out"):
            await pool.run(lambda: "refused")
        release.set()
        await _until_idle(pool)
        assert (pool.busy, pool.stuck, pool.waiting) == (0, 0, 0)
        assert await pool.run(lambda: "again") == "again"
        pool.shutdown()

    asyncio.run(scenario())
