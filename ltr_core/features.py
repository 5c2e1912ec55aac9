"""The event and feature vocabulary: the one place that lists features, attributes and grades."""

from __future__ import annotations

# Feature code -> meaning. All values lie in [0, 1]; higher is better. Order matters: it is the
# column order of every feature matrix, model and weights file.
FEATURE_DESCRIPTIONS: dict[str, str] = {
    "A": "area match",
    "S": "case similarity",
    "T": "success rate",
    "G": "geographic fit",
    "Q": "qualification",
    "U": "urgency fit",
    "R": "reviews",
    "C": "soft skills",
    "E": "firm reputation",
    "P": "price fit",
    "M": "maturity",
}
FEATURES: tuple[str, ...] = tuple(FEATURE_DESCRIPTIONS)

# Protected attributes for the fairness gap. A missing value is its own "unknown" value.
PROTECTED_ATTRIBUTES: tuple[str, ...] = ("gender", "ethnicity", "pcd", "orientation")
UNKNOWN = "unknown"

RECOMMENDATION = "match_recommendation"
FEEDBACK = "offer_feedback"
EVENT_TYPES: tuple[str, ...] = (RECOMMENDATION, FEEDBACK)

# Graded relevance: the strongest feedback wins (platform scale 0 / 0.3 / 0.6 / 1.0).
ACTION_GRADES: dict[str, int] = {"decline": 0, "click": 1, "contact": 2, "contract": 3}


def feature_column(code: str) -> str:
    """Column name of a feature in the lake's tables (prefixed so codes never clash)."""
    return f"f_{code}"


def attribute_column(attribute: str) -> str:
    """Column name of a protected attribute in the lake's tables."""
    return f"g_{attribute}"


FEATURE_COLUMNS: tuple[str, ...] = tuple(feature_column(f) for f in FEATURES)
ATTRIBUTE_COLUMNS: tuple[str, ...] = tuple(attribute_column(a) for a in PROTECTED_ATTRIBUTES)
