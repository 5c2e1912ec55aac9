"""Whether a candidate model that is being interleaved with the live one is promoted or retired.

Evidence. Each interleaved request with at least one click on a contested candidate is one
piece of evidence: the candidate won it, lost it (live won) or tied
(`ltr_core.interleaving.Credit`). Requests without a click say nothing about the comparison and
are not counted as requests, but their impressions count towards each team's click-through; nor
do requests clicked only on settled candidates (a coin chose their team; `ltr_core.interleaving`),
which are counted apart (`settled_only`). The clicked requests, both kinds, are what
`min_requests` counts: the traffic on which users could have shown a difference; the share is
taken over the evidence alone, so the margin applies where the candidate changes what users see
and is not diluted by requests where it does not.

Win share, ties counted half:

    share = (wins + ties / 2) / requests,    requests = wins + losses + ties

the probability that the candidate beats live on a random clicked request, a tie being worth
half (Chapelle et al., TOIS 2012, whose Δ_AB = share − 1/2). Why ties count half rather than
being dropped (wins / (wins + losses)): the share then stays on the scale of every request of
the evidence, so `margin` means the same thing whatever the tie rate is, and a
candidate that ties almost everywhere sits at 0.5 with an interval that shrinks as requests
come in; dropping ties would let a handful of decided requests among hundreds of ties swing the
share anywhere. Under the null (the two rankers are equally good) both definitions are 0.5.

Interval: a Wilson score interval (Wilson 1927; Brown, Cai & DasGupta, Stat. Sci. 2001)
generalised to the three-valued score s ∈ {0, ½, 1} of a request. The score interval solves

    requests · (share − p)² = z² · V(p),    V(p) = p(1 − p) − τ/4

for p, where V(p) is the variance of one request's score when its mean is p and a share τ of
requests are ties (τ is plugged in from the data); with no ties it is exactly Wilson's. The roots
are

    p = [share + z²/(2N) ± z · sqrt(v/N + z²(1 − τ)/(4N²))] / (1 + z²/N)

with N = requests and v = share(1 − share) − τ/4 the sample variance of the scores. Why Wilson
and not a bootstrap over requests: it is closed form and deterministic (a decision rerun on the
same counts gives the same answer), needs only the counts the pipeline can aggregate, and its
coverage stays near nominal at a few hundred requests, including shares near 0 or 1
(tests/unit/test_online_decision.py), where a percentile bootstrap of a mean runs short: it
cannot reach past the most extreme resample, and with no loss observed it has no width at all.

Decision rule (every threshold is an argument; the settings layer passes them), checked in this
order, the first that applies wins:

1. retire (worse): the interval's upper bound is below 0.5 — the candidate is shown to lose to
   live. This comes first: the margin tolerates uncertainty about a small loss, not a loss the
   evidence has established (an interval inside [0.5 − margin, 0.5) retires). It needs no
   minimum count: on few requests the interval is wide, and only a lopsided record crosses.
2. promote: at least `min_requests` clicked requests, at least `min_evidence` of them
   evidence, and the lower bound is at least 0.5 − margin — the candidate is shown to be no
   worse than live by more than the margin. The evidence floor keeps the interval out of the
   small counts where it cannot be trusted (a handful of ties gives it no width at all).
   A candidate that ranks every clicked list as live does has no evidence, so no lower bound
   above 0, and times out (it would change nothing users see).
3. retire (timeout): `days_collecting` ≥ `max_days` with neither of the above: the comparison
   could not decide in the time allowed. Evidence beats the clock: a candidate that reaches a
   decision on its last day gets that decision. A candidate serving has not interleaved yet
   (`days_unserved` given) is retired once it has waited `max_days` days for it: serving is
   not following the registry, and a candidate no one sees must not hold its place forever.
4. collect: keep interleaving.

The rule is meant to be evaluated once per collection period (day); evaluating it after every
request would test many times and make a chance decision more likely than the interval's 5%.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from statistics import NormalDist

from ltr_core.interleaving import Credit

CONFIDENCE = 0.95
NULL_SHARE = 0.5
MIN_EVIDENCE = 30  # LTR_INTERLEAVE_MIN_EVIDENCE's default


class Decision(StrEnum):
    PROMOTE = "promote"
    RETIRE = "retire"
    COLLECT = "collect"


@dataclass(frozen=True)
class InterleavingCounts:
    """What a comparison has collected: outcomes of clicked requests (from the candidate's
    side) and, over every interleaved request, each team's clicks and shown candidates."""

    wins: int  # the candidate won
    losses: int  # live won
    ties: int
    without_click: int = 0  # interleaved requests with no click (no evidence)
    live_clicks: float = 0.0
    live_shown: int = 0
    candidate_clicks: float = 0.0
    candidate_shown: int = 0
    settled_only: int = 0  # clicked only on settled candidates (no evidence)

    def __post_init__(self) -> None:
        for name in (
            "wins",
            "losses",
            "ties",
            "without_click",
            "live_clicks",
            "live_shown",
            "candidate_clicks",
            "candidate_shown",
            "settled_only",
        ):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be non-negative, got {getattr(self, name)!r}")

    @property
    def requests(self) -> int:
        """Requests with a click on a contested candidate: the evidence."""
        return self.wins + self.losses + self.ties

    @property
    def clicked_requests(self) -> int:
        """Requests with any click: the evidence and those clicked only on settled candidates."""
        return self.requests + self.settled_only


