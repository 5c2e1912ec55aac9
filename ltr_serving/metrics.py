"""Prometheus metrics, in a registry of the app's own so that several apps can live in a process."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

if TYPE_CHECKING:
    from ltr_serving.scoring_pool import ScoringPool

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Sub-millisecond resolution where /rank lives, up to seconds for reloads and slow clients.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip


class ServingMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_latency = Histogram(
            "ltr_http_request_duration_seconds",
            "Time from request start to the end of the response, by route and status.",
            ("method", "route", "status"),
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._pending_sizes: list[int] = []
        self._pending_rank: list[tuple[int, float]] = []
        self.ranked_candidates = Histogram(
            "ltr_rank_candidates",
            "Candidates per /rank request.",
            buckets=(1, 5, 10, 25, 50, 100, 250, 500, 1000, 5000),
            registry=self.registry,
        )
        self.reloads = Counter(
            "ltr_reloads",
            "Successful reloads (a version was validated and swapped in), by trigger.",
            ("trigger",),
            registry=self.registry,
        )
        self.reload_failures = Counter(
            "ltr_reload_failures",
            "Refused reloads (the artifact was invalid or missing; the old version kept serving).",
            ("trigger",),
            registry=self.registry,
        )
        self.reload_duration = Histogram(
            "ltr_reload_duration_seconds",
            "Time to read, validate and swap in an artifact.",
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.live_version = Gauge(
            "ltr_live_version_info",
            "1 for the version being served (labels say which).",
            ("version", "scorer", "source"),
            registry=self.registry,
        )
        self.candidate_version = Gauge(
            "ltr_candidate_version_info",
            "1 for the canary candidate's version with its state (loaded, refused, "
            "unavailable); no series when there is no candidate.",
            ("version", "state"),
            registry=self.registry,
        )
        self.loaded_at = Gauge(
            "ltr_live_version_loaded_timestamp_seconds",
            "Unix time at which the live version was swapped in.",
            registry=self.registry,
        )
        self.scoring_refused = Counter(
            "ltr_scoring_refused",
            "Model-scored /rank requests answered 503: timeout (no worker came free, or "
            "scoring did not end, within LTR_SCORE_TIMEOUT_MS) or busy (every worker stuck, or "
            "the line for one full).",
            ("reason",),
            registry=self.registry,
        )
        self.rank_abandoned = Counter(
            "ltr_rank_abandoned",
            "/rank requests whose client closed the connection before the answer (before its "
            "body's end, or while a model-scored request waited to be scored): not answered "
            "and not logged (the list was never shown); timed under status 499.",
            registry=self.registry,
        )
        self.scoring_busy = Gauge(
            "ltr_scoring_workers_busy",
            "Scoring workers running a request now (stuck ones included).",
            registry=self.registry,
        )
        self.scoring_waiting = Gauge(
            "ltr_scoring_requests_waiting",
            "Model-scored /rank requests waiting for a free scoring worker.",
            registry=self.registry,
        )
        self.scoring_stuck = Gauge(
            "ltr_scoring_workers_stuck",
            "Scoring workers still running a request that already failed with a timeout (a C "
            "call cannot be interrupted).",
            registry=self.registry,
        )
        for reason in ("timeout", "busy"):
            self.scoring_refused.labels(reason)
        self.events_logged = Counter(
            "ltr_events_logged",
            "Events written by the event log's sink, by kind (impression: one per candidate "
            "shown by /rank; feedback: accepted by /feedback).",
            ("kind",),
            registry=self.registry,
        )
        self.events_file = Counter(
            "ltr_events_written_to_file",
            "Events written to JSONL files under LTR_SERVING_LOG_DIR (the file sink, or a "
            "spill of another sink).",
            registry=self.registry,
        )
        self.events_dropped = Counter(
            "ltr_events_dropped",
            "Events not logged because the in-process event log's queue was full (a log handed "
            "to create_app, as in tests; a running service spills to files instead, so this "
            "stays 0 there).",
            ("kind",),
            registry=self.registry,
        )
        self.events_failed = Counter(
            "ltr_events_failed",
            "Events the sink failed to write (see last_error in /ltr/health).",
            ("kind",),
            registry=self.registry,
        )
        self.events_kafka_sent = Counter(
            "ltr_events_sent_to_kafka",
            "Events acknowledged by Kafka (LTR_IMPRESSION_LOG=kafka).",
            registry=self.registry,
        )
        self.events_spilled = Counter(
            "ltr_events_spilled",
            "Events that Kafka did not take in time (unreachable, or no acknowledgement within "
            "LTR_IMPRESSION_KAFKA_TIMEOUT_SECONDS), written to files under LTR_SERVING_LOG_DIR "
            "instead (also counted in ltr_events_written_to_file_total).",
            registry=self.registry,
        )
        self.kafka_connected = Gauge(
            "ltr_event_log_kafka_connected",
            "1 while the Kafka sink sends to Kafka, 0 while it spills to files "
            "(LTR_IMPRESSION_LOG=kafka only: always 0 with the file sink).",
            registry=self.registry,
        )
        self.event_writer_restarts = Counter(
            "ltr_event_log_writer_restarts",
            "Times the event log's writer process was found gone and started again (what it "
            "had not confirmed was handed to the new one).",
            registry=self.registry,
        )
        self.event_queue_depth = Gauge(
            "ltr_event_log_queue_depth",
            "Records waiting in the event log's queue.",
            registry=self.registry,
        )
        for kind in ("impression", "feedback"):
            self.events_logged.labels(kind)
            self.events_dropped.labels(kind)
            self.events_failed.labels(kind)
        self._rank_latency = LatencyRecorder(self)
        for trigger in ("startup", "api", "poll"):  # so the series exist at 0 before any event
            self.reloads.labels(trigger)
            self.reload_failures.labels(trigger)

    # /rank's two observations per request are appended to lists and observed into their
    # histograms in batches (at every scrape, or every 4,096 requests): a Histogram.observe
    # takes two locks and a Python loop over the buckets, a few µs of every request.

    def count_candidates(self, n: int) -> None:
        """Record a /rank list size."""
        pending = self._pending_sizes
        pending.append(n)
        if len(pending) >= 4096:
            self.flush()

    def time_rank(self, status: int, seconds: float) -> None:
        """Record a POST /rank latency (the latency middleware does not see that route)."""
        pending = self._pending_rank
        pending.append((status, seconds))
        if len(pending) >= 4096:
            self.flush()

    def flush(self) -> None:
        """Observe the pending observations (call before exporting)."""
        sizes, self._pending_sizes = self._pending_sizes, []
        for n in sizes:
            self.ranked_candidates.observe(n)
        timings, self._pending_rank = self._pending_rank, []
        for status, seconds in timings:
            self._rank_latency.observe("POST", "/rank", status, seconds)

    def watch_scoring(self, pool: ScoringPool) -> None:
        """The scoring pool's busy and stuck workers and its line, read at every scrape."""
        self.scoring_busy.set_function(lambda: pool.busy)
        self.scoring_waiting.set_function(lambda: pool.waiting)
        self.scoring_stuck.set_function(lambda: pool.stuck)

    def set_live(self, version: str, scorer: str, source: str, loaded_at: float) -> None:
        self.live_version.clear()
        self.live_version.labels(version, scorer, source).set(1)
        self.loaded_at.set(loaded_at)

    def set_candidate(self, version: str | None, state: str) -> None:
        self.candidate_version.clear()
        if state != "none":
            self.candidate_version.labels(version or "?", state).set(1)


