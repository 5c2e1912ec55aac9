"""The scorers that serving runs, so the gate can time and evaluate exactly the same code.

Both take a candidates × features matrix in FEATURES order and return one score per candidate.
`weights` is the published linear scorer (ltr_weights.json); `model` is the LightGBM booster.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np

from ltr_core.artifacts.model_format import ensure_model_format
from ltr_core.features import FEATURES
from ltr_core.vocabulary import ScorerName

if TYPE_CHECKING:  # imported where a model is loaded: the weights path needs no LightGBM
    import lightgbm as lgb


class Scorer(Protocol):
    kind: ScorerName

    def score(self, matrix: np.ndarray) -> np.ndarray: ...


class WeightsScorer:
    """score = Σ weight_f · value_f; a missing value (NaN) contributes nothing."""

    kind: ScorerName = "weights"

    def __init__(self, weights: Mapping[str, float], features: Sequence[str] = FEATURES) -> None:
        self.features = tuple(features)
        self.vector = np.array([float(weights[f]) for f in self.features], dtype=np.float64)

    def score(self, matrix: np.ndarray) -> np.ndarray:
        """Each row summed on its own, the same way wherever it sits and whatever the matrix's
        memory layout. `matrix @ vector` (BLAS)
        sums a row in an order that depends on its place in the matrix, so candidates with
        equal features could differ in the last bit, escape the tie-break by id and order a
        retry of the same list differently from its first, logged answer."""
        # row-major first: numpy sums a contiguous row pairwise but a strided one in order, so
        # the gate's column-major matrices would score a row a bit off serving's
        rows = np.ascontiguousarray(matrix, dtype=np.float64)
        scores: np.ndarray = (rows * self.vector).sum(axis=1)
        if np.isnan(scores).any():  # rare (serving validates every value): redo without them
            scores = (np.nan_to_num(rows, nan=0.0) * self.vector).sum(axis=1)
        return scores

    def contributions(self, matrix: np.ndarray) -> np.ndarray:
        contributions: np.ndarray = np.nan_to_num(matrix, nan=0.0) * self.vector
        return contributions


def predict(booster: lgb.Booster, matrix: np.ndarray, **kwargs: Any) -> np.ndarray:
    """`booster.predict` on a dense matrix. Its declared result also covers sparse matrices,
    which only SHAP contributions on sparse input return; here it is always a dense array."""
    return cast(np.ndarray, booster.predict(matrix, **kwargs))


class ModelScorer:
    """The LightGBM booster, predicting on one thread (one request is a small batch)."""

    kind: ScorerName = "model"

    def __init__(self, booster: lgb.Booster, features: Sequence[str] = FEATURES) -> None:
        self.features = tuple(features)
        self.booster = booster

    @classmethod
    def from_model_text(cls, text: str, features: Sequence[str] = FEATURES) -> ModelScorer:
        """The booster of a model text, whose structure is checked before LightGBM parses it
        (`model_format`; MalformedModel otherwise): LightGBM trusts a tree's child indices, and
        a crafted one hangs or crashes prediction."""
        import lightgbm as lgb

        ensure_model_format(text, features)
        return cls(lgb.Booster(model_str=text), features)

    def score(self, matrix: np.ndarray) -> np.ndarray:
        return predict(self.booster, matrix, num_threads=1)


def make_scorer(
    kind: str,
    weights: Mapping[str, float],
    model: str | lgb.Booster,
    features: Sequence[str] = FEATURES,
) -> Scorer:
    """The scorer serving runs for LTR_SCORER=`kind`: the linear weights, or the model (its
    text as published, or a booster already in memory, as training has it)."""
    if kind == "weights":
        return WeightsScorer(weights, features)
    if kind == "model":
        if not isinstance(model, str):  # a booster already in memory
            return ModelScorer(model, features)
        return ModelScorer.from_model_text(model, features)
    raise ValueError(f"unknown scorer {kind!r}")
