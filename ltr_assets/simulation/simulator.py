"""A simulator of the lawyer-matching platform: the demo's, tests' and benchmarks' event source.

It draws cases and lawyers, shows each case a list of 5-30 candidates and draws feedback from a
hidden true utility. It is meant to be a hard, honest judge of the learning, so the feedback
carries the biases of a real platform's logs:

- Position bias: a candidate at rank k is examined with probability θ_k = k^-η
  (`ClickModel.position_bias` η; η = 1 gives θ_10 = 0.1), or any curve given as a table
  (`ClickModel.curve`, e.g. a page break), to judge the pipeline on a curve that is no power law.
- Click noise and trust bias: an examined irrelevant candidate is clicked with probability
  ε⁻_k = noise_click + trust_bias·θ_k (users click the platform's top picks more readily); an
  examined relevant one with ε⁺ = relevant_click, the same at every position. So the click
  probability is affine in relevance, P(click | k, x) = α_k·P(R | x) + β_k with α_k + β_k =
  θ_k·ε⁺: the examination curve is identifiable from logs (`ltr_assets.learning.propensity`).
- Noisy features: the features the platform logs (and rankers see) are the true ones plus noise.
- Drift: the true utility's coefficients move slowly (a slow sine per term) across days.
- The feedback loop: `day_events(day, ranker=…)` shows each list in the order of the given
  ranker (the live version); without one, in the platform's own order (v2.8). Or the lists are
  ranked elsewhere, by the real ranking service: `day_cases(day)` gives a day's cases and
  candidates unranked, and `day_users(day).respond…(case, shown order)` the users' feedback on
  the list as it was shown, under the same click model
  (`ltr_assets.simulation.through_service` drives `POST /rank` and `POST /feedback` with them).
- Optionally, users blind to who is shown (`ClickModel.blind`): position-biased clicks that
  carry no relevance at all, the logs of bots or of feedback joined to the wrong candidates.
- Optionally, cascade users (`ClickModel.cascade`): they stop scanning at their first click,
  a user model other than the position-based one the pipeline fits.
- Optionally, clients biased against a group of lawyers (one attribute value or an
  intersection such as ``gender=F&ethnicity=preta``): lower client-made features and feedback
  for that group, while its true utility is unchanged.

It knows the truth of every candidate (`truth`): the true utility, the true expected gain of an
examined candidate, E[2^label − 1] without trust-bias clicks (what the true nDCG@5 is computed
from), the position shown, and an unbiased label drawn as if every candidate had been examined
and clicked only for relevance (to train an "oracle" for benchmarks). Protected attributes are
drawn independently of each other and of lawyer quality. Deterministic for a seed: each day has
its own random streams, so any day can be generated alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import numpy as np

from ltr_core.exploration import DEFAULT_MAX_POSITION, plan_exploration
from ltr_core.features import FEATURES, FEEDBACK, RECOMMENDATION

ENVELOPES = ("flat", "audit")
PLATFORM_VERSION = "v2.8"

_ETHNICITIES = ("branca", "parda", "preta", "amarela", "indigena")
_ORIENTATIONS = ("heterossexual", "homossexual", "bissexual")
_LAWYER_FEATURES = ("T", "Q", "R", "C", "E", "M")  # properties of the lawyer
_PRESETS = ("balanced", "quality", "price")
_CLIENT_RATED = ("R", "C", "T")  # features that clients' judgement feeds

# Relevance: P(R = 1 | u) = sigmoid((u − threshold) / scale); an examined relevant candidate is
# clicked with ε⁺, then contacted and contracted with probabilities that rise with the utility.
_RELEVANCE_THRESHOLD = 2.95  # about the 80th percentile of the utility
_RELEVANCE_SCALE = 0.2
_CONTACT_THRESHOLD = 3.2
_CONTRACT_THRESHOLD = 3.5
_NOISE_CONTACT = 0.05  # a click on an irrelevant candidate rarely goes further
_DECLINE = 0.15  # an examined, unclicked candidate is explicitly declined this often
_UTILITY_NOISE = 0.15  # what about a case-lawyer pair no feature shows

Ranker = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ClickModel:
    """How users examine and click a shown list (see the module docstring)."""

    position_bias: float = 1.0  # η in θ_k = k^-η; 0 means every candidate is examined
    relevant_click: float = 0.95  # ε⁺
    noise_click: float = 0.03  # ε⁻ at every examined position ...
    trust_bias: float = 0.04  # ... plus this much × θ_k
    # Another shape instead of the power law: θ_1, θ_2, … (positions past its end take its
    # last value), e.g. a page break; `position_bias` is then unused.
    curve: tuple[float, ...] | None = None
    # Users blind to who is shown (bots, or feedback joined to the wrong lawyers): they examine
    # as above but click, contact and contract every candidate alike, at the rates of one at
    # the relevance threshold. The truth is unchanged: the clicks just say nothing about it.
    blind: bool = False
    # Cascade users: they stop scanning at their first click, so nothing below it is examined
    # (examination then depends on what was shown above, unlike the position-based model).
    cascade: bool = False

    def examination(self, positions: np.ndarray) -> np.ndarray:
        if self.curve is not None:
            table = np.asarray(self.curve, dtype=np.float64)
            index = np.minimum(np.asarray(positions, dtype=np.int64), table.size) - 1
            theta: np.ndarray = table[index]
            return theta
        return np.power(np.asarray(positions, dtype=np.float64), -self.position_bias)

    def noise(self, positions: np.ndarray) -> np.ndarray:
        return self.noise_click + self.trust_bias * self.examination(positions)


@dataclass(frozen=True)
class SimulatorConfig:
    start: date
    days: int
    seed: int = 0
    requests_per_day: int = 400
    lawyers: int = 400
    min_candidates: int = 5
    max_candidates: int = 30
    click_model: ClickModel = field(default_factory=ClickModel)
    feature_noise: float = 0.05  # sd of the noise on logged features
    drift: float = 0.15  # relative amplitude of each utility term's slow drift
    drift_period_days: float = 90.0
    # Clients' bias against a group: "attribute=value", or an intersection joined by "&"
    # ("gender=F&ethnicity=preta"). It lowers that group's client-made features (reviews R,
    # soft skills C, success rate T) by the factor (1 − 0.3·strength) and the utility clients
    # perceive by `strength` × 0.2 utility units, while the true utility is unchanged. Off by
    # default.
    bias_against: str | None = None
    bias_strength: float = 1.0


# The terms of the hidden utility and their base coefficients; the drift moves each coefficient.
_TERMS: tuple[tuple[str, float, Callable[[dict[str, np.ndarray]], np.ndarray]], ...] = (
    ("area_x_similarity", 2.0, lambda x: x["A"] * x["S"]),
    ("success_squared", 1.4, lambda x: x["T"] ** 2),
    ("geography", 0.8, lambda x: 1.0 / (1.0 + np.exp(-10.0 * (x["G"] - 0.4)))),
    ("qualification", 0.7, lambda x: x["Q"]),
    ("reviews_x_soft_skills", 0.6, lambda x: x["R"] * x["C"]),
    ("reputation", 0.4, lambda x: x["E"]),
    ("urgency_and_price", 0.5, lambda x: np.minimum(x["U"], x["P"])),
    ("maturity", 0.2, lambda x: x["M"]),
)


def utility_coefficients(day: date, drift: float, period_days: float) -> np.ndarray:
    """The utility's coefficients on `day`: each drifts slowly with its own phase."""
    base = np.array([c for _, c, _ in _TERMS])
    if drift <= 0:
        return base
    phases = np.arange(len(_TERMS)) * 2.0 * math.pi / len(_TERMS)
    angle = 2.0 * math.pi * day.toordinal() / period_days + phases
    return base * (1.0 + drift * np.sin(angle))


