"""Response and status bodies of the ranking service (pydantic v2); the request body is
`ltr_core.rank_api`, shared with the pipeline's latency gate."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class RankedCandidate(BaseModel):
    lawyer_id: str
    rank: int = Field(description="1-based position")
    score: float
    contributions: dict[str, float] | None = Field(
        default=None,
        description="weight × value per feature, only with explain=true and the weights scorer "
        "(they sum to the score); absent otherwise",
    )


class RankResponse(BaseModel):
    case_id: str
    version: str = Field(description="the artifact version that ranked this request")
    scorer: str
    candidates: list[RankedCandidate]


class ReloadAttemptOut(BaseModel):
    at: datetime
    trigger: str
    ok: bool
    version: str | None
    previous_version: str | None
    error: str | None
    duration_ms: float


class ScoringHealth(BaseModel):
    """The pool that scores /rank with the model scorer (the weights scorer needs none)."""

    workers: int
    busy: int = Field(description="workers scoring a request now")
    stuck: int = Field(
        description="workers still running a request that already failed with a timeout"
    )
    timeout_ms: float = Field(description="LTR_SCORE_TIMEOUT_MS")


class HealthResponse(BaseModel):
    status: str = Field(description="ok | degraded (last reload refused) | unavailable")
    version: str | None
    scorer: str
    loaded_at: datetime | None
    source: str | None = Field(description="file or s3")
    origin: str | None
    partition: str | None
    last_reload: ReloadAttemptOut | None
    last_reload_error: str | None
    poll_seconds: float
    reload_enabled: bool
    scoring: ScoringHealth
    reload_stuck_since: datetime | None = Field(
        default=None,
        description="set while a reload's read has outlived LTR_RELOAD_TIMEOUT_SECONDS "
        "(a stalled store); reloads are answered 503 until it returns",
    )


class ReloadResponse(BaseModel):
    reloaded: bool
    version: str | None
    previous_version: str | None
    error: str | None


class ValidationErrorItem(BaseModel):
    type: str
    loc: list[str | int] = Field(
        description='where, e.g. ["body", "candidates", 2, "features", "A"]'
    )
    msg: str
    input: Any = Field(default=None, description="the offending value when it is a scalar")


class ValidationErrorResponse(BaseModel):
    """422: the request body is invalid (FastAPI's shape)."""

    detail: list[ValidationErrorItem]


class BodyTooLargeResponse(BaseModel):
    """413: the body is larger than LTR_MAX_BODY_BYTES; it was not read further nor parsed."""

    detail: str
    limit_bytes: int
