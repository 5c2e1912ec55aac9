"""Team-draft interleaving: the draft's invariants, exact propensities, reproducible coins, the
per-request credit, a fair A/A comparison and a better ranker winning."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from ltr_assets.simulation.simulator import ClickModel
from ltr_core.interleaving import (
    Credit,
    Team,
    credit,
    draw,
    position_probabilities,
    request_rng,
    team_draft,
)


def _rankings(rng: np.random.Generator, n: int) -> tuple[list[str], list[str]]:
    items = [f"l-{i}" for i in range(n)]
    live = [items[i] for i in rng.permutation(n)]
    # a candidate that agrees with live in part, so that both teams want the same items
    candidate = list(live)
    for _ in range(int(rng.integers(0, n + 1))):
        a, b = rng.integers(0, n, 2)
        candidate[a], candidate[b] = candidate[b], candidate[a]
    return live, candidate


def test_each_team_keeps_its_rankings_order_and_the_teams_stay_balanced() -> None:
    rng = np.random.default_rng(1)
    for case in range(600):
        n = int(rng.integers(1, 16))
        live, candidate = _rankings(rng, n)
        top_k = None if case % 3 == 0 else int(rng.integers(0, n + 3))
        draft = team_draft(live, candidate, np.random.default_rng(case), top_k=top_k)
        length = n if top_k is None else min(n, top_k)
        assert len(draft.items) == len(draft.teams) == len(draft.propensities) == length
        assert len(set(draft.items)) == length
        for team, ranking in (("live", live), ("candidate", candidate)):
            picks = [i for i, t in zip(draft.items, draft.teams, strict=True) if t == team]
            ranks = [ranking.index(i) for i in picks]
            assert ranks == sorted(ranks)
            # each pick is the team's best candidate not shown before it
            for item in picks:
                before = draft.items[: draft.items.index(item)]
                assert item == next(c for c in ranking if c not in before)
        for end in range(length + 1):
            prefix = draft.teams[:end]
            assert abs(prefix.count("live") - prefix.count("candidate")) <= 1
        assert all(0.0 < p <= 1.0 for p in draft.propensities)


def _enumerated(live: list[str], candidate: list[str], length: int) -> list[dict[str, float]]:
    """P(item at position) by brute force: every sequence of ⌈length/2⌉ coins, each equally
    likely, drafted by a plain implementation of TDI (independent of the module's)."""
    rounds = (length + 1) // 2
    table: list[dict[str, float]] = [{} for _ in range(length)]
    for coins in itertools.product(("live", "candidate"), repeat=rounds):
        shown: list[str] = []
        for first in coins:
            second = "candidate" if first == "live" else "live"
            for team in (first, second):
                if len(shown) == length:
                    break
                ranking = live if team == "live" else candidate
                shown.append(next(c for c in ranking if c not in shown))
        for position, item in enumerate(shown):
            table[position][item] = table[position].get(item, 0.0) + 0.5**rounds
    return table


def test_the_exact_propensities_equal_an_enumeration_of_the_coin_flips() -> None:
    rng = np.random.default_rng(2)
    for _ in range(150):
        n = int(rng.integers(1, 15))
        live, candidate = _rankings(rng, n)
        top_k = int(rng.integers(1, n + 1))
        exact = position_probabilities(live, candidate, top_k=top_k)
        brute = _enumerated(live, candidate, top_k)
        assert len(exact) == top_k
        for got, want in zip(exact, brute, strict=True):
            assert set(got) == set(want)
            assert all(math.isclose(got[i], want[i], abs_tol=1e-12) for i in want)
            assert math.isclose(sum(got.values()), 1.0)


def test_identical_rankings_show_that_ranking_with_certainty() -> None:
    ranking = [f"l-{i}" for i in range(30)]
    table = position_probabilities(ranking, ranking)
    assert [max(row, key=row.__getitem__) for row in table] == ranking
    assert all(row == {item: 1.0} for row, item in zip(table, ranking, strict=True))


def test_the_logged_propensities_match_empirical_frequencies_on_small_lists() -> None:
    rng = np.random.default_rng(3)
    draws = 12_000
    for n in (4, 5, 6):
        live, candidate = _rankings(rng, n)
        candidate = candidate[::-1]  # make the two disagree strongly
        counts: dict[tuple[int, str], int] = {}
        logged: dict[tuple[int, str], float] = {}
        for d in range(draws):
            draft = team_draft(live, candidate, np.random.default_rng([n, d]))
            for position, (item, p) in enumerate(zip(draft.items, draft.propensities, strict=True)):
                counts[(position, item)] = counts.get((position, item), 0) + 1
                assert logged.setdefault((position, item), p) == p
        exact = position_probabilities(live, candidate)
        for position, row in enumerate(exact):
            for item, p in row.items():
                observed = counts.get((position, item), 0) / draws
                se = math.sqrt(p * (1 - p) / draws)
                assert abs(observed - p) <= max(4.5 * se, 1e-12), (n, position, item)
        assert set(counts) == {(pos, i) for pos, row in enumerate(exact) for i in row}


def test_the_draw_is_reproducible_from_the_request_id() -> None:
    rng = np.random.default_rng(4)
    live, candidate = _rankings(rng, 12)
    candidate = candidate[::-1]
    first = team_draft(live, candidate, request_rng("r-20261101-00042"))
    assert team_draft(live, candidate, request_rng("r-20261101-00042")) == first
    drafts = {team_draft(live, candidate, request_rng(f"r-{i}")).teams for i in range(200)}
    assert len(drafts) > 20  # different requests flip different coins
    # pinned: the coins of a known request (numpy's PCG64 seeded by the request hash)
    pinned = team_draft(["a", "b", "c", "d"], ["d", "c", "b", "a"], request_rng("r-pin"))
    assert pinned.items == ("a", "d", "c", "b")
    assert pinned.teams == ("live", "candidate", "candidate", "live")


def test_the_credit_counts_clicks_per_team() -> None:
    items = ["a", "b", "c", "d", "e"]
    teams: list[Team] = ["live", "candidate", "candidate", "live", "live"]
    assert credit(items, teams, {"b": 1, "d": 1, "c": 1}).winner == "candidate"
    assert credit(items, teams, {"a": 1, "e": 1, "b": 1}).winner == "live"
    assert credit(items, teams, {"a": 1, "b": 1}).winner == "tie"
    assert credit(items, teams, {}).winner is None
    assert credit(items, teams, {"a": 0, "b": 0}).winner is None
    c = credit(items, teams, {"a": 3, "b": 1, "c": 1})
    assert c == Credit(live=1.0, candidate=2.0, live_shown=3, candidate_shown=2)
    graded = credit(items, teams, {"a": 3, "b": 1, "c": 1}, graded=True)
    assert (graded.live, graded.candidate, graded.winner) == (3.0, 2.0, "live")
    with pytest.raises(ValueError, match="not shown"):
        credit(items, teams, {"z": 1})
    with pytest.raises(ValueError, match="non-negative"):
        credit(items, teams, {"a": -1})
    with pytest.raises(ValueError, match="5 items but 4 teams"):
        credit(items, teams[:4], {})


def test_bad_rankings_are_refused() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="same candidates"):
        team_draft(["a", "b"], ["a", "c"], rng)
    with pytest.raises(ValueError, match="once"):
        team_draft(["a", "a"], ["a", "a"], rng)
    with pytest.raises(ValueError, match="top_k"):
        team_draft(["a", "b"], ["b", "a"], rng, top_k=-1)


