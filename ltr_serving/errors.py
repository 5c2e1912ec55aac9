"""422 bodies: FastAPI's {"detail": [{"type", "loc", "msg", "input"}]} shape, made safe to send.

FastAPI echoes each error's whole input: a NaN there breaks JSON encoding (a 500 instead of the
422), and a list-level error would echo the whole candidate list. Only scalar inputs are echoed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

MAX_ECHO_CHARS = 100


def _safe_input(value: Any) -> Any:
    if value is None or isinstance(value, bool | int):
        return value
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
            "input": _safe_input(error.get("input")),
        }
        for error in errors
    ]