def true_utility(x: dict[str, np.ndarray], coefficients: np.ndarray | None = None) -> np.ndarray:
    """The hidden utility of candidates (arrays per feature code): non-linear on purpose."""
    weights = np.array([c for _, c, _ in _TERMS]) if coefficients is None else coefficients
    utility: np.ndarray = sum(w * term(x) for w, (_, _, term) in zip(weights, _TERMS, strict=True))
    return utility


def _sigmoid(z: np.ndarray) -> np.ndarray:
    sigmoid: np.ndarray = 1.0 / (1.0 + np.exp(-z))
    return sigmoid


def relevance_probability(utility: np.ndarray) -> np.ndarray:
    return _sigmoid((np.asarray(utility) - _RELEVANCE_THRESHOLD) / _RELEVANCE_SCALE)


def _contact_probability(utility: np.ndarray) -> np.ndarray:
    return _sigmoid((np.asarray(utility) - _CONTACT_THRESHOLD) / _RELEVANCE_SCALE)


def _contract_probability(utility: np.ndarray) -> np.ndarray:
    return _sigmoid((np.asarray(utility) - _CONTRACT_THRESHOLD) / _RELEVANCE_SCALE)


def expected_gain(utility: np.ndarray, relevant_click: float) -> np.ndarray:
    """E[2^label − 1] of an examined candidate clicked only for relevance: the true gain."""
    click = relevance_probability(utility) * relevant_click
    contact = _contact_probability(utility)
    contract = _contract_probability(utility)
    # label 1 (click only) gains 1, label 2 (contact) 3, label 3 (contract) 7
    gain: np.ndarray = click * (
        (1 - contact) * 1.0 + contact * (1 - contract) * 3.0 + contact * contract * 7.0
    )
    return gain


