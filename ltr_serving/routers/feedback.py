"""POST /feedback: log `offer_feedback` events (one object, or a list of at most
MAX_FEEDBACK_BATCH) through the same event log as the impressions.

Auth: `Authorization: Bearer $LTR_FEEDBACK_TOKEN`, compared in constant time.
- LTR_FEEDBACK_TOKEN unset, or LTR_IMPRESSION_LOG=off: 503 "feedback logging is not configured"
  (the server, not the caller, lacks something; nothing is logged);
- header missing or not "Bearer <token>": 401 with `WWW-Authenticate: Bearer`; wrong token: 403.
Each event is validated as the pipeline's ingest validates it (`ltr_core.events.parse_event`),
after the `FeedbackEvent` model (which names the field of a missing or mistyped value). 200 when
all were logged; 422 when some were refused: `detail` names each refused event's field
(loc ["body", index, field] in a batch), and the good ones are logged and counted all the same.
503 when the event log's queue is full (nothing of the request was logged: retry).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from fastapi import APIRouter, Header, HTTPException, Request, status
from fastapi.responses import JSONResponse
from pydantic import SecretStr, ValidationError

from ltr_core.events import EventRow, Rejection, parse_event
from ltr_core.features import ACTION_GRADES, FEEDBACK
from ltr_core.kafka_client import event_key
from ltr_serving.dependencies import StateDep
from ltr_serving.errors import validation_errors
from ltr_serving.impressions import FeedbackRecord, Line
from ltr_serving.models import FeedbackEvent, FeedbackResponse, ValidationErrorResponse
from ltr_serving.routers.ranking import read_body

router = APIRouter(tags=["logging"])
log = logging.getLogger("ltr_serving.feedback")

MAX_FEEDBACK_BATCH = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
NOT_CONFIGURED = "feedback logging is not configured"
_FIELD_OF_KIND = {
    "bad_timestamp": "timestamp",
    "bad_action": "action",
    "unknown_event_type": "event_type",
    "missing_features": "features",
}

assert set(FeedbackEvent.model_fields["action"].annotation.__args__) == set(ACTION_GRADES)  # type: ignore[union-attr]


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
    given = hashlib.sha256(token.strip().encode()).digest()
    wanted = hashlib.sha256(expected.get_secret_value().strip().encode()).digest()
    if not hmac.compare_digest(given, wanted):
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
    return {"type": kind, "loc": list(loc), "msg": msg, "input": value}


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
        401: {"description": "no bearer token"},
        403: {"description": "wrong token"},
        413: {"description": "body over LTR_MAX_BODY_BYTES"},
        422: {
            "model": FeedbackResponse,
            "description": "some (or all) events refused; `detail` names each one's field; the "
            "others were logged",
        },
        503: {
            "description": "feedback logging is not configured (LTR_FEEDBACK_TOKEN unset or "
            "LTR_IMPRESSION_LOG=off), or the event log's queue is full (retry)"
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
)
async def feedback(
    request: Request, state: StateDep, authorization: str | None = Header(default=None)
) -> JSONResponse:
    """Log `offer_feedback` events: one object, or a list of at most 1000."""
    serving = state.settings.serving
    events = state.events
    if not serving.feedback_enabled or events is None:
        reason = "LTR_FEEDBACK_TOKEN is not set" if events is not None else "LTR_IMPRESSION_LOG=off"
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, f"{NOT_CONFIGURED}: {reason}")
    check_bearer(
        serving.feedback_token, authorization, request.client.host if request.client else "?"
    )
    limit = serving.max_body_bytes
    body = await read_body(request.scope, request.receive, limit)
    if body is None:
        raise HTTPException(
            status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
            f"request body larger than {limit} bytes (LTR_MAX_BODY_BYTES); not parsed",
        )
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        error = _error(("body",), "json_invalid", f"Invalid JSON: {exc}")
        return JSONResponse({"detail": [error]}, status_code=422)
    batch = isinstance(parsed, list)
    items = parsed if batch else [parsed]
    if not items or len(items) > MAX_FEEDBACK_BATCH:
        msg = f"send 1 to {MAX_FEEDBACK_BATCH} events per request, got {len(items)}"
        return JSONResponse({"detail": [_error(("body",), "value_error", msg)]}, status_code=422)
    good: list[tuple[str, Line]] = []
    errors: list[dict[str, Any]] = []
    rejected = 0
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
            at_ms = (when - _EPOCH) // _MS
            good.append((when.date().isoformat(), Line(line, event_key(item), at_ms, "feedback")))
    if good and not events.submit(FeedbackRecord(good)):
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "the event log could not take the events (its queue is full or its writer is gone); "
            "nothing was logged, retry",
        )
    out = FeedbackResponse.model_validate(
        {"accepted": len(good), "rejected": rejected, "detail": errors}
    )
    return JSONResponse(out.model_dump(mode="json"), status_code=422 if errors else 200)


__all__ = ["ValidationErrorResponse", "router"]
