"""The ranking request's body (pydantic v2): what `/rank` accepts and the latency gate times.

The feature model is generated from `ltr_core.features.FEATURES`, so adding a feature there adds
a required field here. Validation runs in pydantic-core: each feature is a required, strict number
in [0, 1] (finite; no strings, no booleans); unknown features are rejected so that a typo in a
feature code is an error instead of a silently ignored value.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator

from ltr_core.features import FEATURE_DESCRIPTIONS, FEATURES, PROTECTED_ATTRIBUTES

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
# The service's impression events are named `imp-<hash of the request id>-<lawyer id>`: no other
# event may take such an id, or the ingest, which keeps one event per id, would drop one of them.
IMPRESSION_ID_PREFIX = "imp-"


class ProtectedAttributes(BaseModel):
    """Optional, for fairness monitoring only: never used to score. Only these four keys, each a
    string, a boolean or null (strict: `0` is no `false`)."""

    model_config = ConfigDict(extra="forbid", strict=True)

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


_ID_SPELLING = "not blank, no whitespace at either end (422 otherwise)"


class Candidate(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    lawyer_id: Annotated[
        str, Field(min_length=1, max_length=ID_MAX_LENGTH, description=_ID_SPELLING)
    ]
    features: Features
    protected_attributes: ProtectedAttributes | None = None


class RankRequest(BaseModel):
    """The size limit (LTR_MAX_CANDIDATES, a runtime setting), the rule that a lawyer appears
    once per list and the ids' spelling (no surrounding whitespace: the ingest strips it) are
    checked by the request path (`ltr_core.codec`), not here. Strict, as the JSON schema reads:
    `"top_k": "3"` or `"explain": 1` is refused (422), never converted."""

    model_config = ConfigDict(extra="forbid", strict=True)

    case_id: Annotated[str, Field(min_length=1, max_length=ID_MAX_LENGTH, description=_ID_SPELLING)]
    candidates: Annotated[list[Candidate], Field(min_length=1)]
    top_k: Annotated[int | None, Field(ge=1, description="return only the best top_k")] = None
    request_id: Annotated[
        str | None,
        Field(
            min_length=1,
            max_length=ID_MAX_LENGTH,
            description="the client's id of this list, echoed in the response and logged with "
            "every impression (feedback refers to it); the service makes one when absent. It "
            "names one list: reused for another case_id or set of candidates it is a 409 (a "
            "retry of the same request may reuse it); " + _ID_SPELLING,
        ),
    ] = None
    explain: bool = Field(
        default=False,
        description="add per-feature contributions (weights scorer); also ?explain=true",
    )