# The platform's current scorer (v2.8): a plain weighted sum that misjudges the utility.
PLATFORM_WEIGHTS = {
    "A": 0.20,
    "S": 0.05,
    "T": 0.10,
    "G": 0.05,
    "Q": 0.15,
    "U": 0.05,
    "R": 0.15,
    "C": 0.05,
    "E": 0.10,
    "P": 0.05,
    "M": 0.05,
}
_PLATFORM_VECTOR = np.array([PLATFORM_WEIGHTS[f] for f in FEATURES])


def platform_ranker(matrix: np.ndarray) -> np.ndarray:
    """The platform's own scorer (v2.8) on a candidates × FEATURES matrix."""
    scores: np.ndarray = np.asarray(matrix) @ _PLATFORM_VECTOR
    return scores


# Protected attribute -> (values, probabilities); None stands for "not declared".
ATTRIBUTE_DISTRIBUTIONS: dict[str, tuple[tuple[Any, ...], tuple[float, ...]]] = {
    "gender": ((None, "F", "M"), (0.08, 0.50, 0.42)),
    "ethnicity": ((None, *_ETHNICITIES), (0.15, 0.38, 0.26, 0.13, 0.05, 0.03)),
    "pcd": ((None, False, True), (0.20, 0.72, 0.08)),
    "orientation": ((None, *_ORIENTATIONS), (0.60, 0.32, 0.05, 0.03)),
}


@dataclass
class _Lawyers:
    ids: list[str]
    intrinsic: dict[str, np.ndarray]  # feature code -> per-lawyer value
    groups: list[dict[str, Any]]


def intrinsic_merit(intrinsic: dict[str, np.ndarray]) -> np.ndarray:
    """The part of the true utility a lawyer brings to every case (the lawyer's own terms at
    their base coefficients): what "as qualified as the others" means for a group."""
    x = intrinsic
    merit: np.ndarray = (
        1.4 * x["T"] ** 2 + 0.7 * x["Q"] + 0.6 * x["R"] * x["C"] + 0.4 * x["E"] + 0.2 * x["M"]
    )
    return merit


def _stratified_values(
    quality_order: np.ndarray,
    values: tuple[Any, ...],
    probabilities: tuple[float, ...],
    rng: np.random.Generator,
) -> list[Any]:
    """One value per lawyer, spread evenly over the merit ranking: walking the lawyers from best
    to worst in blocks of 20, each block gets the values in their proportions, shuffled within
    the block (carried-over remainders keep the overall proportions). So no value is better or
    worse qualified than another by chance (with 400 lawyers a 3% value has 12 members, whose
    merit drawn at random would differ from the rest's by chance), and with a stream of its
    own per attribute, attributes are independent of each other."""
    n = len(quality_order)
    out: list[Any] = [None] * n
    probs = np.asarray(probabilities)
    owed = np.zeros(len(values))
    block = 20
    for start in range(0, n, block):
        members = quality_order[start : start + block]
        owed += probs * len(members)
        counts = np.floor(owed).astype(int)
        while counts.sum() < len(members):  # hand the remainder to the most owed values
            counts[np.argmax(owed - counts)] += 1
        owed -= counts
        picks = np.repeat(np.arange(len(values)), counts)
        rng.shuffle(picks)
        for lawyer, pick in zip(members, picks, strict=True):
            out[int(lawyer)] = values[int(pick)]
    return out


