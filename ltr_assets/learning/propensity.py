"""Position bias: how likely a user is to examine a candidate at each rank, estimated from logs.

Clicks measure the position a candidate was shown at as much as its relevance, so every learned
and gated figure corrects for it with these estimates (docs/methodology.md). Nothing here needs
ground truth: the curve is estimated from the logged positions, clicks and features alone.

`regression_em` (default) fits the click model of regression-EM (Wang et al., WSDM 2018), the
position-based model

    P(click | position k, features x) = θ_k · γ(x)

examination θ_k times the probability γ(x) that an examined candidate is clicked. Whether a
click-less impression went unexamined or unwanted is latent. Plain EM steps crawled on these
logs (most impressions are unexamined, so the missing information is large), so the same
likelihood is maximised directly: a Newton step per position for θ alternates with a few
boosting rounds for log-odds γ(x) on the likelihood's own gradient. γ is fitted on 80% of the
lists and its number of rounds is chosen by the likelihood of the other 20%: a γ fitted too
closely absorbs the position effect (θ comes out flat), one fitted too loosely leaves relevance
for θ to explain (θ comes out steep). θ is identified because the same features land at
different ranks (list composition and length, and the ranker changing from one published
version to the next). θ is relative to position 1 and γ carries the level of clicks, so each
θ step fits the curve with a free scale (dropped) and each iteration then refits γ's level
exactly (`gamma_level`): otherwise the two move together so slowly that the fit stopped
with γ too low and every θ_k past position 1 too high (`_theta_step`).

The curve's family (LTR_PROPENSITY_FAMILY). `per_position`: a free θ_k per position.
`power_law`: θ_k = k^-η, one exponent fitted by Newton steps on the same likelihood, so every
position's clicks inform every θ_k. Why pooled: with a near-deterministic logger, a free θ per
position lets γ trade relevance against position where the logging ranker's order is most
predictable from the features (the top of the list); on the simulator the pooled curve is
the closer to the truth in most conditions (docs/benchmarks.md, quality_sim). The price is an
assumption: a curve with a step (a page break, a fold) is smoothed away. `auto` therefore
tests it on the logs: it fits the power law, then
refits θ of both families on the fitted lists with the final γ and compares their
log-likelihood on the held-out lists, list by list (`_family_test`); when the free curve's gain
per list is at least FREE_CURVE_Z standard errors above zero, the power law does not describe
these logs and the model is refitted with a free θ per position (a page break is caught:
`tests/unit/test_propensity.py`; the statistic on the simulator's logs: docs/benchmarks.md,
quality_sim). The curve's params record the test (`family_test`) and
the choice (`family_choice`); positions that enough swap interventions measured take their own
estimate under the `auto` method (below) whatever the family. `per_position` stays the default:
with the power law the gate's estimate errs more at η 1 (upward: trust-bias clicks counted as
gain, and rows graded by the click model the debiased candidate learned from), and a curve
that is no power law costs the power law far more than the free curve loses on one that is.

A richer affine model with a per-position noise term (trust bias) was tried and rejected: with a
near-deterministic logging ranker its two parameters per position are not identified in
practice (it converged to "most top clicks are noise"), and so was one pooled trust term,
P(click | k, x) = θ_k (γ(x) + τ θ_k), beside the power law (not identified either: τ came out
far too large and the curve too flat; docs/benchmarks.md). Clicks on irrelevant candidates that
rise towards the top (trust bias) are therefore folded into γ and θ; on the simulator the curve
stays within a few hundredths of the truth at positions 1-10
(`tests/integration/test_debiasing.py`).

The model assumes a user examines each position whatever was clicked above it. The fit checks
that on the held-out lists (`_click_count_test`): lists with two or more clicks against the
number the fitted model predicts. Users who stop scanning after a click (a cascade) leave far
fewer, and at z ≤ CASCADE_Z the model card says the curve does not describe them.

Its 95% interval comes from a bootstrap over lists of the M-step with γ held at its fit (the
sampling noise of the curve, not the uncertainty of the relevance model).

`auto` (default) starts from the regression-EM curve and replaces it at the positions that swap
interventions measured well enough (`with_interventions`): the exploration policy of the ranking
service swaps positions 1 and k of a small random share of requests, and comparing the clicks on
the same candidates in both places measures θ_k with no model of relevance
(`ltr_assets.learning.interventions`). A position takes the intervention estimate when it is
identified and rests on at least LTR_PROPENSITY_MIN_SWAPPED swapped impressions; the others keep
the click model's. Each position of the curve records its `source` ("reference" for position 1,
"interventions", "click_model") and the swapped impressions it saw. Without any swapped
impression in the window, `auto` is `regression_em`, curve for curve.

`pinned` takes an operator's curve (LTR_PROPENSITY_CURVE) instead: no estimation (its curve
has no per-position sources).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np

from ltr_assets.learning.interventions import InterventionCurve, combine_curves
from ltr_assets.learning.lightgbm_params import lightgbm_params
from ltr_core.scoring import predict
from ltr_core.vocabulary import (
    CURVE_FAMILIES,
    CURVE_FAMILY_SETTINGS,
    PROPENSITY_METHODS,
    CurveFamily,
    CurveFamilySetting,
    CurveSource,
)

METHODS = PROPENSITY_METHODS
# θ as training and the gate use it lies in [MIN_THETA, 1]: an intervention estimate may come out
# at 0 (clipped there) or above θ_1 by noise, where 1/θ and (1 − θ) lose their meaning.
MIN_THETA = 1e-3
MIN_IMPRESSIONS = 200  # positions seen less often share the bucket of the last better-seen one
MAX_EXPONENT = 5.0  # the power law's η lies in [0, MAX_EXPONENT]
# `auto` family: the free curve replaces the power law when its held-out log-likelihood gain per
# list is at least this many standard errors above zero (one-sided, about 2.3% by chance).
FREE_CURVE_Z = 2.0
_EPS = 1e-6


class PropensityError(ValueError):
    """The logs cannot support an estimate (no clicks, no positions) or a pinned curve is bad."""


class TooFewImpressions(PropensityError):
    """The logs are too thin for the click model (no clicks, no position shown MIN_IMPRESSIONS
    times, too few lists to hold some out): a shortage of data, which the gate refuses as it
    refuses a short window, not a fault of the code or the settings."""


@dataclass(frozen=True)
class PropensityCurve:
    """The examination curve θ_k for positions 1..K (positions past K use θ_K) and its 95%
    interval (None where an intervention estimate could not be bounded). θ_1 = 1: the curve is
    relative to the top of the list. `sources` says where each position's θ comes from and
    `swapped_impressions` how many swapped impressions reached it (both empty for a pinned
    curve)."""

    method: str
    examination: list[float]
    low: list[float | None]
    high: list[float | None]
    impressions: list[int]  # per position bucket (0 for a pinned curve)
    clicks: list[int]
    params: dict[str, Any] = field(default_factory=dict)
    sources: list[CurveSource] = field(default_factory=list)
    swapped_impressions: list[int] = field(default_factory=list)

    @property
    def positions(self) -> int:
        return len(self.examination)

    def at(self, positions: np.ndarray) -> np.ndarray:
        """θ at each (1-based) position."""
        p = np.asarray(positions, dtype=np.int64)
        if p.size and p.min() < 1:
            raise PropensityError(f"rank positions start at 1, got {int(p.min())}")
        theta: np.ndarray = np.asarray(self.examination)[np.minimum(p, self.positions) - 1]
        return theta

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def pinned_curve(values: Sequence[float]) -> PropensityCurve:
    """An operator's curve (θ_1, θ_2, …): in (0, 1], starting at 1, never increasing."""
    curve = [float(v) for v in values]
    if not curve:
        raise PropensityError("a pinned propensity curve needs at least one value")
    if abs(curve[0] - 1.0) > 1e-9:
        raise PropensityError(f"a pinned curve starts at 1.0 (position 1), got {curve[0]}")
    if any(not 0.0 < v <= 1.0 for v in curve):
        raise PropensityError(f"pinned propensities must lie in (0, 1], got {curve}")
    if any(b > a for a, b in zip(curve, curve[1:], strict=False)):
        raise PropensityError(f"a pinned curve must not increase with the position: {curve}")
    zeros = [0] * len(curve)
    bounds: list[float | None] = list(curve)
    return PropensityCurve("pinned", curve, bounds, list(bounds), zeros, zeros)


