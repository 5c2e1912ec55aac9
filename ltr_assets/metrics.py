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
(`ltr_assets.propensity`). The numerator is the clipped IPS estimate of each list's DCG under
the scorer's ranking, Σ_i (2^label_i − 1) / max(θ_{k_i}, clip) · discount(rank_i): its
expectation is the DCG of the users' true gains whenever θ is right and no weight is clipped.
The whole estimate is self-normalised by the ideal DCG of the same lists estimated once from
the click model (clicked candidates at their logged gain, the others at their posterior
expected gain given that they were not clicked where they were shown):

    nDCĜ@k(π) = Σ_lists DCĜ_k(π) / Σ_lists IDCĜ_k

The denominator does not depend on the scorer, so paired differences between two scorers on
the same lists are differences of unbiased numerators. The normaliser is the ideal DCG estimated
from the model-completed gains rather than from the IPS gains themselves: the maximum of noisy
IPS gains overstates the ideal by about half (measured on the simulator), which would scale
every estimate down by a third. 95% intervals are percentile bootstraps over lists; paired
intervals resample the same lists for both scorers.

Fairness of exposure lives in `ltr_assets.fairness`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

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
    `ideal_gains` each row's estimated true gain (the click model's completion) for the
    normaliser; rows are grouped into lists by `group_sizes`, in any order within a list."""

    def __init__(
        self,
        group_sizes: Sequence[int] | np.ndarray,
        labels: np.ndarray,
        propensities: np.ndarray,
        ideal_gains: np.ndarray,
        clip: float = 0.05,
        n_boot: int = 1000,
        seed: int = 0,
    ) -> None:
        if not 0.0 < clip <= 1.0:
            raise ValueError(f"propensity clip {clip} must lie in (0, 1]")
        self.sizes = np.asarray(group_sizes, dtype=np.int64)
        self.offsets = group_offsets(self.sizes)
        labels = np.asarray(labels, dtype=np.float64)
        self.ips_gains = (np.power(2.0, labels) - 1.0) / np.maximum(
            np.asarray(propensities, dtype=np.float64), clip
        )
        self.ideal_gains = np.clip(np.asarray(ideal_gains, dtype=np.float64), 0.0, None)
        self.clip = clip
        self.ties = tie_breaker(labels.size)
        self.draws = bootstrap_draws(self.sizes.size, n_boot, seed)
        self.lists_with_clicks = int(
            sum(labels[lo:hi].max(initial=0) > 0 for lo, hi in self._bounds())
        )
        self._ideal: dict[int, np.ndarray] = {}

    def _bounds(self) -> Iterator[tuple[int, int]]:
        for g in range(self.sizes.size):
            yield int(self.offsets[g]), int(self.offsets[g + 1])

    def ideal(self, k: int) -> np.ndarray:
        """Estimated ideal DCG@k of each list (the normaliser)."""
        if k not in self._ideal:
            out = np.zeros(self.sizes.size)
            for g, (lo, hi) in enumerate(self._bounds()):
                top = min(k, hi - lo)
                out[g] = np.sort(self.ideal_gains[lo:hi])[::-1][:top] @ _discounts(top)
            self._ideal[k] = out
        return self._ideal[k]

    def dcg(self, scores: np.ndarray, k: int) -> np.ndarray:
        """The IPS estimate of each list's DCG@k under the ranking by `scores`."""
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != self.ips_gains.shape:
            raise ValueError(f"{scores.size} scores for {self.ips_gains.size} rows")
        out = np.zeros(self.sizes.size)
        for g, (lo, hi) in enumerate(self._bounds()):
            gains = self.ips_gains[lo:hi]
            if not gains.any():
                continue
            top = min(k, hi - lo)
            order = _ranking(scores[lo:hi], self.ties[lo:hi])
            out[g] = gains[order][:top] @ _discounts(top)
        return out

    def model_based_ndcg(self, scores: np.ndarray, k: int = 5) -> CounterfactualReport:
        """A second opinion, not gated: the DCG under `scores` of the click model's completed
        gains (a clicked row at its logged gain, any other at its posterior expected gain),
        over the same normaliser. No 1/θ weight amplifies an error in the examination curve's
        tail, but unclicked candidates are graded by the click model, the same model the
        debiased candidate learned from, so it cannot catch that model's own mistakes."""
        ideal = self.ideal(k)
        dcg = np.zeros(self.sizes.size)
        for g, (lo, hi) in enumerate(self._bounds()):
            top = min(k, hi - lo)
            order = _ranking(np.asarray(scores, dtype=np.float64)[lo:hi], self.ties[lo:hi])
            dcg[g] = self.ideal_gains[lo:hi][order][:top] @ _discounts(top)
        total = ideal.sum()
        value = float(dcg.sum() / total) if total > 0 else float("nan")
        boot = (self.draws @ dcg) / np.maximum(self.draws @ ideal, 1e-12)
        return CounterfactualReport(
            k, value, _percentiles(boot), int(self.sizes.size), self.lists_with_clicks
        )

    def ndcg(self, scores: np.ndarray, k: int = 5) -> CounterfactualReport:
        dcg, ideal = self.dcg(scores, k), self.ideal(k)
        total = ideal.sum()
        value = float(dcg.sum() / total) if total > 0 else float("nan")
        boot = (self.draws @ dcg) / np.maximum(self.draws @ ideal, 1e-12)
        return CounterfactualReport(
            k, value, _percentiles(boot), int(self.sizes.size), self.lists_with_clicks
        )

    def paired(self, candidate: np.ndarray, baseline: np.ndarray, k: int = 5) -> PairedReport:
        a, b, ideal = self.dcg(candidate, k), self.dcg(baseline, k), self.ideal(k)
        total = ideal.sum()
        if total <= 0:
            nan = float("nan")
            return PairedReport(k, nan, nan, nan, Interval(nan, nan), int(self.sizes.size))
        boot = (self.draws @ (a - b)) / np.maximum(self.draws @ ideal, 1e-12)
        return PairedReport(
            k,
            float(a.sum() / total),
            float(b.sum() / total),
            float((a - b).sum() / total),
            _percentiles(boot),
            int(self.sizes.size),
        )


def samples(labels: np.ndarray, group_sizes: Sequence[int] | np.ndarray) -> int:
    """Evaluation groups with at least one positive label."""
    offsets = group_offsets(group_sizes)
    maxima: np.ndarray | list[float] = (
        np.maximum.reduceat(np.asarray(labels), offsets[:-1]) if len(offsets) > 1 else []
    )
    return int(np.sum(np.asarray(maxima) > 0))


@dataclass(frozen=True)
class LatencyReport:
    queries: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