def _lawyers(config: SimulatorConfig) -> _Lawyers:
    """Lawyers with intrinsic features and protected attributes drawn independently of each
    other and of merit (each attribute stratified over merit on its own random stream)."""
    n = config.lawyers
    rng = np.random.default_rng([config.seed, 0])
    intrinsic = {code: rng.beta(2.0, 2.0, n) for code in _LAWYER_FEATURES}
    order = np.argsort(-intrinsic_merit(intrinsic), kind="stable")
    columns: dict[str, list[Any]] = {}
    for index, (attribute, (values, probabilities)) in enumerate(ATTRIBUTE_DISTRIBUTIONS.items()):
        stream = np.random.default_rng([config.seed, 3, index])
        columns[attribute] = _stratified_values(order, values, probabilities, stream)
    groups = [{attribute: columns[attribute][i] for attribute in columns} for i in range(n)]
    return _Lawyers([f"l-{i:05d}" for i in range(n)], intrinsic, groups)


def parse_bias_target(text: str) -> tuple[tuple[str, str], ...]:
    """ "gender=F&ethnicity=preta" -> (("gender", "F"), ("ethnicity", "preta"))."""
    target = []
    for part in text.split("&"):
        attribute, sep, value = part.partition("=")
        if not sep or not attribute.strip() or not value.strip():
            raise ValueError(f"bias target {text!r}: expected attribute=value[&attribute=value]")
        attribute, value = attribute.strip(), value.strip()
        if attribute not in ATTRIBUTE_DISTRIBUTIONS:
            known = ", ".join(ATTRIBUTE_DISTRIBUTIONS)
            raise ValueError(f"bias target {text!r}: unknown attribute {attribute!r} ({known})")
        values = [attribute_text(v) for v in ATTRIBUTE_DISTRIBUTIONS[attribute][0] if v is not None]
        if value not in values:  # it would match no lawyer: a run without bias, silently
            known = ", ".join(map(str, values))
            raise ValueError(f"bias target {text!r}: {attribute} has no value {value!r} ({known})")
        target.append((attribute, value))
    return tuple(target)


def attribute_text(value: Any) -> str | None:
    """A protected attribute value as the lake stores it (booleans as "true"/"false")."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class Candidate:
    """What the simulator knows of one shown candidate."""

    request_id: str
    case_id: str
    lawyer_id: str
    utility: float  # the true utility (no client bias)
    gain: float  # E[2^label − 1] if examined, clicked only for relevance: the true gain
    position: int  # where it was shown
    unbiased_label: int  # a label drawn as if examined, without trust-bias clicks


TRUTH_COLUMNS = ("request_id", "lawyer_id", "utility", "gain", "shown_position", "unbiased_label")


@dataclass(frozen=True)
class SimCase:
    """One case of a day with its candidates, before anyone ranks them (`Simulator.day_cases`).
    Arrays are per candidate, in the candidates' (request) order."""

    request_id: str
    case_id: str
    shown_at: datetime  # when the list is asked for and shown
    preset: str
    lawyer_ids: list[str]
    groups: list[dict[str, Any]]  # protected attributes (None: not declared)
    features: np.ndarray  # candidates × FEATURES, as the platform logs them (noisy, rounded)
    utility: np.ndarray  # the true utility (no client bias)
    perceived: np.ndarray  # the utility the (possibly biased) clients perceive
    gains: np.ndarray  # the true gain of an examined candidate
    unbiased: np.ndarray  # labels drawn as if examined, without trust-bias clicks
    tiebreak: np.ndarray  # random keys that break the ties of a ranker's scores

    def feature_dict(self, index: int) -> dict[str, float]:
        return {c: float(v) for c, v in zip(FEATURES, self.features[index], strict=True)}