def _buckets(positions: np.ndarray) -> np.ndarray:
    """Bucket index per impression: positions 1..K each their own bucket, where K is the last
    position shown at least MIN_IMPRESSIONS times; later positions share bucket K."""
    shown, counts = np.unique(positions, return_counts=True)  # not bincount: no array as
    well_seen = shown[(counts >= MIN_IMPRESSIONS) & (shown >= 1)]  # long as the largest position
    if well_seen.size == 0:
        raise TooFewImpressions(
            f"no rank position was shown {MIN_IMPRESSIONS} times; too few impressions to "
            "estimate position bias"
        )
    last = int(well_seen[-1])
    buckets: np.ndarray = np.minimum(positions, last) - 1
    return buckets


def _theta_step(
    clicks: np.ndarray,
    gamma: np.ndarray,
    theta: np.ndarray,
    bucket: np.ndarray,
    n_buckets: int,
    weight: np.ndarray,
    newton_steps: int = 5,
    family: CurveFamily = "per_position",
    free_scale: bool = False,
) -> np.ndarray:
    """θ maximising Σ w [c log(θ_k γ) + (1 − c) log(1 − θ_k γ)]: per position (concave in θ_k),
    rescaled so θ_1 = 1; or, for the power-law family, over the one exponent η of θ_k = k^-η.

    `free_scale` (the fit's alternation, where γ's level is refitted next, `gamma_level`):
    the curve is fitted with a free overall scale, dropped afterwards, so it comes out the
    same whatever γ's level. Without it θ_1 cannot rise above 1: while γ is still too low,
    every later θ_k came out too high by that factor (or the power law too flat), and since γ's
    level and θ move together the fit stopped long before they agreed (docs/benchmarks.md,
    "The click model's fit no longer stops early"). The bootstrap refits θ so too, as the
    point estimate was fitted. The family test, which judges each family's θ·γ on held-out
    lists with the final γ, keeps θ_1 = 1."""
    if family == "power_law":
        return _power_law_step(
            clicks, gamma, theta, bucket, n_buckets, weight, newton_steps, free_scale
        )
    # θ_k γ below 1 in every row of the bucket (free scale), else θ_k at most 1
    upper = _ceiling(gamma, bucket, n_buckets) if free_scale else np.ones(n_buckets)
    theta = np.minimum(theta, upper)
    for _ in range(newton_steps):
        t = theta[bucket]
        skip = np.maximum(1.0 - t * gamma, _EPS)
        grad = weight * (clicks / t - (1.0 - clicks) * gamma / skip)
        hess = weight * (-clicks / t**2 - (1.0 - clicks) * gamma**2 / skip**2)
        g = np.bincount(bucket, grad, n_buckets)
        h = np.bincount(bucket, hess, n_buckets)
        theta = np.clip(theta - g / np.minimum(h, -_EPS), 1e-3, upper)
    # at least MIN_THETA after the division too (θ_1 may exceed 1 with a free scale)
    curve: np.ndarray = np.maximum(theta / theta[0], MIN_THETA)
    return curve


