"""POST /feedback: log `offer_feedback` events (one object, or a list of at most
MAX_FEEDBACK_BATCH) through the same event log as the impressions.

Auth: `Authorization: Bearer $LTR_FEEDBACK_TOKEN`, compared in constant time.
- LTR_FEEDBACK_TOKEN unset, or LTR_IMPRESSION_LOG=off: 503 "feedback logging is not configured"
  (the server, not the caller, lacks something; nothing is logged);
- header missing or not "Bearer <token>": 401 with `WWW-Authenticate: Bearer`; wrong token: 403.
Each event is validated as the pipeline's ingest validates it (`ltr_core.events.parse_event`),
after the `FeedbackEvent` model (which names the field of a missing or mistyped value), and its
time against the ingest's bounds on the service's clock: more than LTR_MAX_CLOCK_SKEW_HOURS past
the end of today (UTC) or more than LTR_MAX_EVENT_AGE_DAYS old, the ingest would quarantine it
(`future_timestamp`, `old_timestamp`), so it is refused here; and an event of a UTC day whose
nightly read (`ltr_core.events.nightly_read_at`, 02:15 UTC the next day) comes before a file
written now is complete (LTR_SERVING_LOG_ROTATE_SECONDS) would be read by no scheduled run (the
serving log's file of its day is not read again; Kafka quarantines it as `late_event`), so it is
refused as `late_event`. Under LTR_SIMULATED_CLOCK the clock is the `X-LTR-Clock` header, and
without one no time is checked (simulations send events stamped in the simulated past).
200 when all were logged; 422 when some were refused: `detail` names each refused event's
field (loc ["body", index, field] in a batch), and the good ones are logged and counted all the
same; a body that is no event or list of 1 to MAX_FEEDBACK_BATCH events is a 422 of the same
shape with nothing accepted. Echoed values are cut as /rank cuts them. A body not declared JSON
(no Content-Type included), or compressed, is a 415 as on /rank; one over LTR_MAX_BODY_BYTES a
413 with `limit_bytes`. 503 when the event log cannot take the events (it could not write them,
did not confirm them within CONFIRM_TIMEOUT_S (plus, with Kafka,
LTR_IMPRESSION_KAFKA_TIMEOUT_SECONDS), or the service is stopping: retry, the events are
deduplicated by event_id; a writer merely behind never refuses, its backlog spills to files).
A 200 means the events were written: to a file, or acknowledged by Kafka (or, Kafka not
answering within its timeout, spilled to a file).
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Header, HTTPException, Request, Security, status
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPBearer
from pydantic import SecretStr, ValidationError

from ltr_core.codec import not_utf8_message
from ltr_core.events import EventRow, Rejection, nightly_read_at, parse_event
from ltr_core.features import ACTION_GRADES, FEEDBACK
from ltr_core.kafka_client import event_key
from ltr_core.settings import EventTimeBounds, bearer_accepted
from ltr_serving.dependencies import StateDep
from ltr_serving.errors import MAX_ECHO_CHARS, safe_input, validation_errors
from ltr_serving.impressions import FeedbackRecord, Line, RecordLog
from ltr_serving.models import (
    BodyTooLargeResponse,
    ErrorResponse,
    FeedbackEvent,
    FeedbackResponse,
    ValidationErrorResponse,
)
from ltr_serving.routers.ranking import (
    CLIENT_CLOSED,
    UNSUPPORTED_BODY_RESPONSE,
    ClientGone,
    read_body,
    simulated_clock_of,
    too_large_body,
    unsupported_body,
)

router = APIRouter(tags=["logging"])
# Declares the bearer scheme in OpenAPI; never refuses by itself (`check_bearer` does, with the
# messages above).
bearer = HTTPBearer(
    auto_error=False,
    scheme_name="feedbackToken",
    description="Authorization: Bearer $LTR_FEEDBACK_TOKEN",
)
log = logging.getLogger("ltr_serving.feedback")

MAX_FEEDBACK_BATCH = 1000
# How long /feedback waits for the event log to confirm the events written (a writer process
# being replaced re-sends them within a second or two), plus, with Kafka, its timeout (a hung
# broker: the events are spilled to a file past it).
CONFIRM_TIMEOUT_S = 10.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
NOT_CONFIGURED = "feedback logging is not configured"
JSON = "application/json"
_FIELD_OF_KIND = {
    "bad_timestamp": "timestamp",
    "bad_action": "action",
    "unknown_event_type": "event_type",
    "missing_features": "features",
}

assert set(FeedbackEvent.model_fields["action"].annotation.__args__) == set(ACTION_GRADES)  # type: ignore[union-attr]


async def _logged(events: RecordLog, record: FeedbackRecord, timeout_s: float) -> bool:
    """Hand the events to the log and wait until it says they were written (True), failed or
    did not say so within `timeout_s` (False): a 200 means written."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[bool] = loop.create_future()

    def settle(written: bool) -> None:
        if not outcome.done():
            outcome.set_result(written)

    def on_done(written: bool) -> None:  # called on the log's threads, or here at once
        loop.call_soon_threadsafe(settle, written)

    if not events.submit(record, on_done):
        return False
    try:
        return await asyncio.wait_for(outcome, timeout_s)
    except TimeoutError:
        return False