class DayUsers:
    """The users of one day (`Simulator.day_users`): each shown list is examined and acted on
    under the simulator's click model (position bias, trust bias, click noise), and what was
    shown where is recorded in the simulator's `truth`. Their draws come from one stream per
    day, so the lists must be shown in the order of `day_cases` for `day_events` to be
    reproduced; any order gives valid feedback."""

    def __init__(self, simulator: Simulator, day: date) -> None:
        self.simulator = simulator
        cfg = simulator.config
        self._rng = np.random.default_rng([cfg.seed, 4, day.toordinal()])

    def respond(self, case: SimCase, order: Sequence[int]) -> list[list[dict[str, Any]]]:
        """The feedback events on the case's list shown in `order` (candidate indices, best
        first), one list per shown position; records each shown candidate in the truth."""
        n = len(case.lawyer_ids)
        if sorted(order) != list(range(n)):
            raise ValueError(f"{case.request_id}: an order shows each of the {n} candidates once")
        simulator = self.simulator
        positions = np.empty(n, dtype=np.int64)
        positions[np.asarray(order, dtype=np.int64)] = np.arange(1, n + 1)
        actions = simulator._actions(self._rng.random((n, 5)), positions, case.perceived)
        out: list[list[dict[str, Any]]] = []
        for position, idx in enumerate(order, start=1):
            lawyer = case.lawyer_ids[idx]
            simulator.truth.append(
                Candidate(
                    case.request_id,
                    case.case_id,
                    lawyer,
                    float(case.utility[idx]),
                    float(case.gains[idx]),
                    position,
                    int(case.unbiased[idx]),
                )
            )
            out.append(
                list(
                    _feedback_events(
                        self._rng,
                        case.request_id,
                        case.case_id,
                        lawyer,
                        position,
                        actions[idx],
                        case.shown_at,
                    )
                )
            )
        return out

    def respond_to_ids(self, case: SimCase, shown: Sequence[str]) -> list[dict[str, Any]]:
        """`respond` to the list as a ranking service returned it (lawyer ids in shown order),
        the feedback events flattened."""
        index = {lawyer: i for i, lawyer in enumerate(case.lawyer_ids)}
        try:
            order = [index[lawyer] for lawyer in shown]
        except KeyError as exc:
            unknown = exc.args[0]
            raise ValueError(f"{case.request_id}: {unknown!r} was not a candidate") from None
        return [event for events in self.respond(case, order) for event in events]


