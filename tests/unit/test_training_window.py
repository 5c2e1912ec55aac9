"""The training window's lists: a list id that shows up on two days (a list shown across
midnight, or a client that numbers its requests per day) must not merge the days' rows into one
LambdaRank group, and a split's rows must lie in runs that match its group sizes."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ltr_assets.lake.paths import Lake
from ltr_assets.learning.dataset import Split
from ltr_assets.learning.training import load_window, split_by_time
from ltr_core.features import FEATURE_COLUMNS

DAYS = [date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)]


def _list(list_id: str, start: datetime, positions: range, lawyer_base: int) -> pd.DataFrame:
    n = len(positions)
    rows = {
        "group_id": [list_id] * n,
        "shown_at": [start + timedelta(milliseconds=i) for i in range(n)],
        "request_id": [list_id] * n,
        "lawyer_id": [f"l-{lawyer_base + p}" for p in positions],
        "rank_position": list(positions),
        "label": [1 if p == positions[0] else 0 for p in positions],
    }
    frame = pd.DataFrame(rows)
    for j, column in enumerate(FEATURE_COLUMNS):
        frame[column] = np.linspace(0.1, 0.9, n) if j % 2 else 0.5
    return frame


def _write_days(lake: Lake, lists_per_day: dict[date, list[pd.DataFrame]]) -> None:
    for day, lists in lists_per_day.items():
        path = lake.feature_matrix(day)
        assert isinstance(path, Path)
        path.parent.mkdir(parents=True, exist_ok=True)
        pd.concat(lists, ignore_index=True).to_parquet(path)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _runs_match_sizes(split: Split) -> None:
    """Each block of rows the sizes describe is one list: one id, each lawyer once, positions
    rising; and no id has rows in two blocks."""
    ids = split.frame["group_id"].astype(str).to_numpy()
    seen: set[str] = set()
    start = 0
    for size in split.group_sizes:
        block = split.frame.iloc[start : start + size]
        assert block["group_id"].nunique() == 1, block
        assert block["lawyer_id"].is_unique
        assert block["rank_position"].is_monotonic_increasing
        assert ids[start] not in seen
        seen.add(ids[start])
        start += size
    assert start == len(split.frame)


def test_a_list_id_on_two_days_is_two_lists_and_every_split_is_runs_of_lists(
    tmp_path: Path,
) -> None:
    lake = Lake(tmp_path / "lake")
    per_day: dict[date, list[pd.DataFrame]] = {day: [] for day in DAYS}
    for d, day in enumerate(DAYS):
        noon = _midnight(day) + timedelta(hours=12)
        # the client numbers its requests per day: r-0 ... r-11 again every day
        for i in range(12):
            per_day[day].append(_list(f"r-{i}", noon + timedelta(minutes=i), range(1, 6), 100 * d))
    # a list shown across the first midnight: positions 1-3 stamped on day 1, 4-6 on day 2
    late = _midnight(DAYS[1]) - timedelta(milliseconds=3)
    per_day[DAYS[0]].append(_list("r-midnight", late, range(1, 4), 900))
    per_day[DAYS[1]].insert(0, _list("r-midnight", _midnight(DAYS[1]), range(4, 7), 900))
    _write_days(lake, per_day)

    window = load_window(lake, DAYS[-1], len(DAYS))
    assert window.ids_on_several_days == 13  # r-0 ... r-11 and r-midnight
    assert window.frame["group_id"].nunique() == 3 * 12 + 2
    assert "2026-11-02/r-midnight" in set(window.frame["group_id"])
    splits = split_by_time(window.frame)
    assert sum(split.groups for split in splits) == 3 * 12 + 2
    for split in splits:
        _runs_match_sizes(split)


def test_a_split_gathers_each_lists_rows_even_when_the_frame_scatters_them() -> None:
    start = _midnight(DAYS[0])
    lists = [_list(f"r-{i}", start + timedelta(minutes=i), range(1, 5), 0) for i in range(40)]
    frame = pd.concat(lists, ignore_index=True)
    scattered = frame.iloc[np.random.default_rng(0).permutation(len(frame))]
    scattered = scattered.sort_values("rank_position", kind="stable", ignore_index=True)
    splits = split_by_time(scattered)
    assert [split.groups for split in splits] == [26, 6, 8]
    for split in splits:
        _runs_match_sizes(split)
        assert split.frame["group_id"].iloc[0] in {f"r-{i}" for i in range(40)}
    newest = splits[2].frame.drop_duplicates("group_id")["group_id"].tolist()
    assert newest == [f"r-{i}" for i in range(32, 40)]  # in time order


@pytest.mark.parametrize("odd_rows", [0, 1])
def test_a_window_where_no_feature_varies_is_refused_not_a_crash(
    tmp_path: Path, odd_rows: int
) -> None:
    """Every feature at the same value for days (a feature service writing its defaults), or
    but in one row: LightGBM has nothing to split on and stopped the run with
    "num_features > 0"."""
    from ltr_assets.gate.candidate import Untrainable, train_candidate
    from ltr_assets.registry.local import LocalRegistry
    from ltr_core.settings import Settings

    lake = Lake(tmp_path / "lake")
    per_day: dict[date, list[pd.DataFrame]] = {}
    for d, day in enumerate(DAYS):
        noon = _midnight(day) + timedelta(hours=12)
        lists = [
            _list(f"r-{d}-{i}", noon + timedelta(minutes=i), range(1, 6), 0) for i in range(170)
        ]
        for frame in lists:
            frame[list(FEATURE_COLUMNS)] = 0.5
        per_day[day] = lists
    per_day[DAYS[0]][0].loc[: odd_rows - 1, FEATURE_COLUMNS[0]] = 0.9
    _write_days(lake, per_day)
    settings = Settings.from_env(
        {"LTR_HOME": str(tmp_path), "LTR_TRAIN_WINDOW_DAYS": "3", "LTR_START_DATE": "2026-11-01"}
    )
    with pytest.raises(Untrainable) as refused:
        train_candidate(lake, LocalRegistry(tmp_path / "registry"), DAYS[-1], settings)
    assert refused.value.result.name == "min_samples"
    assert "no feature varies" in str(refused.value)
    assert not refused.value.result.details["trained"]
