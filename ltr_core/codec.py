"""The /rank request path without FastAPI: body bytes -> validated ids and a float64 matrix ->
scores from a `Scorer` -> response bytes. The route runs exactly this, and so does the gate's
latency check (`time_request_path`), so the gate times what serving does.

Validation has two paths that accept the same requests:
- fast: msgspec decodes the bytes straight into typed structs in C, with every rule of the
  schema but one (required features, strict numbers, no bools or strings, no unknown keys,
  lengths); the feature values then go into numpy in one call, where the last rule (each value
  in [0, 1]) is one vectorised comparison. No per-candidate pydantic object.
- exact: anything the fast path does not accept goes through the pydantic models
  (`ltr_core.rank_api.RankRequest`, strict like msgspec: `"top_k": "3"` is refused, not
  converted), which produce the 422 errors in FastAPI's shape, with a clear reason and location.
The rules pydantic cannot know (at most `max_candidates`, each lawyer once, ids without
surrounding whitespace) are checked here.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter
from typing import Annotated, Any

import msgspec
import numpy as np
import orjson
from pydantic import ValidationError

from ltr_core.exploration import (
    DEFAULT_MAX_POSITION,
    ExplorationPolicy,
    assign_policy,
    plan_exploration,
)
from ltr_core.features import FEATURES, PROTECTED_ATTRIBUTES
from ltr_core.interleaving import Team, draw, request_rng
from ltr_core.rank_api import ID_MAX_LENGTH, RankRequest
from ltr_core.scoring import Scorer, WeightsScorer
from ltr_core.vocabulary import LoggingPolicy

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=ID_MAX_LENGTH)]
# gc=False: these hold only strings, numbers and each other, so they can form no cycle; left
# untracked, a 1,000-candidate request does not trigger the cyclic GC over and over.
_Features = msgspec.defstruct(
    # Plain floats: the [0, 1] range is checked on the matrix at once (`parse_request`), which
    # costs less than a per-value bound check in the decoder.
    "_Features",
    [(code, float) for code in FEATURES],
    forbid_unknown_fields=True,
    gc=False,
)
# omit_defaults: encoded, it holds the attributes set, as `attributes_dict` does (the request
# ids' list fingerprint compares the two)
_Attributes = msgspec.defstruct(
    "_Attributes",
    [(name, str | bool | None, None) for name in PROTECTED_ATTRIBUTES],
    forbid_unknown_fields=True,
    omit_defaults=True,
    gc=False,
)
NO_ATTRIBUTES = _Attributes()  # `{}`, or every attribute null: none set


class _Candidate(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    lawyer_id: _Id
    # Both classes are built by msgspec.defstruct from FEATURES / PROTECTED_ATTRIBUTES at import:
    # mypy sees variables, not classes, though msgspec decodes into them as the types they are.
    features: _Features  # type: ignore[valid-type]
    protected_attributes: _Attributes | None = None  # type: ignore[valid-type]


class _Request(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    case_id: _Id
    candidates: Annotated[list[_Candidate], msgspec.Meta(min_length=1)]
    top_k: Annotated[int, msgspec.Meta(ge=1)] | None = None
    explain: bool = False
    request_id: _Id | None = None


_decoder = msgspec.json.Decoder(_Request)
_values = attrgetter(*FEATURES)
_features_of = attrgetter("features")
_lawyer_id_of = attrgetter("lawyer_id")
_attributes_of = attrgetter("protected_attributes")


@dataclass(frozen=True)
class LatencyReport:
    """Percentiles of a request path's cost: `cpu_*`, the CPU time of the thread that ran each
    request, is what the code costs and what the gate compares; `p*_ms`, the wall-clock time,
    also counts waiting for a core, so it grows with whatever else the machine runs and is
    reported beside it."""

    queries: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    cpu_p50_ms: float = float("nan")
    cpu_p95_ms: float = float("nan")
    cpu_p99_ms: float = float("nan")


class RequestError(ValueError):
    """The request is invalid: `errors` in FastAPI's shape ({"type", "loc", "msg", "input"})."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors[0]["msg"] if errors else "invalid request")
        self.errors = errors


