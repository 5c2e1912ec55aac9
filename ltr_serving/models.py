"""Request and response bodies of the ranking service (pydantic v2).

The feature model is generated from `ltr_assets.schema.FEATURES`, so adding a feature there adds
a required field here. Validation runs in pydantic-core: each feature is a required, strict number
in [0, 1] (finite; no strings, no booleans); unknown features are rejected so that a typo in a
feature code is an error instead of a silently ignored value.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator

from ltr_assets.schema import FEATURE_DESCRIPTIONS, FEATURES, PROTECTED_ATTRIBUTES

FeatureValue = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False, strict=True)]

Features: type[BaseModel] = create_model(
    "Features",
    __config__=ConfigDict(extra="forbid", frozen=True),
    __doc__="One value in [0, 1] per feature; higher is better.",
    **{code: (FeatureValue, Field(description=FEATURE_DESCRIPTIONS[code])) for code in FEATURES},
)

ProtectedValue = str | bool | None


class Candidate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lawyer_id: Annotated[str, Field(min_length=1, max_length=200)]
    features: Features  # type: ignore[valid-type]
    protected_attributes: dict[str, ProtectedValue] | None = Field(
        default=None,
        description=(
            "Optional, for fairness monitoring only: never used to score. "
            f"Keys among {', '.join(PROTECTED_ATTRIBUTES)}."
        ),
    )

    @field_validator("protected_attributes")
    @classmethod
    def _known_attributes(
        cls, value: dict[str, ProtectedValue] | None
    ) -> dict[str, ProtectedValue] | None:
        if value is not None:
            unknown = sorted(set(value) - set(PROTECTED_ATTRIBUTES))
            if unknown:
                raise ValueError(
                    f"unknown protected attributes {unknown}; allowed: {list(PROTECTED_ATTRIBUTES)}"
                )
        return value


class RankRequest(BaseModel):
    """The size limit (LTR_MAX_CANDIDATES, a runtime setting) and the rule that a lawyer appears
    once per list are checked by the route, where they cost a set() instead of a validator."""

    model_config = ConfigDict(extra="forbid")

    case_id: Annotated[str, Field(min_length=1, max_length=200)]
    candidates: Annotated[list[Candidate], Field(min_length=1)]
    top_k: Annotated[int | None, Field(ge=1)] = None


class RankedCandidate(BaseModel):
    lawyer_id: str
    rank: int = Field(description="1-based position")
    score: float
    contributions: dict[str, float] | None = Field(
        default=None,
        description="weight × value per feature (weights scorer only; they sum to the score)",
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


class ReloadResponse(BaseModel):
    reloaded: bool
    version: str | None
    previous_version: str | None
    error: str | None


def error_detail(loc: tuple[str | int, ...], msg: str, value: Any = None) -> dict[str, Any]:
    """One entry in the shape FastAPI gives request validation errors (so clients see one form)."""
    return {"type": "value_error", "loc": loc, "msg": msg, "input": value}
