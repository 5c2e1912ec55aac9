"""POST /rank: score a case's candidates with the live version and return them in order.

This is the hot path, so it is a plain ASGI endpoint (`RankEndpoint`, mounted as a Starlette
route) rather than a FastAPI route: it reads the body from `receive` itself, capped (413 before
anything too large is read further or parsed: a declared Content-Length is checked first, a
chunked body is abandoned once over the cap), and hands the bytes to `ltr_core.codec`, the
FastAPI-free request path that the gate's latency check times too (msgspec validation straight
into a numpy matrix, the live scorer, orjson serialisation). Skipped: routing through FastAPI's
dependency solving, Request/Response objects, per-candidate pydantic objects and response-model
re-validation. The weights scorer runs right here; the model scorer runs on the scoring pool,
within LTR_SCORE_TIMEOUT_MS (`ltr_serving.scoring_pool`). `openapi_route` describes the same
operation for the OpenAPI document (RankRequest, RankResponse, the explain query parameter,
413, 415, 422 and 503), and every error body keeps FastAPI's shapes ({"detail": "..."}, and the
422 list).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from functools import partial
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import orjson
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.routing import Match, Route

from ltr_core import codec
from ltr_core.exploration import assign_policy
from ltr_core.scoring import WeightsScorer
from ltr_serving.errors import MAX_ECHO_CHARS, safe_input, validation_errors
from ltr_serving.impressions import ImpressionRecord
from ltr_serving.models import (
    BodyTooLargeResponse,
    ErrorResponse,
    RankResponse,
    ValidationErrorResponse,
)
from ltr_serving.request_ids import Admitted, list_fingerprint
from ltr_serving.scoring_pool import ScoringTimeout, ScoringUnavailable
from ltr_serving.state import LiveModel, ServingState

log = logging.getLogger("ltr_serving.ranking")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PATH = "/rank"
JSON_HEADERS = [(b"content-type", b"application/json")]
REQUEST_ID_HEADER = b"x-request-id"
# visible ASCII but "%" stays as it is in the header; "%", spaces and non-ASCII are %-encoded
_HEADER_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def request_id_header(request_id: str) -> bytes:
    """The X-Request-ID value of a request id: the id itself when it is visible ASCII (no
    space) without "%" (what ids usually are), else percent-encoded UTF-8
    (`urllib.parse.unquote` gives it back), since a header carries no other text safely (HTTP
    strips a value's leading and trailing spaces)."""
    return quote(request_id, safe=_HEADER_SAFE).encode("ascii")


# ?explain= as FastAPI reads a boolean query parameter (pydantic's words, any case)
TRUE = frozenset((b"1", b"true", b"t", b"yes", b"y", b"on"))
FALSE = frozenset((b"0", b"false", b"f", b"no", b"n", b"off"))
CLOCK_HEADER = b"x-ltr-clock"
STARTING = "the service is starting"
NOTHING_LOADED = "no valid version is loaded; see GET /ltr/health for the last reload error"
# Never sent (the client is gone): the status an abandoned request is timed under, as nginx
# names it.
CLIENT_CLOSED = 499


class ClientGone(Exception):
    """The client closed the connection before its whole body arrived."""


async def read_body(scope: Scope, receive: Receive, limit: int) -> bytes | None:
    """The body, or None once it is known to exceed `limit` (nothing more is read then);
    raises `ClientGone` when the client leaves before the body's end."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            if not value.isdigit() or int(value) > limit:
                return None
            break
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def too_large_body(limit: int) -> bytes:
    """The 413 body (`BodyTooLargeResponse`) of a body over LTR_MAX_BODY_BYTES."""
    detail = f"request body larger than {limit} bytes (LTR_MAX_BODY_BYTES); not parsed"
    return orjson.dumps({"detail": detail, "limit_bytes": limit})


# The 415 answer as OpenAPI describes it, for every endpoint that checks `unsupported_body`.
JSON_MEDIA = "application/json"
UNSUPPORTED_BODY_RESPONSE: dict[str, Any] = {
    "model": ErrorResponse,
    "description": "a Content-Type other than application/json (or a +json type), none at all "
    "or an empty one, a charset other than UTF-8, or a Content-Encoding (the body must be "
    "uncompressed)",
}


def _explain(query_string: bytes) -> bool | bytes:
    """?explain in the query string as FastAPI reads a boolean, the last one given deciding
    (earlier ones are not looked at): True, False, or the 422 body of a value that is no
    boolean."""
    given: bytes | None = None
    for pair in query_string.split(b"&"):
        key, _, value = pair.partition(b"=")
        if key == b"explain":
            given = value
    if given is None:
        return False
    word = unquote_to_bytes(given).strip().lower()
    if word in TRUE or word in FALSE:
        return word in TRUE
    error = {
        "type": "bool_parsing",
        "loc": ["query", "explain"],
        "msg": "Input should be a valid boolean, unable to interpret input",
        "input": safe_input(given.decode("latin-1")),
    }
    return orjson.dumps({"detail": [error]})


def unsupported_body(scope: Scope) -> bytes | None:
    """None when the body is declared JSON (application/json or a +json type) and not encoded
    (no Content-Encoding, or `identity`) and, if it names a charset, UTF-8; else the 415 body,
    naming the header. A body with no
    Content-Type (or an empty one) is a 415 too: a browser page can send a cross-origin
    text/plain or form POST, or a `no-cors` fetch of a Blob with no type (no Content-Type at
    all), without asking first, and such a body is not ranked and logged as an impression. A
    compressed body would otherwise fail as "not UTF-8 text"."""
    declared = False
    for name, value in scope["headers"]:
        if name == b"content-type":
            media, _, params = value.partition(b";")
            media = media.strip().lower()
            if media == b"application/json" or (
                media.startswith(b"application/") and media.endswith(b"+json")
            ):
                charset = _charset(params)
                if charset not in (None, b"utf-8", b"utf8"):  # read as UTF-8 whatever it says
                    shown = charset.decode("latin-1")[:MAX_ECHO_CHARS]
                    detail = f"charset {shown!r} is not supported: send the body as UTF-8"
                    return orjson.dumps({"detail": detail})
                declared = True
                continue
            if media:
                shown = value.decode("latin-1")[:MAX_ECHO_CHARS]
                detail = f"Content-Type must be {JSON_MEDIA}, got {shown!r}"
                return orjson.dumps({"detail": detail})
        if name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            shown = value.decode("latin-1")[:MAX_ECHO_CHARS]
            detail = f"Content-Encoding {shown!r} is not supported: send the body uncompressed"
            return orjson.dumps({"detail": detail})
    if not declared:
        return orjson.dumps({"detail": f"Content-Type must be {JSON_MEDIA}, got none"})
    return None


def _charset(params: bytes) -> bytes | None:
    """The `charset` parameter of a media type's parameters (`; a=b; charset="x"`), lower
    case and unquoted; None when there is none."""
    for param in params.split(b";"):
        key, _, value = param.partition(b"=")
        if key.strip().lower() == b"charset":
            return value.strip().strip(b'"').lower()
    return None


async def _send(send: Send, status: int, body: bytes, request_id: str | None = None) -> int:
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    if request_id is not None:
        headers.append((REQUEST_ID_HEADER, request_id_header(request_id)))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
    return status


class RankEndpoint:
    """ASGI app of POST /rank. Ranks by descending score; ties by lawyer id."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.respond(scope, receive, send)

    async def respond(self, scope: Scope, receive: Receive, send: Send) -> int:
        """Answer the request; returns the status sent (the caller times the request)."""
        state: ServingState | None = getattr(scope["app"].state, "serving", None)
        if state is None:  # only between process start and the end of the lifespan's startup
            return await _send(send, 503, orjson.dumps({"detail": STARTING}))
        limit = state.settings.serving.max_body_bytes
        try:
            body = await read_body(scope, receive, limit)
        except ClientGone:  # nobody to answer: not a client error to count as a 422
            state.metrics.rank_abandoned.inc()
            return CLIENT_CLOSED
        if body is None:
            return await _send(send, 413, too_large_body(limit))
        live = state.live  # read once: this request uses this version from here to the end
        if live is None:
            return await _send(send, 503, orjson.dumps({"detail": NOTHING_LOADED}))
        unsupported = unsupported_body(scope)
        if unsupported is not None:
            return await _send(send, 415, unsupported)
        explain = _explain(scope["query_string"]) if scope["query_string"] else False
        if isinstance(explain, bytes):
            return await _send(send, 422, explain)
        try:
            parsed = codec.parse_request(body, state.settings.serving.max_candidates, explain)
        except codec.RequestError as exc:
            return await _send(send, 422, orjson.dumps({"detail": validation_errors(exc.errors)}))
        at = time.time()
        if state.simulated_clock:
            clock = simulated_clock_of(scope)
            if isinstance(clock, bytes):
                return await _send(send, 422, clock)
            if clock is not None:
                at = clock
        request_id = parsed.request_id or codec.new_request_id()
        canary = live.candidate
        answered_by = (live.version, canary.version if canary is not None else None)
        recent = state.request_ids
        fingerprint = None if parsed.request_id is None else list_fingerprint(parsed)
        _, admitted = recent.admit(request_id, fingerprint, answered_by)
        if admitted is None:
            first = recent.first(request_id)
            return await _send(send, 409, _reused(request_id, recent.capacity, first, answered_by))
        try:
            return await self._answer(
                state, live, scope, receive, send, body, parsed, request_id, admitted, at
            )
        finally:
            recent.release(admitted)

    async def _answer(
        self,
        state: ServingState,
        live: LiveModel,
        scope: Scope,
        receive: Receive,
        send: Send,
        body: bytes,
        parsed: codec.ParsedRequest,
        request_id: str,
        admitted: Admitted,
        at: float,
    ) -> int:
        """Rank an admitted request, log it when it is the first answer under its id, send it.
        A request whose client went away while it waited for the scoring pool is neither
        answered nor logged: its list was never shown (and a retry under its id is answered
        and logged as a first answer)."""
        scorer, canary = live.scorer, live.candidate
        state.metrics.count_candidates(len(parsed.ids))
        serving = state.settings.serving
        # While a candidate is loaded, the top LTR_INTERLEAVE_RATE of the request-id hash range
        # is answered by team-draft interleaving (`ltr_core.exploration.assign_policy`).
        interleave_rate = serving.interleave_rate if canary is not None else 0.0
        interleaved = (
            canary is not None
            and interleave_rate > 0.0
            and assign_policy(request_id, serving.explore_rate, interleave_rate) == "interleaved"
        )
        job: Callable[[], codec.Ranking]
        if canary is not None and interleaved:
            job = partial(
                codec.rank_interleaved, parsed, scorer, canary.scorer, live.version, request_id
            )
            on_loop = isinstance(scorer, WeightsScorer) and isinstance(canary.scorer, WeightsScorer)
        else:
            job = partial(
                codec.rank_request, parsed, scorer, live.version, request_id, state.exploration
            )
            on_loop = isinstance(scorer, WeightsScorer)
        if on_loop:  # bounded: scored here, on the event loop
            ranking = job()
        else:
            try:  # any other scorer: on the scoring pool, within LTR_SCORE_TIMEOUT_MS
                ranking = await state.scoring.run(job)
            except ScoringUnavailable as exc:
                reason = "timeout" if isinstance(exc, ScoringTimeout) else "busy"
                state.metrics.scoring_refused.labels(reason).inc()
                return await _send(send, 503, orjson.dumps({"detail": str(exc)}))
            # never blocks: a receive cancelled at its first wait (the body is read already)
            if await Request(scope, receive).is_disconnected():
                state.metrics.rank_abandoned.inc()
                return CLIENT_CLOSED
        events = state.events
        # the first answer under an id logs its list; a retry is answered as before and not
        # logged again. A few hundred ns: the writer expands the record.
        first_answer = admitted.answer()
        if events is not None and first_answer:
            events.submit(
                ImpressionRecord(
                    parsed,
                    request_id,
                    ranking.policy,
                    ranking.shown,
                    ranking.scores,
                    live.version,
                    at,
                    state.exploration,
                    interleave_rate,
                    ranking.interleaving,
                    canary.version if canary is not None else None,
                    body,
                )
            )
        return await _send(send, 200, ranking.body, request_id)


def _reused(
    request_id: str,
    capacity: int,
    first: tuple[int | None, tuple[str, str | None]] | None,
    now: tuple[str, str | None],
) -> bytes:
    shown = safe_input(request_id)
    if first is not None and first[0] is None:
        what = (
            f"request_id {shown!r} was made by this service for an earlier request, whose "
            "list was answered and logged under it"
        )
    elif first is not None and first[1] != now:
        what = (
            f"request_id {shown!r} was answered by version {_versions(first[1])} and the "
            f"service now runs {_versions(now)}: its answer could differ from the list that "
            "was logged"
        )
    else:
        what = (
            f"request_id {shown!r} already named another list (another case_id, top_k, or "
            "set of candidates, features or protected attributes)"
        )
    detail = (
        f"{what}, among the last {capacity:,} request ids this service answered: a request_id "
        "identifies one list (a retry of the same request may reuse it); send a new one, or "
        "none and the service makes one"
    )
    return orjson.dumps({"detail": detail})


def _versions(answered_by: tuple[str, str | None]) -> str:
    live, canary = answered_by
    return live if canary is None else f"{live} (canary {canary})"


def simulated_clock_of(scope: Scope) -> float | bytes | None:
    """The X-LTR-Clock header (LTR_SIMULATED_CLOCK) as epoch seconds; None when absent; the
    422 body when it is not an ISO 8601 time, or not one of years 1-9999 in UTC (the events'
    timestamps and day folders are UTC dates)."""
    for name, value in scope["headers"]:
        if name == CLOCK_HEADER:
            text = value.decode("latin-1").strip()
            try:
                parsed = datetime.fromisoformat(text)
                if parsed.tzinfo is None:
                    parsed = parsed.replace(tzinfo=UTC)
                return datetime.fromtimestamp(parsed.timestamp(), UTC).timestamp()
            except (ValueError, OverflowError, OSError):
                error = {
                    "type": "value_error",
                    "loc": ["header", "X-LTR-Clock"],
                    "msg": f"X-LTR-Clock {text[:100]!r} is not an ISO 8601 timestamp of "
                    "years 1-9999 in UTC",
                    "input": None,
                }
                return orjson.dumps({"detail": [error]})
    return None


async def respond_guarded(scope: Scope, receive: Receive, send: Send) -> int:
    """The endpoint as `ServingApp` calls it, outside Starlette's error middleware: an
    unexpected exception is logged and answered with a 500, as Starlette's
    ServerErrorMiddleware would, then raised for the server to log too. (The endpoint sends
    only at its end; if the failure came after the response started, the server refuses the
    second start, which is ignored here.)"""
    try:
        return await endpoint.respond(scope, receive, send)
    except Exception:
        log.exception("unexpected error in POST /rank")
        with contextlib.suppress(Exception):
            await _send(send, 500, orjson.dumps({"detail": "internal server error"}))
        raise


class RankRoute(Route):
    """A Starlette route that, like FastAPI's, records itself as `scope["route"]` (the latency
    metric's route label)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        match, child = super().matches(scope)
        if match is not Match.NONE:
            child["route"] = self
        return match, child


endpoint = RankEndpoint()
route = RankRoute(PATH, endpoint, methods=["POST"], include_in_schema=False)


async def _documented_rank() -> RankResponse:  # pragma: no cover - documentation only
    raise NotImplementedError


# The OpenAPI description of POST /rank (served by `route` above, never by this object).
openapi_route = APIRoute(
    PATH,
    _documented_rank,
    methods=["POST"],
    tags=["ranking"],
    summary="Rank",
    description="Rank by descending score; equal scores by `lawyer_id` (so a retry listing "
    "the candidates in another order gets the same answer). "
    "Per-feature contributions only with `explain` (weights scorer); `top_k` limits the answer. "
    "A share of requests (LTR_EXPLORE_RATE, chosen by a hash of `request_id`) is shown with "
    "positions 1 and k exchanged (`policy` is then `swap`; `rank` is always the shown "
    "position). While a canary candidate is loaded, another share (LTR_INTERLEAVE_RATE, the "
    "top of the same hash range) is answered by team-draft interleaving of the live and the "
    "candidate rankings (`policy` is then `interleaved`; `version` names the live version; "
    "each candidate's score is its picking ranker's). Every answered request is logged, one "
    "`match_recommendation` event per returned candidate, under its `request_id` (the "
    "client's, else one the service makes).",
    response_model=RankResponse,
    response_description="The ranked candidates. The `X-Request-ID` header repeats the body's "
    "`request_id`.",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/RankRequest"}}
            },
        },
        "parameters": [
            {
                "name": "explain",
                "in": "query",
                "required": False,
                "schema": {"type": "boolean", "default": False},
                "description": "add per-feature contributions, like `explain` in the body",
            }
        ],
    },
    responses={
        200: {
            "headers": {
                "X-Request-ID": {
                    "description": "the request id the answer was logged under (the body's "
                    "`request_id`): as it is when visible ASCII (no space) without '%', "
                    "else percent-encoded UTF-8 (a space as %20)",
                    "schema": {"type": "string"},
                }
            }
        },
        413: {"model": BodyTooLargeResponse, "description": "body over LTR_MAX_BODY_BYTES"},
        409: {
            "model": ErrorResponse,
            "description": "`request_id` already named another list (another case_id, top_k, "
            "or set of candidates, features or protected attributes), or was answered by other "
            "versions, or was made by this service, among the request ids this service answered "
            "lately; a retry of the same request may reuse its id (answered again, logged once)",
        },
        415: UNSUPPORTED_BODY_RESPONSE,
        422: {
            "model": ValidationErrorResponse,
            "description": "invalid request (body, or ?explain not a boolean), with the reason",
        },
        503: {
            "model": ErrorResponse,
            "description": "no valid version is loaded (see GET /ltr/health), or the model "
            "scorer could not score the request within LTR_SCORE_TIMEOUT_MS or had no free "
            "worker; the reason is in `detail`",
        },
    },
)