def _error(loc: tuple[str | int, ...], msg: str) -> RequestError:
    return RequestError([{"type": "value_error", "loc": ("body", *loc), "msg": msg, "input": None}])


@dataclass(slots=True)  # not frozen: a frozen __init__ costs microseconds on the hot path
class ParsedRequest:
    case_id: str
    ids: list[str]
    matrix: np.ndarray  # float64, one row per candidate, columns in FEATURES order
    top_k: int | None
    explain: bool
    request_id: str | None = None  # the client's, if it sent one
    # Per candidate, its protected attributes as parsed (a msgspec struct or a pydantic model,
    # or None): read only off the request path, by `attributes_dict`, for the impression log.
    attributes: list[Any] | None = None
    fast: bool = True  # msgspec validated it (False: the pydantic models did, `_parse_exactly`)
    # `parse_served` only: per candidate, its features object as the body has it (msgspec.Raw)
    raw_features: list[Any] | None = None


def attributes_dict(value: Any) -> dict[str, Any] | None:
    """A candidate's protected attributes (as `ParsedRequest.attributes` holds them) as a dict
    of the attributes it sets, or None when it has none."""
    if value is None:
        return None
    found = {name: getattr(value, name, None) for name in PROTECTED_ATTRIBUTES}
    return {k: v for k, v in found.items() if v is not None} or None


def feature_structs(matrix: np.ndarray) -> list[Any]:
    """The rows of a feature matrix as structs that msgspec encodes as {"A": …, …} (FEATURES
    order, the values as float64 holds them), built in C: the impression log's `features`."""
    if len(matrix) == 0:
        return []
    return list(map(_Features, *matrix.reshape(len(matrix), len(FEATURES)).T.tolist()))


def parse_request(body: bytes, max_candidates: int, explain: bool = False) -> ParsedRequest:
    """Validate a /rank body; RequestError (a 422) otherwise. `explain`: the query's default."""
    try:
        request = _decoder.decode(body)
    except (msgspec.MsgspecError, ValueError):  # ValueError: UnicodeDecodeError inside a string
        return _parse_exactly(body, max_candidates, explain)
    candidates = request.candidates
    n = len(candidates)
    _check_size(n, max_candidates)
    ids = list(map(_lawyer_id_of, candidates))
    # Struct fields are in FEATURES order; one flat C-level pass into the matrix.
    values = chain.from_iterable(map(msgspec.structs.astuple, map(_features_of, candidates)))
    matrix = np.fromiter(values, dtype=np.float64, count=n * len(FEATURES))
    if not _in_unit_range(matrix):  # out of range (or inf): pydantic names the value
        return _parse_exactly(body, max_candidates, explain)
    parsed = _parsed(
        request.case_id, ids, matrix, request.top_k, request.explain or explain, request.request_id
    )
    parsed.attributes = list(map(_attributes_of, candidates))
    return parsed


def _in_unit_range(matrix: np.ndarray) -> bool:
    """Every value in [0, 1] (NaN is not; JSON cannot carry one, but say so anyway)."""
    return bool(matrix.size == 0 or (matrix.min() >= 0.0 and matrix.max() <= 1.0))


def _parse_exactly(body: bytes, max_candidates: int, explain: bool) -> ParsedRequest:
    """The pydantic models decide: their errors are the 422 body, their acceptance stands.

    The body must be UTF-8 first (RFC 8259): pydantic-core decodes the bytes of a string lazily
    and raises UnicodeDecodeError, not a ValidationError, for an invalid sequence inside one
    (msgspec does the same). Checked here, on the slow path only, where every body msgspec
    does not accept arrives.
    """
    try:
        body.decode()
    except UnicodeDecodeError as exc:
        raise _not_utf8(exc) from None
    try:
        request = RankRequest.model_validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        raise RequestError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from None
    candidates = request.candidates
    _check_size(len(candidates), max_candidates)
    ids = [c.lawyer_id for c in candidates]
    matrix = np.array([_values(c.features) for c in candidates], dtype=np.float64)
    parsed = _parsed(
        request.case_id, ids, matrix, request.top_k, request.explain or explain, request.request_id
    )
    parsed.attributes = [c.protected_attributes for c in candidates]
    parsed.fast = False
    return parsed


