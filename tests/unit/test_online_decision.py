"""The online comparison's statistics and decision rule, at its boundaries."""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import pytest

from ltr_assets.online.decision import (
    Decision,
    InterleavingCounts,
    OnlineDecision,
    decide,
    tally,
    win_share,
)
from ltr_core.interleaving import Credit

MIN_REQUESTS, MARGIN, MAX_DAYS = 200, 0.02, 3.0
Z95 = 1.959963984540054


def _decide(
    counts: InterleavingCounts,
    days: float,
    *,
    min_requests: int = MIN_REQUESTS,
    margin: float = MARGIN,
    max_days: float = MAX_DAYS,
) -> OnlineDecision:
    """The rule with the platform's settings (min_requests 200, margin 0.02, max_days 3)."""
    return decide(
        counts,
        days_collecting=days,
        min_requests=min_requests,
        margin=margin,
        max_days=max_days,
    )


def _counts(wins: int, losses: int, ties: int = 0) -> InterleavingCounts:
    return InterleavingCounts(wins=wins, losses=losses, ties=ties)


def test_the_share_counts_ties_half_and_is_wilson_without_ties() -> None:
    ev = win_share(_counts(60, 30, 10))
    assert ev.requests == 100 and ev.share == pytest.approx(0.65)
    # no ties: exactly the textbook Wilson score interval
    w, n = 130, 200
    p = w / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    ev = win_share(_counts(w, n - w))
    assert ev.low == pytest.approx(centre - half)
    assert ev.high == pytest.approx(centre + half)
    # ties narrow the interval around the same share (a tie is worth ½ with no variance)
    with_ties = win_share(_counts(50, 50, 100))
    without = win_share(_counts(100, 100))
    assert with_ties.share == without.share == 0.5
    assert with_ties.high - with_ties.low < without.high - without.low
    # all ties: the candidate is exactly as good as live
    assert win_share(_counts(0, 0, 50)).low == pytest.approx(0.5)
    # no evidence: no share, the whole range
    empty = win_share(_counts(0, 0))
    assert empty.share is None and (empty.low, empty.high) == (0.0, 1.0)


@pytest.mark.parametrize("requests", [200, 400])
@pytest.mark.parametrize(
    ("p_win", "p_loss"),
    [(0.35, 0.35), (0.45, 0.3), (0.2, 0.3), (0.1, 0.1), (0.8, 0.1), (0.5, 0.48), (0.03, 0.9)],
)
def test_the_interval_is_calibrated_at_a_few_hundred_requests(
    requests: int, p_win: float, p_loss: float
) -> None:
    """Coverage of the true share p_win + p_tie / 2 over 4000 simulated comparisons lies within
    0.95 ± 0.02 (about six standard errors of a coverage estimate)."""
    rng = np.random.default_rng(int(requests + 1000 * p_win + 100 * p_loss))
    p_tie = 1.0 - p_win - p_loss
    truth = p_win + p_tie / 2.0
    draws = rng.multinomial(requests, [p_win, p_loss, p_tie], size=4000)
    covered = 0
    for wins, losses, ties in draws:
        ev = win_share(_counts(int(wins), int(losses), int(ties)))
        covered += ev.low <= truth <= ev.high
    assert abs(covered / len(draws) - 0.95) <= 0.02, covered / len(draws)


def _strong(n: int) -> InterleavingCounts:
    """n requests whose lower bound is well above 0.5 − margin."""
    wins = round(0.6 * n)
    return _counts(wins, n - wins)


def test_promotion_needs_min_requests() -> None:
    at = _decide(_strong(200), 1)
    below = _decide(_strong(199), 1)
    assert below.evidence.low >= 0.5 - MARGIN  # only the count differs
    assert at.decision is Decision.PROMOTE and "not worse" in at.reason
    assert below.decision is Decision.COLLECT and "1 more clicked requests" in below.reason


def test_requests_clicked_only_on_settled_candidates_count_for_the_floor_not_the_share() -> None:
    """The floor counts every clicked request; the share only those where the rankings differ:
    60 decisive wins among 200 clicked requests promote, and a candidate whose every clicked
    request was settled (it ranks as live does) has no evidence and times out."""
    credits = [Credit(0, 1, 2, 2)] * 60 + [Credit(0, 0, 0, 0, settled_clicks=1)] * 140
    counts = tally(credits)
    assert (counts.requests, counts.settled_only, counts.clicked_requests) == (60, 140, 200)
    promoted = _decide(counts, 1)
    assert promoted.decision is Decision.PROMOTE and promoted.evidence.share == 1.0
    assert "200 clicked requests, 60 where the rankings differ" in promoted.reason
    assert _decide(tally(credits[:199]), 1).decision is Decision.COLLECT  # 199 clicked
    identical = tally([Credit(0, 0, 0, 0, settled_clicks=1)] * 500)
    assert identical.requests == 0 and identical.without_click == 0
    assert _decide(identical, 1).decision is Decision.COLLECT
    timed_out = _decide(identical, MAX_DAYS)
    assert timed_out.decision is Decision.RETIRE and timed_out.timed_out