def test_settled_candidates_are_those_every_draw_shows_in_place() -> None:
    rng = np.random.default_rng(0)
    assert team_draft(["a", "b", "c"], ["a", "b", "c"], rng).settled == {"a", "b", "c"}
    # a and b in either order, then c whichever team picks it
    assert team_draft(["a", "b", "c"], ["b", "a", "c"], rng).settled == {"c"}
    assert team_draft(["a", "b", "c", "d"], ["a", "b", "d", "c"], rng).settled == {"a", "b"}
    for n in range(1, 9):
        live, candidate = _rankings(rng, n)
        draft = team_draft(live, candidate, rng, top_k=5)
        table = position_probabilities(live, candidate, top_k=5)
        certain = {item for row in table for item, p in row.items() if p == 1.0}
        assert draft.settled == certain


def test_settled_candidates_credit_no_team() -> None:
    items = ["a", "b", "c", "d"]
    teams: list[Team] = ["candidate", "live", "live", "candidate"]
    c = credit(items, teams, {"a": 1, "c": 1}, settled={"a", "b"})
    assert c == Credit(live=1.0, candidate=0.0, live_shown=1, candidate_shown=1, settled_clicks=1)
    only_settled = credit(items, teams, {"a": 1, "b": 1}, settled={"a", "b"})
    assert only_settled.winner is None and only_settled.settled_clicks == 2.0


