"""Fairness of exposure per protected attribute value, decided on intervals.

For a value g of an attribute (gender=F, ethnicity=preta, …), over the lists whose candidates
contain both g and others, with top-k exposure weights 1/log2(1 + rank):

- exposure share e = g's share of the list's top-k exposure; candidate share c = g's share of
  the list's candidates; merit share m = g's share of the list's debiased relevance (the click
  model's expected gains);
- Δ_exp@k = mean over lists of (e − c): signed per-list differences averaged, never absolute
  values (a list where g is over-exposed offsets one where it is under-exposed);
- exposure ratio = mean(e) / mean(c): 1.0 is parity, 0.8 the four-fifths adverse-impact line. A
  small group ranked last moves Δ little (its share is small) and the ratio a lot;
- merit-weighted ratio = mean(e) / mean(m), a diagnostic: exposure relative to what the
  debiased relevance says the group earned;
- 95% intervals: percentile bootstrap over lists.

The gate fails a value when the upper bound of |Δ| exceeds LTR_FAIRNESS_MAX or the upper bound
of the ratio falls below LTR_FAIRNESS_MIN_RATIO: the evidence must show the ranking is fair, not
merely fail to show that it is not. A value in fewer than LTR_FAIRNESS_MIN_GROUPS test lists is
judged on the validation and test lists pooled; still too few, it is not gated and the WARN
check `fairness_coverage` names it. Missing values ("unknown") are never gated; coverage, the
share of candidates with a known value, is reported per attribute and checked. Intersections of
two attributes are reported, not gated.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
import pandas as pd

from ltr_assets.metrics.ranking import (
    Interval,
    bootstrap_draws,
    group_offsets,
    tie_breaker,
)
from ltr_core.features import UNKNOWN

K = 5
N_BOOT = 1000


@dataclass(frozen=True)
class ValueFairness:
    attribute: str  # "gender", or "gender&ethnicity" for an intersection
    value: str  # "F", or "F&preta"
    lists: int
    pooled: bool  # judged on validation + test lists (too few test lists alone)
    candidate_share: float
    exposure_share: float
    difference: float  # Δ_exp@k
    difference_ci: Interval
    ratio: float
    ratio_ci: Interval
    merit_ratio: float  # diagnostic
    gated: bool
    why_not: str  # "" when gated
    passed: bool | None = None  # None when not gated

    @property
    def name(self) -> str:
        return f"{self.attribute}={self.value}"

    @property
    def worst_abs_difference(self) -> float:
        return max(abs(self.difference_ci.low), abs(self.difference_ci.high))


@dataclass(frozen=True)
class FairnessReport:
    k: int
    attributes: tuple[str, ...]  # what was configured to be gated
    coverage: dict[str, float]  # attribute -> share of test candidates with a known value
    values: list[ValueFairness]  # single attributes, gated or not
    intersections: list[ValueFairness] = field(default_factory=list)
    max_difference: float = 0.05
    min_ratio: float = 0.8
    min_lists: int = 30
    min_coverage: float = 0.5

    @property
    def gated(self) -> list[ValueFairness]:
        return [v for v in self.values if v.gated]

    @property
    def failing(self) -> list[ValueFairness]:
        return [v for v in self.gated if v.passed is False]

    @property
    def unjudged(self) -> list[ValueFairness]:
        return [v for v in self.values if not v.gated]

    @property
    def low_coverage(self) -> dict[str, float]:
        return {a: c for a, c in self.coverage.items() if c < self.min_coverage}

    @property
    def nothing_known(self) -> bool:
        return bool(self.attributes) and all(c == 0.0 for c in self.coverage.values())

    @property
    def worst(self) -> ValueFairness | None:
        """The gated value furthest from parity (the one a failing gate names first)."""
        if not self.gated:
            return None
        return max(
            self.gated,
            key=lambda v: (
                max(v.worst_abs_difference / self.max_difference, self.min_ratio / v.ratio_ci.high)
                if v.ratio_ci.high > 0
                else float("inf")
            ),
        )

    def table(self) -> str:
        """The per-value table as Markdown (the UI renders it)."""
        head = (
            "| value | lists | candidate share | exposure share | Δ_exp@5 [95% CI] | "
            "exposure ratio [95% CI] | merit ratio | gated |\n|---|---|---|---|---|---|---|---|\n"
        )
        rows = []
        for v in [*self.values, *self.intersections]:
            if v.gated:
                gated = ("pass" if v.passed else "**FAIL**") + (" (pooled)" if v.pooled else "")
            else:
                gated = f"not gated: {v.why_not}"
            rows.append(
                f"| {v.name} | {v.lists} | {v.candidate_share:.4f} | {v.exposure_share:.4f} | "
                f"{v.difference:+.4f} [{v.difference_ci.low:+.4f}, {v.difference_ci.high:+.4f}] | "
                f"{v.ratio:.3f} [{v.ratio_ci.low:.3f}, {v.ratio_ci.high:.3f}] | "
                f"{v.merit_ratio:.3f} | {gated} |"
            )
        coverage = ", ".join(f"{a} {c:.0%}" for a, c in self.coverage.items())
        return head + "\n".join(rows) + f"\n\nCoverage (candidates with a known value): {coverage}."


@dataclass
class ListShares:
    """Per-list shares of one value: rows are lists containing the value and others."""

    lists: list[int] = field(default_factory=list)  # list index
    candidate: list[float] = field(default_factory=list)
    exposure: list[float] = field(default_factory=list)
    merit: list[float] = field(default_factory=list)


def _discounts(n: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, n + 2))


def _value_columns(
    attributes: Mapping[str, Sequence[str | None]], names: Sequence[str]
) -> dict[str, np.ndarray]:
    columns = {
        a: np.array([UNKNOWN if v is None else str(v) for v in attributes[a]], dtype=object)
        for a in names
        if a in attributes
    }
    for a, b in combinations(list(columns), 2):
        # "value&value" per row, built from the few distinct pairs: one string per pair shared
        # by its rows, not a new string per row (millions of rows on a big day)
        left_codes, left_values = pd.factorize(columns[a])
        right_codes, right_values = pd.factorize(columns[b])
        pairs = np.array(
            [
                UNKNOWN if UNKNOWN in (x, y) else f"{x}&{y}"
                for x in left_values
                for y in right_values
            ]
            + [UNKNOWN],  # code -1: an empty column
            dtype=object,
        )
        index = left_codes * len(right_values) + right_codes
        columns[f"{a}&{b}"] = pairs[np.where((left_codes < 0) | (right_codes < 0), -1, index)]
    return columns


def list_shares(
    scores: np.ndarray,
    group_sizes: Sequence[int] | np.ndarray,
    columns: Mapping[str, np.ndarray],
    merit: np.ndarray,
    k: int = K,
    list_offset: int = 0,
) -> dict[tuple[str, str], ListShares]:
    """Every (attribute, value)'s per-list shares under the ranking by `scores` (random ties),
    over the lists of at least two candidates that hold the value and others; each value's
    lists in list order. Computed for all lists at once (one sort, then sums per list and
    value): a loop over lists took seconds on a day of a million events."""
    scores = np.asarray(scores, dtype=np.float64)
    merit = np.clip(np.asarray(merit, dtype=np.float64), 0.0, None)
    ties = tie_breaker(scores.size)
    sizes = np.asarray(group_sizes, dtype=np.int64)
    n_lists = sizes.size
    offsets = group_offsets(sizes)
    group = np.repeat(np.arange(n_lists), sizes)
    order = np.lexsort((ties, -scores, group))  # by list, then score descending, then ties
    rank = np.empty(scores.size, dtype=np.int64)
    rank[order] = np.arange(scores.size) - offsets[group[order]]
    top = np.minimum(k, sizes)[group]
    normaliser = np.cumsum(_discounts(k))[np.maximum(top, 1) - 1]
    exposure = np.where(rank < top, 1.0 / np.log2(rank + 2.0) / normaliser, 0.0)
    merit_total = np.bincount(group, merit, n_lists)
    out: dict[tuple[str, str], ListShares] = {}
    for attribute, column in columns.items():
        codes, values = pd.factorize(np.asarray(column, dtype=object))
        key = group * len(values) + codes
        shape = (n_lists, len(values))
        counts = np.bincount(key, minlength=n_lists * len(values)).reshape(shape)
        exposed = np.bincount(key, exposure, n_lists * len(values)).reshape(shape)
        merited = np.bincount(key, merit, n_lists * len(values)).reshape(shape)
        for v, value in enumerate(values):
            if value == UNKNOWN:
                continue
            count = counts[:, v]
            lists = np.nonzero((count > 0) & (count < sizes) & (sizes >= 2))[0]
            if lists.size == 0:
                continue
            candidate = count[lists] / sizes[lists]
            total = merit_total[lists]
            merit_share = np.where(
                total > 0, merited[lists, v] / np.where(total > 0, total, 1.0), candidate
            )
            shares = out.setdefault((attribute, str(value)), ListShares())
            shares.lists.extend((lists + list_offset).tolist())
            shares.candidate.extend(candidate.tolist())
            shares.exposure.extend(exposed[lists, v].tolist())
            shares.merit.extend(merit_share.tolist())
    return out


def _measure(
    shares: ListShares, draws: np.ndarray
) -> tuple[float, float, float, Interval, float, Interval, float]:
    c = np.asarray(shares.candidate)
    e = np.asarray(shares.exposure)
    m = np.asarray(shares.merit)
    w = draws[:, shares.lists]  # how often each of the value's lists is drawn, per resample
    totals = np.maximum(w.sum(axis=1), 1e-12)
    boot_diff = (w @ (e - c)) / totals
    boot_ratio = (w @ e) / np.maximum(w @ c, 1e-12)
    difference = float(np.mean(e - c))
    ratio = float(e.mean() / c.mean()) if c.mean() > 0 else float("nan")
    merit_ratio = float(e.mean() / m.mean()) if m.mean() > 0 else float("nan")
    return (
        float(c.mean()),
        float(e.mean()),
        difference,
        _interval(boot_diff),
        ratio,
        _interval(boot_ratio),
        merit_ratio,
    )


def _interval(values: np.ndarray) -> Interval:
    return Interval(float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5)))


@dataclass(frozen=True)
class RankedLists:
    """One split's lists as a ranking sees them: scores, list sizes, each row's protected
    attribute values (None: unknown) and debiased relevance (merit)."""

    scores: np.ndarray
    group_sizes: Sequence[int] | np.ndarray
    attributes: Mapping[str, Sequence[str | None]]
    merit: np.ndarray


def fairness_report(
    test: RankedLists,
    gated_attributes: Sequence[str],
    pool: RankedLists | None = None,
    *,
    max_difference: float,
    min_ratio: float,
    min_lists: int,
    min_coverage: float,
    k: int = K,
    n_boot: int = N_BOOT,
    seed: int = 0,
    test_draws: np.ndarray | None = None,
) -> FairnessReport:
    """The fairness report of one ranking of the test lists (module docstring); `pool` are the
    validation lists, for values in fewer than `min_lists` test lists. `test_draws`: the
    resamples of the test lists when the caller has them already, `bootstrap_draws(n_test,
    n_boot, seed)` (the counterfactual evaluator's; with a million events a day each such
    matrix is n_boot × 10,000 lists)."""
    names = tuple(gated_attributes)
    columns = _value_columns(test.attributes, names)
    shares_by_value = list_shares(test.scores, test.group_sizes, columns, test.merit, k)
    n_test = len(test.group_sizes)
    pooled_shares: dict[tuple[str, str], ListShares] = {}
    n_pool = 0
    if pool is not None:
        n_pool = len(pool.group_sizes)
        pool_columns = _value_columns(pool.attributes, names)
        pooled_shares = list_shares(
            pool.scores, pool.group_sizes, pool_columns, pool.merit, k, list_offset=n_test
        )
    if test_draws is None or test_draws.shape != (n_boot, n_test):
        test_draws = bootstrap_draws(n_test, n_boot, seed)
    pooled_draws: np.ndarray | None = None  # drawn when a value first needs the pool
    coverage = {}
    for attribute in names:
        column = columns.get(attribute)
        total = 0 if column is None else column.size
        known = 0 if column is None else int(np.sum(column != UNKNOWN))
        coverage[attribute] = known / total if total else 0.0

    singles: list[ValueFairness] = []
    crossed: list[ValueFairness] = []
    keys = sorted(set(shares_by_value) | set(pooled_shares))
    for attribute, value in keys:
        shares = shares_by_value.get((attribute, value), ListShares())
        use_draws, pooled = test_draws, False
        if len(shares.lists) < min_lists and (attribute, value) in pooled_shares:
            extra = pooled_shares[(attribute, value)]
            shares = ListShares(
                shares.lists + extra.lists,
                shares.candidate + extra.candidate,
                shares.exposure + extra.exposure,
                shares.merit + extra.merit,
            )
            if pooled_draws is None:
                pooled_draws = bootstrap_draws(n_test + n_pool, n_boot, seed)
            use_draws, pooled = pooled_draws, True
        if not shares.lists:
            continue
        c, e, diff, diff_ci, ratio, ratio_ci, merit_ratio = _measure(shares, use_draws)
        intersection = "&" in attribute
        enough = len(shares.lists) >= min_lists
        why_not = ""
        if intersection:
            why_not = "intersections are reported, not gated"
        elif not enough:
            where = "test and validation lists" if pool is not None else "test lists"
            why_not = f"in {len(shares.lists)} {where}, fewer than {min_lists}"
        gated = not intersection and enough
        passed = None
        if gated:
            upper_abs = max(abs(diff_ci.low), abs(diff_ci.high))
            passed = bool(upper_abs <= max_difference and ratio_ci.high >= min_ratio)
        entry = ValueFairness(
            attribute, value, len(shares.lists), pooled, c, e, diff, diff_ci, ratio, ratio_ci,
            merit_ratio, gated, why_not, passed,
        )  # fmt: skip
        if intersection:
            if enough:
                crossed.append(entry)
        else:
            singles.append(entry)
    return FairnessReport(
        k, names, coverage, singles, crossed, max_difference, min_ratio, min_lists, min_coverage
    )