def test_promotion_needs_min_evidence_however_many_requests_were_clicked() -> None:
    """A handful of ties among many clicks on settled candidates gives the interval no width
    ([0.5, 0.5]): the evidence floor keeps it from promoting on that."""
    settled = [Credit(0, 0, 0, 0, settled_clicks=1)] * 300
    few_ties = _decide(tally([*settled, *[Credit(1, 1, 1, 1)] * 5]), 1)
    assert few_ties.evidence.low == few_ties.evidence.high == 0.5
    assert few_ties.decision is Decision.COLLECT
    assert "25 more where the rankings differ" in few_ties.reason
    wins = [Credit(0, 1, 1, 1)]
    assert _decide(tally([*settled, *wins * 29]), 1).decision is Decision.COLLECT
    assert _decide(tally([*settled, *wins * 30]), 1).decision is Decision.PROMOTE
    assert decide(
        tally([*settled, *wins * 5]), days_collecting=1, min_requests=200, margin=MARGIN,
        max_days=MAX_DAYS, min_evidence=5,
    ).decision is Decision.PROMOTE  # fmt: skip


def test_a_lower_bound_exactly_at_the_margin_promotes() -> None:
    counts = _counts(100, 100, 50)
    low = win_share(counts).low
    assert 0.25 < low < 0.5
    margin = 0.5 - low  # exact in floating point (Sterbenz): 0.5 − margin == low
    assert _decide(counts, 0, margin=margin).decision is Decision.PROMOTE
    assert _decide(counts, 0, margin=margin - 1e-12).decision is Decision.COLLECT


def _upper_just_below_half() -> tuple[InterleavingCounts, InterleavingCounts]:
    """Counts whose upper bound is the largest below 0.5 among 300 requests, and the same with
    one loss turned into a win (upper bound ≥ 0.5)."""
    n = 300
    for wins in range(n // 2, 0, -1):
        if win_share(_counts(wins, n - wins)).high < 0.5:
            return _counts(wins, n - wins), _counts(wins + 1, n - wins - 1)
    raise AssertionError("unreachable")


def test_an_upper_bound_just_below_half_retires() -> None:
    worse, better = _upper_just_below_half()
    assert 0.49 < win_share(worse).high < 0.5 <= win_share(better).high
    retired = _decide(worse, 0.5)
    assert retired.decision is Decision.RETIRE and "worse than live" in retired.reason
    kept = _decide(better, 0.5)
    assert kept.decision is Decision.COLLECT


def test_the_comparison_times_out_after_max_days() -> None:
    undecided = _counts(55, 60, 10)  # interval straddles 0.5 and reaches below 0.48
    assert _decide(undecided, 2.999).decision is Decision.COLLECT
    timed_out = _decide(undecided, 3)
    assert timed_out.decision is Decision.RETIRE and "undecided after 3 days" in timed_out.reason
    assert timed_out.timed_out
    nothing = _decide(_counts(0, 0), 3)
    assert nothing.decision is Decision.RETIRE and nothing.evidence.share is None


def test_the_order_of_precedence() -> None:
    """worse > promote > timeout > collect."""
    # 1. an interval inside [0.5 − margin, 0.5): both "not worse by the margin" and "worse"
    #    apply; worse wins.
    both = _counts(4900, 5100)
    ev = win_share(both)
    assert ev.low >= 0.5 - MARGIN and ev.high < 0.5
    decision = _decide(both, 1)
    assert decision.decision is Decision.RETIRE and "worse" in decision.reason
    # 2. evidence beats the clock: a promotion reached on the last day stands ...
    assert _decide(_strong(400), 5).decision is Decision.PROMOTE
    # ... and a candidate shown to be worse is retired as worse, not as timed out
    late_worse = _decide(_counts(80, 160), 5)
    assert late_worse.decision is Decision.RETIRE and "worse than live" in late_worse.reason
    assert not late_worse.timed_out


def test_the_result_carries_the_evidence() -> None:
    credits = [
        Credit(live=1, candidate=2, live_shown=5, candidate_shown=5),  # win
        Credit(live=1, candidate=0, live_shown=5, candidate_shown=5),  # loss
        Credit(live=1, candidate=1, live_shown=4, candidate_shown=5),  # tie
        Credit(live=0, candidate=0, live_shown=5, candidate_shown=4),  # no click
    ]
    counts = tally(credits)
    assert (counts.wins, counts.losses, counts.ties, counts.without_click) == (1, 1, 1, 1)
    result = _decide(counts, 1)
    ev = result.evidence
    assert result.decision is Decision.COLLECT and result.days_collecting == 1.0
    assert (ev.requests, ev.share) == (3, 0.5)
    assert ev.live_ctr == pytest.approx(3 / 19) and ev.candidate_ctr == pytest.approx(3 / 19)
    assert "197 more clicked requests" in result.reason
    assert str(result.decision) == "collect"


def test_thresholds_come_from_the_caller() -> None:
    """No default for the rule's thresholds: the settings layer passes each one."""
    parameters = inspect.signature(decide).parameters
    for name in ("days_collecting", "min_requests", "margin", "max_days"):
        assert parameters[name].default is inspect.Parameter.empty


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"margin": 0.5}, "margin"),
        ({"margin": -0.01}, "margin"),
        ({"max_days": 0}, "max_days"),
        ({"min_requests": -1}, "min_requests"),
        ({"days_collecting": -1}, "days_collecting"),
        ({"confidence": 1.0}, "confidence"),
    ],
)
def test_bad_arguments_are_refused(change: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {
        "days_collecting": 1.0,
        "min_requests": MIN_REQUESTS,
        "margin": MARGIN,
        "max_days": MAX_DAYS,
        **change,
    }
    with pytest.raises(ValueError, match=message):
        decide(_counts(1, 1), **arguments)
    with pytest.raises(ValueError, match="wins"):
        _counts(-1, 0)