def _power_law_step(
    clicks: np.ndarray,
    gamma: np.ndarray,
    theta: np.ndarray,
    bucket: np.ndarray,
    n_buckets: int,
    weight: np.ndarray,
    newton_steps: int,
    free_scale: bool = False,
) -> np.ndarray:
    """θ_k = k^-η (bucket b is position b + 1; the last bucket pools the positions past it and
    takes its own position's θ, as `PropensityCurve.at` does): Newton steps on η from the
    exponent of `theta`'s fit, using the per-bucket gradient and curvature in θ. With
    `free_scale`, fitted as a·k^-η (Newton in a and η together), a then dropped
    (`_theta_step` says why)."""
    log_k = np.log(np.arange(1, n_buckets + 1, dtype=np.float64))
    ceiling = _ceiling(gamma, bucket, n_buckets) if free_scale else None
    eta = _power_law_exponent(theta)
    scale = 1.0
    for _ in range(newton_steps):
        base = np.exp(-eta * log_k)
        if ceiling is not None:
            scale = float(min(scale, np.min(ceiling / base)))  # every θ_k γ below 1
        t = scale * base
        rows = t[bucket]
        skip = np.maximum(1.0 - rows * gamma, _EPS)
        grad = np.bincount(
            bucket, weight * (clicks / rows - (1.0 - clicks) * gamma / skip), n_buckets
        )
        hess = np.bincount(
            bucket, weight * (-clicks / rows**2 - (1.0 - clicks) * gamma**2 / skip**2), n_buckets
        )
        d_scale, d_eta = base, -log_k * t  # dθ/da, dθ/dη
        g_eta = float(grad @ d_eta)
        h_eta = float(hess @ d_eta**2 + grad @ (log_k**2 * t))
        # Newton where the likelihood is concave, else a small step up its gradient in η
        eta_only = -0.1 * np.sign(g_eta) if h_eta >= 0.0 else g_eta / h_eta
        if ceiling is None:
            eta = float(np.clip(eta - eta_only, 0.0, MAX_EXPONENT))
            continue
        g = np.array([float(grad @ d_scale), g_eta])
        cross = float(hess @ (d_scale * d_eta) + grad @ (-log_k * base))
        h = np.array([[float(hess @ d_scale**2), cross], [cross, h_eta]])
        if h[0, 0] < 0.0 and np.linalg.det(h) > 0.0:
            step = np.linalg.solve(h, g)
        else:  # Newton in the scale alone, the η step above
            step = np.array([g[0] / min(h[0, 0], -_EPS), eta_only])
        scale = float(max(scale - step[0], 1e-3))
        eta = float(np.clip(eta - step[1], 0.0, MAX_EXPONENT))
    curve: np.ndarray = np.maximum(np.exp(-eta * log_k), 1e-3)
    return curve