class _ServedCandidate(msgspec.Struct, gc=False):
    lawyer_id: str
    features: msgspec.Raw
    protected_attributes: _Attributes | None = None  # type: ignore[valid-type]


class _ServedRequest(msgspec.Struct, gc=False):
    case_id: str
    candidates: list[_ServedCandidate]
    request_id: str | None = None


_served_decoder = msgspec.json.Decoder(_ServedRequest)
_NO_MATRIX = np.empty((0, len(FEATURES)))


def parse_served(body: bytes, fast: bool, explain: bool = False) -> ParsedRequest:
    """A body `parse_request` accepted (and the service answered), read again for the impression
    log (`ltr_serving.log_process`): ids, attributes and, when msgspec validated it (`fast`) and
    it has no line break, each candidate's features object as its text (`raw_features`, no
    matrix): a JSON object of the FEATURES, each a number in [0, 1] (as validated), whose values
    the log repeats without decoding and encoding 11 floats per candidate (only the spelling of
    a number may differ from a re-encoded one, e.g. `1` for `1.0`; the ingest reads both).
    Otherwise, and when a features object holds more quoted strings than its keys (a key given
    twice: the last value was scored, a reader keeping the first would see the other), exactly
    `parse_request`."""
    if not fast or b"\n" in body or b"\r" in body:  # a line break would split the JSONL line
        return parse_request(body, 1 << 62, explain)
    request = _served_decoder.decode(body)
    candidates = request.candidates
    parsed = ParsedRequest(
        request.case_id, list(map(_lawyer_id_of, candidates)), _NO_MATRIX, None, explain
    )
    parsed.request_id = request.request_id
    parsed.attributes = list(map(_attributes_of, candidates))
    raw = list(map(_features_of, candidates))
    if b"".join(raw).count(b'"') != 2 * len(FEATURES) * len(raw):
        # a key given twice: the value scored is the last one; log what was scored
        return parse_request(body, 1 << 62, explain)
    parsed.raw_features = raw
    return parsed


def not_utf8_message(exc: UnicodeDecodeError) -> str:
    """What a 422 says of a body that is not UTF-8 text: where, never the bytes themselves."""
    return f"Invalid JSON: the body is not UTF-8 text ({exc.reason} at byte {exc.start})"


def _not_utf8(exc: UnicodeDecodeError) -> RequestError:
    message = not_utf8_message(exc)
    return RequestError([{"type": "json_invalid", "loc": ("body",), "msg": message, "input": None}])


def _check_size(n: int, max_candidates: int) -> None:
    if n > max_candidates:
        message = f"at most {max_candidates} candidates per request (LTR_MAX_CANDIDATES), got {n}"
        raise _error(("candidates",), message)


def _parsed(
    case_id: str,
    ids: list[str],
    matrix: np.ndarray,
    top_k: int | None,
    explain: bool,
    request_id: str | None,
) -> ParsedRequest:
    _check_spelling(case_id, ids, request_id)
    if len(set(ids)) != len(ids):
        repeated = next(i for i, count in Counter(ids).items() if count > 1)
        raise _error(("candidates",), f"lawyer_id {repeated!r} appears more than once")
    matrix = matrix.reshape(len(ids), len(FEATURES))  # one feature gives a flat array
    parsed = ParsedRequest(case_id, ids, matrix, top_k, explain)
    parsed.request_id = request_id
    return parsed


