"""The gate's metrics, one implementation used by the gate, the reports and the benchmarks.

Ties: every ranking here breaks score ties at random with a fixed seed (`tie_breaker`), never
by the order rows arrive in: rows come in the logged order, and a stable sort would hand a
constant scorer the platform's own ranking.

nDCG@k (diagnostic, on logged labels): gain 2^rel − 1, discount 1/log2(1 + rank), ideal DCG from
the labels; groups with no positive label are excluded and counted. LightGBM scores those groups
1.0 instead, so where the two are compared (tests, quality_real) only groups with a positive
label are compared.

Counterfactual nDCG@k (gated): what users would experience under a scorer's ranking of the
logged lists, estimated from clicks and the estimated examination curve θ
(`ltr_assets.learning.propensity`). Each row's gain is estimated by IPS, (2^label − 1) / θ_k,
where its
importance weight 1/θ_k is at most `max_weight` (LTR_IPS_MAX_WEIGHT, 5: θ ≥ 0.2); a row shown
where θ is smaller is graded by the click model's completed gain instead (its logged gain if
clicked, else its posterior expected gain given that it was not clicked where it was shown).
This is the SWITCH estimator (Wang, Agarwal & Dudík, ICML 2017) in its ranking form, the
model-based fallback standing where plain clipping would cap the weight. Why: on the simulator
a good ranker takes about a third of its top-5 DCG from rows the logged lists showed at rank 5
or lower, where weights of 5-20 turn a handful of clicks into much of the estimate. With plain
IPS the estimate is noisy on a test set of ordinary size even with the true curve, and the
estimated curve's tail, too low without randomised interventions, biases it. Switched, the
estimate no longer depends on θ where the curve is least known (docs/benchmarks.md,
quality_sim, compares the two against the simulator's truth).
The price: rows switched to the model are graded by the click model that the debiased candidate
learned from; the report's `model_share` says how much of the estimate came from them.

    DCĜ_k(π) = Σ_{i in π's top k} ĝ_i · discount(rank_i),  ĝ_i = IPS gain or completed gain
    nDCĜ@k(π) = Σ_lists DCĜ_k(π) / Σ_lists IDCĜ_k

The whole estimate is self-normalised by the ideal DCG of the same lists, estimated once from
the completed gains. The denominator does not depend on the scorer, so paired differences
between two scorers on the same lists are differences of numerators. The normaliser is the ideal
DCG of the completed gains rather than of the IPS gains themselves: the maximum of noisy IPS
gains overstates the ideal, which would scale every estimate down. 95% intervals are
percentile bootstraps over lists; paired intervals resample the same lists for both scorers.
The bootstrap holds θ and the click model fixed, so it cannot see that the curve itself is in
doubt. Where the logs cannot tell two shapes of the curve apart (the click model's held-out test
does not reject the power law, `ltr_assets.learning.propensity.FamilyTest`), every interval
spans the intervals under both curves (`alternatives`), each with its own completed gains; the
point estimate stays the fitted curve's. Why: with a near-deterministic logger the free curve
can be off by several hundredths where the power law is right, and the power law steepened by
trust bias where the free curve is right; each alone gave intervals that missed the truth for
most rankings in some condition of the simulator (docs/benchmarks.md, quality_sim). Spanning
both costs width only where the two curves disagree. An interval is clipped to the metric's range
([0, 1], and [−1, 1] for a difference), and says so
(`Interval.clipped`). The point estimate is not: it is a ratio of sums that paired differences
subtract, and on a few hundred lists a very good ranking's may pass 1.

Fairness of exposure lives in `ltr_assets.metrics.fairness`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np


def group_offsets(group_sizes: Sequence[int] | np.ndarray) -> np.ndarray:
    """[0, n1, n1+n2, …]: the start of each group in row order, plus the end."""
    return np.concatenate([[0], np.cumsum(np.asarray(group_sizes, dtype=np.int64))])


TIE_SEED = 20261126


def tie_breaker(n: int, seed: int = TIE_SEED) -> np.ndarray:
    """One uniform random number per row: the secondary sort key that breaks score ties."""
    return np.random.default_rng(seed).random(n)


def _ranking(scores: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """Indices by descending score, ties in the order of `ties` (random, never input order)."""
    return np.lexsort((ties, -scores))


def _discounts(n: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, n + 2))


def ndcg_per_group(
    labels: np.ndarray,
    scores: np.ndarray,
    group_sizes: Sequence[int] | np.ndarray,
    k: int,
    seed: int = TIE_SEED,
) -> np.ndarray:
    """nDCG@k of every group; NaN where the group has no positive label."""
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    ties = tie_breaker(scores.size, seed)
    offsets = group_offsets(group_sizes)
    out = np.full(len(offsets) - 1, np.nan)
    for g in range(len(out)):
        lo, hi = offsets[g], offsets[g + 1]
        rel = labels[lo:hi]
        if rel.size == 0 or rel.max() <= 0:
            continue
        top = min(k, rel.size)
        discount = _discounts(top)
        gains = np.power(2.0, rel) - 1.0
        ideal = np.sort(gains)[::-1][:top] @ discount
        actual = gains[_ranking(scores[lo:hi], ties[lo:hi])][:top] @ discount
        out[g] = actual / ideal
    return out


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    clipped: bool = False  # an end was moved inside the metric's range (see `within`)

    def within(self, low: float, high: float) -> Interval:
        """This interval clipped to the metric's range [low, high], saying so when it was: a
        percentile bootstrap of a ratio estimate can reach past the range (e.g. nDCG 1.06)."""
        lo, hi = min(max(self.low, low), high), min(max(self.high, low), high)
        moved = (lo, hi) != (self.low, self.high) and np.isfinite([self.low, self.high]).all()
        return Interval(lo, hi, self.clipped or bool(moved))

    def hull(self, other: Interval) -> Interval:
        """The smallest interval holding both (an undefined end of `other` is ignored)."""
        low, high = float(np.fmin(self.low, other.low)), float(np.fmax(self.high, other.high))
        return Interval(low, high, self.clipped or other.clipped)


@dataclass(frozen=True)
class NdcgReport:
    k: int
    value: float
    groups_used: int
    groups_excluded: int  # no positive label
    interval: Interval


def bootstrap_mean_interval(values: np.ndarray, n_boot: int = 1000, seed: int = 0) -> Interval:
    """Percentile 95% interval of the mean, resampling the values with replacement."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return Interval(float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, values.size, size=(n_boot, values.size))
    means = values[idx].mean(axis=1)
    return Interval(float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5)))