def _ceiling(gamma: np.ndarray, bucket: np.ndarray, n_buckets: int) -> np.ndarray:
    """Per bucket, the θ at which θ γ would reach 1 for its most attractive row."""
    most = np.zeros(n_buckets)
    np.maximum.at(most, bucket, gamma)
    ceiling: np.ndarray = (1.0 - 1e-6) / np.maximum(most, _EPS)
    return ceiling


def _power_law_exponent(theta: np.ndarray) -> float:
    """η of the power law closest to `theta` on a log scale (least squares over positions 2+)."""
    log_k = np.log(np.arange(1, theta.size + 1, dtype=np.float64))[1:]
    if log_k.size == 0:
        return 1.0
    log_t = np.log(np.clip(theta[1:] / theta[0], _EPS, 1.0))
    return float(np.clip(-(log_k @ log_t) / (log_k @ log_k), 0.0, MAX_EXPONENT))


def _gamma_objective(clicks: np.ndarray, theta_rows: np.ndarray) -> Any:
    """LightGBM objective: gradient and Fisher information of the click model's negative
    log-likelihood with respect to γ's log-odds, θ held fixed."""

    def objective(preds: np.ndarray, _: lgb.Dataset) -> tuple[np.ndarray, np.ndarray]:
        s = 1.0 / (1.0 + np.exp(-preds))
        skip = np.maximum(1.0 - theta_rows * s, _EPS)
        grad = -clicks * (1.0 - s) + (1.0 - clicks) * theta_rows * s * (1.0 - s) / skip
        hess = theta_rows * s * (1.0 - s) ** 2 / skip + 1e-9
        return grad, hess

    return objective


def gamma_level(
    clicks: np.ndarray, theta_rows: np.ndarray, raw: np.ndarray, newton_steps: int = 8
) -> float:
    """The constant b that maximises the likelihood of γ's log-odds raw + b, θ held fixed.
    Why: θ is relative to position 1 (θ_1 = 1), so γ's level is what says how often an
    examined candidate is clicked; boosting from a constant start finds that level only
    slowly, and while γ is too low every θ_k past position 1 comes out too high by the same
    factor (θ_1 cannot rise above 1 to absorb it) and the power law too flat."""
    b = 0.0
    for _ in range(newton_steps):
        s = 1.0 / (1.0 + np.exp(-(raw + b)))
        skip = np.maximum(1.0 - theta_rows * s, _EPS)
        grad = -clicks * (1.0 - s) + (1.0 - clicks) * theta_rows * s * (1.0 - s) / skip
        hess = theta_rows * s * (1.0 - s) ** 2 / skip + 1e-9
        b -= float(grad.sum() / hess.sum())
    return b


def log_likelihood(clicks: np.ndarray, p_click: np.ndarray) -> np.ndarray:
    """Each impression's Bernoulli log-likelihood of its click (0/1) under `p_click`."""
    p = np.clip(p_click, _EPS, 1.0 - _EPS)
    out: np.ndarray = clicks * np.log(p) + (1.0 - clicks) * np.log(1.0 - p)
    return out


def _nll(clicks: np.ndarray, theta_rows: np.ndarray, raw: np.ndarray) -> float:
    return float(-np.mean(log_likelihood(clicks, theta_rows / (1.0 + np.exp(-raw)))))


# γ's own parameters (over lightgbm_params.BASE_PARAMS).
_GAMMA_PARAMS: dict[str, Any] = {
    "learning_rate": 0.1,
    "num_leaves": 7,  # more leaves let γ absorb position, which flattens θ
    "min_data_in_leaf": 100,
}