def _check_spelling(case_id: str, ids: list[str], request_id: str | None) -> None:
    """Ids as the ingest keeps them: it strips surrounding whitespace, so a blank id would be
    quarantined as missing and "a" and "a " would be one lawyer twice in a list. Refused here
    instead (one C-level pass over the ids: the hot path). So are control characters (a NUL, a
    line break) anywhere in an id: no id needs one, and an id is written into logs and reports
    (one pass over the joined ids)."""
    if list(map(str.strip, ids)) != ids:
        index = next(i for i, text in enumerate(ids) if text.strip() != text)
        raise _error(("candidates", index, "lawyer_id"), _SPELLING.format("lawyer_id"))
    for name, value in (("case_id", case_id), ("request_id", request_id)):
        if value is not None and value.strip() != value:
            raise _error((name,), _SPELLING.format(name))
    if has_control_characters("".join(ids)):
        index = next(i for i, text in enumerate(ids) if has_control_characters(text))
        raise _error(("candidates", index, "lawyer_id"), f"lawyer_id {CONTROL_MESSAGE}")
    for name, value in (("case_id", case_id), ("request_id", request_id)):
        if value is not None and has_control_characters(value):
            raise _error((name,), f"{name} {CONTROL_MESSAGE}")


_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f]")  # C0 controls and DEL
CONTROL_MESSAGE = "must not contain control characters (U+0000-U+001F, U+007F)"


def has_control_characters(text: str) -> bool:
    """A C0 control character or DEL in `text`. isprintable (C, quick) is True for text
    without them; it is False for some other characters too (e.g. a no-break space), which
    the regex then clears."""
    return not text.isprintable() and _CONTROL_CHARACTERS.search(text) is not None


_SPELLING = "{} must not be blank or start or end with whitespace"


class _Ranked(msgspec.Struct, gc=False):
    lawyer_id: str
    rank: int
    score: float


class _Explained(msgspec.Struct, gc=False):
    lawyer_id: str
    rank: int
    score: float
    contributions: dict[str, float]


class _Response(msgspec.Struct, gc=False):
    case_id: str
    version: str
    scorer: str
    request_id: str
    policy: str
    candidates: list[_Ranked] | list[_Explained]


_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class Exploration:
    """Swap interventions (`ltr_core.exploration`): the share of requests swapped and the
    deepest position swapped with position 1."""

    rate: float
    max_position: int = DEFAULT_MAX_POSITION


@dataclass(slots=True)
class Ranking:
    """What one request was answered with: the response bytes, and what the impression log
    needs (the candidates shown, as indices into the request's list, in shown order, and their
    scores), computed anyway to build the response."""

    body: bytes
    request_id: str
    policy: LoggingPolicy
    shown: list[int]
    scores: list[float]
    interleaving: Interleaved | None = None  # policy "interleaved": what the log needs more


@dataclass(frozen=True, slots=True)
class Interleaved:
    """An interleaved request's teams (one per shown candidate) and both full rankings (indices
    into the request's list), from which the impression log computes the exact propensities
    (`ltr_core.interleaving.position_probabilities`) off the request path."""

    teams: tuple[Team, ...]
    live_order: list[int]
    candidate_order: list[int]


def new_request_id() -> str:
    """A request id for a request that brought none: "r-" and 32 random hex digits."""
    return "r-" + os.urandom(16).hex()


def score_order(scores: np.ndarray, ids: list[str]) -> list[int]:
    """Indices by descending score, equal scores by candidate id: a property of the
    candidates, not of where the client listed them, so the same list in any order (a retry)
    ranks the same. Ties are rare (identical features), so the id sort runs only when some
    scores are equal."""
    order: np.ndarray = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    if ranked.size < 2 or not (ranked[1:] == ranked[:-1]).any():
        listed: list[int] = order.tolist()
        return listed
    values = scores.tolist()
    return sorted(range(len(values)), key=lambda i: (-values[i], ids[i]))


