"""422 bodies: FastAPI's {"detail": [{"type", "loc", "msg", "input"}]} shape, made safe to send.

FastAPI echoes each error's whole input: a NaN or an integer past 64 bits there breaks JSON
encoding (a 500 instead of the 422), and a list-level error would echo the whole candidate list.
Only scalar inputs are echoed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

MAX_ECHO_CHARS = 100


_INT64 = range(-(2**63), 2**64)  # what the JSON encoder writes as a number


def safe_input(value: Any) -> Any:
    """What a 422 may echo of an input: scalars only, long strings cut, an integer JSON cannot
    carry as a number (past 64 bits) described instead of echoed."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if value in _INT64 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value if len(value) <= MAX_ECHO_CHARS else value[:MAX_ECHO_CHARS] + "…"
    return None  # lists and objects: the loc already says where


def validation_errors(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "type": str(error.get("type", "value_error")),
            "loc": list(error.get("loc", ())),
            "msg": str(error.get("msg", "")),
            "input": safe_input(error.get("input")),
        }
        for error in errors
    ]
