"""The examination curve from swap interventions, on simulated logs with trust bias, and its
merge with a click model's curve."""

from __future__ import annotations

import numpy as np
import pytest

from ltr_assets.learning.interventions import (
    MIN_INTERVAL_CLICKS,
    Impressions,
    InterventionCurve,
    PositionEstimate,
    combine_curves,
    intervention_curve,
)
from ltr_assets.simulation.simulator import ClickModel
from ltr_core.exploration import plan_exploration, swap_propensity

ETAS = (0.5, 1.0, 1.5)
POSITIONS = np.arange(2, 11)
MAX_POSITION = 10
MAX_N = 30


def _relevance_logits(rng: np.random.Generator, lists: int) -> np.ndarray:
    """Per list, up to MAX_N candidates' relevance log-odds: one strong match and weaker
    others, so the logger's top pick is usually (not always) the relevant one."""
    logits = rng.normal(-2.5, 1.0, (lists, MAX_N))
    logits[:, 0] = rng.normal(2.0, 0.5, lists)
    return logits


def _clicks(
    rng: np.random.Generator, model: ClickModel, relevance: np.ndarray, position: np.ndarray
) -> np.ndarray:
    """The simulator's user model: examined with θ_k = k^-η; an examined relevant candidate is
    clicked with ε⁺, an irrelevant one with ε⁻ + trust bias × θ_k."""
    relevant = rng.random(relevance.size) < relevance
    examined = rng.random(relevance.size) < model.examination(position)
    click_p = np.where(relevant, model.relevant_click, model.noise(position))
    return (examined & (rng.random(relevance.size) < click_p)).astype(np.float64)


