"""Swap interventions: the logged propensities are the policy's real probabilities, the shares
match the rates, decisions are reproducible across processes, and exploration and interleaving
never share a request."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
from scipy import stats

from ltr_core.exploration import (
    DEFAULT_MAX_POSITION,
    Policy,
    assign_policy,
    plan_exploration,
    request_seed,
    request_uniform,
    swap_propensity,
    swap_rate,
    validate_rates,
)

REQUESTS = 100_000


def _ids(n: int, seed: int) -> list[str]:
    """Random request ids shaped like the service's (hex UUID-like strings)."""
    rng = np.random.default_rng(seed)
    return [f"req-{int(a):016x}{int(b):016x}" for a, b in rng.integers(0, 2**63, size=(n, 2))]


@pytest.mark.parametrize(
    ("explore", "interleave", "max_position"), [(0.05, 0.0, 10), (0.3, 0.2, 5)]
)
def test_logged_propensities_match_the_empirical_frequencies(
    explore: float, interleave: float, max_position: int
) -> None:
    """10^5 requests with lists of 1..30: per (m = min(n, max_position), deterministic rank,
    shown position) cell, the share of requests showing that rank there equals the logged
    propensity within 1% (absolute) where the cell has the mass for 1% to be 4 standard errors,
    and within 4.5 standard errors everywhere (exactly, for propensities 0 and 1); every shown
    pair has a positive propensity; a pooled chi-square of the swap outcomes per m does not
    reject the logged distribution (it would catch ρ/m for ρ/(m − 1))."""
    rng = np.random.default_rng(7)
    sizes = rng.integers(1, 31, REQUESTS)
    shown: Counter[tuple[int, int, int]] = Counter()
    lists: Counter[int] = Counter()
    logged: dict[tuple[int, int, int], float] = {}
    for request_id, n in zip(_ids(REQUESTS, 1), sizes, strict=True):
        if assign_policy(request_id, explore, interleave) == "interleaved":
            continue
        n = int(n)
        m = min(n, max_position)
        plan = plan_exploration(
            request_id,
            n,
            explore_rate=explore,
            interleave_rate=interleave,
            max_position=max_position,
        )
        lists[m] += 1
        for position, (rank, propensity) in enumerate(
            zip(plan.ranks, plan.propensities, strict=True), start=1
        ):
            assert propensity > 0.0
            if rank <= m and position <= m:  # past m every candidate stays, propensity 1
                key = (m, rank, position)
                shown[key] += 1
                assert logged.setdefault(key, propensity) == propensity  # depends on m only
            else:
                assert rank == position and propensity == 1.0
    rate = swap_rate(explore, interleave)
    chi2 = 0.0
    dof = 0
    for m, count in lists.items():
        for rank in range(1, m + 1):
            for position in range(1, m + 1):
                expected = swap_propensity(rank, position, m, rate, max_position)
                observed = shown[(m, rank, position)] / count
                se = math.sqrt(expected * (1 - expected) / count)
                cell = (m, rank, position, observed, expected)
                if se <= 0.0025:  # enough mass: 1% is at least 4 standard errors
                    assert abs(observed - expected) <= 0.01, cell
                # every cell, including 0 and 1 exactly: within 4.5 standard errors
                assert abs(observed - expected) <= 4.5 * se + 1e-12, cell
        # The outcomes of one request: no swap (rank 1 stays at 1) or swap(1, k), k = 2..m.
        if m >= 2:
            outcomes = [shown[(m, 1, k)] for k in range(1, m + 1)]
            probabilities = [swap_propensity(1, k, m, rate, max_position) for k in range(1, m + 1)]
            chi2 += sum(
                (o - count * p) ** 2 / (count * p)
                for o, p in zip(outcomes, probabilities, strict=True)
            )
            dof += m - 1
    assert stats.chi2.sf(chi2, dof) > 1e-3, (chi2, dof)