def rank_request(
    request: ParsedRequest,
    scorer: Scorer,
    version: str,
    request_id: str,
    exploration: Exploration | None = None,
) -> Ranking:
    """Score, order by descending score (ties by candidate id: `score_order`), keep the
    top_k, and, for the requests `ltr_core.exploration` assigns to the swap policy (by the
    request id), exchange positions 1 and k; serialise with per-feature contributions only when
    asked and the scorer has them. `rank` in the response is the shown position."""
    scores = scorer.score(request.matrix)
    order = score_order(scores, request.ids)[: request.top_k]
    policy: ExplorationPolicy = "deterministic"
    if (
        exploration is not None
        and exploration.rate > 0.0
        and len(order) >= 2
        and assign_policy(request_id, exploration.rate, 0.0) == "swap"
    ):
        plan = plan_exploration(
            request_id,
            len(order),
            explore_rate=exploration.rate,
            max_position=exploration.max_position,
        )
        order = plan.apply(order)
        policy = plan.policy
    ids = request.ids
    ordered_ids = [ids[i] for i in order]
    positions = range(1, len(ordered_ids) + 1)
    ordered_scores = scores[order].tolist()
    ranked: list[_Ranked] | list[_Explained]
    if request.explain and isinstance(scorer, WeightsScorer):
        rows = scorer.contributions(request.matrix[order]).tolist()
        contributions = [dict(zip(FEATURES, row, strict=True)) for row in rows]
        ranked = list(map(_Explained, ordered_ids, positions, ordered_scores, contributions))
    else:  # map over the struct type: built in C, no Python frame per candidate
        ranked = list(map(_Ranked, ordered_ids, positions, ordered_scores))
    body = _encoder.encode(
        _Response(request.case_id, version, scorer.kind, request_id, policy, ranked)
    )
    return Ranking(body, request_id, policy, order, ordered_scores)


def rank_interleaved(
    request: ParsedRequest,
    live: Scorer,
    candidate: Scorer,
    version: str,
    request_id: str,
) -> Ranking:
    """Team-draft interleaving (`ltr_core.interleaving`) of the live and candidate rankings,
    the coins seeded by the request id; each shown candidate carries the score of the ranker
    whose team picked it. `version` (the response's) is the live one; the impression log names
    each candidate's own team version."""
    live_scores = live.score(request.matrix)
    candidate_scores = candidate.score(request.matrix)
    live_order = score_order(live_scores, request.ids)
    candidate_order = score_order(candidate_scores, request.ids)
    order_t, teams = draw(live_order, candidate_order, request_rng(request_id), top_k=request.top_k)
    order = list(order_t)
    ordered_scores = [
        float(live_scores[i] if team == "live" else candidate_scores[i])
        for i, team in zip(order, teams, strict=True)
    ]
    ids = request.ids
    ordered_ids = [ids[i] for i in order]
    positions = range(1, len(ordered_ids) + 1)
    ranked: list[_Ranked] | list[_Explained]
    if request.explain and isinstance(live, WeightsScorer) and isinstance(candidate, WeightsScorer):
        contributions = []
        for i, team in zip(order, teams, strict=True):
            scorer = live if team == "live" else candidate
            row = scorer.contributions(request.matrix[[i]]).tolist()[0]
            contributions.append(dict(zip(FEATURES, row, strict=True)))
        ranked = list(map(_Explained, ordered_ids, positions, ordered_scores, contributions))
    else:
        ranked = list(map(_Ranked, ordered_ids, positions, ordered_scores))
    body = _encoder.encode(
        _Response(request.case_id, version, live.kind, request_id, "interleaved", ranked)
    )
    return Ranking(
        body,
        request_id,
        "interleaved",
        order,
        ordered_scores,
        Interleaved(teams, live_order, candidate_order),
    )


def rank(
    request: ParsedRequest,
    scorer: Scorer,
    version: str,
    exploration: Exploration | None = None,
) -> bytes:
    """`rank_request` with the request's own id (or a new one): the response bytes only."""
    request_id = request.request_id or new_request_id()
    return rank_request(request, scorer, version, request_id, exploration).body


