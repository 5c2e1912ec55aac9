"""Which policy serves a request, and the swap interventions of exploration.

Swap interventions (Joachims, Swaminathan & Schnabel, "Unbiased Learning-to-Rank with Biased
Feedback", WSDM 2017, section 5): a small share of requests is shown the deterministic ranking
with ONE swap, positions 1 and k exchanged. Because the swap is assigned at random, the
candidate that would have been at rank 1 is, on average over requests, equally relevant whether
it is shown at 1 or at k, so comparing clicks between the two conditions measures the position
effect alone (`ltr_assets.learning.interventions` estimates the examination curve from them).

Assignment. Every decision is a function of the request id and a salt, never of process state:
blake2b over (salt, request id) gives a 24-byte digest read as three independent 64-bit words,

    word 0 -> u ∈ [0, 1)  which policy serves the request (`assign_policy`)
    word 1 -> k           the swapped position, if the request is swapped
    word 2 -> a seed      the interleaving coin flips (`request_seed`)

so any process (serving replica, pipeline, test) reproduces the same decision for the same id.
Python's hash() is never used: it is salted per process.

The unit interval is split into disjoint ranges, swap at the bottom and interleaving at the top:

    u < explore_rate                          -> "swap"
    u ≥ 1 − interleave_rate                   -> "interleaved"
    otherwise                                 -> "deterministic"

with explore_rate + interleave_rate ≤ 1. Anchoring the two ranges at opposite ends means that
changing one rate only moves requests between that branch and "deterministic": raising the
exploration rate never reshuffles which requests are interleaved, and vice versa.

The swap. A request in the swap range with n ≥ 2 shown candidates exchanges positions 1 and k,
k uniform in 2..m, m = min(n, max_position) (k from word 1, by the multiply-shift map
2 + ⌊word · (m − 1) / 2^64⌋, whose bias is below (m − 1)/2^64). A list of one is never swapped.

What is logged. Per shown candidate:

- ``policy``: the branch the request took, the same for every candidate of the request:
  "swap" if the request was swapped (including the candidates the swap did not move), else
  "deterministic" (a request in the swap range whose list has one candidate is "deterministic").
- ``propensity``: the probability, under the exploration logging policy and given the request's
  deterministic order and list length, that this candidate is shown at this position. It is the
  marginal over the branch (what inverse-propensity weighting needs), not the probability of the
  realised branch. With ρ the swap probability of a request served by this policy, and
  m = min(n, max_position):

      deterministic rank 1 at position 1        1 − ρ·[n ≥ 2]
      rank 1 at position k (2 ≤ k ≤ m)           ρ/(m − 1)
      rank k at position 1 (2 ≤ k ≤ m)           ρ/(m − 1)
      rank j at position j (2 ≤ j ≤ m)           1 − ρ/(m − 1)
      rank j at position j (j > m)               1

  ρ is conditional on the request not being interleaved: interleaved requests are served and
  logged by `ltr_core.interleaving` (with their own propensities), so the exploration policy
  serves the share 1 − interleave_rate of requests and swaps ρ = explore_rate / (1 −
  interleave_rate) of those. With interleaving off, ρ = explore_rate.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, TypeVar

from ltr_core.vocabulary import LoggingPolicy

Policy = LoggingPolicy  # declared once, in ltr_core.vocabulary
ExplorationPolicy = Literal["deterministic", "swap"]  # what plan_exploration can log

DEFAULT_SALT = "ltr-online-v1"  # changing it re-draws every request's assignment
DEFAULT_MAX_POSITION = 10

_WORD = 8  # bytes per 64-bit word of the digest
_WORDS = 3
_TWO_64 = 1 << 64
_RATE_SLACK = 1e-12  # explore_rate + interleave_rate may exceed 1 by rounding only

T = TypeVar("T")


def validate_rates(explore_rate: float, interleave_rate: float = 0.0) -> None:
    """Raise ValueError unless each rate lies in [0, 1] and their sum is at most 1."""
    for name, rate in (("explore_rate", explore_rate), ("interleave_rate", interleave_rate)):
        if not 0.0 <= rate <= 1.0:  # also refuses NaN
            raise ValueError(f"{name} must lie in [0, 1], got {rate!r}")
    if explore_rate + interleave_rate > 1.0 + _RATE_SLACK:
        raise ValueError(
            "explore_rate + interleave_rate must be at most 1 (their hash ranges are disjoint), "
            f"got {explore_rate!r} + {interleave_rate!r}"
        )


def _digest(request_id: str, salt: str) -> bytes:
    """blake2b of the salt and the request id; the salt is length-prefixed so that no
    (salt, id) pair collides with another by concatenation."""
    if not isinstance(request_id, str):
        raise TypeError(f"request ids are strings, got {type(request_id).__name__}")
    payload = f"{len(salt)}:{salt}{request_id}".encode()
    return hashlib.blake2b(payload, digest_size=_WORD * _WORDS).digest()


def _word(digest: bytes, index: int) -> int:
    return int.from_bytes(digest[_WORD * index : _WORD * (index + 1)], "big")


def request_uniform(request_id: str, *, salt: str = DEFAULT_SALT) -> float:
    """The request's uniform draw u ∈ [0, 1) that `assign_policy` compares with the rates."""
    return _word(_digest(request_id, salt), 0) / _TWO_64