def ndcg_at_k(
    labels: np.ndarray,
    scores: np.ndarray,
    group_sizes: Sequence[int] | np.ndarray,
    k: int = 5,
    seed: int = 0,
) -> NdcgReport:
    """nDCG@k on logged labels (a diagnostic: clicks measure position as much as relevance)."""
    per_group = ndcg_per_group(labels, scores, group_sizes, k)
    used = per_group[~np.isnan(per_group)]
    return NdcgReport(
        k=k,
        value=float(used.mean()) if used.size else float("nan"),
        groups_used=int(used.size),
        groups_excluded=int(per_group.size - used.size),
        interval=bootstrap_mean_interval(used, seed=seed),
    )


def gain_ndcg(
    gains: np.ndarray, scores: np.ndarray, group_sizes: Sequence[int] | np.ndarray, k: int = 5
) -> float:
    """Mean over lists of nDCG@k with the gains given directly (not 2^label − 1): how the
    simulator's truth (each candidate's true expected gain) judges a ranking."""
    gains = np.asarray(gains, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    ties = tie_breaker(scores.size)
    offsets = group_offsets(group_sizes)
    values = []
    for g in range(len(offsets) - 1):
        lo, hi = offsets[g], offsets[g + 1]
        top = min(k, hi - lo)
        ideal = np.sort(gains[lo:hi])[::-1][:top] @ _discounts(top)
        if ideal > 0:
            order = _ranking(scores[lo:hi], ties[lo:hi])
            values.append(gains[lo:hi][order][:top] @ _discounts(top) / ideal)
    return float(np.mean(values)) if values else float("nan")


def bootstrap_draws(n_lists: int, n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """How often each list appears in each bootstrap resample (n_boot × n_lists): shared by
    every scorer evaluated on the same lists, so their differences are paired."""
    if n_lists == 0:
        return np.zeros((n_boot, 0))
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_lists, np.full(n_lists, 1.0 / n_lists), size=n_boot).astype(float)


def _percentiles(values: np.ndarray) -> Interval:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return Interval(float("nan"), float("nan"))
    return Interval(float(np.percentile(finite, 2.5)), float(np.percentile(finite, 97.5)))


@dataclass(frozen=True)
class CounterfactualReport:
    k: int
    value: float
    interval: Interval
    lists: int  # lists evaluated
    lists_with_clicks: int
    model_share: float  # share of the estimated DCG from rows graded by the click model


@dataclass(frozen=True)
class PairedReport:
    """candidate − baseline on the same lists, with the bootstrap interval of the difference."""

    k: int
    candidate: float
    baseline: float
    difference: float
    interval: Interval
    lists: int


class CounterfactualEvaluator:
    """Counterfactual nDCG@k of any scorer on one set of logged lists (module docstring).

    `labels` are the logged graded labels, `propensities` θ at each row's logged position,
    `completed_gains` each row's gain completed by the click model (the normaliser, and the
    estimate of rows whose IPS weight would pass `max_weight`); rows are grouped into lists by
    `group_sizes`, in any order within a list. `alternatives`: (propensities, completed gains)
    under other examination curves the logs do not rule out; the estimates stay this curve's,
    every interval spans theirs too (module docstring)."""

    def __init__(
        self,
        group_sizes: Sequence[int] | np.ndarray,
        labels: np.ndarray,
        propensities: np.ndarray,
        completed_gains: np.ndarray,
        *,
        max_weight: float,
        n_boot: int = 1000,
        seed: int = 0,
        alternatives: Sequence[tuple[np.ndarray, np.ndarray]] = (),
    ) -> None:
        if not max_weight >= 1.0:
            raise ValueError(f"the largest IPS weight {max_weight} must be at least 1")
        self.sizes = np.asarray(group_sizes, dtype=np.int64)
        self.offsets = group_offsets(self.sizes)
        labels = np.asarray(labels, dtype=np.float64)
        theta = np.asarray(propensities, dtype=np.float64)
        self.completed_gains = np.clip(np.asarray(completed_gains, dtype=np.float64), 0.0, None)
        self.switched = theta * max_weight < 1.0  # graded by the model, not by IPS
        ips = (np.power(2.0, labels) - 1.0) / np.where(self.switched, 1.0, theta)
        self.gains = np.where(self.switched, self.completed_gains, ips)
        self.ties = tie_breaker(labels.size)
        self.draws = bootstrap_draws(self.sizes.size, n_boot, seed)
        self.lists_with_clicks = int(
            sum(labels[lo:hi].max(initial=0) > 0 for lo, hi in self._bounds())
        )
        self._ideal: dict[int, np.ndarray] = {}
        self.alternatives = [
            CounterfactualEvaluator(
                group_sizes,
                labels,
                theta_alt,
                gains_alt,
                max_weight=max_weight,
                n_boot=n_boot,
                seed=seed,
            )
            for theta_alt, gains_alt in alternatives
        ]

    def _bounds(self) -> Iterator[tuple[int, int]]:
        for g in range(self.sizes.size):
            yield int(self.offsets[g]), int(self.offsets[g + 1])

    def ideal(self, k: int) -> np.ndarray:
        """Estimated ideal DCG@k of each list (the normaliser)."""
        if k not in self._ideal:
            out = np.zeros(self.sizes.size)
            for g, (lo, hi) in enumerate(self._bounds()):
                top = min(k, hi - lo)
                out[g] = np.sort(self.completed_gains[lo:hi])[::-1][:top] @ _discounts(top)
            self._ideal[k] = out
        return self._ideal[k]

    def _dcg(self, gains: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, float]:
        """Each list's DCG@k of `gains` under the ranking by `scores`, and the share of the
        total that rows graded by the model (not by IPS) make up."""
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != gains.shape:
            raise ValueError(f"{scores.size} scores for {gains.size} rows")
        out = np.zeros(self.sizes.size)
        switched = 0.0
        for g, (lo, hi) in enumerate(self._bounds()):
            top = min(k, hi - lo)
            order = _ranking(scores[lo:hi], self.ties[lo:hi])[:top]
            terms = gains[lo:hi][order] * _discounts(top)
            out[g] = terms.sum()
            switched += terms[self.switched[lo:hi][order]].sum()
        total = out.sum()
        return out, float(switched / total) if total > 0 else 0.0

    def dcg(self, scores: np.ndarray, k: int) -> np.ndarray:
        """The estimate of each list's DCG@k under the ranking by `scores`."""
        return self._dcg(self.gains, scores, k)[0]

    def _report(self, dcg: np.ndarray, k: int, model_share: float) -> CounterfactualReport:
        ideal = self.ideal(k)
        total = ideal.sum()
        value = float(dcg.sum() / total) if total > 0 else float("nan")
        boot = (self.draws @ dcg) / np.maximum(self.draws @ ideal, 1e-12)
        interval = _percentiles(boot).within(0.0, 1.0)
        return CounterfactualReport(
            k, value, interval, int(self.sizes.size), self.lists_with_clicks, model_share
        )

    def _spanned(
        self, report: CounterfactualReport, others: Iterator[Interval]
    ) -> CounterfactualReport:
        interval = report.interval
        for other in others:
            interval = interval.hull(other)
        return replace(report, interval=interval)

    def model_based_ndcg(self, scores: np.ndarray, k: int = 5) -> CounterfactualReport:
        """A second opinion, not gated: the DCG under `scores` of the click model's completed
        gains for every row, over the same normaliser. No 1/θ weight, but every unclicked
        candidate is graded by the click model, the same model the debiased candidate learned
        from, so it cannot catch that model's own mistakes."""
        report = self._report(self._dcg(self.completed_gains, scores, k)[0], k, 1.0)
        others = (alt.model_based_ndcg(scores, k).interval for alt in self.alternatives)
        return self._spanned(report, others)

    def ndcg(self, scores: np.ndarray, k: int = 5) -> CounterfactualReport:
        dcg, model_share = self._dcg(self.gains, scores, k)
        others = (alt.ndcg(scores, k).interval for alt in self.alternatives)
        return self._spanned(self._report(dcg, k, model_share), others)

    def paired(self, candidate: np.ndarray, baseline: np.ndarray, k: int = 5) -> PairedReport:
        a, b, ideal = self.dcg(candidate, k), self.dcg(baseline, k), self.ideal(k)
        total = ideal.sum()
        if total <= 0:
            nan = float("nan")
            return PairedReport(k, nan, nan, nan, Interval(nan, nan), int(self.sizes.size))
        boot = (self.draws @ (a - b)) / np.maximum(self.draws @ ideal, 1e-12)
        interval = _percentiles(boot).within(-1.0, 1.0)
        for alt in self.alternatives:
            interval = interval.hull(alt.paired(candidate, baseline, k).interval)
        return PairedReport(
            k,
            float(a.sum() / total),
            float(b.sum() / total),
            float((a - b).sum() / total),
            interval,
            int(self.sizes.size),
        )


def samples(labels: np.ndarray, group_sizes: Sequence[int] | np.ndarray) -> int:
    """Evaluation groups with at least one positive label."""
    offsets = group_offsets(group_sizes)
    maxima: np.ndarray | list[float] = (
        np.maximum.reduceat(np.asarray(labels), offsets[:-1]) if len(offsets) > 1 else []
    )
    return int(np.sum(np.asarray(maxima) > 0))