@dataclass
class ClickModel:
    """A fitted position-based click model: the curve θ and the attractiveness γ(x) of an
    examined candidate, which predicts for new feature rows (held-out lists, test splits)."""

    curve: PropensityCurve
    init_raw: float
    boosters: list[lgb.Booster]
    # both families judged on the held-out lists (None for a pinned curve): what `auto` decides on
    family_test: FamilyTest | None = None
    family: CurveFamily | None = None  # the fitted θ's family (None for a pinned curve)

    def alternative_curves(self) -> dict[CurveFamily, np.ndarray]:
        """θ per position (1..the curve's length) of each curve family the held-out test does
        not rule out (`FamilyTest.plausible`) other than the fitted one, refitted with the final
        γ; positions the fitted curve took from swap interventions keep their value. The gate's
        intervals span these curves as well as the fitted one (ltr_assets.metrics.ranking):
        where the logs cannot tell two curve shapes apart, neither is the only one to trust.
        Empty for a pinned curve."""
        test = self.family_test
        if test is None or self.family is None:
            return {}
        fitted = np.asarray(self.curve.examination, dtype=np.float64)
        measured = np.array([s == "interventions" for s in self.curve.sources], dtype=bool)
        out: dict[CurveFamily, np.ndarray] = {}
        for family in test.plausible():
            if family == self.family or family not in test.theta:
                continue
            own = np.asarray(test.theta[family], dtype=np.float64)
            theta = own[np.minimum(np.arange(fitted.size), own.size - 1)]
            if measured.size == theta.size:
                theta = np.where(measured, fitted, theta)
            out[family] = theta
        return out

    def log_odds(self, features: np.ndarray) -> np.ndarray:
        """γ's log-odds for each row of `features`."""
        raw = np.full(len(features), self.init_raw)
        for booster in self.boosters:
            raw += predict(booster, features, raw_score=True)
        return raw

    def gamma(self, features: np.ndarray) -> np.ndarray:
        """P(click | examined, x) for each row of `features`."""
        relevance: np.ndarray = 1.0 / (1.0 + np.exp(-self.log_odds(features)))
        return relevance


