"""Request and response bodies of the ranking service (pydantic v2).

The feature model is generated from `ltr_assets.schema.FEATURES`, so adding a feature there adds
a required field here. Validation runs in pydantic-core: each feature is a required, strict number
in [0, 1] (finite; no strings, no booleans); unknown features are rejected so that a typo in a
feature code is an error instead of a silently ignored value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from ltr_assets.schema import FEATURE_DESCRIPTIONS, FEATURES, PROTECTED_ATTRIBUTES

FeatureValue = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False, strict=True)]

_FEATURE_FIELDS: dict[str, Any] = {
    code: (FeatureValue, Field(description=FEATURE_DESCRIPTIONS[code])) for code in FEATURES
}
Features: type[BaseModel] = create_model(
    "Features",
    __config__=ConfigDict(extra="forbid", frozen=True),
    __doc__="One value in [0, 1] per feature; higher is better.",
    **_FEATURE_FIELDS,
)

ProtectedValue = str | bool | None
ID_MAX_LENGTH = 200


class ProtectedAttributes(BaseModel):
    """Optional, for fairness monitoring only: never used to score. Only these four keys."""

    model_config = ConfigDict(extra="forbid")

    gender: ProtectedValue = None
    ethnicity: ProtectedValue = None
    pcd: ProtectedValue = None
    orientation: ProtectedValue = None

    @model_validator(mode="before")
    @classmethod
    def _known_attributes(cls, value: Any) -> Any:
        """One clear message naming the unknown keys (the schema lists the allowed ones)."""
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(PROTECTED_ATTRIBUTES))
            if unknown:
                raise ValueError(
                    f"unknown protected attributes {unknown}; allowed: {list(PROTECTED_ATTRIBUTES)}"
                )
        return value


assert tuple(ProtectedAttributes.model_fields) == PROTECTED_ATTRIBUTES


class Candidate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lawyer_id: Annotated[str, Field(min_length=1, max_length=ID_MAX_LENGTH)]
    features: Features
    protected_attributes: ProtectedAttributes | None = None


class RankRequest(BaseModel):
    """The size limit (LTR_MAX_CANDIDATES, a runtime setting) and the rule that a lawyer appears
    once per list are checked by the request path (`ltr_serving.codec`), not here."""

    model_config = ConfigDict(extra="forbid")

    case_id: Annotated[str, Field(min_length=1, max_length=ID_MAX_LENGTH)]
    candidates: Annotated[list[Candidate], Field(min_length=1)]
    top_k: Annotated[int | None, Field(ge=1, description="return only the best top_k")] = None
    explain: bool = Field(
        default=False,
        description="add per-feature contributions (weights scorer); also ?explain=true",
    )


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


def error_detail(loc: tuple[str | int, ...], msg: str, value: Any = None) -> dict[str, Any]:
    """One entry in the shape FastAPI gives request validation errors (so clients see one form)."""
    return {"type": "value_error", "loc": loc, "msg": msg, "input": value}