def _large_log(eta: float, lists: int, rate: float, seed: int) -> Impressions:
    """Vectorised logs of a deterministic logger (noisy relevance scores) plus swaps drawn as
    `plan_exploration` draws them (swap with probability `rate`, k uniform in 2..m), with the
    propensities of `swap_propensity`. Only ranks 1..10 are logged: the estimator reads no
    other row."""
    rng = np.random.default_rng(seed)
    model = ClickModel(position_bias=eta)
    n = rng.integers(5, MAX_N + 1, lists)
    m = np.minimum(n, MAX_POSITION)
    k = np.where(rng.random(lists) < rate, 2 + (rng.random(lists) * (m - 1)).astype(int), 0)
    logits = _relevance_logits(rng, lists)
    score = logits + rng.normal(0.0, 1.0, logits.shape)
    score[np.arange(MAX_N)[None, :] >= n[:, None]] = -np.inf
    order = np.argsort(-score, axis=1)[:, :MAX_POSITION]
    top = 1.0 / (1.0 + np.exp(-np.take_along_axis(logits, order, axis=1)))
    request = np.repeat(np.arange(lists), m)
    rank = np.arange(m.sum()) - np.repeat(np.cumsum(m) - m, m) + 1
    swap_k = k[request]
    position = np.where(
        (swap_k > 0) & (rank == 1), swap_k, np.where((swap_k > 0) & (rank == swap_k), 1, rank)
    )
    key = (rank * (MAX_N + 1) + position) * (MAX_N + 1) + n[request]
    keys, inverse = np.unique(key, return_inverse=True)
    table = np.array(
        [
            swap_propensity(
                int(c // (MAX_N + 1) ** 2),
                int(c // (MAX_N + 1) % (MAX_N + 1)),
                int(c % (MAX_N + 1)),
                rate,
                MAX_POSITION,
            )
            for c in keys
        ]
    )
    return Impressions.from_columns(
        request,
        rank,
        position,
        np.where(swap_k > 0, "swap", "deterministic"),
        table[inverse],
        _clicks(rng, model, top[request, rank - 1], position),
    )


def _served_log(eta: float, seed: int, *, days: int, per_day: int, rate: float) -> Impressions:
    """Logs as serving will write them: every request's whole list (5-30 candidates) shown
    through `plan_exploration` (request ids hashed), with its logged policy and propensities."""
    rng = np.random.default_rng(seed)
    model = ClickModel(position_bias=eta)
    columns: dict[str, list[object]] = {
        c: [] for c in ("request", "rank", "position", "policy", "propensity", "label")
    }
    logits = _relevance_logits(rng, days * per_day)
    for r in range(days * per_day):
        request_id = f"r-{seed}-{r // per_day:02d}-{r % per_day:04d}"
        n = int(rng.integers(5, MAX_N + 1))
        order = np.argsort(-(logits[r, :n] + rng.normal(0.0, 1.0, n)))
        relevance = 1.0 / (1.0 + np.exp(-logits[r, order]))  # by deterministic rank
        plan = plan_exploration(request_id, n, explore_rate=rate)
        ranks = np.array(plan.ranks)
        positions = np.arange(1, n + 1)
        columns["request"] += [request_id] * n
        columns["rank"] += ranks.tolist()
        columns["position"] += positions.tolist()
        columns["policy"] += [plan.policy] * n
        columns["propensity"] += list(plan.propensities)
        columns["label"] += _clicks(rng, model, relevance[ranks - 1], positions).tolist()
    return Impressions.from_columns(**columns)  # type: ignore[arg-type]


def _thetas(curve: InterventionCurve) -> np.ndarray:
    out = []
    for k in POSITIONS:
        est = curve.estimate(int(k))
        out.append(np.nan if est is None or est.theta is None else est.theta)
    return np.array(out)


@pytest.mark.parametrize("eta", ETAS)
def test_enough_swaps_recover_the_curve_within_two_hundredths(eta: float) -> None:
    """150,000 lists, half of them swapped (more than 10,000 swapped impressions per position):
    the affine estimate is within 0.02 of θ_k = k^-η at every position 2-10, under trust bias.
    (It assumes a relevant candidate at the top is always clicked when examined, E = 1, where
    the truth is ε⁺ = 0.95: the estimate barely depends on E.) The position-based ratio on the
    same logs comes out low on average: trust bias inflates the clicks at the top."""
    log = _large_log(eta, 150_000, 0.5, seed=int(10 * eta))
    truth = POSITIONS.astype(float) ** -eta
    affine = intervention_curve(log, bootstrap=0)
    error = _thetas(affine) - truth
    assert np.all(np.abs(error) <= 0.02), error.round(3)
    assert min(e.swapped_impressions for e in affine.estimates) > 10_000
    position_based = intervention_curve(log, model="position_based", bootstrap=0)
    assert (_thetas(position_based) - truth).mean() < min(0.0, error.mean())


@pytest.mark.parametrize("eta", ETAS)
def test_the_interval_covers_the_truth_at_most_positions(eta: float) -> None:
    """30,000 lists, half swapped: every position has enough swapped clicks to be bounded, and
    the 95% bootstrap interval covers the truth at 7 or more of the 9 positions."""
    log = _large_log(eta, 30_000, 0.5, seed=100 + int(10 * eta))
    truth = POSITIONS.astype(float) ** -eta
    curve = intervention_curve(log, bootstrap=100, seed=1)
    covered = 0
    for k, true in zip(POSITIONS, truth, strict=True):
        est = curve.estimate(int(k))
        assert est is not None and est.low is not None and est.high is not None
        assert est.theta is not None and est.low <= est.theta <= est.high
        covered += est.low <= true <= est.high
    assert covered >= 7, curve.estimates


@pytest.mark.parametrize("eta", ETAS)
def test_two_weeks_of_five_percent_swaps_rest_on_a_few_dozen_impressions(eta: float) -> None:
    """14 days × 400 lists served through plan_exploration at 5%: every position 2-10 is
    reached, with the swapped impressions it rests on counted, and positions whose swapped
    cells have fewer than MIN_INTERVAL_CLICKS clicks are left unbounded instead of showing a
    collapsed interval."""
    log = _served_log(eta, 7, days=14, per_day=400, rate=0.05)
    curve = intervention_curve(log, bootstrap=100)
    assert [e.position for e in curve.estimates] == POSITIONS.tolist()
    moved = (log.rank != log.position) & (log.policy == "swap")
    k_of_row = np.where(log.rank == 1, log.position, log.rank)[moved]
    for est in curve.estimates:
        assert est.swapped_impressions == int((k_of_row == est.position).sum())
        assert est.swapped_impressions < 200
        if min(est.clicks_top_at_k, est.clicks_k_at_top) < MIN_INTERVAL_CLICKS:
            assert est.low is None and est.high is None
    swapped_requests = len(set(log.request[moved].tolist()))
    assert sum(e.swapped_impressions for e in curve.estimates) == 2 * swapped_requests


def test_without_swaps_there_are_no_intervention_positions() -> None:
    log = _served_log(1.0, 8, days=2, per_day=200, rate=0.0)
    assert set(log.policy.tolist()) == {"deterministic"}
    curve = intervention_curve(log)
    assert curve.estimates == () and curve.positions == []
    merged = combine_curves(curve, [1.0, 0.5, 0.33], min_swapped=1)
    assert merged.sources == ["reference", "click_model", "click_model"]
    assert merged.examination == [1.0, 0.5, 0.33]


def _reference_cells(log: Impressions, k: int) -> tuple[float, float, float, float]:
    """The four Hájek cell means for position k, by plain loops over requests."""
    by_request: dict[object, list[int]] = {}
    for row, request in enumerate(log.request.tolist()):
        by_request.setdefault(request, []).append(row)
    sums = {cell: [0.0, 0.0] for cell in ("1>1", "k>1", "1>k", "k>k")}
    for rows in by_request.values():
        if max(int(log.rank[r]) for r in rows) < k:
            continue  # the list does not reach rank k
        for r in rows:
            rank, position = int(log.rank[r]), int(log.position[r])
            cell = {(1, 1): "1>1", (k, 1): "k>1", (1, k): "1>k", (k, k): "k>k"}.get(
                (rank, position)
            )
            if cell is not None:
                weight = 1.0 / float(log.propensity[r])
                sums[cell][0] += weight * float(log.label[r] > 0)
                sums[cell][1] += weight
    x1, xk, y1, yk = (sums[c][0] / sums[c][1] for c in ("1>1", "k>1", "1>k", "k>k"))
    return x1, xk, y1, yk


def test_the_estimates_follow_their_formulas() -> None:
    """On a served log, the vectorised estimator equals the docstring's formulas computed from
    cells summed by plain loops: θ = (y1 + yk) / (x1 + xk) for the position-based model; a =
    (y1 − yk) / (x1 − xk), b = y1 − a·x1, θ = a + b / E for the affine one."""
    log = _served_log(1.0, 9, days=3, per_day=400, rate=0.5)
    position_based = intervention_curve(log, model="position_based", bootstrap=0)
    affine = intervention_curve(log, bootstrap=0, top_relevant_click=0.9)
    for k in range(2, 11):
        x1, xk, y1, yk = _reference_cells(log, k)
        pb, af = position_based.estimate(k), affine.estimate(k)
        assert pb is not None and af is not None
        assert pb.theta == pytest.approx((y1 + yk) / (x1 + xk), rel=1e-12)
        slope = (y1 - yk) / (x1 - xk)
        offset = y1 - slope * x1
        assert af.slope == pytest.approx(slope, rel=1e-12)
        assert af.offset == pytest.approx(offset, rel=1e-9, abs=1e-12)
        assert af.theta == pytest.approx(max(0.0, slope + offset / 0.9), rel=1e-9, abs=1e-12)


def test_interleaved_rows_are_ignored() -> None:
    log = _served_log(1.0, 10, days=1, per_day=300, rate=0.5)
    extra = 50
    noisy = Impressions.from_columns(
        np.concatenate([log.request, [f"i-{i}" for i in range(extra)]]),
        np.concatenate([log.rank, np.ones(extra, dtype=int)]),
        np.concatenate([log.position, np.full(extra, 3)]),
        np.concatenate([log.policy, ["interleaved"] * extra]),
        np.concatenate([log.propensity, np.full(extra, 0.5)]),
        np.concatenate([log.label, np.ones(extra)]),
    )
    assert intervention_curve(noisy, seed=3) == intervention_curve(log, seed=3)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"policy": ["deterministic", "deterministic"]}, "must have policy 'swap'"),
        ({"rank": [2, 3], "position": [3, 2]}, "exchanges position 1"),
        ({"policy": ["swap", "explore"]}, "unknown policies"),
        ({"propensity": [0.0, 0.1]}, r"\(0, 1\]"),
        ({"label": [0.0]}, "differ in length"),
    ],
)
def test_malformed_logs_are_refused(change: dict[str, list[object]], message: str) -> None:
    columns: dict[str, list[object]] = {
        "request": ["r", "r"],
        "rank": [1, 2],
        "position": [2, 1],
        "policy": ["swap", "swap"],
        "propensity": [0.1, 0.1],
        "label": [1.0, 0.0],
    }
    with pytest.raises(ValueError, match=message):
        intervention_curve(Impressions.from_columns(**{**columns, **change}))  # type: ignore[arg-type]