def test_the_propensities_form_a_doubly_stochastic_matrix() -> None:
    """For every list length, each rank is somewhere and each position holds someone: rows and
    columns of P(rank at position) sum to 1 (exact, not sampled)."""
    for rate in (0.0, 0.05, 0.5, 1.0):
        for max_position in (2, 5, 10):
            for n in range(1, 31):
                matrix = np.array(
                    [
                        [swap_propensity(r, p, n, rate, max_position) for p in range(1, n + 1)]
                        for r in range(1, n + 1)
                    ]
                )
                assert np.allclose(matrix.sum(axis=0), 1.0)
                assert np.allclose(matrix.sum(axis=1), 1.0)
    # the table of the module docstring, spelled out for n = 12, max_position 10, ρ = 0.05
    assert swap_propensity(1, 1, 12, 0.05, 10) == pytest.approx(0.95)
    assert swap_propensity(1, 4, 12, 0.05, 10) == pytest.approx(0.05 / 9)
    assert swap_propensity(4, 1, 12, 0.05, 10) == pytest.approx(0.05 / 9)
    assert swap_propensity(4, 4, 12, 0.05, 10) == pytest.approx(1 - 0.05 / 9)
    assert swap_propensity(11, 11, 12, 0.05, 10) == 1.0
    assert swap_propensity(1, 11, 12, 0.05, 10) == 0.0
    assert swap_propensity(1, 1, 1, 0.05, 10) == 1.0


def test_the_share_of_each_policy_matches_its_rate() -> None:
    explore, interleave = 0.05, 0.1
    policies = Counter(assign_policy(i, explore, interleave) for i in _ids(REQUESTS, 2))
    branches: tuple[tuple[Policy, float], ...] = (("swap", explore), ("interleaved", interleave))
    for policy, rate in branches:
        sd = math.sqrt(rate * (1 - rate) / REQUESTS)
        assert abs(policies[policy] / REQUESTS - rate) < 4 * sd, policies
    assert sum(policies.values()) == REQUESTS
    # among the requests exploration serves, the swap share is ρ = explore / (1 − interleave)
    rho = swap_rate(explore, interleave)
    served = policies["swap"] + policies["deterministic"]
    assert abs(policies["swap"] / served - rho) < 4 * math.sqrt(rho * (1 - rho) / served)


def test_exploration_off_never_swaps() -> None:
    for request_id in _ids(2000, 3):
        assert assign_policy(request_id, 0.0, 0.0) == "deterministic"
        plan = plan_exploration(request_id, 12, explore_rate=0.0)
        assert plan.policy == "deterministic" and plan.propensities == (1.0,) * 12


def test_swap_and_interleaving_ranges_are_disjoint_and_anchored() -> None:
    """Swap is u < explore, interleaving u ≥ 1 − interleave: a request is never both, raising
    one rate never moves the other branch's requests, and rates that fill [0, 1) leave no
    deterministic request."""
    ids = _ids(20_000, 4)
    base = {i: assign_policy(i, 0.05, 0.1) for i in ids}
    more_exploration = {i: assign_policy(i, 0.2, 0.1) for i in ids}
    more_interleaving = {i: assign_policy(i, 0.05, 0.4) for i in ids}
    for i in ids:
        u = request_uniform(i)
        assert base[i] == ("swap" if u < 0.05 else "interleaved" if u >= 0.9 else "deterministic")
        assert (base[i] == "interleaved") == (more_exploration[i] == "interleaved")
        assert (base[i] == "swap") == (more_interleaving[i] == "swap")
        if base[i] == "swap":
            assert more_exploration[i] == "swap"
        if base[i] == "interleaved":
            assert more_interleaving[i] == "interleaved"
        assert assign_policy(i, 0.3, 0.7) != "deterministic"
        assert assign_policy(i, 1.0, 0.0) == "swap" and assign_policy(i, 0.0, 1.0) == "interleaved"
    interleaved = next(i for i in ids if base[i] == "interleaved")
    with pytest.raises(ValueError, match="interleaving range"):
        plan_exploration(interleaved, 10, explore_rate=0.05, interleave_rate=0.1)


_DECISIONS = """
import json, sys
from ltr_core.exploration import assign_policy, plan_exploration, request_seed
out = []
for i in json.loads(sys.stdin.read()):
    plan = plan_exploration(i, 17, explore_rate=0.5, interleave_rate=0.2)
    out.append([assign_policy(i, 0.5, 0.2), list(plan.ranks), request_seed(i)])
print(json.dumps(out))
"""


