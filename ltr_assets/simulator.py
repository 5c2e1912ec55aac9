"""A simulator of the lawyer-matching platform: the demo's and the tests' event source.

It draws cases and lawyers, shows each case a list of 5-30 candidates in the platform's own
(imperfect) order, and draws feedback from a hidden true utility that depends non-linearly on the
features, with position bias (lower positions are examined less) and, optionally, a bias of the
clients against one group of lawyers. It knows the true utility of every candidate, so tests can
compare a trained ranker with the best possible ranking. Deterministic for a seed: each day has
its own random stream, so any day can be generated alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from ltr_assets.schema import FEATURES, FEEDBACK, RECOMMENDATION

ENVELOPES = ("flat", "audit")

_ETHNICITIES = ("branca", "parda", "preta", "amarela", "indigena")
_ORIENTATIONS = ("heterossexual", "homossexual", "bissexual")
_LAWYER_FEATURES = ("T", "Q", "R", "C", "E", "M")  # properties of the lawyer
_PRESETS = ("balanced", "quality", "price")
_CLIENT_RATED = ("R", "C", "T")  # features that clients' judgement feeds


@dataclass(frozen=True)
class SimulatorConfig:
    start: date
    days: int
    seed: int = 0
    requests_per_day: int = 400
    lawyers: int = 400
    min_candidates: int = 5
    max_candidates: int = 30
    # Clients' bias against one group: "attribute=value" (e.g. "gender=F"). It lowers that
    # group's client-made features (reviews R, soft skills C, success rate T) by the factor
    # (1 - 0.3 * strength) and its feedback by `strength` within-list z-score units, while its
    # true utility is unchanged. Off by default.
    bias_against: str | None = None
    bias_strength: float = 1.0


def true_utility(x: dict[str, np.ndarray]) -> np.ndarray:
    """The hidden utility of candidates (arrays per feature code): non-linear on purpose."""
    return (
        2.0 * x["A"] * x["S"]
        + 1.4 * x["T"] ** 2
        + 0.8 / (1.0 + np.exp(-10.0 * (x["G"] - 0.4)))
        + 0.7 * x["Q"]
        + 0.6 * x["R"] * x["C"]
        + 0.4 * x["E"]
        + 0.5 * np.minimum(x["U"], x["P"])
        + 0.2 * x["M"]
    )


# The platform's current scorer (v2.8): a plain weighted sum that misjudges the utility.
_PLATFORM_WEIGHTS = {
    "A": 0.20,
    "S": 0.05,
    "T": 0.10,
    "G": 0.05,
    "Q": 0.15,
    "U": 0.05,
    "R": 0.15,
    "C": 0.05,
    "E": 0.10,
    "P": 0.05,
    "M": 0.05,
}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


@dataclass
class _Lawyers:
    ids: list[str]
    intrinsic: dict[str, np.ndarray]  # feature code -> per-lawyer value
    groups: list[dict[str, Any]]


# Protected attribute -> (values, probabilities); None stands for "not declared".
_ATTRIBUTE_DISTRIBUTIONS: dict[str, tuple[tuple[Any, ...], tuple[float, ...]]] = {
    "gender": ((None, "F", "M"), (0.08, 0.50, 0.42)),
    "ethnicity": ((None, *_ETHNICITIES), (0.15, 0.38, 0.26, 0.13, 0.05, 0.03)),
    "pcd": ((None, False, True), (0.20, 0.72, 0.08)),
    "orientation": ((None, *_ORIENTATIONS), (0.60, 0.32, 0.05, 0.03)),
}
_GOLDEN = (5**0.5 - 1) / 2


def _balanced_values(
    order: np.ndarray, values: tuple[Any, ...], probabilities: tuple[float, ...], offset: float
) -> list[Any]:
    """Values for lawyers so that every value is spread evenly over the quality ranking.

    Walking the lawyers from best to worst, the i-th gets the value whose probability interval
    holds (offset + i·golden ratio) mod 1, an equidistributed sequence: with the bias off, no
    group is better qualified than another, so the fairness gap of a good ranker is about 0.
    """
    edges = np.cumsum(probabilities)
    out: list[Any] = [None] * len(order)
    for rank, lawyer in enumerate(order):
        u = (offset + rank * _GOLDEN) % 1.0
        out[int(lawyer)] = values[
            min(int(np.searchsorted(edges, u, side="right")), len(values) - 1)
        ]
    return out


def _lawyers(config: SimulatorConfig) -> _Lawyers:
    rng = np.random.default_rng([config.seed, 0])
    n = config.lawyers
    intrinsic = {code: rng.beta(2.0, 2.0, n) for code in _LAWYER_FEATURES}
    quality = np.mean([intrinsic[code] for code in _LAWYER_FEATURES], axis=0)
    order = np.argsort(-quality, kind="stable")
    columns = {
        attribute: _balanced_values(order, values, probabilities, float(rng.random()))
        for attribute, (values, probabilities) in _ATTRIBUTE_DISTRIBUTIONS.items()
    }
    groups = [{attribute: columns[attribute][i] for attribute in columns} for i in range(n)]
    return _Lawyers([f"l-{i:05d}" for i in range(n)], intrinsic, groups)


@dataclass(frozen=True)
class Candidate:
    request_id: str
    case_id: str
    lawyer_id: str
    utility: float


class Simulator:
    """Generates the platform's events day by day; `truth` holds every candidate's utility."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._lawyers = _lawyers(config)
        self._bias: tuple[str, str] | None = None
        if config.bias_against:
            attribute, _, value = config.bias_against.partition("=")
            self._bias = (attribute.strip(), value.strip())
        self.truth: list[Candidate] = []

    def days(self) -> list[date]:
        return [self.config.start + timedelta(days=i) for i in range(self.config.days)]

    def events(self) -> list[dict[str, Any]]:
        """All days' events in the flat envelope, ordered by time (late feedback included)."""
        out: list[dict[str, Any]] = []
        for day in self.days():
            out.extend(self.day_events(day))
        out.sort(key=lambda e: (e["timestamp"], e["event_id"]))
        return out

    def _biased(self, groups: dict[str, Any]) -> bool:
        if self._bias is None:
            return False
        attribute, value = self._bias
        raw = groups.get(attribute)
        text = str(raw).lower() if isinstance(raw, bool) else raw
        return text == value

    def day_events(self, day: date) -> list[dict[str, Any]]:
        """The events of the requests made on `day` (their feedback may fall on the next day)."""
        cfg = self.config
        rng = np.random.default_rng([cfg.seed, 1, day.toordinal()])
        lawyers = self._lawyers
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        # Business-hours-heavy request times (UTC), sorted.
        hours = np.clip(rng.normal(15.0, 4.5, cfg.requests_per_day), 0.0, 23.999)
        seconds = np.sort(hours * 3600.0)
        events: list[dict[str, Any]] = []
        for i, second in enumerate(seconds):
            request_id = f"r-{day:%Y%m%d}-{i:05d}"
            case_id = f"c-{day:%Y%m%d}-{i:05d}"
            shown_at = midnight + timedelta(seconds=float(second))
            n = int(rng.integers(cfg.min_candidates, cfg.max_candidates + 1))
            chosen = rng.choice(len(lawyers.ids), size=n, replace=False)
            x = {code: lawyers.intrinsic[code][chosen].copy() for code in _LAWYER_FEATURES}
            for code in FEATURES:
                if code not in x:
                    x[code] = rng.beta(2.0, 2.0, n)
            for code in FEATURES:
                x[code] = np.round(np.clip(x[code], 0.0, 1.0), 4)
            utility = true_utility(x) + rng.normal(0.0, 0.15, n)
            biased = np.array([self._biased(lawyers.groups[j]) for j in chosen])
            if biased.any():
                factor = max(0.0, 1.0 - 0.3 * cfg.bias_strength)
                for code in _CLIENT_RATED:
                    x[code] = np.where(biased, np.round(x[code] * factor, 4), x[code])
            platform = sum(_PLATFORM_WEIGHTS[c] * x[c] for c in FEATURES)
            platform = np.clip(platform + rng.normal(0.0, 0.05, n), 0.0, 1.0)
            order = np.argsort(-platform, kind="stable")
            spread = utility.std() or 1.0
            z = (utility - utility.mean()) / spread
            for position, idx in enumerate(order, start=1):
                lawyer = lawyers.ids[chosen[idx]]
                groups = lawyers.groups[chosen[idx]]
                features = {c: float(x[c][idx]) for c in FEATURES}
                self.truth.append(Candidate(request_id, case_id, lawyer, float(utility[idx])))
                event_time = shown_at + timedelta(milliseconds=position)
                events.append(
                    {
                        "event_id": f"e-{request_id}-{position:02d}",
                        "event_type": RECOMMENDATION,
                        "timestamp": _iso(event_time),
                        "request_id": request_id,
                        "case_id": case_id,
                        "lawyer_id": lawyer,
                        "rank_position": position,
                        "features": features,
                        "lawyer_groups": groups,
                        "algorithm_version": "v2.8",
                        "preset": _PRESETS[i % len(_PRESETS)],
                        "score": round(float(platform[idx]), 4),
                    }
                )
                events.extend(
                    self._feedback(
                        rng, request_id, case_id, lawyer, groups, position, z[idx], shown_at
                    )
                )
        return events

    def _feedback(
        self,
        rng: np.random.Generator,
        request_id: str,
        case_id: str,
        lawyer: str,
        groups: dict[str, Any],
        position: int,
        z: float,
        shown_at: datetime,
    ) -> Iterator[dict[str, Any]]:
        examined = rng.random() < 1.0 / position**0.5
        if not examined:
            return
        shift = self.config.bias_strength if self._biased(groups) else 0.0
        steps: list[str] = []
        if rng.random() < _sigmoid(np.float64(3.0 * (z - 0.9 - shift))):
            steps.append("click")
            if rng.random() < _sigmoid(np.float64(3.0 * (z - 1.3 - shift))):
                steps.append("contact")
                if rng.random() < _sigmoid(np.float64(3.0 * (z - 1.7 - shift))):
                    steps.append("contract")
        elif rng.random() < 0.15:
            steps.append("decline")
        when = shown_at
        for n, action in enumerate(steps):
            # Minutes to the first action, longer to each next one: some land after midnight.
            when = when + timedelta(minutes=float(rng.lognormal(math.log(20.0 * (n + 1)), 1.0)))
            yield {
                "event_id": f"e-{request_id}-{position:02d}-{action}",
                "event_type": FEEDBACK,
                "timestamp": _iso(when),
                "request_id": request_id,
                "case_id": case_id,
                "lawyer_id": lawyer,
                "action": action,
            }


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def to_audit_line(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """The platform's audit-log form of a flat event, with its optional and aliased fields."""
    context = {k: v for k, v in event.items() if k not in ("event_type", "timestamp")}
    if rng.random() < 0.5:
        context.pop("event_id")  # the reader derives a deterministic id
    context["case"] = context.pop("case_id")
    context["lawyer"] = context.pop("lawyer_id")
    if event["event_type"] == FEEDBACK and rng.random() < 0.3:
        context.pop("request_id")  # matched by (case, lawyer) and time instead
    if "features" in context and rng.random() < 0.5:
        context["scores"] = {"features": context.pop("features"), "total": context.get("score")}
    return {
        "timestamp": event["timestamp"],
        "level": "INFO",
        "message": event["event_type"],
        "context": context,
    }


def _other_audit_record(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    return {
        "timestamp": event["timestamp"],
        "level": "INFO",
        "message": "http_request",
        "context": {"path": "/api/cases", "status": int(rng.choice([200, 201, 404])), "ms": 12},
    }


def render_lines(events: list[dict[str, Any]], envelope: str, seed: int) -> Iterator[str]:
    """JSON lines in the chosen envelope; the audit log also carries non-LTR records."""
    if envelope not in ENVELOPES:
        raise ValueError(f"envelope {envelope!r} must be one of {', '.join(ENVELOPES)}")
    rng = np.random.default_rng([seed, 2])
    for event in events:
        if envelope == "flat":
            yield json.dumps(event, separators=(",", ":"))
            continue
        yield json.dumps(to_audit_line(event, rng), separators=(",", ":"))
        if rng.random() < 0.1:
            yield json.dumps(_other_audit_record(event, rng), separators=(",", ":"))
