"""LTR_DASK_SCHEDULER: LambdaRank trained with lightgbm.dask on a 2-worker local cluster ranks
the simulated test lists as well as single-machine training (true nDCG@5 within 0.005)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest

from benchmarks.simulated import simulate_logs
from ltr_assets.learning.dask_training import lightgbm_ndcg, partition_bounds
from ltr_assets.learning.training import train_ranker
from ltr_assets.metrics.ranking import gain_ndcg, group_offsets
from ltr_core.scoring import predict
from ltr_core.settings import ConfigError, Settings
from tests.support.defaults import TRAINING

distributed = pytest.importorskip("distributed")

DAYS = 5


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
    ) as cluster:
        yield cluster.scheduler_address


def test_dask_training_matches_single_machine(scheduler: str) -> None:
    train, valid, test = simulate_logs(0, DAYS).splits()
    single = train_ranker(train, valid, TRAINING)
    dask = train_ranker(train, valid, replace(TRAINING, dask_scheduler=scheduler))
    assert dask.info["dask"]["partitions"] == 2
    gains = test.frame["gain"].to_numpy()
    truth_single = gain_ndcg(gains, predict(single.booster, test.X), test.group_sizes)
    truth_dask = gain_ndcg(gains, predict(dask.booster, test.X), test.group_sizes)
    print(
        f"true nDCG@5 single={truth_single:.4f} (iter {single.info['best_iteration']}) "
        f"dask={truth_dask:.4f} (iter {dask.info['best_iteration']})"
    )
    assert abs(truth_dask - truth_single) <= 0.005
    # the published weights come from the same derivations
    assert abs(sum(dask.weights.values()) - 1.0) < 1e-9


def test_partitions_hold_whole_groups() -> None:
    sizes = np.array([3, 5, 2, 7, 1, 4, 4])
    bounds = partition_bounds(sizes, 3)
    assert bounds[0][0] == 0 and bounds[-1][1] == len(sizes)
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    offsets = group_offsets(sizes)
    assert sum(int(offsets[hi] - offsets[lo]) for lo, hi in bounds) == sizes.sum()
    assert partition_bounds(np.array([10]), 4) == [(0, 1)]


def test_lightgbm_ndcg_definition() -> None:
    gains = np.array([0.0, 1.0, 3.0, 0.0, 0.0])
    scores = np.array([3.0, 2.0, 1.0, 1.0, 2.0])
    value = lightgbm_ndcg(gains, scores, np.array([3, 2]), k=5)
    d = 1 / np.log2(np.arange(2, 5))
    first = (1.0 * d[1] + 3.0 * d[2]) / (3.0 * d[0] + 1.0 * d[1])
    assert value == pytest.approx((first + 1.0) / 2)


def test_scheduler_setting() -> None:
    assert Settings.from_env({}).dask_scheduler == ""
    env = {"LTR_DASK_SCHEDULER": " tcp://127.0.0.1:8786 "}
    assert Settings.from_env(env).dask_scheduler == "tcp://127.0.0.1:8786"
    with pytest.raises(ConfigError, match="lightgbm_position"):
        Settings.from_env({**env, "LTR_DEBIAS": "lightgbm_position"})
