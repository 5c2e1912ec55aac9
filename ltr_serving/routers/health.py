"""GET /ltr/health and GET /metrics."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Response, status
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ltr_serving.dependencies import MetricsDep, SettingsDep, StateDep
from ltr_serving.impressions import RecordLog
from ltr_serving.kafka_sink import KafkaSink, KafkaSinkStatus
from ltr_serving.log_process import ProcessSink
from ltr_serving.models import (
    CandidateHealth,
    EventLogHealth,
    HealthResponse,
    KafkaSinkHealth,
    ReloadAttemptOut,
    ScoringHealth,
)
from ltr_serving.state import LiveModel, ReloadAttempt, ServingState

router = APIRouter(tags=["operations"])
# How long an event-log error (a failed write, a writer replaced) keeps /ltr/health degraded.
LOG_ERROR_DEGRADES = timedelta(minutes=5)


def attempt_out(attempt: ReloadAttempt | None) -> ReloadAttemptOut | None:
    if attempt is None:
        return None
    return ReloadAttemptOut(
        at=attempt.at,
        trigger=attempt.trigger,
        ok=attempt.ok,
        version=attempt.version,
        previous_version=attempt.previous_version,
        error=attempt.error,
        duration_ms=round(attempt.duration_s * 1000, 3),
    )


@router.head("/ltr/health", include_in_schema=False)  # load balancers' HEAD health checks
@router.get(
    "/ltr/health",
    response_model=HealthResponse,
    responses={
        503: {
            "model": HealthResponse,
            "description": "no version is loaded (status `unavailable`); the body says why",
        }
    },
)
async def health(response: Response, settings: SettingsDep, state: StateDep) -> HealthResponse:
    """200 while a version serves (status ok; degraded after a failed reload or poll, or for
    LOG_ERROR_DEGRADES after the event log's last error); 503 if none.

    Async on purpose: it reads only the state's immutable snapshots and needs no worker thread,
    so it answers even when every worker thread waits on a reload."""
    live = state.live
    attempt = state.last_attempt
    if live is None:
        status_text = "unavailable"
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    else:
        refused = attempt is not None and not attempt.ok
        status_text = "degraded" if refused or _log_erred_lately(state.events) else "ok"
    return HealthResponse(
        status=status_text,
        version=live.version if live else None,
        scorer=live.scorer_kind if live else settings.scorer,
        loaded_at=live.loaded_at if live else None,
        source=live.source if live else state.store.source,
        origin=live.origin if live else None,
        partition=live.partition if live else None,
        last_reload=attempt_out(attempt),
        last_reload_error=attempt.error if attempt is not None else None,
        poll_seconds=settings.serving.poll_seconds,
        reload_enabled=settings.serving.reload_enabled,
        scoring=ScoringHealth(
            workers=state.scoring.workers,
            busy=state.scoring.busy,
            waiting=state.scoring.waiting,
            stuck=state.scoring.stuck,
            timeout_ms=settings.serving.score_timeout_ms,
        ),
        reload_stuck_since=state.stuck_since,
        event_log=event_log_out(state.events),
        candidate=candidate_out(state, live, settings.serving.interleave_rate),
    )


def _log_erred_lately(events: RecordLog | None) -> bool:
    """Whether the event log failed a write or lost its writer within LOG_ERROR_DEGRADES: the
    answers go on, but what is served may not all be logged (the error says what happened)."""
    when = events.counts.last_error_at if events is not None else None
    return when is not None and datetime.now(UTC) - when < LOG_ERROR_DEGRADES


def candidate_out(state: ServingState, live: LiveModel | None, rate: float) -> CandidateHealth:
    """The candidate the live model carries (what requests use) and the last reload's verdict
    on candidate.json (why there is none, when it was refused)."""
    canary = live.candidate if live is not None else None
    status = state.candidate_status
    return CandidateHealth(
        state="loaded" if canary is not None else status.state,
        version=canary.version if canary is not None else status.version,
        loaded_at=canary.loaded_at if canary is not None else None,
        origin=canary.origin if canary is not None else None,
        error=None if canary is not None else status.error,
        interleave_rate=rate,
        interleaving=canary is not None and rate > 0,
    )


def event_log_out(events: RecordLog | None) -> EventLogHealth | None:
    if events is None:
        return None
    counts = events.counts
    return EventLogHealth(
        requested=events.requested,
        sink=events.sink.kind,
        queue_depth=events.depth,
        queue_capacity=events.capacity,
        logged_impressions=counts.logged["impression"],
        logged_feedback=counts.logged["feedback"],
        dropped=counts.dropped,
        failed=counts.failed,
        writer_restarts=counts.writer_restarts,
        last_error=counts.last_error,
        last_error_at=counts.last_error_at,
        kafka=kafka_out(events.sink),
    )


def kafka_out(sink: object) -> KafkaSinkHealth | None:
    if isinstance(sink, KafkaSink):
        status: KafkaSinkStatus | None = sink.status()
    elif isinstance(sink, ProcessSink):  # the writer process's, as it last reported
        status = sink.kafka_status()
    else:
        status = None
    if status is None:
        return None
    return KafkaSinkHealth(
        state=status.state,
        since=status.since,
        topic=status.topic,
        bootstrap_servers=status.bootstrap_servers,
        sent=status.sent,
        spilled=status.spilled,
        lost=status.lost,
        in_flight=status.in_flight,
        last_error=status.last_error,
        last_error_at=status.last_error_at,
    )


@router.head("/metrics", include_in_schema=False, response_class=Response)
@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text format"}
    },
)
async def metrics(metrics: MetricsDep) -> Response:
    """Async on purpose: it runs on the event loop, like /rank, so flushing /rank's batched
    observations never interleaves with a request appending to them."""
    metrics.flush()
    return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