def tally(credits: Iterable[Credit]) -> InterleavingCounts:
    """Sum per-request credits (`ltr_core.interleaving.credit`) into counts."""
    wins = losses = ties = without_click = settled_only = live_shown = candidate_shown = 0
    live_clicks = candidate_clicks = 0.0
    for c in credits:
        winner = c.winner
        if winner == "candidate":
            wins += 1
        elif winner == "live":
            losses += 1
        elif winner == "tie":
            ties += 1
        elif c.settled_clicks > 0:
            settled_only += 1
        else:
            without_click += 1
        live_clicks += c.live
        candidate_clicks += c.candidate
        live_shown += c.live_shown
        candidate_shown += c.candidate_shown
    return InterleavingCounts(
        wins,
        losses,
        ties,
        without_click,
        live_clicks,
        live_shown,
        candidate_clicks,
        candidate_shown,
        settled_only,
    )


@dataclass(frozen=True)
class WinShare:
    """The candidate's win share with ties counted half, its interval, and each team's
    click-through (clicks per shown candidate; None when the team showed nothing)."""

    clicked: int  # clicked requests, the evidence and those clicked only on settled candidates
    requests: int  # the evidence
    wins: int
    losses: int
    ties: int
    share: float | None  # None without evidence
    low: float
    high: float
    confidence: float
    live_ctr: float | None
    candidate_ctr: float | None


