"""Small, real artifacts for registry tests: a LightGBM ranker's model text and valid weights."""

from __future__ import annotations

from functools import cache

import lightgbm as lgb
import numpy as np

from ltr_assets.learning.training import normalise
from ltr_core.features import FEATURES


@cache
def tiny_model_text() -> str:
    rng = np.random.default_rng(0)
    X = rng.random((200, len(FEATURES)))
    data = lgb.Dataset(X, (X[:, 0] > 0.5).astype(int), group=[20] * 10, feature_name=list(FEATURES))
    params = {"objective": "lambdarank", "verbosity": -1, "min_data_in_leaf": 5}
    return lgb.train(params, data, num_boost_round=3).model_to_string()


def weights(seed: int) -> dict[str, float]:
    return normalise(np.random.default_rng(seed).random(len(FEATURES)))