def check_bearer(expected: SecretStr, authorization: str | None, client: str) -> None:
    """Raises the 401/403 described above. Logs refusals with the caller, never a token."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        log.warning("feedback refused: no bearer token", extra={"client": client})
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing or malformed Authorization header; expected 'Bearer <token>'",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not bearer_accepted(expected, token):
        log.warning("feedback refused: wrong token", extra={"client": client})
        raise HTTPException(status.HTTP_403_FORBIDDEN, "invalid feedback token")


def _rejection_field(rejection: Rejection) -> str:
    field = _FIELD_OF_KIND.get(rejection.kind)
    if field is not None:
        return field
    words = rejection.reason.split()
    if rejection.kind == "missing_id" and len(words) > 1:  # "missing case_id"
        return words[1]
    return words[0] if words else "body"  # "lawyer_id 3.5 must be a string"


def _error(loc: tuple[str | int, ...], kind: str, msg: str, value: Any = None) -> dict[str, Any]:
    if len(msg) > 3 * MAX_ECHO_CHARS:  # a reason that quotes a long value
        msg = msg[: 3 * MAX_ECHO_CHARS] + "…"
    return {"type": kind, "loc": list(loc), "msg": msg, "input": safe_input(value)}


def _refused(errors: list[dict[str, Any]], rejected: int) -> JSONResponse:
    """The 422 of a body refused as a whole, in the shape of every /feedback answer."""
    out = {"accepted": 0, "rejected": rejected, "detail": errors}
    return JSONResponse(out, status_code=422)


def time_error(
    when: datetime,
    now: datetime,
    bounds: EventTimeBounds,
    loc: tuple[str | int, ...],
    complete_within: timedelta = timedelta(0),
) -> dict[str, Any] | None:
    """The error of an event time the ingest would quarantine, judged on the service's clock
    as the ingest judges Kafka's (today's end plus the skew; the age bound back from now), or
    of one no scheduled run would read: its UTC day's nightly read (`nightly_read_at`) comes
    before `now` plus `complete_within` (how long a file written now may stay incomplete,
    unread)."""
    today_ends = datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)
    stamp = when.isoformat().replace("+00:00", "Z")
    if when > today_ends + bounds.max_clock_skew:
        msg = (
            f"timestamp {stamp} is more than LTR_MAX_CLOCK_SKEW_HOURS "
            f"({bounds.max_clock_skew_hours:g} h) past the end of today (UTC); the pipeline "
            "would quarantine it as future_timestamp"
        )
        return _error((*loc, "timestamp"), "future_timestamp", msg)
    if when < now - bounds.max_event_age:
        msg = (
            f"timestamp {stamp} is more than LTR_MAX_EVENT_AGE_DAYS "
            f"({bounds.max_event_age_days}) days old; the pipeline would quarantine it as "
            "old_timestamp"
        )
        return _error((*loc, "timestamp"), "old_timestamp", msg)
    read_at = nightly_read_at(when.date())
    if now + complete_within >= read_at:
        msg = (
            f"timestamp {stamp} is of {when.date()} (UTC), read by the nightly run at "
            f"{read_at:%Y-%m-%d %H:%M} UTC, less LTR_SERVING_LOG_ROTATE_SECONDS "
            f"({complete_within.total_seconds():g} s) for its file to be complete: too late, "
            "no scheduled run would read it (send feedback as it happens)"
        )
        return _error((*loc, "timestamp"), "late_event", msg)
    return None


def _check(item: Any, loc: tuple[str | int, ...]) -> tuple[EventRow, bytes] | list[dict[str, Any]]:
    """The validated row and the line to log, or the errors naming the bad fields."""
    try:
        FeedbackEvent.model_validate(item)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        return validation_errors([{**e, "loc": (*loc, *e["loc"])} for e in errors])
    line = orjson.dumps(item)
    row = parse_event(line)
    if isinstance(row, Rejection):
        field = _rejection_field(row)
        return [_error((*loc, field), row.kind, row.reason, item.get(field))]
    if row is None or row.event_type != FEEDBACK:  # cannot happen after the model
        return [_error((*loc, "event_type"), "value_error", f"not an {FEEDBACK} event")]
    return row, line + b"\n"


@router.post(
    "/feedback",
    response_model=FeedbackResponse,
    responses={
        401: {"model": ErrorResponse, "description": "no bearer token"},
        403: {"model": ErrorResponse, "description": "wrong token"},
        413: {"model": BodyTooLargeResponse, "description": "body over LTR_MAX_BODY_BYTES"},
        415: UNSUPPORTED_BODY_RESPONSE,
        422: {
            "model": FeedbackResponse,
            "description": "some (or all) events refused; `detail` names each one's field; the "
            "others were logged. A `timestamp` refused as `late_event` is of a day whose "
            "nightly read (02:15 UTC the next day, less LTR_SERVING_LOG_ROTATE_SECONDS) has "
            "come: no scheduled run would read it",
        },
        503: {
            "model": ErrorResponse,
            "description": "feedback logging is not configured (LTR_FEEDBACK_TOKEN unset or "
            "LTR_IMPRESSION_LOG=off), or the event log could not write or confirm all the "
            "events in time (its writer is gone, the service is stopping, a file cannot be "
            "written; some may have been written: retry, the events are deduplicated by "
            "event_id)",
        },
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "anyOf": [
                            {"$ref": "#/components/schemas/FeedbackEvent"},
                            {
                                "type": "array",
                                "items": {"$ref": "#/components/schemas/FeedbackEvent"},
                                "minItems": 1,
                                "maxItems": MAX_FEEDBACK_BATCH,
                            },
                        ]
                    }
                }
            },
        }
    },
    dependencies=[Security(bearer)],
)
async def feedback(
    request: Request,
    state: StateDep,
    authorization: str | None = Header(default=None, include_in_schema=False),
) -> Response:
    """Log `offer_feedback` events: one object, or a list of at most 1000."""
    serving = state.settings.serving
    events = state.events
    if not serving.feedback_enabled or events is None:
        reason = "LTR_FEEDBACK_TOKEN is not set" if events is not None else "LTR_IMPRESSION_LOG=off"
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"{NOT_CONFIGURED}: {reason}")
    check_bearer(
        serving.feedback_token, authorization, request.client.host if request.client else "?"
    )
    unsupported = unsupported_body(request.scope)
    if unsupported is not None:
        return Response(unsupported, status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, media_type=JSON)
    limit = serving.max_body_bytes
    try:
        body = await read_body(request.scope, request.receive, limit)
    except ClientGone:  # nobody to answer, nothing accepted: not counted as a client error
        return Response(status_code=CLIENT_CLOSED)
    if body is None:
        return Response(too_large_body(limit), status.HTTP_413_CONTENT_TOO_LARGE, media_type=JSON)
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:  # orjson names a bad byte sequence "surrogates not allowed", at char 0
            body.decode()
        except UnicodeDecodeError as bad:
            return _refused([_error(("body",), "json_invalid", not_utf8_message(bad))], 0)
        return _refused([_error(("body",), "json_invalid", f"Invalid JSON: {exc}")], 0)
    batch = isinstance(parsed, list)
    items = parsed if batch else [parsed]
    if not items or len(items) > MAX_FEEDBACK_BATCH:
        msg = f"send 1 to {MAX_FEEDBACK_BATCH} events per request, got {len(items)}"
        return _refused([_error(("body",), "value_error", msg)], len(items))
    bounds: EventTimeBounds | None = state.settings.event_time
    now = datetime.now(UTC)
    if state.simulated_clock:  # its clock is the header's; without one, no time is checked
        clock = simulated_clock_of(request.scope)
        if isinstance(clock, bytes):
            return _refused(orjson.loads(clock)["detail"], len(items))
        if clock is None:
            bounds = None
        else:
            now = datetime.fromtimestamp(clock, UTC)
    complete_within = timedelta(seconds=serving.log_rotate_s)
    good: list[tuple[str, Line]] = []
    errors: list[dict[str, Any]] = []
    rejected = 0
    rows_by_id: dict[str, tuple[int, EventRow]] = {}  # event id -> the first event's index, row
    for index, item in enumerate(items):
        loc: tuple[str | int, ...] = ("body", index) if batch else ("body",)
        if not isinstance(item, dict):
            errors.append(_error(loc, "model_type", "an event is a JSON object"))
            rejected += 1
            continue
        checked = _check(item, loc)
        if isinstance(checked, list):
            errors.extend(checked)
            rejected += 1
        else:
            row, line = checked
            when = row.timestamp
            late = (
                time_error(when, now, bounds, loc, complete_within) if bounds is not None else None
            )
            if late is not None:
                errors.append(late)
                rejected += 1
                continue
            # the same row as the ingest reads it (key order, the timestamp's spelling and other
            # keys aside) is a copy it deduplicates; another row under the same id is refused,
            # a time included: the ingest would keep the earliest copy of a retry sent later,
            # but within one batch another time is no retry, it is another event
            first = rows_by_id.setdefault(row.event_id, (index, row))
            if first[1] != row:
                msg = (
                    f"event_id {safe_input(row.event_id)!r} names another event earlier in this "
                    f"batch (index {first[0]}): an event_id identifies one event"
                )
                errors.append(_error((*loc, "event_id"), "conflicting_event_id", msg))
                rejected += 1
                continue
            at_ms = (when - _EPOCH) // _MS
            good.append((when.date().isoformat(), Line(line, event_key(item), at_ms, "feedback")))
    # with Kafka, an event is written once Kafka acknowledged it or, past the Kafka timeout,
    # it was spilled to a file: the wait allows for both
    kafka_s = serving.impression_kafka_timeout_s if serving.impression_log == "kafka" else 0.0
    timeout_s = CONFIRM_TIMEOUT_S + kafka_s
    if good and not await _logged(events, FeedbackRecord(good), timeout_s):
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the event log could not write the events (see last_error in /ltr/health) or did "
            f"not confirm them within {timeout_s:g} s; retry: the events are deduplicated by "
            "event_id",
        )
    out = FeedbackResponse.model_validate(
        {"accepted": len(good), "rejected": rejected, "detail": errors}
    )
    return JSONResponse(out.model_dump(mode="json"), status_code=422 if errors else 200)


__all__ = ["ValidationErrorResponse", "router"]