class Simulator:
    """Generates the platform's events day by day; `truth` holds every shown candidate."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self._lawyers = _lawyers(config)
        self._bias = parse_bias_target(config.bias_against) if config.bias_against else ()
        self.truth: list[Candidate] = []
        self._frames: list[Any] = []  # truth_frame's cache: the candidates framed so far
        self._framed = 0

    def truth_frame(self) -> Any:
        """`truth` as a DataFrame with TRUTH_COLUMNS, to join on (request_id, lawyer_id).

        Built incrementally: the candidates framed by an earlier call are kept as frames, only
        those appended since are converted (a demo asks for it every simulated day)."""
        import pandas as pd

        if len(self.truth) < self._framed or not self.truth:  # cut or replaced: start over
            self._frames, self._framed = [], 0
        if not self.truth:
            return pd.DataFrame([], columns=list(TRUTH_COLUMNS))
        new = self.truth[self._framed :]
        if new:
            self._frames.append(
                pd.DataFrame(
                    {
                        "request_id": [c.request_id for c in new],
                        "lawyer_id": [c.lawyer_id for c in new],
                        "utility": np.array([c.utility for c in new], dtype=np.float64),
                        "gain": np.array([c.gain for c in new], dtype=np.float64),
                        "shown_position": np.array([c.position for c in new], dtype=np.int64),
                        "unbiased_label": np.array([c.unbiased_label for c in new], dtype=np.int64),
                    },
                    columns=list(TRUTH_COLUMNS),
                )
            )
            self._framed = len(self.truth)
            if len(self._frames) > 1:
                self._frames = [pd.concat(self._frames, ignore_index=True)]
        return self._frames[0].copy()

    def days(self) -> list[date]:
        return [self.config.start + timedelta(days=i) for i in range(self.config.days)]

    def events(self) -> list[dict[str, Any]]:
        """All days' events in the flat envelope, in the platform's order (no live model),
        ordered by time (late feedback included)."""
        out: list[dict[str, Any]] = []
        for day in self.days():
            out.extend(self.day_events(day))
        out.sort(key=lambda e: (e["timestamp"], e["event_id"]))
        return out

    def biased(self, groups: dict[str, Any]) -> bool:
        """Whether the clients' bias targets a lawyer with these protected attributes."""
        if not self._bias:
            return False
        return all(attribute_text(groups.get(a)) == v for a, v in self._bias)

    def day_events(
        self,
        day: date,
        ranker: Ranker | None = None,
        version: str = PLATFORM_VERSION,
        *,
        explore_rate: float = 0.0,
        max_position: int = DEFAULT_MAX_POSITION,
    ) -> list[dict[str, Any]]:
        """The events of the requests made on `day` (their feedback may fall on the next day),
        each list shown in the order of `ranker` (the live version; default the platform's).

        With `explore_rate` > 0 the lists are shown as the ranking service's exploration shows
        them (`ltr_core.exploration.plan_exploration`: that share of requests, chosen by a
        hash of the request id, get positions 1 and k swapped, k uniform in
        2..min(n, `max_position`)), and every impression carries what the service logs of its
        policy: `policy`, `propensity` and `deterministic_rank`.

        The same as showing each of `day_cases(day)` in the ranker's order to `day_users(day)`
        (which is what it does): a list shown by the real ranking service instead
        (`ltr_assets.simulation.through_service`) meets the same users."""
        ranker = ranker or platform_ranker
        users = self.day_users(day)
        events: list[dict[str, Any]] = []
        for case in self.day_cases(day):
            scores = np.asarray(ranker(case.features), dtype=np.float64)
            # ties at random, never by input order
            order = np.lexsort((case.tiebreak, -scores)).tolist()
            plan = None
            if explore_rate > 0.0:
                plan = plan_exploration(
                    case.request_id,
                    len(order),
                    explore_rate=explore_rate,
                    max_position=max_position,
                )
                order = plan.apply(order)
            feedback = users.respond(case, order)
            for position, idx in enumerate(order, start=1):
                event_time = case.shown_at + timedelta(milliseconds=position)
                events.append(
                    {
                        "event_id": f"e-{case.request_id}-{position:02d}",
                        "event_type": RECOMMENDATION,
                        "timestamp": _iso(event_time),
                        "request_id": case.request_id,
                        "case_id": case.case_id,
                        "lawyer_id": case.lawyer_ids[idx],
                        "rank_position": position,
                        "features": case.feature_dict(idx),
                        "lawyer_groups": case.groups[idx],
                        "algorithm_version": version,
                        "preset": case.preset,
                        "score": round(float(scores[idx]), 4),
                        **(
                            {}
                            if plan is None
                            else {
                                "policy": plan.policy,
                                "propensity": plan.propensities[position - 1],
                                "deterministic_rank": plan.ranks[position - 1],
                            }
                        ),
                    }
                )
                events.extend(feedback[position - 1])
        return events

    def day_cases(self, day: date) -> list[SimCase]:
        """The cases of `day` with their candidates, not yet ranked: what a client of the
        ranking service sends (features as the platform logs them, protected attributes) and
        what the simulator knows of each candidate (true utility, true gain, unbiased label).
        The same for a day and seed whichever ranker orders them, and however often drawn."""
        cfg = self.config
        model = cfg.click_model
        rng = np.random.default_rng([cfg.seed, 1, day.toordinal()])
        # The unbiased labels have a stream of their own (and the feedback another one, in
        # `day_users`), so the lists and features of a day are the same whichever ranker
        # orders them.
        unbiased_rng = np.random.default_rng([cfg.seed, 5, day.toordinal()])
        lawyers = self._lawyers
        coefficients = utility_coefficients(day, cfg.drift, cfg.drift_period_days)
        midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
        # Business-hours-heavy request times (UTC), sorted.
        hours = np.clip(rng.normal(15.0, 4.5, cfg.requests_per_day), 0.0, 23.999)
        seconds = np.sort(hours * 3600.0)
        cases: list[SimCase] = []
        for i, second in enumerate(seconds):
            n = int(rng.integers(cfg.min_candidates, cfg.max_candidates + 1))
            chosen = rng.choice(len(lawyers.ids), size=n, replace=False)
            x = {code: lawyers.intrinsic[code][chosen].copy() for code in _LAWYER_FEATURES}
            for code in FEATURES:
                if code not in x:
                    x[code] = rng.beta(2.0, 2.0, n)
            utility = true_utility(x, coefficients) + rng.normal(0.0, _UTILITY_NOISE, n)
            biased = np.array([self.biased(lawyers.groups[j]) for j in chosen])
            observed = {
                code: np.clip(x[code] + rng.normal(0.0, cfg.feature_noise, n), 0.0, 1.0)
                for code in FEATURES
            }
            if biased.any():
                factor = max(0.0, 1.0 - 0.3 * cfg.bias_strength)
                for code in _CLIENT_RATED:
                    observed[code] = np.where(biased, observed[code] * factor, observed[code])
            for code in FEATURES:
                observed[code] = np.round(observed[code], 4)
            tiebreak = rng.random(n)
            cases.append(
                SimCase(
                    request_id=f"r-{day:%Y%m%d}-{i:05d}",
                    case_id=f"c-{day:%Y%m%d}-{i:05d}",
                    shown_at=midnight + timedelta(seconds=float(second)),
                    preset=_PRESETS[i % len(_PRESETS)],
                    lawyer_ids=[lawyers.ids[j] for j in chosen],
                    groups=[lawyers.groups[j] for j in chosen],
                    features=np.column_stack([observed[c] for c in FEATURES]),
                    utility=utility,
                    perceived=utility - np.where(biased, 0.2 * cfg.bias_strength, 0.0),
                    gains=expected_gain(utility, model.relevant_click),
                    unbiased=self._unbiased_labels(unbiased_rng.random((n, 4)), utility),
                    tiebreak=tiebreak,
                )
            )
        return cases

    def day_users(self, day: date) -> DayUsers:
        """The users of `day`: they examine and act on each shown list under the click model."""
        return DayUsers(self, day)

    def _actions(
        self, draws: np.ndarray, positions: np.ndarray, utility: np.ndarray
    ) -> list[list[str]]:
        """Each shown candidate's actions under the click model (one row of draws each)."""
        model = self.config.click_model
        if model.blind:
            utility = np.full_like(utility, _RELEVANCE_THRESHOLD)
        examined = draws[:, 0] < model.examination(positions)
        relevant = draws[:, 1] < relevance_probability(utility)
        click_p = np.where(relevant, model.relevant_click, model.noise(positions))
        clicked = examined & (draws[:, 2] < click_p)
        if model.cascade and clicked.any():
            seen = positions <= positions[clicked].min()
            examined, clicked = examined & seen, clicked & seen
        contact_p = np.where(relevant, _contact_probability(utility), _NOISE_CONTACT)
        contacted = clicked & (draws[:, 3] < contact_p)
        contracted = contacted & relevant & (draws[:, 4] < _contract_probability(utility))
        declined = examined & ~clicked & (draws[:, 3] < _DECLINE)
        out: list[list[str]] = []
        for c, t, k, d in zip(clicked, contacted, contracted, declined, strict=True):
            if d:
                out.append(["decline"])
            else:
                out.append(["click", "contact", "contract"][: int(c) + int(t) + int(k)])
        return out

    def _unbiased_labels(self, draws: np.ndarray, utility: np.ndarray) -> np.ndarray:
        """Labels as if every candidate were examined and clicked only for relevance."""
        relevant = draws[:, 0] < relevance_probability(utility)
        clicked = relevant & (draws[:, 1] < self.config.click_model.relevant_click)
        contacted = clicked & (draws[:, 2] < _contact_probability(utility))
        contracted = contacted & (draws[:, 3] < _contract_probability(utility))
        return clicked.astype(np.int64) + contacted + contracted


