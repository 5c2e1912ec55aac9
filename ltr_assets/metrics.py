"""The gate's metrics, one implementation used by the gate, the reports and the benchmarks.

nDCG@k: gain 2^rel - 1, discount 1/log2(1 + rank), ideal DCG from the labels; groups with no
positive label are excluded (and counted). Ties in the scores keep the input order (stable sort),
as LightGBM does.

Fairness gap (Δ_exp@k) for each protected attribute value g: over the query groups whose
candidates contain both g and others, the mean of [share of top-k exposure (weights
1/log2(1 + rank)) going to g − share of g among the candidates]. The signed per-query differences
are averaged, never their absolute values; the gap is the largest |mean| over attribute values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ltr_assets.schema import UNKNOWN


def group_offsets(group_sizes: Sequence[int] | np.ndarray) -> np.ndarray:
    """[0, n1, n1+n2, …]: the start of each group in row order, plus the end."""
    return np.concatenate([[0], np.cumsum(np.asarray(group_sizes, dtype=np.int64))])


def _ranking(scores: np.ndarray) -> np.ndarray:
    return np.argsort(-scores, kind="stable")


def _discounts(n: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, n + 2))


def ndcg_per_group(
    labels: np.ndarray, scores: np.ndarray, group_sizes: Sequence[int], k: int
) -> np.ndarray:
    """nDCG@k of every group; NaN where the group has no positive label."""
    labels = np.asarray(labels, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    offsets = group_offsets(group_sizes)
    out = np.full(len(offsets) - 1, np.nan)
    for g in range(len(out)):
        rel = labels[offsets[g] : offsets[g + 1]]
        if rel.size == 0 or rel.max() <= 0:
            continue
        top = min(k, rel.size)
        discount = _discounts(top)
        gains = np.power(2.0, rel) - 1.0
        ideal = np.sort(gains)[::-1][:top] @ discount
        actual = gains[_ranking(scores[offsets[g] : offsets[g + 1]])][:top] @ discount
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
    labels: np.ndarray, scores: np.ndarray, group_sizes: Sequence[int], k: int = 5, seed: int = 0
) -> NdcgReport:
    per_group = ndcg_per_group(labels, scores, group_sizes, k)
    used = per_group[~np.isnan(per_group)]
    return NdcgReport(
        k=k,
        value=float(used.mean()) if used.size else float("nan"),
        groups_used=int(used.size),
        groups_excluded=int(per_group.size - used.size),
        interval=bootstrap_mean_interval(used, seed=seed),
    )


def samples(labels: np.ndarray, group_sizes: Sequence[int]) -> int:
    """Evaluation groups with at least one positive label."""
    offsets = group_offsets(group_sizes)
    maxima = np.maximum.reduceat(np.asarray(labels), offsets[:-1]) if len(offsets) > 1 else []
    return int(np.sum(np.asarray(maxima) > 0))


@dataclass(frozen=True)
class ValueExposure:
    attribute: str
    value: str
    mean_difference: float  # signed: > 0 over-exposed, < 0 under-exposed
    groups: int
    gated: bool  # enough groups to count towards the gap


@dataclass(frozen=True)
class FairnessReport:
    k: int
    gap: float  # largest |mean difference| over gated values; 0 when none is gated
    attribute: str | None
    value: str | None
    groups: int  # groups behind the largest value
    interval: Interval
    per_value: list[ValueExposure] = field(default_factory=list)


def fairness_gap(
    scores: np.ndarray,
    group_sizes: Sequence[int],
    attributes: dict[str, Sequence[str | None]],
    k: int = 5,
    min_groups: int = 30,
    n_boot: int = 1000,
    seed: int = 0,
) -> FairnessReport:
    """Δ_exp@k over protected attributes (see the module docstring).

    `attributes` maps an attribute name to one value per row; None or "unknown" is its own value
    and is not gated. Values found in fewer than `min_groups` groups are reported, not gated: a
    handful of lists says nothing about a group's exposure.
    """
    scores = np.asarray(scores, dtype=np.float64)
    offsets = group_offsets(group_sizes)
    n_groups = len(offsets) - 1
    # (attribute, value) -> (group index list, difference list)
    diffs: dict[tuple[str, str], tuple[list[int], list[float]]] = {}
    columns = {
        a: np.array([UNKNOWN if v is None else str(v) for v in vals], dtype=object)
        for a, vals in attributes.items()
    }
    for g in range(n_groups):
        lo, hi = offsets[g], offsets[g + 1]
        n = hi - lo
        if n < 2:
            continue
        order = _ranking(scores[lo:hi])
        top = min(k, n)
        weights = _discounts(top)
        top_rows = order[:top]
        for attribute, column in columns.items():
            values = column[lo:hi]
            for value in set(values):
                if value == UNKNOWN:
                    continue
                members = values == value
                count = int(members.sum())
                if count == n:
                    continue  # no "others" in this list
                exposure = weights[members[top_rows]].sum() / weights.sum()
                entry = diffs.setdefault((attribute, value), ([], []))
                entry[0].append(g)
                entry[1].append(exposure - count / n)

    per_value = [
        ValueExposure(a, v, float(np.mean(d)), len(d), len(d) >= min_groups)
        for (a, v), (_, d) in sorted(diffs.items())
    ]
    gated = [pv for pv in per_value if pv.gated]
    if not gated:
        return FairnessReport(k, 0.0, None, None, 0, Interval(0.0, 0.0), per_value)
    worst = max(gated, key=lambda pv: abs(pv.mean_difference))

    # Bootstrap over query groups: every gated value's mean under the same resampling.
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n_groups, np.full(n_groups, 1.0 / n_groups), size=n_boot)
    boot_gap = np.zeros(n_boot)
    for pv in gated:
        idx, d = diffs[(pv.attribute, pv.value)]
        w = draws[:, idx]
        total = w.sum(axis=1)
        means = np.where(total > 0, (w @ np.asarray(d)) / np.maximum(total, 1), 0.0)
        boot_gap = np.maximum(boot_gap, np.abs(means))
    interval = Interval(float(np.percentile(boot_gap, 2.5)), float(np.percentile(boot_gap, 97.5)))
    return FairnessReport(
        k=k,
        gap=abs(worst.mean_difference),
        attribute=worst.attribute,
        value=worst.value,
        groups=worst.groups,
        interval=interval,
        per_value=per_value,
    )


@dataclass(frozen=True)
class LatencyReport:
    queries: int
    p50_ms: float
    p95_ms: float
    p99_ms: float


def scoring_latency(
    score: Callable[[np.ndarray], np.ndarray],
    queries: Sequence[np.ndarray],
    n: int = 1000,
    warmup: int = 50,
) -> LatencyReport:
    """Time `score` on one query's candidate matrix at a time, cycling through `queries`."""
    if not queries:
        raise ValueError("no query to time")
    for i in range(warmup):
        score(queries[i % len(queries)])
    timings = np.empty(n)
    for i in range(n):
        matrix = queries[i % len(queries)]
        start = time.perf_counter_ns()
        score(matrix)
        timings[i] = (time.perf_counter_ns() - start) / 1e6
    p50, p95, p99 = np.percentile(timings, [50, 95, 99])
    return LatencyReport(n, float(p50), float(p95), float(p99))
