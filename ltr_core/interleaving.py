"""Team-draft interleaving: compare a candidate ranker with the live one on the same requests.

Team-draft interleaving (TDI; Radlinski, Kurup & Joachims, "How does clickthrough data reflect
retrieval quality?", CIKM 2008; Chapelle, Joachims, Radlinski & Yue, "Large-scale validation and
analysis of interleaved search evaluation", TOIS 2012). Two rankings of the same candidates,
``live`` and ``candidate``, are merged like two captains picking teams: in each round the team
with fewer picks picks next, a fair coin deciding when both have as many; a team picks its
highest-ranked candidate not yet shown. Since picks alternate, one coin is flipped per round of
two positions. A click credits the team that picked the clicked candidate; the ranker whose
picks get more clicks wins the request.

Reproducibility. The coins come from a numpy Generator seeded by the request's hash
(`request_rng`, word 2 of `ltr_core.exploration`'s digest), so every process draws the same
interleaving for the same request id and rankings.

Propensities. What is logged per shown candidate (with policy "interleaved" and its team) is
the probability, under TDI given both rankings and the shown length, that this candidate is
shown at this position, marginal over the coins and the team. Like the exploration policy's, it
is conditional on the branch: on the request being interleaved. It is computed exactly for
every list length, by dynamic programming
over the rounds rather than by enumerating the 2^⌈L/2⌉ coin sequences: at the start of a round
the set of shown candidates is always

    S = live[:i] ∪ candidate[:j]

with i and j the indices of each ranking's first candidate not yet shown (every pick is its
team's first unshown candidate, so everything a ranking places above a shown pick is shown
too), and the next picks depend on S alone (team sizes are equal at a round's start). So the
pair (i, j) is the whole state; after t rounds at most min(n, 2t) + 1 pairs have |S| = 2t, and
the exact computation costs O(L · n) picks instead of O(2^(L/2) · L).

Credit. Per request, each team's score is the number of its shown candidates with a click
(label > 0), or with ``graded=True`` the sum of their labels; the team with the higher score
wins, equal positive scores are a tie, and a request with no click is no evidence (winner None).

Settled candidates credit no team. A candidate that every draw shows at its position (its
propensity is 1: the two rankings' common top, say, or the one candidate both teams must pick
next) is at that position whichever team picked it, and which team did is decided by the
round's coin alone: a click on it tells nothing about the rankers and, counted, would credit a
fair coin's team. Such clicks are left out (`credit`'s ``settled``), so two rankings that agree
on a request's whole shown list give no evidence at all, instead of a coin-flip win or a tie
that would pull the win share towards ½ and let a candidate worse wherever it differs from live
pass a non-inferiority margin (under a position-based click model the clicks left out are
independent of the teams, so nothing else moves).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

import numpy as np

from ltr_core.exploration import DEFAULT_SALT, request_seed
from ltr_core.vocabulary import InterleavingTeam

Team = InterleavingTeam  # declared once, in ltr_core.vocabulary
Outcome = Literal["live", "candidate", "tie"]
TEAMS: tuple[Team, Team] = ("live", "candidate")

H = TypeVar("H", bound=Hashable)

_State = tuple[int, int]  # (i, j): the first unshown index in live and in candidate
# A propensity this close to 1 is 1: the exact programme sums dyadic masses, exact for 53 rounds
# and rounding past them; a true one this close (40 rounds of coins deep) differs from 1 in no
# measurable way.
SETTLED_PROPENSITY = 1.0 - 1e-12


def request_rng(request_id: str, *, salt: str = DEFAULT_SALT) -> np.random.Generator:
    """The request's coin source: numpy's default generator (PCG64) seeded by its hash."""
    return np.random.default_rng(request_seed(request_id, salt=salt))


@dataclass(frozen=True)
class TeamDraft(Generic[H]):
    """An interleaved list: the shown candidates in order, the team that picked each, and the
    propensity to log for each (P(this candidate at this position) under TDI)."""

    items: tuple[H, ...]
    teams: tuple[Team, ...]
    propensities: tuple[float, ...]

    @property
    def settled(self) -> frozenset[H]:
        """The shown candidates every draw shows at their position (see the module's Credit)."""
        return frozenset(
            item
            for item, p in zip(self.items, self.propensities, strict=True)
            if p >= SETTLED_PROPENSITY
        )


class _Drafter(Generic[H]):
    """The TDI state machine shared by the draw and the exact propensities, so the two can
    never disagree on the rules."""

    def __init__(self, live: Sequence[H], candidate: Sequence[H]) -> None:
        _check_rankings(live, candidate)
        self.live = tuple(live)
        self.candidate = tuple(candidate)
        self.n = len(self.live)
        self.rank_live = {item: r for r, item in enumerate(self.live)}
        self.rank_candidate = {item: r for r, item in enumerate(self.candidate)}

    def pick(self, state: _State, team: Team) -> tuple[H, _State]:
        """The candidate `team` picks in `state`, and the state after the pick."""
        i, j = state
        item = self.live[i] if team == "live" else self.candidate[j]

        def shown(other: H) -> bool:
            return other == item or self.rank_live[other] < i or self.rank_candidate[other] < j

        new_i, new_j = i, j
        while new_i < self.n and shown(self.live[new_i]):
            new_i += 1
        while new_j < self.n and shown(self.candidate[new_j]):
            new_j += 1
        return item, (new_i, new_j)


def _other(team: Team) -> Team:
    return "candidate" if team == "live" else "live"


def team_draft(
    live: Sequence[H],
    candidate: Sequence[H],
    rng: np.random.Generator,
    *,
    top_k: int | None = None,
) -> TeamDraft[H]:
    """Interleave two rankings of the same candidates by team draft.

    Shows min(n, top_k) candidates (all n when top_k is None). One coin per round of two
    positions, `rng.random() < 0.5` meaning live picks first; each shown candidate carries its
    team and its exact propensity (`position_probabilities`)."""
    drafter = _Drafter(live, candidate)
    items, teams = _draw(drafter, _shown_length(drafter.n, top_k), rng)
    table = _position_probabilities(drafter, len(items))
    return TeamDraft(
        items=tuple(items),
        teams=tuple(teams),
        propensities=tuple(table[p][item] for p, item in enumerate(items)),
    )


def draw(
    live: Sequence[H],
    candidate: Sequence[H],
    rng: np.random.Generator,
    *,
    top_k: int | None = None,
) -> tuple[tuple[H, ...], tuple[Team, ...]]:
    """The shown candidates and their teams exactly as `team_draft` draws them (same coins,
    same rules), without the propensities: O(L · n) at most, for a request path that leaves
    `position_probabilities` (which `team_draft`'s propensities are read from) to a worker."""
    drafter = _Drafter(live, candidate)
    items, teams = _draw(drafter, _shown_length(drafter.n, top_k), rng)
    return tuple(items), tuple(teams)


def _draw(
    drafter: _Drafter[H], length: int, rng: np.random.Generator
) -> tuple[list[H], list[Team]]:
    state: _State = (0, 0)
    items: list[H] = []
    teams: list[Team] = []
    while len(items) < length:
        first: Team = "live" if rng.random() < 0.5 else "candidate"
        for team in (first, _other(first)):
            if len(items) == length:
                break
            item, state = drafter.pick(state, team)
            items.append(item)
            teams.append(team)
    return items, teams


def position_probabilities(
    live: Sequence[H], candidate: Sequence[H], *, top_k: int | None = None
) -> list[dict[H, float]]:
    """For each shown position p (0-based), P(candidate shown at p) under TDI, exactly: the
    dynamic programme over (i, j) states of the module docstring. Each position's
    probabilities sum to 1."""
    drafter = _Drafter(live, candidate)
    return _position_probabilities(drafter, _shown_length(drafter.n, top_k))


def _position_probabilities(drafter: _Drafter[H], length: int) -> list[dict[H, float]]:
    table: list[defaultdict[H, float]] = [defaultdict(float) for _ in range(length)]
    states: dict[_State, float] = {(0, 0): 1.0}
    for start in range(0, length, 2):
        following: defaultdict[_State, float] = defaultdict(float)
        for state, mass in states.items():
            half = mass / 2.0
            for first in TEAMS:
                item, after = drafter.pick(state, first)
                table[start][item] += half
                if start + 1 < length:
                    item, after = drafter.pick(after, _other(first))
                    table[start + 1][item] += half
                following[after] += half
        states = dict(following)
    return [dict(row) for row in table]


@dataclass(frozen=True)
class Credit:
    """One interleaved request's evidence: each team's score (clicks, or summed grades) and
    how many shown candidates each team picked, settled candidates left out of both."""

    live: float
    candidate: float
    live_shown: int
    candidate_shown: int
    settled_clicks: float = 0.0  # the score of the clicks on settled candidates (no team's)

    @property
    def winner(self) -> Outcome | None:
        """The team with the higher score; "tie" for equal positive scores; None (no evidence)
        when nothing was clicked."""
        if self.live == 0.0 and self.candidate == 0.0:
            return None
        if self.candidate > self.live:
            return "candidate"
        if self.live > self.candidate:
            return "live"
        return "tie"


def credit(
    items: Sequence[H],
    teams: Sequence[Team],
    feedback: Mapping[H, float],
    *,
    graded: bool = False,
    settled: Collection[H] = (),
) -> Credit:
    """Credit each team for the feedback on its picks.

    `feedback` maps a shown candidate to its label (a click is 1; graded labels such as
    click 1 / contact 2 / contract 3 are accepted); candidates without an entry have 0. A team's
    score counts its candidates with a positive label, or sums their labels if `graded`.
    Candidates in `settled` (`TeamDraft.settled`) count for neither team, shown or clicked;
    their clicks are kept apart (`settled_clicks`), so a request clicked only there is known to
    have been clicked.
    Feedback on a candidate that was not shown is an error (the ids do not match)."""
    if len(items) != len(teams):
        raise ValueError(f"{len(items)} items but {len(teams)} teams")
    unknown = set(feedback) - set(items)
    if unknown:
        raise ValueError(f"feedback on candidates that were not shown: {sorted(map(str, unknown))}")
    scores = {"live": 0.0, "candidate": 0.0}
    shown = {"live": 0, "candidate": 0}
    settled_clicks = 0.0
    for item, team in zip(items, teams, strict=True):
        if team not in scores:
            raise ValueError(f"team must be 'live' or 'candidate', got {team!r}")
        label = float(feedback.get(item, 0.0))
        if not label >= 0.0:
            raise ValueError(f"labels are non-negative, got {label!r} for {item!r}")
        score = label if graded else float(label > 0.0)
        if item in settled:
            settled_clicks += score
            continue
        shown[team] += 1
        scores[team] += score
    return Credit(
        scores["live"], scores["candidate"], shown["live"], shown["candidate"], settled_clicks
    )


def _check_rankings(live: Sequence[H], candidate: Sequence[H]) -> None:
    if len(set(live)) != len(live) or len(set(candidate)) != len(candidate):
        raise ValueError("a ranking lists each candidate once")
    if set(live) != set(candidate):
        raise ValueError("the live and candidate rankings must rank the same candidates")


def _shown_length(n: int, top_k: int | None) -> int:
    if top_k is None:
        return n
    if top_k < 0:
        raise ValueError(f"top_k must be non-negative, got {top_k}")
    return min(n, top_k)