def _feedback_events(
    rng: np.random.Generator,
    request_id: str,
    case_id: str,
    lawyer: str,
    position: int,
    actions: list[str],
    shown_at: datetime,
) -> Iterator[dict[str, Any]]:
    when = shown_at
    for n, action in enumerate(actions):
        # Minutes to the first action, longer to each next one: some land after midnight.
        when = when + timedelta(minutes=float(rng.lognormal(math.log(20.0 * (n + 1)), 1.0)))
        yield {
            "event_id": f"e-{request_id}-{position:02d}-{action}",
            "event_type": FEEDBACK,
            "timestamp": _iso(when),
            "request_id": request_id,
            "case_id": case_id,
            "lawyer_id": lawyer,
            "action": action,
        }


_LOGGED_POLICY = ("policy", "propensity", "deterministic_rank")


def list_id(request_id: str) -> str:
    """The matrix's id of a request's list (`ltr_assets.ingest.matrix._GROUP_ID`): the JSON
    array of its request id, as DuckDB writes it (no spaces, text unescaped past ASCII)."""
    return json.dumps([request_id], separators=(",", ":"), ensure_ascii=False)


def logged_frame(events: list[dict[str, Any]]) -> Any:
    """The feature matrix the pipeline builds from these flat events (`feature_matrix`), made
    directly: one row per impression with its strongest feedback as the label, lists in the
    order they were shown; with the logging policy's columns (`policy`, `propensity`,
    `deterministic_rank`) where the events carry them (exploration on). For tests and
    benchmarks that need many simulated days quickly; a test keeps it equal to the DuckDB
    path."""
    import pandas as pd

    from ltr_core.features import ACTION_GRADES, PROTECTED_ATTRIBUTES, attribute_column

    grades: dict[tuple[str, str], int] = {}
    counts: dict[tuple[str, str], int] = {}
    for e in events:
        if e["event_type"] == FEEDBACK:
            key = (e["request_id"], e["lawyer_id"])
            grades[key] = max(grades.get(key, 0), ACTION_GRADES[e["action"]])
            counts[key] = counts.get(key, 0) + 1
    rows = []
    for e in events:
        if e["event_type"] != RECOMMENDATION:
            continue
        key = (e["request_id"], e["lawyer_id"])
        groups = e["lawyer_groups"] or {}
        rows.append(
            {
                "group_id": list_id(e["request_id"]),
                "shown_at": pd.Timestamp(e["timestamp"]),
                "request_id": e["request_id"],
                "case_id": e["case_id"],
                "lawyer_id": e["lawyer_id"],
                "rank_position": e["rank_position"],
                **{f"f_{c}": e["features"][c] for c in FEATURES},
                **{
                    attribute_column(a): attribute_text(groups.get(a)) for a in PROTECTED_ATTRIBUTES
                },
                "label": grades.get(key, 0),
                "n_feedback": counts.get(key, 0),
                **{c: e[c] for c in _LOGGED_POLICY if c in e},
            }
        )
    frame = pd.DataFrame(rows)
    start = frame.groupby("group_id")["shown_at"].transform("min")
    frame = frame.assign(_start=start).sort_values(
        ["_start", "group_id", "rank_position", "lawyer_id"], kind="stable"
    )
    return frame.drop(columns="_start").reset_index(drop=True)


