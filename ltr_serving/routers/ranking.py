"""POST /rank: score a case's candidates with the live version and return them in order.

This is the hot path, so it skips two of FastAPI's conveniences that cost more than the scoring
itself: the body is parsed by pydantic-core straight from the raw bytes (no json.loads into
dicts first), and the response is serialized by orjson from plain dicts (no response-model
re-validation). The OpenAPI document still shows RankRequest / RankResponse, and errors keep
FastAPI's 422 shape.
"""

from __future__ import annotations

from collections import Counter
from operator import attrgetter
from typing import Any

import numpy as np
import orjson
from fastapi import APIRouter, HTTPException, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from ltr_assets.schema import FEATURES
from ltr_serving.dependencies import StateDep
from ltr_serving.models import RankRequest, RankResponse, error_detail

router = APIRouter(tags=["ranking"])

_feature_values = attrgetter(*FEATURES)
REQUEST_BODY_DOC = {
    "required": True,
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/RankRequest"}}},
}


def invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError([error_detail(("body", field), message)])


def parse_request(raw: bytes) -> RankRequest:
    try:
        return RankRequest.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None


@router.post(
    "/rank",
    response_model=RankResponse,
    openapi_extra={"requestBody": REQUEST_BODY_DOC},
)
async def rank(request: Request, state: StateDep) -> Response:
    """Rank by descending score; ties keep the request's order (a stable sort)."""
    body = parse_request(await request.body())
    n = len(body.candidates)
    limit = state.settings.max_candidates
    if n > limit:
        message = f"at most {limit} candidates per request (LTR_MAX_CANDIDATES), got {n}"
        raise invalid("candidates", message)
    ids = [c.lawyer_id for c in body.candidates]
    if len(set(ids)) != n:
        repeated = next(i for i, count in Counter(ids).items() if count > 1)
        raise invalid("candidates", f"lawyer_id {repeated!r} appears more than once")
    live = state.live  # read once: this request uses this version from here to the end
    if live is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "no valid version is loaded; see GET /ltr/health for the last reload error",
        )
    state.metrics.ranked_candidates.observe(n)
    matrix = np.array([_feature_values(c.features) for c in body.candidates], dtype=np.float64)
    matrix = matrix.reshape(n, len(FEATURES))  # attrgetter of a single feature gives a scalar
    scores = live.scorer.score(matrix)
    order = np.argsort(-scores, kind="stable")[: body.top_k].tolist()
    score_list = scores.tolist()
    ranked: list[dict[str, Any]]
    if live.explains:
        contributions = live.scorer.contributions(matrix).tolist()  # type: ignore[attr-defined]
        # rows have exactly len(FEATURES) values by construction, so zip needs no strict check
        by_feature = [dict(zip(FEATURES, row)) for row in contributions]  # noqa: B905
        ranked = [
            {
                "lawyer_id": ids[i],
                "rank": position,
                "score": score_list[i],
                "contributions": by_feature[i],
            }
            for position, i in enumerate(order, start=1)
        ]
    else:
        ranked = [
            {"lawyer_id": ids[i], "rank": position, "score": score_list[i], "contributions": None}
            for position, i in enumerate(order, start=1)
        ]
    payload = {
        "case_id": body.case_id,
        "version": live.version,
        "scorer": live.scorer_kind,
        "candidates": ranked,
    }
    return Response(orjson.dumps(payload), media_type="application/json")
