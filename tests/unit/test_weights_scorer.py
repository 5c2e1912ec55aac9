"""The weights scorer's arithmetic: equal candidates score equal wherever they are listed, so the
tie-break by id orders a list the same in any order (a retry matches its first, logged answer)."""

from __future__ import annotations

import numpy as np
import pytest

from ltr_core.codec import ParsedRequest, rank_request
from ltr_core.features import FEATURES
from ltr_core.scoring import WeightsScorer

pytestmark = pytest.mark.unit


def _weights(rng: np.random.Generator) -> dict[str, float]:
    raw = rng.random(len(FEATURES))
    return dict(zip(FEATURES, (raw / raw.sum()).tolist(), strict=True))


def test_candidates_with_equal_features_score_exactly_equal_wherever_they_sit() -> None:
    """Equal rows among others, at many offsets and list lengths: one score per equal row.
    (`matrix @ vector` gave equal rows scores one bit apart on some of these lists.)"""
    rng = np.random.default_rng(0)
    unequal = 0
    for _ in range(2000):
        scorer = WeightsScorer(_weights(rng))
        row = np.round(rng.random(len(FEATURES)), 4)
        before = rng.random((int(rng.integers(0, 20)), len(FEATURES)))
        after = rng.random((int(rng.integers(0, 20)), len(FEATURES)))
        copies = int(rng.integers(2, 300))
        matrix = np.vstack([before, np.tile(row, (copies, 1)), after])
        scores = scorer.score(matrix)[len(before) : len(before) + copies]
        unequal += len(set(scores.tolist())) > 1
    assert unequal == 0


def test_tied_candidates_rank_by_id_whatever_order_the_client_lists_them_in() -> None:
    """Lists of 5 equal candidates among 25 others, each sent in 20 orders: the equal ones are
    always shown in id order. (With `matrix @ vector` one of these 40 lists was not.)"""
    misordered = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        scorer = WeightsScorer(_weights(rng))
        row = np.round(rng.random(len(FEATURES)), 4)
        tied = [f"t-{i:02d}" for i in range(5)]
        rows = {i: row for i in tied} | {f"o-{i}": rng.random(len(FEATURES)) for i in range(25)}
        for _ in range(20):
            ids = [str(i) for i in rng.permutation(list(rows))]
            request = ParsedRequest("c-1", ids, np.array([rows[i] for i in ids]), None, False)
            shown = [ids[i] for i in rank_request(request, scorer, "v1", "r-1").shown]
            if [i for i in shown if i in tied] != tied:
                misordered.append(seed)
    assert misordered == []


def test_a_row_scores_the_same_in_the_gate_s_layout_as_in_serving_s() -> None:
    """The gate's matrices come column-major from pandas, serving's row-major: numpy summed a
    strided row in another order than a contiguous one, one bit apart on about a fifth of
    rows."""
    rng = np.random.default_rng(2)
    scorer = WeightsScorer(_weights(rng))
    rows = np.round(rng.random((2000, len(FEATURES))), 4)
    served = scorer.score(np.ascontiguousarray(rows))
    gated = scorer.score(np.asfortranarray(rows))
    assert served.tolist() == gated.tolist()


def test_a_missing_value_contributes_nothing() -> None:
    scorer = WeightsScorer(dict.fromkeys(FEATURES, 1.0 / len(FEATURES)))
    matrix = np.full((3, len(FEATURES)), 0.5)
    matrix[1, 0] = np.nan
    scores = scorer.score(matrix)
    assert scores[0] == scores[2] == pytest.approx(0.5)
    assert scores[1] == pytest.approx(0.5 - 0.5 / len(FEATURES))