def win_share(counts: InterleavingCounts, *, confidence: float = CONFIDENCE) -> WinShare:
    """The share and its Wilson score interval with ties (module docstring). With no clicked
    request the share is None and the interval the whole of [0, 1]."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence!r}")
    n = counts.requests
    share: float | None = None
    low, high = 0.0, 1.0
    if n > 0:
        share = (counts.wins + counts.ties / 2.0) / n
        low, high = _wilson_with_ties(share, counts.ties / n, n, confidence)
    return WinShare(
        clicked=counts.clicked_requests,
        requests=n,
        wins=counts.wins,
        losses=counts.losses,
        ties=counts.ties,
        share=share,
        low=low,
        high=high,
        confidence=confidence,
        live_ctr=_ratio(counts.live_clicks, counts.live_shown),
        candidate_ctr=_ratio(counts.candidate_clicks, counts.candidate_shown),
    )


def _wilson_with_ties(
    share: float, tie_rate: float, n: int, confidence: float
) -> tuple[float, float]:
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    z2 = z * z
    variance = max(0.0, share * (1.0 - share) - tie_rate / 4.0)
    centre = share + z2 / (2.0 * n)
    half = z * math.sqrt(variance / n + z2 * (1.0 - tie_rate) / (4.0 * n * n))
    scale = 1.0 + z2 / n
    return max(0.0, (centre - half) / scale), min(1.0, (centre + half) / scale)


def _ratio(numerator: float, denominator: int) -> float | None:
    return numerator / denominator if denominator > 0 else None


@dataclass(frozen=True)
class OnlineDecision:
    """The decision, why, and the evidence it rests on."""

    decision: Decision
    reason: str
    evidence: WinShare
    days_collecting: float
    timed_out: bool = False  # retired because `max_days` passed without evidence either way


def decide(
    counts: InterleavingCounts,
    *,
    days_collecting: float,
    min_requests: int,
    margin: float,
    max_days: float,
    confidence: float = CONFIDENCE,
    days_unserved: float | None = None,
    min_evidence: int = MIN_EVIDENCE,
) -> OnlineDecision:
    """Promote, retire or keep collecting (the rule and its order in the module docstring).

    `days_collecting` is how long the candidate has been interleaved; `min_requests` the clicked
    requests a promotion needs; `margin` how far below 0.5 the lower bound may be for the
    candidate to count as not worse; `min_evidence` the requests of evidence it needs;
    `max_days` when an undecided comparison ends;
    `days_unserved`, for a candidate not interleaved yet, how long it has waited for it."""
    if min_requests < 0 or min_evidence < 0:
        raise ValueError(f"min_requests and min_evidence must be non-negative, got "
                         f"{min_requests}, {min_evidence}")  # fmt: skip
    if not 0.0 <= margin < NULL_SHARE:
        raise ValueError(f"margin must lie in [0, 0.5), got {margin!r}")
    if not max_days > 0:
        raise ValueError(f"max_days must be positive, got {max_days!r}")
    if not days_collecting >= 0:
        raise ValueError(f"days_collecting must be non-negative, got {days_collecting!r}")
    ev = win_share(counts, confidence=confidence)
    level = f"{confidence:.0%}"
    summary = (
        f"{ev.clicked} clicked requests, {ev.requests} where the rankings differ "
        f"({ev.wins} won, {ev.losses} lost, {ev.ties} tied), "
        f"{level} interval [{ev.low:.3f}, {ev.high:.3f}]"
    )
    timed_out = False
    if ev.requests > 0 and ev.high < NULL_SHARE:
        decision, reason = Decision.RETIRE, f"worse than live: upper bound below 0.5; {summary}"
    elif (
        ev.clicked >= min_requests and ev.requests >= min_evidence and ev.low >= NULL_SHARE - margin
    ):
        decision = Decision.PROMOTE
        reason = f"not worse than live: lower bound ≥ 0.5 − {margin:g}; {summary}"
    elif days_collecting >= max_days:
        decision, timed_out = Decision.RETIRE, True
        reason = f"undecided after {days_collecting:g} days (limit {max_days:g}); {summary}"
    elif days_unserved is not None and days_unserved >= max_days:
        decision, timed_out = Decision.RETIRE, True
        reason = (
            f"not interleaved {days_unserved:g} days after it was set (limit {max_days:g}): "
            "is serving following the registry?"
        )
    else:
        missing = []
        if days_unserved is not None:
            missing.append("serving to interleave it")
        if ev.clicked < min_requests:
            missing.append(f"{min_requests - ev.clicked} more clicked requests")
        if ev.requests < min_evidence:
            missing.append(f"{min_evidence - ev.requests} more where the rankings differ")
        if ev.low < NULL_SHARE - margin:
            missing.append(f"a lower bound ≥ 0.5 − {margin:g}")
        decision = Decision.COLLECT
        reason = f"collecting: needs {' and '.join(missing)}; {summary}"
    return OnlineDecision(decision, reason, ev, float(days_collecting), timed_out)