def fit_click_model(
    positions: np.ndarray,
    clicks: np.ndarray,
    features: np.ndarray,
    group_sizes: Sequence[int] | np.ndarray,
    *,
    num_threads: int,
    pinned: PropensityCurve | None = None,
    max_iterations: int = 60,
    rounds_per_iteration: int = 5,
    patience: int = 3,
    holdout: float = 0.2,
    bootstrap: int = 200,
    seed: int = 0,
    family: CurveFamilySetting = "per_position",
) -> ClickModel:
    """Fit the position-based click model (see the module docstring). `positions` are 1-based
    logged ranks, `clicks` 0/1 (any feedback at or past a click), `features` the impressions'
    feature matrix, rows grouped into lists by `group_sizes`; θ in the curve `family`
    (LTR_PROPENSITY_FAMILY; `auto`: the power law, refitted as a free curve when the held-out
    lists show the free curve fits better, `FREE_CURVE_Z`). With `pinned`, θ is the
    operator's curve and only γ is fitted."""
    if family not in CURVE_FAMILY_SETTINGS:
        raise PropensityError(f"unknown curve family {family!r}; one of {CURVE_FAMILY_SETTINGS}")
    if family == "auto":

        def fit_family(chosen: CurveFamily) -> ClickModel:
            return fit_click_model(
                positions,
                clicks,
                features,
                group_sizes,
                num_threads=num_threads,
                pinned=pinned,
                max_iterations=max_iterations,
                rounds_per_iteration=rounds_per_iteration,
                patience=patience,
                holdout=holdout,
                bootstrap=bootstrap,
                seed=seed,
                family=chosen,
            )

        model = fit_family("power_law")
        z = model.family_test.free_curve_z if model.family_test is not None else 0.0
        if z >= FREE_CURVE_Z:
            model = fit_family("per_position")
        if pinned is None:
            model.curve.params["family_choice"] = {
                "setting": "auto",
                "rule": f"power_law unless the free curve's held-out z >= {FREE_CURVE_Z}",
                "free_curve_z": z,
                "chosen": model.curve.params["family"],
            }
        return model
    positions = np.asarray(positions, dtype=np.int64)
    clicks = (np.asarray(clicks) > 0).astype(np.float64)
    features = np.asarray(features, dtype=np.float64)
    sizes = np.asarray(group_sizes, dtype=np.int64)
    if int(sizes.sum()) != positions.size:
        raise PropensityError(f"group sizes sum to {int(sizes.sum())}, not {positions.size} rows")
    if positions.size == 0 or clicks.sum() == 0:
        raise TooFewImpressions("no clicks in the logs: position bias cannot be estimated")
    if pinned is not None:
        bucket = np.minimum(positions, pinned.positions) - 1
        n_buckets = pinned.positions
    else:
        bucket = _buckets(positions)
        n_buckets = int(bucket.max()) + 1
    rng = np.random.default_rng(seed)
    held_out = np.repeat(rng.random(sizes.size) < holdout, sizes)
    if held_out.all() or not held_out.any():
        raise TooFewImpressions(f"{sizes.size} lists are too few to hold some out")
    fit = ~held_out
    ones = np.ones_like(clicks)
    if pinned is not None:
        theta = np.asarray(pinned.examination, dtype=np.float64)
    else:
        theta = np.full(n_buckets, 0.5)
        theta[0] = 1.0
    init_raw = -1.0
    raw = np.full(clicks.shape, init_raw)  # γ's log-odds per impression
    shift = 0.0  # γ's level, fitted exactly each iteration (`gamma_level`), beside its trees
    dataset = lgb.Dataset(features[fit], clicks[fit], free_raw_data=False, params={"verbosity": -1})
    boosters: list[lgb.Booster] = []
    best: tuple[float, np.ndarray, int, float] = (math.inf, theta, 0, 0.0)
    since_best = 0
    iterations = 0
    while iterations < max_iterations:
        iterations += 1
        gamma = 1.0 / (1.0 + np.exp(-raw))
        if pinned is None:
            theta = _theta_step(
                clicks, gamma, theta, bucket, n_buckets, ones, family=family, free_scale=True
            )
        step = gamma_level(clicks[fit], theta[bucket][fit], raw[fit])
        shift += step
        raw = raw + step
        score = _nll(clicks[held_out], theta[bucket][held_out], raw[held_out])
        if score < best[0] - 1e-7:
            best, since_best = (score, theta.copy(), len(boosters), shift), 0
        else:
            since_best += 1
            if since_best >= patience:
                break
        objective = _gamma_objective(clicks[fit], theta[bucket][fit])
        params = lightgbm_params(num_threads, **_GAMMA_PARAMS, objective=objective)
        dataset.set_init_score(raw[fit])
        booster = lgb.train(params, dataset, num_boost_round=rounds_per_iteration)
        boosters.append(booster)
        raw = raw + predict(booster, features, raw_score=True)
    theta, kept = best[1], best[2]
    boosters = boosters[:kept]  # γ as it was when θ was best on the held-out lists
    model = ClickModel(_placeholder_curve(n_buckets), init_raw + best[3], boosters)
    gamma = model.gamma(features)
    if pinned is not None:
        curve = pinned
    else:
        # θ for the γ the model keeps (its level was refitted after that θ step): the curve
        # and its bootstrap interval then describe the same fit
        theta = _theta_step(
            clicks, gamma, theta, bucket, n_buckets, ones, family=family, free_scale=True
        )
        model.family_test = _family_test(clicks, gamma, bucket, n_buckets, held_out, sizes)
        model.family = family
        low, high = _bootstrap(
            clicks, gamma, bucket, n_buckets, theta, sizes, bootstrap, seed, family
        )
        counts = np.bincount(bucket, minlength=n_buckets)
        curve = PropensityCurve(
            method="regression_em",
            examination=[float(v) for v in _monotone(theta)],
            low=[float(v) for v in low],
            high=[float(v) for v in high],
            impressions=[int(v) for v in counts],
            clicks=[int(v) for v in np.bincount(bucket, clicks, n_buckets)],
            params={
                "model": "position-based: P(click | k, x) = θ_k · γ(x)",
                "family": family,
                **({"exponent": _power_law_exponent(theta)} if family == "power_law" else {}),
                # both families' θ refitted on the fitted lists with the final γ, judged on
                # the held-out ones (γ was fitted beside this family's θ)
                "family_test": asdict(model.family_test),
                # whether users click several candidates of a list as often as this model
                # says (a cascade user stops at the first click)
                "click_count_test": asdict(
                    _click_count_test(clicks, _monotone(theta)[bucket] * gamma, held_out, sizes)
                ),
                "fit": "direct likelihood: Newton for θ, boosting for γ, early-stopped on "
                f"{holdout:.0%} held-out lists",
                "iterations": iterations,
                "gamma_rounds": kept * rounds_per_iteration,
                "bootstrap": bootstrap,
                "min_impressions": MIN_IMPRESSIONS,
                "rows": int(positions.size),
                "lists": int(sizes.size),
            },
            sources=_click_model_sources(n_buckets),
            swapped_impressions=[0] * n_buckets,
        )
    model.curve = curve
    return model