def _estimate(k: int, theta: float | None, swapped: int) -> PositionEstimate:
    return PositionEstimate(k, theta, None, None, swapped, swapped // 4, swapped // 4)


def test_combining_takes_interventions_where_they_rest_on_enough_swaps() -> None:
    curve = InterventionCurve(
        model="affine",
        top_relevant_click=1.0,
        confidence=0.95,
        bootstrap=0,
        estimates=(
            _estimate(2, 0.52, 500),  # exactly min_swapped: interventions
            _estimate(3, 0.30, 499),  # one fewer: click model
            _estimate(4, None, 5000),  # not identified: click model
            _estimate(6, 0.18, 800),  # beyond the click model's curve
        ),
    )
    merged = combine_curves(curve, [1.0, 0.6, 0.4, 0.3, 0.25], min_swapped=500)
    assert merged.sources == [
        "reference",
        "interventions",
        "click_model",
        "click_model",
        "click_model",
        "interventions",
    ]
    assert merged.examination == [1.0, 0.52, 0.4, 0.3, 0.25, 0.18]
    assert [p.swapped_impressions for p in merged.points] == [0, 500, 499, 5000, 0, 800]
    # positions past the other curve's end take its last value
    short = combine_curves(curve, [1.0, 0.6], min_swapped=10_000)
    assert short.examination == [1.0, 0.6, 0.6, 0.6, 0.6, 0.6]
    assert set(short.sources[1:]) == {"click_model"}
    for bad, message in (
        ([], "at least one"),
        ([0.9, 0.5], "starts at 1.0"),
        ([1.0, 0.0], "positive"),
    ):
        with pytest.raises(ValueError, match=message):
            combine_curves(curve, bad, min_swapped=1)
    with pytest.raises(ValueError, match="min_swapped"):
        combine_curves(curve, [1.0], min_swapped=0)
