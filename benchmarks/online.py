"""Online comparison: does the interleaving decision promote what is truly better, retire what is
truly worse, and how much traffic does it need against an A/B split?

`python -m benchmarks.online [--seeds 20] [--days 7]`

The simulator (`ltr_assets.simulation.simulator`, trust bias on, η = 1) draws the demo's traffic,
400 lists a day. The live version is the platform's linear v2.8 scorer; a candidate is a linear
scorer on the line from it towards a linear fit of the simulator's true gains (t > 0, better) or
away from it (t < 0, worse), t calibrated on seeds of their own so that the true nDCG@5
difference is about ±0.03; t = 0 is the A/A case (the candidate is live). On each seed's days
(the truth: the candidate's and live's true nDCG@5 on the same lists, from the simulator's true
gains), the requests that serving would interleave (`ltr_core.exploration.assign_policy` at
LTR_EXPLORE_RATE 0.05 and LTR_INTERLEAVE_RATE 0.2, by the request id's hash) are team-draft
interleaved exactly as serving does (`ltr_core.interleaving.team_draft`, coins from the request
id), the simulated users click on the interleaved list, each request is credited
(`ltr_core.interleaving.credit`, settled candidates left out as the online_comparison asset
leaves out those logged at propensity 1) and each day's counts are summed and decided with
`ltr_assets.online.decision.decide`, once a day, as the online_comparison asset does. Nothing
is trained: the rankers are fixed, so the truth is exact.

Per rule setting (the defaults, and settings sized for this traffic; see docs/methodology.md):
- worse_never_promoted: share of seeds where a truly worse candidate is never promoted;
- better_promoted_2d: share of seeds where a truly better one is promoted within 2 days;
- aa_retired (and its split: shown worse / timed out) and aa_promoted for the A/A candidate;
- sign_agreement: over the seeds with |Δ| ≥ 0.02, the sign of the win share − 0.5 at the
  decision (or at the last day) against the sign of the true difference.

Sensitivity: from a pool of simulated requests (better candidate), resampled at growing sizes N,
the smallest N at which a one-sided test at level 2.5% detects the better candidate in 80% of
resamples: for interleaving (Wilson lower bound of the win share above 0.5, over all N
interleaved requests, clicked or not) and for an even A/B split of N requests (z-test of the
clicks per request, N/2 shown by each ranker). Ratio = N_ab / N_interleaving; the A/A pool
measures both tests' false-positive rate at those sizes.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from statistics import NormalDist

import numpy as np

from benchmarks.common import machine, report
from ltr_assets.online.comparison import add
from ltr_assets.online.decision import Decision, InterleavingCounts, decide, tally, win_share
from ltr_assets.simulation.simulator import (
    PLATFORM_WEIGHTS,
    SimCase,
    Simulator,
    SimulatorConfig,
    relevance_probability,
)
from ltr_core.exploration import assign_policy
from ltr_core.features import FEATURES
from ltr_core.interleaving import Credit, credit, request_rng, team_draft

START = date(2026, 3, 2)
EXPLORE_RATE = 0.05
INTERLEAVE_RATE = 0.2
LIVE = np.array([PLATFORM_WEIGHTS[f] for f in FEATURES])


@dataclass(frozen=True)
class Rule:
    name: str
    min_requests: int
    margin: float
    max_days: int


def _order(weights: np.ndarray, case: SimCase) -> list[int]:
    scores = case.features @ weights
    order: list[int] = np.lexsort((case.tiebreak, -scores)).tolist()
    return order


def _true_ndcg5(weights: np.ndarray, cases: Sequence[SimCase]) -> float:
    values = []
    discounts = 1.0 / np.log2(np.arange(2, 7))
    for case in cases:
        top = min(5, len(case.gains))
        ideal = np.sort(case.gains)[::-1][:top] @ discounts[:top]
        if ideal <= 0:
            continue
        shown = case.gains[_order(weights, case)][:top]
        values.append(float(shown @ discounts[:top] / ideal))
    return float(np.mean(values))


def _oracle_direction(seed: int) -> np.ndarray:
    """A linear fit of the true gains on the features (the direction a better scorer lies in)."""
    sim = Simulator(SimulatorConfig(start=START, days=3, seed=seed))
    xs, ys = [], []
    for day in sim.days():
        for case in sim.day_cases(day):
            xs.append(case.features)
            ys.append(case.gains)
    x, y = np.vstack(xs), np.concatenate(ys)
    w, *_ = np.linalg.lstsq(np.column_stack([x, np.ones(len(x))]), y, rcond=None)
    direction = w[:-1] / np.abs(w[:-1]).sum()
    return np.asarray(direction - LIVE)


def _candidate(direction: np.ndarray, t: float) -> np.ndarray:
    return np.asarray(LIVE + t * direction)


def _calibrate(direction: np.ndarray, target: float, seed: int) -> float:
    """t whose true nDCG@5 difference over a seed of its own is `target` (bisection)."""
    sim = Simulator(SimulatorConfig(start=START, days=3, seed=seed))
    cases = [c for day in sim.days() for c in sim.day_cases(day)]
    live = _true_ndcg5(LIVE, cases)
    low, high = (0.0, 1.5) if target > 0 else (-1.5, 0.0)
    for _ in range(18):
        mid = (low + high) / 2
        delta = _true_ndcg5(_candidate(direction, mid), cases) - live
        if (delta < target) == (target > 0):
            low, high = (mid, high) if target > 0 else (low, mid)
        else:
            low, high = (low, mid) if target > 0 else (mid, high)
    return (low + high) / 2


def _clicked(events: list[list[dict[str, object]]]) -> list[bool]:
    return [any(e["action"] != "decline" for e in position) for position in events]


def _interleave_day(
    sim: Simulator, day: date, cases: Sequence[SimCase], candidate: np.ndarray
) -> list[Credit]:
    """The day's interleaved requests as serving draws them, clicked by the day's users."""
    users = sim.day_users(day)
    credits = []
    for case in cases:
        live, cand = _order(LIVE, case), _order(candidate, case)
        # what serving draws, with the propensities it logs (which settle candidates)
        draft = team_draft(live, cand, request_rng(case.request_id))
        clicks = _clicked(users.respond(case, list(draft.items)))
        labels = {item: 1.0 for item, c in zip(draft.items, clicks, strict=True) if c}
        credits.append(credit(draft.items, draft.teams, labels, settled=draft.settled))
    sim.truth.clear()
    return credits


@dataclass
class SeedRun:
    delta: float  # true nDCG@5 of candidate − live on the seed's days
    days: list[InterleavingCounts]  # each day's counts


def _run_seed(seed: int, days: int, candidates: dict[str, np.ndarray]) -> dict[str, SeedRun]:
    """One seed's days for every candidate (the same lists; each candidate meets the day's
    users afresh)."""
    sim = Simulator(SimulatorConfig(start=START, days=days, seed=seed))
    per_day: dict[str, list[InterleavingCounts]] = {kind: [] for kind in candidates}
    all_cases = []
    for day in sim.days():
        cases = sim.day_cases(day)
        all_cases += cases
        chosen = [
            c
            for c in cases
            if assign_policy(c.request_id, EXPLORE_RATE, INTERLEAVE_RATE) == "interleaved"
        ]
        for kind, weights in candidates.items():
            per_day[kind].append(tally(_interleave_day(sim, day, chosen, weights)))
    live = _true_ndcg5(LIVE, all_cases)
    return {
        kind: SeedRun(_true_ndcg5(weights, all_cases) - live, per_day[kind])
        for kind, weights in candidates.items()
    }


@dataclass(frozen=True)
class Verdict:
    decision: Decision  # COLLECT: undecided at the end of the simulated days
    day: int  # the day it was taken (the last day when undecided)
    timeout: bool
    share: float | None


def _replay(run: SeedRun, rule: Rule) -> Verdict:
    """decide() once a day on the counts so far, as online_comparison does."""
    total = InterleavingCounts(0, 0, 0)
    outcome = None
    for index, counts in enumerate(run.days, start=1):
        total = add(total, counts)
        outcome = decide(
            total,
            days_collecting=index,
            min_requests=rule.min_requests,
            margin=rule.margin,
            max_days=rule.max_days,
        )
        if outcome.decision is not Decision.COLLECT:
            timeout = outcome.timed_out
            return Verdict(outcome.decision, index, timeout, outcome.evidence.share)
    assert outcome is not None
    return Verdict(Decision.COLLECT, len(run.days), False, outcome.evidence.share)


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else float("nan")


def _figures(rule: Rule, runs: dict[str, list[SeedRun]]) -> dict[str, float]:
    verdicts = {kind: [_replay(r, rule) for r in rs] for kind, rs in runs.items()}
    worse, better, aa = verdicts["worse"], verdicts["better"], verdicts["aa"]
    signs = []
    for kind in ("worse", "better"):
        for run, verdict in zip(runs[kind], verdicts[kind], strict=True):
            if abs(run.delta) >= 0.02 and verdict.share is not None and verdict.share != 0.5:
                signs.append((verdict.share > 0.5) == (run.delta > 0))
    p = f"{rule.name}_"
    return {
        p + "worse_never_promoted": _share([v.decision is not Decision.PROMOTE for v in worse]),
        p + "better_promoted_2d": _share(
            [v.decision is Decision.PROMOTE and v.day <= 2 for v in better]
        ),
        p + "better_promoted": _share([v.decision is Decision.PROMOTE for v in better]),
        p + "better_mean_days_to_promote": float(
            np.mean([float(v.day) for v in better if v.decision is Decision.PROMOTE] or [math.nan])
        ),
        p + "aa_retired": _share([v.decision is Decision.RETIRE for v in aa]),
        p + "aa_retired_as_worse": _share(
            [v.decision is Decision.RETIRE and not v.timeout for v in aa]
        ),
        p + "aa_retired_timeout": _share([v.timeout for v in aa]),
        p + "aa_promoted": _share([v.decision is Decision.PROMOTE for v in aa]),
        p + "sign_agreement": _share(signs),
    }


# --- sensitivity: interleaving against an even A/B split ------------------------------------


@dataclass
class Pool:
    scores: np.ndarray  # per interleaved request: 1 / 0.5 / 0 (won, tied, lost); nan: no click
    clicks_live: np.ndarray  # per request shown by live: clicks (one user draw)
    clicks_candidate: np.ndarray  # per request shown by the candidate: clicks
    expected_live: np.ndarray  # per request: expected clicks under live's order (exact)
    expected_candidate: np.ndarray


def _expected_clicks(sim: Simulator, weights: np.ndarray, case: SimCase) -> float:
    """E[clicks] on the case's list in `weights`' order under the simulator's click model:
    Σ_k θ_k (P(R) ε⁺ + (1 − P(R)) ε⁻_k), relevance judged on the perceived utility."""
    model = sim.config.click_model
    order = _order(weights, case)
    positions = np.arange(1, len(order) + 1)
    relevant = relevance_probability(case.perceived[order])
    click = relevant * model.relevant_click + (1 - relevant) * model.noise(positions)
    return float(model.examination(positions) @ click)


def _pool(seeds: Sequence[int], days: int, candidate: np.ndarray) -> Pool:
    scores: list[float] = []
    clicks: dict[str, list[int]] = {"live": [], "candidate": []}
    expected: dict[str, list[float]] = {"live": [], "candidate": []}
    for seed in seeds:
        sim = Simulator(SimulatorConfig(start=START, days=days, seed=seed))
        for day in sim.days():
            cases = sim.day_cases(day)
            for c in _interleave_day(sim, day, cases, candidate):
                winner = c.winner
                scores.append(
                    math.nan
                    if winner is None
                    else {"candidate": 1.0, "tie": 0.5, "live": 0.0}[winner]
                )
            for name, weights in (("live", LIVE), ("candidate", candidate)):
                users = sim.day_users(day)
                for case in cases:
                    clicks[name].append(sum(_clicked(users.respond(case, _order(weights, case)))))
                    expected[name].append(_expected_clicks(sim, weights, case))
                sim.truth.clear()
    return Pool(
        np.array(scores),
        np.array(clicks["live"]),
        np.array(clicks["candidate"]),
        np.array(expected["live"]),
        np.array(expected["candidate"]),
    )


Z_ALPHA = NormalDist().inv_cdf(0.975)  # one-sided 2.5%: the rule's 95% interval's bound
Z_POWER = NormalDist().inv_cdf(0.8)
POWER = 0.8


def _interleaving_detects(sample: np.ndarray) -> bool:
    clicked = sample[~np.isnan(sample)]
    wins, ties = int((clicked == 1.0).sum()), int((clicked == 0.5).sum())
    counts = InterleavingCounts(wins, len(clicked) - wins - ties, ties)
    return counts.requests > 0 and win_share(counts).low > 0.5


def _sensitivity(better: Pool, reps: int, seed: int) -> dict[str, float]:
    """Interleaving: the requests needed, by resampling the pool (smallest size on a grid of
    ×1.1 steps whose detection rate reaches 80%), and its false-positive rate there on the
    pool's exact null (the pool with every score mirrored beside it: under A/A the team-draft
    coin makes both teams exchangeable). A/B split: the clicks-per-request z-test
    needs n = 2 (z_.975 + z_.8)² (σ_live² + σ_cand²) / δ² requests in all (n/2 per arm), σ²
    measured on the pool's clicks and δ the exact expected-clicks difference of the two
    orders; resampling it instead would need a pool many times the size (δ is ~1% of a
    request's click count)."""
    rng = np.random.default_rng(seed)
    sizes = [int(round(50 * 1.1**i)) for i in range(80)]
    n_il, rate = -1, math.nan
    for n in sizes:
        rate = float(
            np.mean([_interleaving_detects(rng.choice(better.scores, n)) for _ in range(reps)])
        )
        if rate >= POWER:
            n_il = n
            break
    clicked = better.scores[~np.isnan(better.scores)]
    mirrored = np.concatenate([better.scores, 1.0 - better.scores])  # mean exactly ½
    fp_il = float(np.mean([_interleaving_detects(rng.choice(mirrored, n_il)) for _ in range(reps)]))
    delta = float(better.expected_candidate.mean() - better.expected_live.mean())
    variance = float(better.clicks_live.var(ddof=1) + better.clicks_candidate.var(ddof=1))
    n_ab = 2 * (Z_ALPHA + Z_POWER) ** 2 * variance / delta**2 if delta > 0 else math.nan
    share = float(clicked.mean())
    sd = float(clicked.std(ddof=1))
    n_il_formula = (
        ((Z_ALPHA + Z_POWER) * sd / (share - 0.5)) ** 2 * len(better.scores) / len(clicked)
    )
    return {
        "pool_requests": len(better.scores),
        "pool_evidence_share": len(clicked) / len(better.scores),
        "pool_win_share": share,
        "pool_expected_clicks_live": float(better.expected_live.mean()),
        "pool_expected_clicks_candidate": float(better.expected_candidate.mean()),
        "pool_observed_clicks_live": float(better.clicks_live.mean()),
        "pool_observed_clicks_candidate": float(better.clicks_candidate.mean()),
        "interleaved_requests_needed": n_il,
        "interleaved_detection_rate": rate,
        "interleaved_false_positive": fp_il,
        "interleaved_requests_needed_formula": round(n_il_formula),
        "interleaved_evidence_requests_needed": round(n_il * len(clicked) / len(better.scores)),
        "ab_requests_needed": round(n_ab),
        "sensitivity_ratio": n_ab / n_il if n_il > 0 else math.nan,
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--target", type=float, default=0.03, help="true |Δ nDCG@5| to build")
    parser.add_argument("--pool-seeds", type=int, default=4)
    parser.add_argument("--reps", type=int, default=400)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    print(f"machine: {machine()}")
    direction = _oracle_direction(seed=10_000)
    t_better = _calibrate(direction, args.target, seed=10_001)
    t_worse = _calibrate(direction, -args.target, seed=10_001)
    candidates = {
        "worse": _candidate(direction, t_worse),
        "better": _candidate(direction, t_better),
        "aa": LIVE,
    }
    print(f"candidates: t_better={t_better:.3f} t_worse={t_worse:.3f} (target |Δ| {args.target})")
    by_seed = []
    for seed in range(args.seeds):
        by_seed.append(_run_seed(seed, args.days, candidates))
        print(f"seed {seed} done at {time.perf_counter() - started:.0f} s", flush=True)
    runs = {kind: [seed_runs[kind] for seed_runs in by_seed] for kind in candidates}
    figures: dict[str, float | int | str] = {"seeds": args.seeds, "days": args.days}
    for kind, rs in runs.items():
        deltas = np.array([r.delta for r in rs])
        clicked = [c.clicked_requests for r in rs for c in r.days]
        evidence = [c.requests for r in rs for c in r.days]
        interleaved = [c.clicked_requests + c.without_click for r in rs for c in r.days]
        figures[f"{kind}_true_delta_mean"] = float(deltas.mean())
        figures[f"{kind}_true_delta_min_abs"] = float(np.abs(deltas).min())
        figures[f"{kind}_interleaved_per_day"] = float(np.mean(interleaved))
        figures[f"{kind}_clicked_per_day"] = float(np.mean(clicked))
        figures[f"{kind}_evidence_per_day"] = float(np.mean(evidence))
        total = InterleavingCounts(0, 0, 0)
        for r in rs:
            for c in r.days:
                total = add(total, c)
        figures[f"{kind}_win_share"] = float(win_share(total).share or math.nan)
    rules = [
        Rule("defaults", 200, 0.02, 3),
        Rule("demo", 100, 0.02, 5),
        Rule("long", 200, 0.02, 10),
    ]
    for rule in rules:
        print(
            f"rule {rule.name}: min_requests={rule.min_requests} margin={rule.margin} "
            f"max_days={rule.max_days}"
        )
        figures.update(_figures(rule, runs))
    pools = [10_000 + 100 + i for i in range(args.pool_seeds)]
    figures.update(_sensitivity(_pool(pools, 5, candidates["better"]), args.reps, seed=1))
    figures["wall_seconds"] = round(time.perf_counter() - started, 1)
    report(figures)


if __name__ == "__main__":
    main()