def _click_model_sources(n: int) -> list[CurveSource]:
    rest: list[CurveSource] = ["click_model"] * (n - 1)
    return ["reference", *rest]


def _placeholder_curve(n: int) -> PropensityCurve:
    ones, zeros = [1.0] * n, [0] * n
    bounds: list[float | None] = list(ones)
    return PropensityCurve("unfitted", ones, bounds, list(bounds), zeros, zeros)


def with_interventions(
    curve: PropensityCurve, interventions: InterventionCurve, *, min_swapped: int
) -> PropensityCurve:
    """The click model's `curve` with the positions that swap interventions measured on at
    least `min_swapped` swapped impressions taken from them (`combine_curves`), as the `auto`
    curve. Where interventions take over, θ and its interval are theirs (clipped to
    [MIN_THETA, 1]) and the impressions and clicks are the swapped ones; elsewhere the click
    model's figures stand (its last bucket for positions past its end). Without any
    intervention estimate at all, `curve` itself is returned: `auto` is then `regression_em`."""
    if not interventions.estimates:
        return curve
    combined = combine_curves(interventions, curve.examination, min_swapped=min_swapped)
    last = curve.positions - 1
    examination: list[float] = []
    low: list[float | None] = []
    high: list[float | None] = []
    impressions: list[int] = []
    clicks: list[int] = []
    for point in combined.points:
        k = point.position
        if point.source == "interventions":
            estimate = interventions.estimate(k)
            assert estimate is not None  # combine_curves took it from there
            examination.append(_theta(point.theta))
            low.append(None if point.low is None else _theta(point.low))
            high.append(None if point.high is None else _theta(point.high))
            impressions.append(point.swapped_impressions)
            clicks.append(estimate.clicks_top_at_k + estimate.clicks_k_at_top)
        else:
            i = min(k - 1, last)
            examination.append(curve.examination[i])
            low.append(curve.low[i])
            high.append(curve.high[i])
            impressions.append(curve.impressions[i])
            clicks.append(curve.clicks[i])
    params = {
        **curve.params,
        "interventions": {
            "model": interventions.model,
            "top_relevant_click": interventions.top_relevant_click,
            "bootstrap": interventions.bootstrap,
            "confidence": interventions.confidence,
            "min_swapped": min_swapped,
            "min_theta": MIN_THETA,
            "positions_from_interventions": [
                p.position for p in combined.points if p.source == "interventions"
            ],
            "estimates": [asdict(e) for e in interventions.estimates],
        },
    }
    return PropensityCurve(
        method="auto",
        examination=examination,
        low=low,
        high=high,
        impressions=impressions,
        clicks=clicks,
        params=params,
        sources=list(combined.sources),
        swapped_impressions=[p.swapped_impressions for p in combined.points],
    )


def _theta(value: float) -> float:
    return float(min(max(value, MIN_THETA), 1.0))


def _monotone(theta: np.ndarray) -> np.ndarray:
    """Examination never rises further down the list: a running minimum, with θ_1 = 1."""
    out = np.minimum.accumulate(np.clip(np.asarray(theta, dtype=np.float64), _EPS, 1.0))
    out[0] = 1.0
    return out


@dataclass(frozen=True)
class FamilyTest:
    """Both families' θ fitted on the fitted lists with γ held at its fit, judged on the
    held-out lists: each family's mean negative log-likelihood per impression, and the paired
    z-statistic of the per-list log-likelihood gain of the free curve over the power law (the
    per-list mean gain over its standard error; positive: the free curve predicts the held-out
    clicks better)."""

    held_out_nll: dict[str, float]
    free_curve_z: float
    lists: int
    # each family's θ per position bucket (monotone, θ_1 = 1), as fitted for the test
    theta: dict[str, list[float]] = field(default_factory=dict)

    def plausible(self) -> tuple[CurveFamily, ...]:
        """The families these logs do not rule out: the free curve always (it nests the power
        law); the power law unless the free curve fits the held-out lists better by at least
        FREE_CURVE_Z standard errors."""
        if self.free_curve_z >= FREE_CURVE_Z:
            return ("per_position",)
        return CURVE_FAMILIES