def request_seed(request_id: str, *, salt: str = DEFAULT_SALT) -> int:
    """A 64-bit seed for the request's interleaving coin flips (independent of u and k)."""
    return _word(_digest(request_id, salt), 2)


def assign_policy(
    request_id: str, explore_rate: float, interleave_rate: float, *, salt: str = DEFAULT_SALT
) -> Policy:
    """The branch that serves the request: "swap" if u < explore_rate, "interleaved" if
    u ≥ 1 − interleave_rate, else "deterministic" (module docstring). Rates are validated."""
    validate_rates(explore_rate, interleave_rate)
    u = request_uniform(request_id, salt=salt)
    if u < explore_rate:
        return "swap"
    if u >= 1.0 - interleave_rate:
        return "interleaved"
    return "deterministic"


def swap_rate(explore_rate: float, interleave_rate: float) -> float:
    """ρ: the probability that a request served by the exploration policy (not interleaved) is
    in the swap range, explore_rate / (1 − interleave_rate); 0 if every request is interleaved."""
    validate_rates(explore_rate, interleave_rate)
    if interleave_rate >= 1.0:
        return 0.0
    return min(1.0, explore_rate / (1.0 - interleave_rate))


def swap_propensity(rank: int, position: int, n: int, rate: float, max_position: int) -> float:
    """P(the candidate at deterministic `rank` is shown at `position`) under the swap policy
    with swap probability `rate` (ρ), for a list of n candidates (table in the module
    docstring). Ranks and positions are 1-based."""
    _check_list(n, max_position)
    if not (1 <= rank <= n and 1 <= position <= n):
        raise ValueError(f"rank {rank} and position {position} must lie in 1..{n}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"the swap rate must lie in [0, 1], got {rate!r}")
    return _propensity(rank, position, min(n, max_position), rate)


def _propensity(rank: int, position: int, m: int, rate: float) -> float:
    """The table of the module docstring, for valid arguments and m = min(n, max_position)."""
    if m < 2:  # a list of one is never swapped
        return 1.0
    per_k = rate / (m - 1)
    if rank == position:
        if rank == 1:
            return 1.0 - rate
        return 1.0 - per_k if rank <= m else 1.0
    if (rank == 1 and position <= m) or (position == 1 and rank <= m):
        return per_k
    return 0.0


@dataclass(frozen=True)
class ExplorationPlan:
    """How one request served by the exploration policy is shown and what to log for it.

    ``ranks[p - 1]`` is the deterministic rank (1-based) of the candidate shown at position p,
    ``propensities[p - 1]`` its logged propensity; ``policy`` is logged on every row."""

    policy: ExplorationPolicy
    swap_position: int | None  # k when positions 1 and k were exchanged
    ranks: tuple[int, ...]
    propensities: tuple[float, ...]
    swap_rate: float  # ρ the propensities were computed with

    def apply(self, ranked: Sequence[T]) -> list[T]:
        """The shown list: `ranked` (in deterministic order) permuted by the plan."""
        if len(ranked) != len(self.ranks):
            raise ValueError(f"the plan is for {len(self.ranks)} candidates, got {len(ranked)}")
        return [ranked[r - 1] for r in self.ranks]


def plan_exploration(
    request_id: str,
    n: int,
    *,
    explore_rate: float,
    interleave_rate: float = 0.0,
    max_position: int = DEFAULT_MAX_POSITION,
    salt: str = DEFAULT_SALT,
) -> ExplorationPlan:
    """The permutation and the logged policy and propensities of a request's n shown candidates.

    Serving calls `assign_policy` first; a request in the interleaving range is served by
    `ltr_core.interleaving`, and asking for its exploration plan raises ValueError."""
    _check_list(n, max_position)
    policy = assign_policy(request_id, explore_rate, interleave_rate, salt=salt)
    if policy == "interleaved":
        raise ValueError(
            f"request {request_id!r} is in the interleaving range; serve it with "
            "ltr_core.interleaving"
        )
    rate = swap_rate(explore_rate, interleave_rate)
    m = min(n, max_position)
    k: int | None = None
    if policy == "swap" and m >= 2:
        word = _word(_digest(request_id, salt), 1)
        k = 2 + ((word * (m - 1)) >> 64)
    return _plan(n, k, m, rate)


@lru_cache(maxsize=4096)
def _plan(n: int, k: int | None, m: int, rate: float) -> ExplorationPlan:
    """The plan of every request with n candidates and swap position k (None: not swapped):
    the same for all of them, so the impression log computes each once (immutable)."""
    ranks = list(range(1, n + 1))
    if k is not None:
        ranks[0], ranks[k - 1] = k, 1
    propensities = tuple(_propensity(r, p, m, rate) for p, r in enumerate(ranks, start=1))
    return ExplorationPlan(
        policy="swap" if k is not None else "deterministic",
        swap_position=k,
        ranks=tuple(ranks),
        propensities=propensities,
        swap_rate=rate,
    )


def _check_list(n: int, max_position: int) -> None:
    if n < 0:
        raise ValueError(f"a list has at least 0 candidates, got {n}")
    if max_position < 2:
        raise ValueError(
            f"max_position must be at least 2 (swaps exchange 1 and k), got {max_position}"
        )