def _iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


def to_audit_line(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """The platform's audit-log form of a flat event, with its optional and aliased fields."""
    context = {k: v for k, v in event.items() if k not in ("event_type", "timestamp")}
    if rng.random() < 0.5:
        context.pop("event_id")  # the reader derives a deterministic id
    context["case"] = context.pop("case_id")
    context["lawyer"] = context.pop("lawyer_id")
    if event["event_type"] == FEEDBACK and rng.random() < 0.3:
        context.pop("request_id")  # matched by (case, lawyer) and time instead
    if "features" in context and rng.random() < 0.5:
        context["scores"] = {"features": context.pop("features"), "total": context.get("score")}
    return {
        "timestamp": event["timestamp"],
        "level": "INFO",
        "message": event["event_type"],
        "context": context,
    }


def _other_audit_record(event: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    return {
        "timestamp": event["timestamp"],
        "level": "INFO",
        "message": "http_request",
        "context": {"path": "/api/cases", "status": int(rng.choice([200, 201, 404])), "ms": 12},
    }


def render_lines(events: list[dict[str, Any]], envelope: str, seed: int) -> Iterator[str]:
    """JSON lines in the chosen envelope; the audit log also carries non-LTR records."""
    if envelope not in ENVELOPES:
        raise ValueError(f"envelope {envelope!r} must be one of {', '.join(ENVELOPES)}")
    rng = np.random.default_rng([seed, 2])
    for event in events:
        if envelope == "flat":
            yield json.dumps(event, separators=(",", ":"))
            continue
        yield json.dumps(to_audit_line(event, rng), separators=(",", ":"))
        if rng.random() < 0.1:
            yield json.dumps(_other_audit_record(event, rng), separators=(",", ":"))