def _decisions(ids: list[str]) -> list[list[object]]:
    """What _DECISIONS prints, computed in this process."""
    out: list[list[object]] = []
    for i in ids:
        plan = plan_exploration(i, 17, explore_rate=0.5, interleave_rate=0.2)
        out.append([assign_policy(i, 0.5, 0.2), list(plan.ranks), request_seed(i)])
    return out


def test_decisions_are_reproducible_across_processes() -> None:
    """Same id, same decision, in this process and in another one with a different hash seed
    (Python's hash() would differ); the hash scheme is pinned by known values."""
    ids = [i for i in _ids(400, 5) if assign_policy(i, 0.5, 0.2) != "interleaved"]
    here = _decisions(ids)
    assert here == _decisions(ids)
    assert {policy for policy, _, _ in here} == {"swap", "deterministic"}
    other = subprocess.run(
        [sys.executable, "-c", _DECISIONS],
        input=json.dumps(ids),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert json.loads(other.stdout) == here
    # Pinned: a change of hash, salt encoding or word layout re-draws every assignment.
    assert request_uniform("r-20261101-00000") == pytest.approx(0.8690932334028905, abs=1e-15)
    assert request_seed("r-20261101-00000") == 12512673042385931252
    plan = plan_exploration("req-pinned-7", 30, explore_rate=1.0)
    assert plan.policy == "swap" and plan.swap_position == 4


def test_lists_of_one_are_never_swapped() -> None:
    swapped = [i for i in _ids(2000, 6) if assign_policy(i, 0.5, 0.0) == "swap"]
    assert swapped
    for i in swapped[:50]:
        plan = plan_exploration(i, 1, explore_rate=0.5)
        assert plan.policy == "deterministic" and plan.swap_position is None
        assert plan.ranks == (1,) and plan.propensities == (1.0,)
        assert plan_exploration(i, 0, explore_rate=0.5).ranks == ()
        two = plan_exploration(i, 2, explore_rate=0.5)
        assert two.policy == "swap" and two.ranks == (2, 1)
        assert two.propensities == (0.5, 0.5)


def test_the_plan_permutes_the_list_and_every_row_logs_the_branch() -> None:
    request_id = next(i for i in _ids(2000, 8) if assign_policy(i, 0.5, 0.0) == "swap")
    plan = plan_exploration(request_id, 12, explore_rate=0.5, max_position=DEFAULT_MAX_POSITION)
    k = plan.swap_position
    assert k is not None and 2 <= k <= 10
    ranked = [f"lawyer-{r}" for r in range(1, 13)]
    shown = plan.apply(ranked)
    assert shown[0] == f"lawyer-{k}" and shown[k - 1] == "lawyer-1"
    assert sorted(shown) == sorted(ranked)
    assert plan.propensities[0] == plan.propensities[k - 1] == pytest.approx(0.5 / 9)
    assert all(
        p == pytest.approx(1 - 0.5 / 9)
        for j, p in enumerate(plan.propensities[:10], 1)
        if j not in (1, k)
    )
    assert plan.propensities[10:] == (1.0, 1.0)
    with pytest.raises(ValueError, match="12 candidates"):
        plan.apply(ranked[:5])


@pytest.mark.parametrize(
    ("explore", "interleave", "message"),
    [
        (-0.01, 0.0, "explore_rate"),
        (1.01, 0.0, "explore_rate"),
        (float("nan"), 0.0, "explore_rate"),
        (0.0, -0.5, "interleave_rate"),
        (0.0, float("inf"), "interleave_rate"),
        (0.6, 0.5, "at most 1"),
    ],
)
def test_invalid_rates_are_refused(explore: float, interleave: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_rates(explore, interleave)
    with pytest.raises(ValueError, match=message):
        assign_policy("r-1", explore, interleave)


def test_invalid_lists_and_ids_are_refused() -> None:
    with pytest.raises(ValueError, match="max_position"):
        plan_exploration("r-1", 5, explore_rate=0.1, max_position=1)
    with pytest.raises(ValueError, match="at least 0"):
        plan_exploration("r-1", -1, explore_rate=0.1)
    with pytest.raises(ValueError, match="1..5"):
        swap_propensity(6, 1, 5, 0.1, 10)
    with pytest.raises(TypeError, match="strings"):
        assign_policy(12345, 0.1, 0.0)  # type: ignore[arg-type]
