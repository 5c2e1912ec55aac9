"""The simulator as a judge: position and trust bias, the feedback loop, the truth it keeps."""

from __future__ import annotations

from collections import Counter
from datetime import date
from typing import Any

import numpy as np
import pytest

from ltr_assets.simulation.simulator import (
    ClickModel,
    Simulator,
    SimulatorConfig,
    intrinsic_merit,
    logged_frame,
    utility_coefficients,
)
from ltr_core.exploration import plan_exploration

DAY = date(2026, 11, 3)


def _recommendations(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if e["event_type"] == "match_recommendation"]


def test_position_bias_is_strong_and_trust_bias_favours_the_top() -> None:
    model = ClickModel()
    theta = model.examination(np.arange(1, 11))
    assert theta[0] == 1.0 and theta[9] < 0.2 and np.all(np.diff(theta) < 0)
    noise = model.noise(np.arange(1, 11))
    assert noise[0] > noise[9] > 0  # irrelevant candidates are clicked, more at the top


def test_users_can_examine_along_a_curve_that_is_no_power_law() -> None:
    page_break = ClickModel(curve=(1.0, 0.8, 0.7, 0.25, 0.2))
    assert page_break.examination(np.array([1, 3, 4, 5, 9])).tolist() == [1.0, 0.7, 0.25, 0.2, 0.2]
    assert page_break.noise(np.array([1]))[0] == pytest.approx(0.03 + 0.04)
    # the simulated users follow it: clicks per impression drop at the break, not before
    sim = Simulator(
        SimulatorConfig(start=DAY, days=1, seed=2, requests_per_day=400, click_model=page_break)
    )
    frame = logged_frame(sim.day_events(DAY))
    rate = (frame["label"] > 0).groupby(frame["rank_position"].clip(upper=5)).mean()
    assert rate[3] > 2 * rate[4]


def test_the_live_ranker_orders_the_same_lists_and_the_truth_follows_the_shown_position() -> None:
    config = SimulatorConfig(start=DAY, days=1, seed=4, requests_per_day=30)
    platform = Simulator(config)
    shown = _recommendations(platform.day_events(DAY))
    reverse = Simulator(config)
    flipped = _recommendations(
        reverse.day_events(DAY, ranker=lambda m: -m.sum(axis=1), version="20261102_021500")
    )
    by_key = {(e["request_id"], e["lawyer_id"]): e for e in shown}
    assert {(e["request_id"], e["lawyer_id"]) for e in flipped} == set(by_key)
    assert all(e["algorithm_version"] == "20261102_021500" for e in flipped)
    assert all(by_key[(e["request_id"], e["lawyer_id"])]["features"] == e["features"]
               for e in flipped)  # fmt: skip
    moved = sum(by_key[(e["request_id"], e["lawyer_id"])]["rank_position"] != e["rank_position"]
                for e in flipped)  # fmt: skip
    assert moved > len(flipped) / 2
    truth = {(c.request_id, c.lawyer_id): c for c in reverse.truth}
    assert all(truth[(e["request_id"], e["lawyer_id"])].position == e["rank_position"]
               for e in flipped)  # fmt: skip
    # the ranker scored -Σ features: every list starts with its smallest feature sum
    lists: dict[str, list[dict[str, Any]]] = {}
    for e in flipped:
        lists.setdefault(e["request_id"], []).append(e)
    for members in lists.values():
        first = min(members, key=lambda e: e["rank_position"])
        assert sum(first["features"].values()) == min(sum(e["features"].values()) for e in members)


def test_clicks_follow_position_more_than_unbiased_labels_do() -> None:
    simulator = Simulator(SimulatorConfig(start=DAY, days=1, seed=2))
    frame = logged_frame(simulator.day_events(DAY))
    truth = simulator.truth_frame()
    joined = frame.merge(truth, on=["request_id", "lawyer_id"])
    top = joined[joined["rank_position"] <= 2]
    low = joined[(joined["rank_position"] >= 9) & (joined["rank_position"] <= 12)]
    clicked_ratio = (top["label"] > 0).mean() / (low["label"] > 0).mean()
    unbiased_ratio = (top["unbiased_label"] > 0).mean() / (low["unbiased_label"] > 0).mean()
    assert clicked_ratio > 2.5 * unbiased_ratio
    assert joined["gain"].between(0, 7).all() and joined["gain"].max() > 1


def test_the_utility_drifts_slowly() -> None:
    today = utility_coefficients(DAY, 0.15, 90.0)
    tomorrow = utility_coefficients(date(2026, 11, 4), 0.15, 90.0)
    in_a_month = utility_coefficients(date(2026, 12, 3), 0.15, 90.0)
    assert np.max(np.abs(tomorrow / today - 1)) < 0.02
    assert np.max(np.abs(in_a_month / today - 1)) > 0.05
    assert np.array_equal(utility_coefficients(DAY, 0.0, 90.0), utility_coefficients(
        date(2027, 1, 1), 0.0, 90.0))  # fmt: skip


