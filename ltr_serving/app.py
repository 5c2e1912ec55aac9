"""The FastAPI app. `ltr_serving.app:app` is what uvicorn and the `ltr serve` command run.

`create_app(settings=None)` builds an app; without settings they are read from the environment
when the app starts (in the lifespan), so importing this module reads nothing and fails on
nothing. The lifespan does the first load and starts the poller; a failed first load does not
stop the app: /ltr/health reports the error with 503 and /rank answers 503 until a valid version
is loaded by /reload or the poller.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from ltr_core.rank_api import RankRequest
from ltr_core.settings import Settings
from ltr_serving.errors import validation_errors
from ltr_serving.impressions import (
    EventSink,
    FileSink,
    LogCounts,
    RecordLog,
    complete_orphaned_files,
)
from ltr_serving.log_process import PipeEventLog, ProcessSink, writing_event_log
from ltr_serving.logs import configure_logging
from ltr_serving.metrics import (
    LatencyMiddleware,
    Receive,
    Scope,
    Send,
    ServingMetrics,
)
from ltr_serving.models import FeedbackEvent
from ltr_serving.poller import poll_forever
from ltr_serving.routers import feedback, health, ranking, reload
from ltr_serving.state import ServingState
from ltr_serving.store import WeightStore, build_store, serving_mirror

log = logging.getLogger("ltr_serving.app")


class ServingApp(FastAPI):
    """FastAPI, except that POST /rank, the hot path, goes straight to its endpoint, timed into
    the same latency histogram as every route, without Starlette's error, exception and
    exit-stack middlewares, the latency middleware's wrapping and the route matching around it
    (a measurable share of a request). Everything else (other paths, other methods on /rank, a
    trailing slash) takes FastAPI's whole stack."""

    rank_metrics: ServingMetrics | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        metrics = self.rank_metrics
        if (
            metrics is None
            or scope["type"] != "http"
            or scope["path"] != ranking.PATH
            or scope["method"] != "POST"
        ):
            await super().__call__(scope, receive, send)
            return
        scope["app"] = self
        start = time.perf_counter()
        status = 500
        try:
            status = await ranking.respond_guarded(scope, receive, send)
        finally:
            metrics.time_rank(status, time.perf_counter() - start)


def build_event_log(
    settings: Settings,
    metrics: ServingMetrics,
    sink: EventSink | None = None,
) -> RecordLog | None:
    """The impression/feedback log LTR_IMPRESSION_LOG asks for (None: `off`): JSONL files under
    LTR_SERVING_LOG_DIR, or Kafka spilling to those files when it does not take the events in
    time. The Kafka sink starts connecting at once, in the background.

    The sinks run in the writer process (`ltr_serving.log_process`), which this one feeds,
    unless a `sink` is given (tests): then this process writes through it."""
    requested = settings.serving.impression_log
    if requested == "off" and sink is None:
        return None
    counts = LogCounts()
    if sink is None:  # the writer process counts what it logged
        complete_orphaned_files(settings.serving_log_dir)  # what killed processes left
        spill = FileSink(
            settings.serving_log_dir,
            max_age_s=settings.serving.log_rotate_s,
            written=metrics.events_file,
        )
        spill.prefix += "-server"  # beside the writer process's files, never the same names
        pipe = PipeEventLog(
            lambda: ProcessSink(settings, metrics, counts),  # its reports land in `counts`
            settings.serving.impression_queue,
            spill=spill,
            requested=requested,
            metrics=metrics,
            counts=counts,
        )
        metrics.event_queue_depth.set_function(lambda: pipe.depth)
        return pipe
    return writing_event_log(settings, metrics, counts, sink)


def create_app(
    settings: Settings | None = None,
    store: WeightStore | None = None,
    event_sink: EventSink | None = None,
) -> ServingApp:
    """A new app with its own state and metrics registry (tests run several in one process).
    `event_sink` replaces the sink LTR_IMPRESSION_LOG chooses (tests)."""
    configure_logging()
    metrics = ServingMetrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        resolved = settings or Settings.from_env()
        state = ServingState(
            store
            or build_store(
                resolved.registry_dir,
                resolved.weights_path,
                resolved.scorer,
                serving_mirror(resolved),
                resolved.artifact_keys,
            ),
            resolved,
            metrics,
        )
        app.state.settings = resolved
        log.info("starting", extra={"settings": repr(resolved)})  # the repr omits the token
        await asyncio.to_thread(state.reload, "startup")
        events = build_event_log(resolved, metrics, event_sink)
        if events is not None:
            events.start()
        state.events = events
        app.state.serving = state
        # Everything alive now (imports, the first scorer) lives as long as the process. Moving
        # it out of the collector's reach stops full collections from scanning those objects,
        # which otherwise shows up as stalls in /rank's p99.
        gc.collect()
        gc.freeze()
        poller = None
        if resolved.serving.poll_seconds > 0:
            poller = asyncio.create_task(poll_forever(state, resolved.serving.poll_seconds))
        try:
            yield
        finally:
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
            state.scoring.shutdown()
            if events is not None:  # SIGTERM lands here: write what waits, complete the files
                await asyncio.to_thread(events.stop)
            log.info("stopped")

    app = ServingApp(
        title="ltr_serving",
        summary="Ranks lawyers for a case with the live Learning-to-Rank version.",
        lifespan=lifespan,
        # The service exports Prometheus metrics (/metrics). FastAPI's native OpenTelemetry
        # support, unconfigured here, otherwise probes the global providers (and the
        # environment) on every request, a cost on every /rank call.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.metrics = metrics

    @app.exception_handler(RequestValidationError)
    async def on_invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": validation_errors(exc.errors())}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        # A 405's Allow header names the methods of the one route that matched the path; every
        # GET path here answers HEAD too (/ltr/health and /metrics by a route of their own).
        allow = (exc.headers or {}).get("Allow", "").split(", ")
        if exc.status_code == 405 and "GET" in allow and "HEAD" not in allow:
            exc.headers = {**(exc.headers or {}), "Allow": ", ".join([*allow, "HEAD"])}
        return await http_exception_handler(request, exc)

    app.router.routes.insert(0, ranking.route)  # first: the hot path is matched first
    app.include_router(health.router)
    app.include_router(reload.router)
    app.include_router(feedback.router)
    app.add_middleware(LatencyMiddleware, metrics=metrics)
    app.rank_metrics = metrics
    # FastAPI's documented way to extend the schema is to replace app.openapi; mypy forbids
    # assigning to a method.
    app.openapi = lambda: openapi_with_request_models(app)  # type: ignore[method-assign]
    return app


def openapi_with_request_models(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document plus what /rank (a plain ASGI route) does: its operation and the
    schema of the body it parses itself."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            routes=[ranking.openapi_route, *app.routes],
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        request_schema = RankRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(request_schema.pop("$defs", {}))
        components["RankRequest"] = request_schema
        # /feedback parses its body itself (a bad event must not refuse the good ones).
        feedback_schema = FeedbackEvent.model_json_schema(
            ref_template="#/components/schemas/{model}"
        )
        components.update(feedback_schema.pop("$defs", {}))
        components["FeedbackEvent"] = feedback_schema
        app.openapi_schema = schema
    return app.openapi_schema


app = create_app()
