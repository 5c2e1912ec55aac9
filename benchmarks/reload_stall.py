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

`--http`: the same through the service instead: `ltr_serving` under uvicorn (weights scorer,
impression log off) answering /rank at 100 candidates to 8 closed-loop clients in another
process, and one POST /reload to a version holding the large model 4 s into a 10 s run; /rank's
requests per second while the reload runs against before it, and the p99 of the requests in
flight during it, `--repeats` times (medians). It measures the code it runs: to compare with
other code, run it from a checkout of that code (`PYTHONPATH=<checkout>`, from that folder).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import re
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

import httpx
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


def http_reload(model: bytes) -> dict[str, float]:
    """One /reload of a version holding `model` under /rank load (see the module docstring)."""
    from benchmarks.serving import PARTITION, TOKEN, model_text, rank_bodies, run_load, start_server
    from ltr_assets.learning.training import normalise
    from ltr_assets.registry.local import LocalRegistry

    gated = {"gated_scorer": "weights"}
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LTR_", "WEIGHTS_"))}
        env.update(LTR_HOME=str(home), LTR_RELOAD_TOKEN=TOKEN, LTR_SCORER="weights")
        env.update(WEIGHTS_POLL_SECONDS="3600", LTR_IMPRESSION_LOG="off")  # /reload alone
        registry = LocalRegistry(home / "registry", home / "models" / "ltr_weights.json")
        weights = normalise(np.random.default_rng(1).random(len(FEATURES)))
        registry.publish(weights, model_text(50), gated, PARTITION)
        server = start_server(env)
        try:
            registry.publish(weights, model.decode(), gated, PARTITION)  # not loaded yet
            bodies = rank_bodies(100)
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(max_workers=1, mp_context=spawn) as load:
                load.submit(run_load, "127.0.0.1", server.port, bodies, 8, 2.0).result()
                running = load.submit(run_load, "127.0.0.1", server.port, bodies, 8, 10.0)
                time.sleep(4.0)
                started = time.monotonic()
                status = httpx.post(
                    server.url + "/reload",
                    headers={"Authorization": f"Bearer {TOKEN}"},
                    timeout=120,
                ).status_code
                ended = time.monotonic()
                result = running.result()
        finally:
            server.stop()
    if status != 200:
        raise RuntimeError(f"/reload answered {status}")
    starts = np.asarray(result["starts"])
    latencies = np.asarray(result["latencies"])
    ends = starts + latencies
    first = starts.min() + 1.0  # past the clients' first second
    before = ((ends >= first) & (ends < started)).sum() / (started - first)
    during = ((ends >= started) & (ends < ended)).sum() / (ended - started)
    in_flight = (starts <= ended) & (ends >= started)
    return {
        "share": float(during / before),
        "seconds": ended - started,
        "p99_ms": float(np.percentile(latencies[in_flight], 99) * 1000),
        "before_rps": float(before),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trees", type=int, default=1800)
    parser.add_argument("--leaves", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--http", action="store_true", help="through the service (docstring)")
    args = parser.parse_args()
    model = large_model(args.trees, args.leaves)
    if args.http:
        http_runs = [http_reload(model) for _ in range(args.repeats)]
        print(f"machine: {machine()}")
        report(
            {
                "reload_model_mb": round(len(model) / 2**20, 1),
                **{
                    f"reload_http_{key}": statistics.median(run[key] for run in http_runs)
                    for key in http_runs[0]
                },
            }
        )
        return
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
