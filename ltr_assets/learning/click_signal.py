"""Whether the clicks say anything about the candidates: the click model's relevance γ(x)
against position alone, on lists it was not fitted on.

Everything the pipeline learns and gates rests on γ (the debiased targets, the completed gains
of the gate's estimate). When clicks do not depend on who was shown (users clicking at random,
bots, feedback joined to the wrong candidates), γ still fits something: its early stopping keeps
the rounds that happened to help its own held-out lists, the candidate learns that γ, and the
gate grades the candidate's rows with the same γ, so a model of noise is judged far better than
the logged order. What γ cannot do then is predict clicks on lists it never saw. This module
measures that on the test split: per list, the log-likelihood of its clicks under
θ_k · γ(x) against θ_k · c (a constant for every candidate), each with its level refitted on
those lists (`gamma_level`; one free parameter each, so neither is favoured), and the z-statistic
of the per-list gain (`paired_z`). The gate's check `click_signal` requires it to reach
LTR_CLICK_SIGNAL_MIN_Z.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ltr_assets.learning.propensity import ClickModel, gamma_level, log_likelihood, paired_z


@dataclass(frozen=True)
class ClickSignal:
    """γ(x)'s log-likelihood gain over a constant, per list of the judged split."""

    z: float  # mean gain per list over its standard error
    gain_per_list: float  # mean gain per list, nats
    lists: int
    clicks: int  # clicked impressions in those lists


def _log_likelihood(clicks: np.ndarray, theta: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """Per impression, with γ's level refitted on these rows."""
    level = gamma_level(clicks, theta, raw)
    return log_likelihood(clicks, theta / (1.0 + np.exp(-(raw + level))))


def click_signal(
    model: ClickModel,
    positions: np.ndarray,
    clicks: np.ndarray,
    features: np.ndarray,
    group_sizes: np.ndarray,
) -> ClickSignal:
    """How much better γ(x) predicts these lists' clicks (`clicks` > 0) than a constant, θ
    held at the model's curve (`positions` 1-based)."""
    sizes = np.asarray(group_sizes, dtype=np.int64)
    clicked = (np.asarray(clicks) > 0).astype(np.float64)
    if sizes.size == 0 or not clicked.any():
        return ClickSignal(0.0, 0.0, int(sizes.size), 0)
    theta = model.curve.at(np.asarray(positions))
    raw = model.log_odds(np.asarray(features, dtype=np.float64))
    gain_per_row = _log_likelihood(clicked, theta, raw) - _log_likelihood(
        clicked, theta, np.zeros_like(raw)
    )
    gain = np.bincount(np.repeat(np.arange(sizes.size), sizes), gain_per_row, sizes.size)
    return ClickSignal(
        z=round(paired_z(gain), 3),
        gain_per_list=float(gain.mean()),
        lists=int(sizes.size),
        clicks=int(clicked.sum()),
    )