def _family_test(
    clicks: np.ndarray,
    gamma: np.ndarray,
    bucket: np.ndarray,
    n_buckets: int,
    held_out: np.ndarray,
    sizes: np.ndarray,
) -> FamilyTest:
    """Each family's held-out fit, and whether the free curve's is better beyond noise."""
    fit = (~held_out).astype(np.float64)
    start = np.full(n_buckets, 0.5)
    start[0] = 1.0
    per_row: dict[str, np.ndarray] = {}
    thetas: dict[str, list[float]] = {}
    for family in CURVE_FAMILIES:
        theta = _monotone(_theta_step(clicks, gamma, start, bucket, n_buckets, fit, 20, family))
        thetas[family] = [float(v) for v in theta]
        p = theta[bucket][held_out] * gamma[held_out]
        per_row[family] = log_likelihood(clicks[held_out], p)
    list_of_row = np.repeat(np.arange(sizes.size), sizes)[held_out]
    lists = np.unique(list_of_row)
    gain = np.bincount(list_of_row, per_row["per_position"] - per_row["power_law"])[lists]
    return FamilyTest(
        held_out_nll={f: round(float(-per_row[f].mean()), 6) for f in CURVE_FAMILIES},
        free_curve_z=round(paired_z(gain), 3),
        lists=int(gain.size),
        theta=thetas,
    )


# The click-count test flags users who stop after a click from this many standard errors below.
CASCADE_Z = -3.0


@dataclass(frozen=True)
class ClickCountTest:
    """Held-out lists with two or more clicks, observed against the number the fitted
    position-based model predicts (clicks independent given θ_k · γ(x)), and the z-statistic of
    the difference. Far fewer than predicted (z ≤ CASCADE_Z): users stop scanning after a
    click, as in a cascade, and examination then depends on what was shown above, which this
    model cannot express."""

    lists: int
    multi_click_lists: int
    expected: float
    z: float


def _click_count_test(
    clicks: np.ndarray, p_click: np.ndarray, held_out: np.ndarray, sizes: np.ndarray
) -> ClickCountTest:
    """Per held-out list, P(two or more clicks) = 1 − P(none) − P(exactly one) under
    independent clicks with the fitted P(click) = `p_click`; their sum against the count."""
    list_of_row = np.repeat(np.arange(sizes.size), sizes)
    p = np.clip(p_click[held_out], 0.0, 1.0 - _EPS)
    rows = list_of_row[held_out]
    lists = np.unique(rows)
    none = np.exp(np.bincount(rows, np.log1p(-p), sizes.size))[lists]
    one = none * np.bincount(rows, p / (1.0 - p), sizes.size)[lists]
    several = np.clip(1.0 - none - one, 0.0, 1.0)
    observed = int((np.bincount(rows, clicks[held_out], sizes.size)[lists] >= 2).sum())
    spread = math.sqrt(float((several * (1.0 - several)).sum()))
    expected = float(several.sum())
    z = (observed - expected) / spread if spread > 0 else 0.0
    return ClickCountTest(int(lists.size), observed, round(expected, 1), round(z, 3))


def paired_z(gain: np.ndarray) -> float:
    """The mean of per-list gains over its standard error (0 when they do not vary): lists are
    the independent units of these logs, the impressions of one list are not."""
    spread = float(gain.std(ddof=1)) if gain.size > 1 else 0.0
    return float(gain.mean() / (spread / math.sqrt(gain.size))) if spread > 0 else 0.0


def _logit(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, _EPS, 1.0 - _EPS)
    out: np.ndarray = np.log(q / (1.0 - q))
    return out


def _bootstrap(
    clicks: np.ndarray,
    gamma: np.ndarray,
    bucket: np.ndarray,
    n_buckets: int,
    theta: np.ndarray,
    sizes: np.ndarray,
    n_boot: int,
    seed: int,
    family: CurveFamily = "per_position",
) -> tuple[np.ndarray, np.ndarray]:
    """95% interval of θ_k: lists resampled with replacement, θ re-fitted with γ held fixed."""
    if n_boot <= 0 or sizes.size == 0:
        return _monotone(theta), _monotone(theta)
    rng = np.random.default_rng([seed, 1])
    draws = rng.multinomial(sizes.size, np.full(sizes.size, 1.0 / sizes.size), size=n_boot)
    thetas = np.empty((n_boot, n_buckets))
    for i in range(n_boot):
        weight = np.repeat(draws[i].astype(np.float64), sizes)
        thetas[i] = _monotone(
            _theta_step(
                clicks, gamma, theta, bucket, n_buckets, weight, family=family, free_scale=True
            )
        )
    return np.percentile(thetas, 2.5, axis=0), np.percentile(thetas, 97.5, axis=0)