def _simulate(
    better: bool, requests: int, seed: int, *, rival: bool = False, settle: bool = False
) -> tuple[int, int, int]:
    """Interleave two rankers on simulated requests and credit clicks drawn from the
    simulator's user model (examination k^-η, ε⁺ for relevant, ε⁻ + trust bias otherwise).

    Live ranks by a noisy view of relevance; the candidate is the same ranking (A/A), with
    `rival` another noisy view as good, or, if `better`, ranks by the true relevance; `settle`
    leaves settled candidates out of the credit. Returns (candidate wins, live wins, ties)."""
    rng = np.random.default_rng(seed)
    model = ClickModel(position_bias=1.0)
    wins = losses = ties = 0
    for r in range(requests):
        n = int(rng.integers(5, 31))
        relevance = 1.0 / (1.0 + np.exp(-rng.normal(-1.3, 1.5, n)))
        noisy = np.log(relevance / (1 - relevance)) + rng.normal(0.0, 1.5, n)
        live = [int(i) for i in np.argsort(-noisy)]
        candidate = [int(i) for i in np.argsort(-relevance)] if better else list(live)
        if rival:
            rival_view = np.log(relevance / (1 - relevance)) + rng.normal(0.0, 1.5, n)
            candidate = [int(i) for i in np.argsort(-rival_view)]
        draft = team_draft(live, candidate, request_rng(f"req-{seed}-{r}"), top_k=10)
        positions = np.arange(1, len(draft.items) + 1)
        shown = np.array(draft.items)
        relevant = rng.random(len(shown)) < relevance[shown]
        click_p = np.where(relevant, model.relevant_click, model.noise(positions))
        clicked = (rng.random(len(shown)) < model.examination(positions)) & (
            rng.random(len(shown)) < click_p
        )
        settled = draft.settled if settle else ()
        clicks = {int(i): 1.0 for i in shown[clicked]}
        outcome = credit(draft.items, draft.teams, clicks, settled=settled).winner
        wins += outcome == "candidate"
        losses += outcome == "live"
        ties += outcome == "tie"
    return wins, losses, ties


def test_identical_rankers_split_the_wins_evenly() -> None:
    """A/A over 10^4 requests: the candidate's share of the decided requests is within two
    standard errors of 0.5 (identical rankings only differ in which team a coin credits)."""
    wins, losses, ties = _simulate(better=False, requests=10_000, seed=5)
    decided = wins + losses
    share = wins / decided
    assert decided > 3000 and ties > 0
    assert abs(share - 0.5) <= 2 * math.sqrt(0.25 / decided), (wins, losses, ties)


def test_a_clearly_better_ranker_wins_more() -> None:
    wins, losses, ties = _simulate(better=True, requests=2000, seed=6)
    decided = wins + losses
    assert wins / decided > 0.5 + 4 * math.sqrt(0.25 / decided), (wins, losses, ties)


def test_with_settled_candidates_left_out_an_equal_rival_still_splits_evenly() -> None:
    """Two different rankers as good as each other, settled clicks left out: the share of the
    decided requests is within two standard errors of 0.5; identical rankers give no evidence;
    a clearly better ranker still wins."""
    wins, losses, ties = _simulate(False, 10_000, seed=7, rival=True, settle=True)
    decided = wins + losses
    assert decided > 3000
    assert abs(wins / decided - 0.5) <= 2 * math.sqrt(0.25 / decided), (wins, losses, ties)
    assert _simulate(False, 500, seed=8, settle=True) == (0, 0, 0)
    wins, losses, ties = _simulate(True, 2000, seed=6, settle=True)
    decided = wins + losses
    assert wins / decided > 0.5 + 4 * math.sqrt(0.25 / decided), (wins, losses, ties)


@pytest.mark.parametrize("top_k", [None, 3])
def test_draw_shows_exactly_what_team_draft_shows(top_k: int | None) -> None:
    """Serving draws on the request path with `draw` and leaves the propensities to its log
    worker: the two must agree on every request."""
    rng = np.random.default_rng(4)
    for request in range(50):
        live = list(range(9))
        candidate = [int(i) for i in rng.permutation(9)]
        drafted = team_draft(live, candidate, request_rng(f"r-{request}"), top_k=top_k)
        items, teams = draw(live, candidate, request_rng(f"r-{request}"), top_k=top_k)
        assert (items, teams) == (drafted.items, drafted.teams)