class LatencyRecorder:
    """Observes request latency by (method, route, status); caches the labelled series, since
    `labels()` costs a lock and a lookup."""

    def __init__(self, metrics: ServingMetrics) -> None:
        self.metrics = metrics
        self._children: dict[tuple[str, str, int], Any] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        key = (method, route, status)
        child = self._children.get(key)
        if child is None:
            child = self.metrics.request_latency.labels(method, route, str(status))
            self._children[key] = child
        child.observe(seconds)


class LatencyMiddleware:
    """Pure ASGI middleware (no BaseHTTPMiddleware overhead) timing every HTTP request.

    The route label is the matched route's path template, so cardinality stays bounded.
    """

    def __init__(self, app: ASGIApp, metrics: ServingMetrics) -> None:
        self.app = app
        self.recorder = LatencyRecorder(metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_and_record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_record_status)
        finally:
            self.recorder.observe(
                scope["method"], route_label(scope), status, time.perf_counter() - start
            )


def route_label(scope: Scope) -> str:
    """The route template a request matched: FastAPI's routes record themselves in the scope;
    Starlette's plain ones (FastAPI's /openapi.json, /docs, /redoc) only their endpoint, and
    have no path parameters, so their path is their template. "unmatched" otherwise."""
    path = getattr(scope.get("route"), "path", None)
    if path:
        return str(path)
    if "endpoint" in scope and not scope.get("path_params"):
        return str(scope["path"])
    return "unmatched"
