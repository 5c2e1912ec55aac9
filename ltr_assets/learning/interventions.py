"""The examination curve θ_k measured by swap interventions, and its merge with a model's curve.

The exploration policy (`ltr_core.exploration`) swaps positions 1 and k of a small random share
of requests (Joachims, Swaminathan & Schnabel, WSDM 2017, section 5). Because the swap is
assigned by a hash of the request id, the candidate a request would have shown at rank 1 is, on
average, the same whether it is shown at 1 or at k: comparing the clicks it gets at the two
positions measures the position effect with no model of relevance.

Cells. For requests whose list reaches rank k, write d_1 and d_k for the candidates at
deterministic ranks 1 and k and c(r→p) for the mean click rate of the candidate at deterministic
rank r when shown at position p. A swap(1, k) shows d_1 at k and d_k at 1; every other request
shows d_1 at 1 and d_k at k. Each cell is estimated by the self-normalised inverse-propensity
(Hájek) mean over the impressions where rank r was shown at p,

    ĉ(r→p) = Σ y_i / π_i  /  Σ 1 / π_i,

y_i the click (a graded label > 0 counts as a click) and π_i the logged propensity. The weights
make every cell describe the same population, the requests that reach rank k: a swap(1, k) is
drawn with probability ρ/(m − 1), m = min(n, max_position), so unweighted, the swapped cells
would over-represent short lists. The estimates use the logged propensities only; the
exploration rate and max_position need not be known, and may change over the logged period.

Position-based model (``model="position_based"``): P(click | position p, candidate) = θ_p γ, so
c(r→p) = θ_p γ̄_r and

    θ_k / θ_1 = [c(1→k) + c(k→k)] / [c(1→1) + c(k→1)],

the same two candidates' clicks at position k over their clicks at position 1, each candidate
once in each condition (numerator and denominator are θ_k(γ̄_1 + γ̄_k) and θ_1(γ̄_1 + γ̄_k)).
Joachims et al.'s estimator c(1→k)/c(1→1) is its half for d_1; adding d_k's mirror-image pair
uses the other half of every swap. Under trust bias it is biased: clicks on irrelevant
candidates rise towards the top, so the denominator is inflated and θ_k comes out too low.

Affine model (``model="affine"``, the default; Agarwal, Wang, Li, Bendersky & Najork, "Addressing
Trust Bias for Unbiased Learning-to-Rank", WWW 2019; Vardasbi, Oosterhuis & de Rijke, "When
Inverse Propensity Scoring does not Work: Affine Corrections for Unbiased Learning to Rank",
CIKM 2020): P(click | p, R) = θ_p(ε⁺_p R + ε⁻_p (1 − R)) = α_p R + β_p with
α_p = θ_p(ε⁺_p − ε⁻_p) and β_p = θ_p ε⁻_p, so c(r→p) = α_p r̄_r + β_p, r̄_r = P(R = 1) of the
candidate at rank r. The four cells of position k identify the affine map from position 1 to k,
click_k = a_k · click_1 + b_k:

    a_k = α_k / α_1 = [c(1→k) − c(k→k)] / [c(1→1) − c(k→1)]
    b_k = β_k − a_k β_1 = c(1→k) − a_k c(1→1)

provided the swapped pairs differ in relevance (r̄_1 ≠ r̄_k; the denominator is
α_1(r̄_1 − r̄_k)); a position whose denominator is not positive is reported as not identified.
Not identified from swaps alone: how position 1's clicks split into relevance and noise (α_1 and
β_1 apart, equivalently the absolute relevance r̄) — rescaling r̄ and (α_1, β_1) together
reproduces the same clicks — and hence ε⁻_p and β_p themselves. θ_k therefore needs one number
from outside the swaps: with ε⁺ the same at every position, θ_p ε⁺ = α_p + β_p and

    θ_k / θ_1 = (α_k + β_k) / (α_1 + β_1) = a_k + b_k / E,
    E = α_1 + β_1 = θ_1 ε⁺ = P(click | relevant, shown at position 1),

E being the argument ``top_relevant_click``. A wrong E moves θ_k by |b_k| · |1/E_used − 1/E|,
and b_k (the noise clicks at k net of those at 1) is reported per position so the size of that
sensitivity can be read off. The affine slope is a ratio of differences and so needs more
swapped requests than the position-based ratio of sums for the same precision.

Interval: percentile bootstrap over requests (requests resampled with replacement, every cell
recomputed from the same resample). A replicate in which the estimate is undefined counts at
both extremes, so an interval that rests on an unstable denominator is left unbounded rather
than pretending. The bootstrap cannot see the uncertainty of a cell with almost no events (with
no click on d_1 shown at k, no resample has one either, and the interval collapses onto the
point), so a position with fewer than MIN_INTERVAL_CLICKS clicks in either swapped cell (d_1 at
k, d_k at 1) gets no bounds. θ is clipped at 0 (point and bounds).

Merging (`combine_curves`): positions with at least `min_swapped` swapped impressions (the
impressions of the two exchanged candidates in swap(1, k) interventions) and an identified
estimate take the intervention estimate; the others take the other curve (e.g. the click
model's, `ltr_assets.learning.propensity`), whose last value stands for positions past its
end. Position
1 is the reference, θ_1 = 1, in both. The merged curve is not forced to be monotone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Model = Literal["affine", "position_based"]
Source = Literal["reference", "interventions", "click_model"]

EXPLORATION_POLICIES = ("deterministic", "swap")
IGNORED_POLICIES = ("interleaved",)  # served by another policy: not part of the experiment
# A percentile bootstrap cannot see the uncertainty of a cell with (almost) no events: with no
# click on d_1 shown at k, every resample has none either and the interval collapses to a point.
# Below this many clicks in either swapped cell the interval is left unbounded (None).
MIN_INTERVAL_CLICKS = 10


@dataclass(frozen=True)
class Impressions:
    """Logged impressions, one row per shown candidate (columns of equal length).

    `request` identifies the list (request or list id); `rank` is the candidate's
    deterministic rank and `position` where it was shown (both 1-based); `policy` the logged
    branch ("deterministic", "swap"; "interleaved" rows are ignored); `propensity` the logged
    propensity; `label` the click (0/1) or graded label (> 0 is a click). The candidate's id
    is not needed: within a request its deterministic rank identifies it."""

    request: np.ndarray
    rank: np.ndarray
    position: np.ndarray
    policy: np.ndarray
    propensity: np.ndarray
    label: np.ndarray

    @classmethod
    def from_columns(
        cls,
        request: Sequence[Any] | np.ndarray,
        rank: Sequence[int] | np.ndarray,
        position: Sequence[int] | np.ndarray,
        policy: Sequence[str] | np.ndarray,
        propensity: Sequence[float] | np.ndarray,
        label: Sequence[float] | np.ndarray,
    ) -> Impressions:
        return cls(
            np.asarray(request),
            np.asarray(rank, dtype=np.int64),
            np.asarray(position, dtype=np.int64),
            np.asarray(policy, dtype=object),
            np.asarray(propensity, dtype=np.float64),
            np.asarray(label, dtype=np.float64),
        )

    def __post_init__(self) -> None:
        sizes = {len(np.asarray(c)) for c in self._columns()}
        if len(sizes) > 1:
            raise ValueError(f"impression columns differ in length: {sorted(sizes)}")

    def _columns(self) -> tuple[np.ndarray, ...]:
        return (self.request, self.rank, self.position, self.policy, self.propensity, self.label)


@dataclass(frozen=True)
class PositionEstimate:
    """θ_k / θ_1 at one position from swap(1, k) interventions, with its bootstrap interval and
    what it rests on: the swapped impressions (both exchanged candidates) and the clicks in the
    two swapped cells, d_1 shown at k and d_k shown at 1. `slope` and `offset` are the affine
    map's a_k and b_k (affine model only). `theta` is None when the position is not
    identified; `low` / `high` are None when the bootstrap cannot bound it (too few swapped
    clicks, or too many undefined replicates)."""

    position: int
    theta: float | None
    low: float | None
    high: float | None
    swapped_impressions: int
    clicks_top_at_k: int
    clicks_k_at_top: int
    slope: float | None = None
    offset: float | None = None


@dataclass(frozen=True)
class InterventionCurve:
    """Estimates for each position k ≥ 2 that some swap(1, k) intervention reached."""

    model: Model
    top_relevant_click: float
    confidence: float
    bootstrap: int
    estimates: tuple[PositionEstimate, ...]

    @property
    def positions(self) -> list[int]:
        """The positions with an identified estimate."""
        return [e.position for e in self.estimates if e.theta is not None]

    def estimate(self, position: int) -> PositionEstimate | None:
        return next((e for e in self.estimates if e.position == position), None)


@dataclass(frozen=True)
class _Group:
    """The rows of one kind of cell: request code, the k they inform, click, 1/propensity."""

    code: np.ndarray
    k: np.ndarray
    click: np.ndarray
    weight: np.ndarray

    @classmethod
    def of(cls, mask: np.ndarray, code: np.ndarray, k: np.ndarray, log: _Rows) -> _Group:
        return cls(code[mask], k[mask], log.click[mask], 1.0 / log.propensity[mask])

    def sums(self, request_weight: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
        """(Σ w·y/π, Σ w/π) per k, each request weighted by its bootstrap multiplicity."""
        w = request_weight[self.code] * self.weight
        return (
            np.bincount(self.k, w * self.click, minlength=size),
            np.bincount(self.k, w, minlength=size),
        )


@dataclass(frozen=True)
class _Rows:
    code: np.ndarray
    requests: int
    rank: np.ndarray
    position: np.ndarray
    swap: np.ndarray
    propensity: np.ndarray
    click: np.ndarray


@dataclass(frozen=True)
class _Cells:
    """The four kinds of cell per k: d_1 at 1 (every k up to the request's reach), d_k at 1,
    d_1 at k, d_k at k."""

    top_at_top: _Group  # k = the request's reach (last rank), summed over k ≤ reach
    k_at_top: _Group
    top_at_k: _Group
    k_at_k: _Group
    max_k: int

    def means(self, request_weight: np.ndarray) -> tuple[np.ndarray, ...]:
        """(c(1→1), c(k→1), c(1→k), c(k→k)) per k = 0..max_k (NaN where a cell is empty)."""
        size = self.max_k + 1
        out = []
        for group, cumulative in (
            (self.top_at_top, True),
            (self.k_at_top, False),
            (self.top_at_k, False),
            (self.k_at_k, False),
        ):
            num, den = group.sums(request_weight, size)
            if cumulative:  # a request reaching rank r informs every k ≤ r
                num, den = num[::-1].cumsum()[::-1], den[::-1].cumsum()[::-1]
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append(np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan))
        return tuple(out)


def _rows(log: Impressions) -> _Rows:
    policy = np.asarray(log.policy, dtype=object)
    known = np.isin(policy, EXPLORATION_POLICIES + IGNORED_POLICIES)
    if not known.all():
        bad = sorted({str(p) for p in policy[~known]})
        raise ValueError(
            f"unknown policies {bad}; expected {EXPLORATION_POLICIES + IGNORED_POLICIES}"
        )
    keep = np.isin(policy, EXPLORATION_POLICIES)
    rank, position = log.rank[keep], log.position[keep]
    propensity, label = log.propensity[keep], log.label[keep]
    swap = policy[keep] == "swap"
    if rank.size and (rank.min() < 1 or position.min() < 1):
        raise ValueError("ranks and positions start at 1")
    if not np.all((propensity > 0.0) & (propensity <= 1.0)):
        raise ValueError("logged propensities must lie in (0, 1]")
    moved = rank != position
    if np.any(moved & ~swap):
        raise ValueError("a row shown away from its deterministic rank must have policy 'swap'")
    if np.any(moved & (rank != 1) & (position != 1)):
        raise ValueError("a swap intervention only exchanges position 1 with a position k")
    _, code = np.unique(np.asarray(log.request)[keep], return_inverse=True)
    code = code.astype(np.int64).ravel()
    requests = int(code.max()) + 1 if code.size else 0
    return _Rows(code, requests, rank, position, swap, propensity, (label > 0).astype(np.float64))


def _cells(log: _Rows) -> _Cells | None:
    top_at_k = (log.rank == 1) & (log.position >= 2)
    k_at_top = (log.position == 1) & (log.rank >= 2)
    if not (top_at_k.any() or k_at_top.any()):
        return None
    max_k = int(max(log.position[top_at_k].max(initial=0), log.rank[k_at_top].max(initial=0)))
    reach = np.zeros(log.requests, dtype=np.int64)
    np.maximum.at(reach, log.code, np.maximum(log.rank, log.position))
    reach = np.minimum(reach, max_k)
    within = log.rank <= max_k
    return _Cells(
        top_at_top=_Group.of((log.rank == 1) & (log.position == 1), log.code, reach[log.code], log),
        k_at_top=_Group.of(k_at_top, log.code, log.rank, log),
        top_at_k=_Group.of(top_at_k, log.code, log.position, log),
        k_at_k=_Group.of(
            (log.rank == log.position) & (log.rank >= 2) & within, log.code, log.rank, log
        ),
        max_k=max_k,
    )


def _theta(
    means: tuple[np.ndarray, ...], model: Model, top_relevant_click: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """θ_k / θ_1 per k (NaN where not identified), and the affine slope a_k and offset b_k."""
    x1, xk, y1, yk = means
    with np.errstate(invalid="ignore", divide="ignore"):
        if model == "position_based":
            den = x1 + xk
            theta = np.where(den > 0, (y1 + yk) / den, np.nan)
            nan = np.full_like(theta, np.nan)
            return theta, nan, nan
        den = x1 - xk
        slope = np.where(den > 0, (y1 - yk) / den, np.nan)
        offset = y1 - slope * x1
        theta = slope + offset / top_relevant_click
    return theta, slope, offset


def intervention_curve(
    log: Impressions,
    *,
    model: Model = "affine",
    top_relevant_click: float = 1.0,
    bootstrap: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> InterventionCurve:
    """θ_k / θ_1 for every position k that swap(1, k) interventions reached (module docstring),
    with a percentile bootstrap interval over requests and the swapped impressions and clicks
    each position rests on. Without any swap the curve has no estimates."""
    if model not in ("affine", "position_based"):
        raise ValueError(f"model must be 'affine' or 'position_based', got {model!r}")
    if not 0.0 < top_relevant_click <= 1.0:
        raise ValueError(f"top_relevant_click must lie in (0, 1], got {top_relevant_click!r}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    if bootstrap < 0:
        raise ValueError(f"bootstrap must be non-negative, got {bootstrap}")
    rows = _rows(log)
    cells = _cells(rows)
    if cells is None:
        return InterventionCurve(model, top_relevant_click, confidence, bootstrap, ())
    theta, slope, offset = _theta(cells.means(np.ones(rows.requests)), model, top_relevant_click)
    low, high = _bootstrap(
        cells, rows.requests, model, top_relevant_click, bootstrap, confidence, seed
    )
    size = cells.max_k + 1
    swapped = rows.swap & (rows.rank != rows.position)
    top_moved = swapped & (rows.rank == 1)  # d_1 shown at k
    k_of_row = np.where(top_moved, rows.position, rows.rank)
    impressions = np.bincount(k_of_row[swapped], minlength=size)
    clicks_top_at_k = np.bincount(k_of_row[top_moved], rows.click[top_moved], minlength=size)
    k_moved = swapped & ~top_moved  # d_k shown at 1
    clicks_k_at_top = np.bincount(k_of_row[k_moved], rows.click[k_moved], minlength=size)
    estimates = []
    for k in range(2, size):
        if impressions[k] == 0:
            continue
        identified = bool(np.isfinite(theta[k]))
        bounded = identified and min(clicks_top_at_k[k], clicks_k_at_top[k]) >= MIN_INTERVAL_CLICKS
        estimates.append(
            PositionEstimate(
                position=k,
                theta=max(0.0, float(theta[k])) if identified else None,
                low=_bound(low[k]) if bounded else None,
                high=_bound(high[k]) if bounded else None,
                swapped_impressions=int(impressions[k]),
                clicks_top_at_k=int(round(clicks_top_at_k[k])),
                clicks_k_at_top=int(round(clicks_k_at_top[k])),
                slope=_finite(slope[k]),
                offset=_finite(offset[k]),
            )
        )
    return InterventionCurve(model, top_relevant_click, confidence, bootstrap, tuple(estimates))


def _bootstrap(
    cells: _Cells,
    requests: int,
    model: Model,
    top_relevant_click: float,
    replicates: int,
    confidence: float,
    seed: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval per k; undefined replicates count at both extremes. Without
    replicates (bootstrap=0) the bounds are NaN and every position is left unbounded."""
    size = cells.max_k + 1
    if replicates == 0 or requests == 0:
        return np.full(size, np.nan), np.full(size, np.nan)
    rng = np.random.default_rng(seed)
    draws = np.empty((replicates, size))
    for b in range(replicates):
        weight = np.bincount(rng.integers(0, requests, requests), minlength=requests)
        draws[b] = _theta(cells.means(weight.astype(np.float64)), model, top_relevant_click)[0]
    alpha = (1.0 - confidence) / 2.0
    undefined = ~np.isfinite(draws)
    # inverted_cdf: an order statistic, never an interpolation between two infinite values
    low = np.quantile(np.where(undefined, -np.inf, draws), alpha, axis=0, method="inverted_cdf")
    high = np.quantile(
        np.where(undefined, np.inf, draws), 1.0 - alpha, axis=0, method="inverted_cdf"
    )
    return low, high


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def _bound(value: float) -> float | None:
    """An interval bound clipped at 0 (θ ≥ 0); None if the bootstrap left it unbounded."""
    return max(0.0, float(value)) if np.isfinite(value) else None


@dataclass(frozen=True)
class CurvePoint:
    """One position of a merged curve: θ, where it came from, and the swapped impressions at
    that position (whether or not they were enough)."""

    position: int
    theta: float
    source: Source
    swapped_impressions: int
    low: float | None = None  # the intervention interval, when the source is interventions
    high: float | None = None


@dataclass(frozen=True)
class CombinedCurve:
    min_swapped: int
    points: tuple[CurvePoint, ...]

    @property
    def examination(self) -> list[float]:
        """θ_1, θ_2, … (θ_1 = 1)."""
        return [p.theta for p in self.points]

    @property
    def sources(self) -> list[Source]:
        return [p.source for p in self.points]


def combine_curves(
    interventions: InterventionCurve, other: Sequence[float], *, min_swapped: int
) -> CombinedCurve:
    """Position by position: the intervention estimate where it is identified and rests on at
    least `min_swapped` swapped impressions, else `other` (θ_1, θ_2, …, starting at 1; its
    last value stands for positions past its end). Covers positions 1..max(len(other), the last
    intervention position)."""
    values = [float(v) for v in other]
    if not values:
        raise ValueError("the other curve needs at least one value")
    if abs(values[0] - 1.0) > 1e-9:
        raise ValueError(f"the other curve starts at 1.0 (position 1), got {values[0]}")
    if any(not (np.isfinite(v) and v > 0.0) for v in values):
        raise ValueError(f"the other curve's values must be positive and finite, got {values}")
    if min_swapped < 1:
        raise ValueError(f"min_swapped must be at least 1, got {min_swapped}")
    by_position = {e.position: e for e in interventions.estimates}
    length = max(len(values), max(by_position, default=1))
    points = [CurvePoint(1, 1.0, "reference", 0)]
    for k in range(2, length + 1):
        fallback = values[min(k, len(values)) - 1]
        est = by_position.get(k)
        swapped = est.swapped_impressions if est else 0
        if est is not None and est.theta is not None and swapped >= min_swapped:
            points.append(CurvePoint(k, est.theta, "interventions", swapped, est.low, est.high))
        else:
            points.append(CurvePoint(k, fallback, "click_model", swapped))
    return CombinedCurve(min_swapped, tuple(points))