def _nmi(a: list[Any], b: list[Any]) -> float:
    """Normalised mutual information (arithmetic-mean normalisation) of two labelings."""
    from collections import Counter

    n = len(a)
    pa, pb, pab = Counter(a), Counter(b), Counter(zip(a, b, strict=True))
    mi = sum(c / n * np.log((c / n) / (pa[x] / n * pb[y] / n)) for (x, y), c in pab.items())
    ha = -sum(c / n * np.log(c / n) for c in pa.values())
    hb = -sum(c / n * np.log(c / n) for c in pb.values())
    return float(2 * mi / (ha + hb)) if ha + hb > 0 else 0.0


def test_protected_attributes_are_independent_of_each_other_and_of_quality() -> None:
    from itertools import combinations

    for seed in range(5):
        simulator = Simulator(SimulatorConfig(start=DAY, days=1, seed=seed))
        lawyers = simulator._lawyers
        quality = intrinsic_merit(lawyers.intrinsic)
        deciles = list(np.digitize(quality, np.quantile(quality, np.linspace(0.1, 0.9, 9))))
        columns = {
            a: [str(g[a]) for g in lawyers.groups]
            for a in ("gender", "ethnicity", "pcd", "orientation")
        }
        for a, b in combinations(columns, 2):
            assert _nmi(columns[a], columns[b]) < 0.05, (seed, a, b)
        for a, values in columns.items():
            assert _nmi(values, deciles) < 0.05, (seed, a)


def test_a_list_shown_elsewhere_meets_the_same_users_as_day_events() -> None:
    """day_cases + day_users (how a list ranked by the real service is answered) give exactly
    the events day_events gives when shown in the same order, and the truth follows it."""
    config = SimulatorConfig(start=DAY, days=1, seed=5, requests_per_day=40)
    direct = Simulator(config)
    events = direct.day_events(DAY)
    recommendations = _recommendations(events)
    feedback = [e for e in events if e["event_type"] == "offer_feedback"]

    split = Simulator(config)
    cases = split.day_cases(DAY)
    assert [c.request_id for c in cases] == sorted({e["request_id"] for e in recommendations})
    users = split.day_users(DAY)
    answered: list[dict[str, Any]] = []
    for case in cases:
        shown = [e["lawyer_id"] for e in recommendations if e["request_id"] == case.request_id]
        answered.extend(users.respond_to_ids(case, shown))
    assert answered == feedback
    assert split.truth == direct.truth
    # the cases themselves do not depend on who ranks them, nor on being drawn twice
    again = split.day_cases(DAY)
    assert all(np.array_equal(a.features, b.features) for a, b in zip(cases, again, strict=True))


def test_users_answer_the_order_they_were_shown() -> None:
    config = SimulatorConfig(start=DAY, days=1, seed=6, requests_per_day=300)
    simulator = Simulator(config)
    users = simulator.day_users(DAY)
    cases = simulator.day_cases(DAY)
    clicked: list[dict[str, Any]] = []
    for case in cases:  # each list shown in reverse of the request's order
        answered = users.respond_to_ids(case, list(reversed(case.lawyer_ids)))
        assert {e["request_id"] for e in answered} <= {case.request_id}
        clicked.extend(e for e in answered if e["action"] == "click")
    positions = {(c.request_id, c.lawyer_id): c.position for c in simulator.truth}
    first = cases[0]
    assert [positions[(first.request_id, lawyer)] for lawyer in reversed(first.lawyer_ids)] == list(
        range(1, len(first.lawyer_ids) + 1)
    )
    # position bias: the clicks follow where a candidate was shown, not the request's order
    at = Counter(positions[(e["request_id"], e["lawyer_id"])] for e in clicked)
    assert at[1] > 2 * at[5] > 0
    with pytest.raises(ValueError, match="not a candidate"):
        users.respond_to_ids(first, ["l-99999"])


def test_exploration_shows_the_services_swaps_and_logs_its_propensities() -> None:
    config = SimulatorConfig(start=DAY, days=1, seed=2, requests_per_day=200)
    plain = _recommendations(Simulator(config).day_events(DAY))
    explored = _recommendations(Simulator(config).day_events(DAY, explore_rate=0.3))
    assert "policy" not in plain[0] and "policy" in explored[0]
    deterministic = {(e["request_id"], e["rank_position"]): e["lawyer_id"] for e in plain}
    swapped = set()
    for e in explored:
        n = sum(1 for o in explored if o["request_id"] == e["request_id"])
        plan = plan_exploration(e["request_id"], n, explore_rate=0.3)
        position = e["rank_position"]
        assert e["policy"] == plan.policy
        assert e["deterministic_rank"] == plan.ranks[position - 1]
        assert e["propensity"] == pytest.approx(plan.propensities[position - 1])
        # the candidate shown is the one the deterministic order had at that rank
        assert deterministic[(e["request_id"], e["deterministic_rank"])] == e["lawyer_id"]
        if e["rank_position"] != e["deterministic_rank"]:
            swapped.add(e["request_id"])
    share = len(swapped) / len({e["request_id"] for e in explored})
    assert 0.2 < share < 0.4  # about the explore rate
    frame = logged_frame(Simulator(config).day_events(DAY, explore_rate=0.3))
    assert {"policy", "propensity", "deterministic_rank"} <= set(frame.columns)
    moved = frame["rank_position"] != frame["deterministic_rank"]
    assert moved.any() and (frame.loc[moved, "policy"] == "swap").all()
    assert "policy" not in logged_frame(Simulator(config).day_events(DAY)).columns
