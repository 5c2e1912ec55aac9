"""How much loading a large model slows the rest of the serving process.

A reload validates the new version (`validate_artifact`) and builds its scorer on a worker
thread while /rank's event loop keeps answering; any pure-Python work of the reload competes with
the loop for the GIL. This measures that competition in-process, without HTTP: a thread that does
~100 µs of Python work and then releases the GIL (`sleep(0)`, as a request's socket I/O does)
counts its rounds per second while idle and while a reload of a large model runs beside it.

Side by side, on the same model text: `in_process` checks the model's structure in this process
(`check_model_format`) and lets the child parse it only (what serving did before the structure
check moved into the child), `child` is `validate_artifact` as it is. Caches are cleared before
each reload, so every reload is a first load of that text. The model (~30 MB by default) is 40
trained trees repeated to `--trees`, so the structure check reads `--trees` full trees.
"""

from __future__ import annotations

import argparse
import re
import statistics
import threading
import time
from collections.abc import Callable
from functools import partial

import lightgbm as lgb
import numpy as np

from benchmarks.common import machine, report
from ltr_core.artifacts import model_check, model_format
from ltr_core.artifacts.format import sha256, validate_artifact, weights_json
from ltr_core.features import FEATURES
from ltr_core.scoring import make_scorer


def large_model(trees: int, leaves: int) -> bytes:
    """A valid ranking model of `trees` trees of up to `leaves` leaves: 40 trained trees,
    repeated and renumbered (tree_sizes rewritten)."""
    rng = np.random.default_rng(0)
    X = rng.random((30_000, len(FEATURES)))
    y = (X @ rng.random(len(FEATURES)) * 2).astype(int).clip(0, 4)
    data = lgb.Dataset(X, y, group=[30] * 1000, feature_name=list(FEATURES))
    params = {"objective": "lambdarank", "num_leaves": leaves, "min_data_in_leaf": 5}
    booster = lgb.train({**params, "verbosity": -1}, data, num_boost_round=40)
    text = booster.model_to_string()
    head, rest = text.split("\nTree=0\n", 1)
    body, tail = ("Tree=0\n" + rest).split("end of trees", 1)
    blocks = [b.strip("\n").split("\n", 1)[1] for b in body.split("\n\n") if b.strip()]
    out = [f"Tree={i}\n{blocks[i % len(blocks)]}\n\n\n" for i in range(trees)]
    sizes = " ".join(str(len(b.encode())) for b in out)
    head = re.sub(r"tree_sizes=[^\n]*", "tree_sizes=" + sizes, head + "\n")
    return (head + "".join(out) + "end of trees" + tail).encode()


def _work() -> None:
    total = 0
    for i in range(800):
        total += i * i


def rounds_per_second(until: Callable[[], bool]) -> tuple[float, float]:
    """Rounds of work + GIL release per second on this thread until `until()`; and the time."""
    rounds, start = 0, time.perf_counter()
    while not until():
        _work()
        time.sleep(0)
        rounds += 1
    elapsed = time.perf_counter() - start
    return rounds / elapsed, elapsed


def _past(deadline: float) -> bool:
    return time.perf_counter() >= deadline


def _finished(worker: threading.Thread) -> bool:
    return not worker.is_alive()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", type=int, default=1800)
    parser.add_argument("--leaves", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model = large_model(args.trees, args.leaves)
    weights = weights_json({name: 1 / len(FEATURES) for name in FEATURES})
    metadata = {"checksums": {"ltr_weights.json": sha256(weights), "model.txt": sha256(model)}}

    def in_process() -> None:
        model_format.check_model_format(model, FEATURES)
        model_check.check_model_text(model, FEATURES, check_format=False)
        make_scorer("model", {}, model.decode())

    def child() -> None:
        validate_artifact(weights, model, metadata)
        make_scorer("model", {}, model.decode())

    figures: dict[str, float | int | str] = {"reload_model_mb": round(len(model) / 2**20, 1)}
    runs: dict[str, list[tuple[float, float, float]]] = {"in_process": [], "child": []}
    for _ in range(args.repeats):
        for name, reload in (("in_process", in_process), ("child", child)):
            model_check._PASSED.clear()
            model_format._PASSED.clear()
            idle_until = time.perf_counter() + 1.0
            idle, _ = rounds_per_second(partial(_past, idle_until))
            worker = threading.Thread(target=reload)
            worker.start()
            busy, seconds = rounds_per_second(partial(_finished, worker))
            worker.join()
            runs[name].append((busy / idle, seconds, idle))
    for name, values in runs.items():
        figures[f"reload_{name}_share_of_idle"] = statistics.median(v[0] for v in values)
        figures[f"reload_{name}_seconds"] = statistics.median(v[1] for v in values)
    figures["idle_rounds_per_s"] = statistics.median(
        v[2] for values in runs.values() for v in values
    )
    print(f"machine: {machine()}")
    report(figures)


if __name__ == "__main__":
    main()
