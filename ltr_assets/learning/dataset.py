"""The training data's shapes, shared by single-machine and distributed training: a `Split`
(rows in list order with the list sizes) and the `Targets` LambdaRank learns from on one."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from ltr_core.features import ATTRIBUTE_COLUMNS, FEATURE_COLUMNS


@dataclass
class Split:
    """One part of the data: rows in group order, with the group sizes."""

    frame: pd.DataFrame
    group_sizes: np.ndarray

    @cached_property
    def X(self) -> np.ndarray:  # noqa: N802 - the usual name for a feature matrix
        """Computed once: training, evaluation, timing and the baseline all read it."""
        matrix: np.ndarray = self.frame[list(FEATURE_COLUMNS)].to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        return matrix

    @cached_property
    def y(self) -> np.ndarray:
        labels: np.ndarray = self.frame["label"].to_numpy(dtype=np.float64)
        return labels

    @cached_property
    def positions(self) -> np.ndarray:
        """1-based logged rank positions (a list shown without them counts as shown in order)."""
        raw = self.frame["rank_position"].to_numpy(dtype=np.float64, na_value=np.nan)
        in_list = np.concatenate([np.arange(1, n + 1) for n in self.group_sizes] or [np.empty(0)])
        return np.where(np.isnan(raw), in_list, raw).astype(np.int64)

    @property
    def groups(self) -> int:
        return len(self.group_sizes)

    def subset(self, lists: np.ndarray) -> Split:
        """The lists picked by a boolean mask over the lists, in their order."""
        rows = np.repeat(lists, self.group_sizes)
        return Split(self.frame[rows].reset_index(drop=True), self.group_sizes[lists])

    def attributes(self) -> dict[str, list[str | None]]:
        """Each row's protected attribute values as text, None where missing (one string per
        distinct value, shared by its rows)."""
        out: dict[str, list[str | None]] = {}
        for column in ATTRIBUTE_COLUMNS:
            codes, values = pd.factorize(self.frame[column])  # missing: code -1
            text = np.array([str(v) for v in values] + [None], dtype=object)
            out[column.removeprefix("g_")] = text[codes].tolist()
        return out


@dataclass
class Targets:
    """What LambdaRank learns from on one split: integer labels (with their gains) and
    optional per-row weights and positions."""

    labels: np.ndarray
    label_gain: list[float] | None = None
    weight: np.ndarray | None = None
    position: np.ndarray | None = None