def handle(
    body: bytes,
    scorer: Scorer,
    version: str,
    max_candidates: int,
    exploration: Exploration | None = None,
) -> bytes:
    """The whole request path: body bytes in, response bytes out (RequestError for a 422)."""
    return rank(parse_request(body, max_candidates), scorer, version, exploration)


# -- the gate's latency: the real request path, timed in-process ---------------------------


@dataclass(frozen=True)
class SizeLatency:
    """Latency of requests of the given list sizes (`sizes` is what was cycled through)."""

    sizes: tuple[int, ...]
    report: LatencyReport


@dataclass(frozen=True)
class RequestPathLatency:
    """Per size group; `worst` is the group with the highest p95 (what a gate compares)."""

    groups: tuple[SizeLatency, ...]

    @property
    def worst(self) -> LatencyReport:
        return max((g.report for g in self.groups), key=lambda r: r.cpu_p95_ms)


def request_body(n_candidates: int, seed: int = 0) -> bytes:
    """A realistic /rank body: random features with full float precision, distinct lawyers."""
    rng = np.random.default_rng([seed, n_candidates])
    values = rng.random((n_candidates, len(FEATURES))).tolist()
    candidates = [
        {"lawyer_id": f"l-{seed}-{i}", "features": dict(zip(FEATURES, row, strict=True))}
        for i, row in enumerate(values)
    ]
    return orjson.dumps({"case_id": f"c-{seed}", "candidates": candidates})


def _time_bodies(
    bodies: Sequence[bytes], scorer: Scorer, max_candidates: int, n: int, warmup: int
) -> LatencyReport:
    """Each request's wall-clock time and the CPU time of this thread while it ran (the scorers
    run on the calling thread: the model predicts with one thread), so a busy machine shows in
    the first and not in the second."""
    for i in range(warmup):
        handle(bodies[i % len(bodies)], scorer, "gate", max_candidates)
    wall = np.empty(n)
    cpu = np.empty(n)
    for i in range(n):
        body = bodies[i % len(bodies)]
        start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
        handle(body, scorer, "gate", max_candidates)
        cpu[i] = (time.thread_time_ns() - start_cpu) / 1e6
        wall[i] = (time.perf_counter_ns() - start) / 1e6
    p50, p95, p99 = np.percentile(wall, [50, 95, 99])
    c50, c95, c99 = np.percentile(cpu, [50, 95, 99])
    return LatencyReport(n, float(p50), float(p95), float(p99), float(c50), float(c95), float(c99))


def time_request_path_groups(
    scorer: Scorer,
    list_sizes: Sequence[int],
    max_candidates: int,
    n: int = 1000,
    warmup: int = 100,
) -> RequestPathLatency:
    """Time `handle` (JSON bytes -> validation -> `scorer` -> response bytes) over `n` requests
    after `warmup`, once cycling through the list sizes seen in the data (pass one per list, so
    frequent sizes weigh more), once at `max_candidates`: a gate must hold at the largest list
    serving accepts, which the data's sizes alone may never reach."""
    if n < 1:
        raise ValueError("n must be at least 1")
    sizes = [min(max(int(s), 1), max_candidates) for s in list_sizes] or [max_candidates]
    bodies = {s: request_body(s, seed=s) for s in set(sizes)}
    data = _time_bodies([bodies[s] for s in sizes], scorer, max_candidates, n, warmup)
    largest = request_body(max_candidates, seed=max_candidates)
    at_max = _time_bodies([largest], scorer, max_candidates, n, warmup)
    return RequestPathLatency(
        (SizeLatency(tuple(sorted(set(sizes))), data), SizeLatency((max_candidates,), at_max))
    )


def time_request_path(
    scorer: Scorer,
    list_sizes: Sequence[int],
    max_candidates: int,
    n: int = 1000,
    warmup: int = 100,
) -> LatencyReport:
    """The gate's latency: the worse (by p95) of the data's list sizes and `max_candidates`,
    each timed over `n` real requests in-process (see `time_request_path_groups`)."""
    return time_request_path_groups(scorer, list_sizes, max_candidates, n, warmup).worst
