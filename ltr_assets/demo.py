"""`make demo`: simulate weeks of traffic with the feedback loop, run the nightly pipeline day by
day, and print what the gate decided next to what the simulator knows is true.

Each day's lists are shown in the order of the version live that day (the platform's own v2.8
until the first publication), exactly as the product closes the loop in production. The demo
drives the same Definitions the UI loads, against the Dagster instance in DAGSTER_HOME, so the
runs, materializations and check results are there to browse afterwards (`make ui`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from ltr_assets.gate.summary import CandidateSummary


@dataclass
class DayRow:
    day: date
    shown_by: str
    ok: bool
    failed: list[str]
    estimate: float | None  # counterfactual nDCG@5 of the candidate
    low: float | None
    vs_logged: float | None
    truth: float | None  # the simulator's true nDCG@5 of the same scorer on the same lists


def _live_ranker(registry: Any, scorer_kind: str) -> tuple[Any, str]:
    """The scorer `latest` points at (what the ranking service serves), or the platform's."""
    from ltr_assets.simulation.simulator import PLATFORM_VERSION
    from ltr_core.scoring import make_scorer

    version = registry.latest_version()
    if version is None:
        return None, PLATFORM_VERSION
    artifact = registry.load(version)
    scorer = make_scorer(scorer_kind, artifact.weights, artifact.model_text)
    return scorer.score, version


def _candidate_truth(settings: Any, simulator: Any, day: date, truth: Any) -> float | None:
    """True nDCG@5 of day's candidate (the scorer the gate evaluated) on its test lists."""
    from ltr_assets.lake.paths import lake_from_settings
    from ltr_assets.learning.training import NotEnoughData, load_window, split_by_time
    from ltr_assets.metrics.ranking import gain_ndcg
    from ltr_core.artifacts.format import MODEL_FILE, WEIGHTS_FILE
    from ltr_core.scoring import make_scorer

    lake = lake_from_settings(settings)
    folder = lake.candidate(day)
    if not (folder / WEIGHTS_FILE).exists():
        return None
    weights = json.loads((folder / WEIGHTS_FILE).read_text())
    scorer = make_scorer(settings.scorer, weights, (folder / MODEL_FILE).read_text())
    try:
        _, _, test = split_by_time(load_window(lake, day, settings.train_window_days).frame)
    except NotEnoughData:
        return None
    gains = test.frame.merge(truth, on=["request_id", "lawyer_id"], how="left")["gain"]
    return gain_ndcg(gains.to_numpy(), scorer.score(test.X), test.group_sizes)


def _final_report(
    settings: Any, simulator: Any, latest: Any, summary: CandidateSummary, truth: Any
) -> None:
    """On the published version's test lists: truth and gate estimate of every ranking."""
    from ltr_assets.lake.paths import lake_from_settings
    from ltr_assets.learning.training import (
        TrainingOptions,
        counterfactual_evaluator,
        load_window,
        split_by_time,
        train_ranker,
    )
    from ltr_assets.metrics.ranking import gain_ndcg
    from ltr_assets.simulation.simulator import platform_ranker
    from ltr_core.scoring import ModelScorer, WeightsScorer, predict

    day = summary.partition
    window = load_window(lake_from_settings(settings), day, settings.train_window_days)
    train, valid, test = split_by_time(window.frame)
    options = TrainingOptions.from_settings(settings)
    naive = train_ranker(train, valid, replace(options, debias="none"))
    debiased = train_ranker(train, valid, options)
    judge = counterfactual_evaluator(test, debiased.debiaser)
    gains = test.frame.merge(truth, on=["request_id", "lawyer_id"], how="left")["gain"].to_numpy()
    rng = np.random.default_rng(0)
    rankings = {
        f"published {summary.scorer} scorer ({latest.version})": (
            WeightsScorer(latest.weights).score(test.X)
            if summary.scorer == "weights"
            else ModelScorer.from_model_text(latest.model_text).score(test.X)
        ),
        "its LightGBM model (debiased)": ModelScorer.from_model_text(latest.model_text).score(
            test.X
        ),
        "a model trained on raw clicks (no debiasing)": predict(naive.booster, test.X),
        "weights derived from raw clicks": WeightsScorer(naive.weights).score(test.X),
        "the order shown (logged)": -test.positions.astype(float),
        "the platform's v2.8": platform_ranker(np.nan_to_num(test.X)),
        "random": rng.random(len(test.frame)),
        "the simulator's oracle (true gains)": gains,
    }
    print(f"\non {latest.version}'s {test.groups} test lists ({day}): true nDCG@5 (simulator) "
          "vs the gate's counterfactual estimate")  # fmt: skip
    for name, scores in rankings.items():
        estimate = judge.ndcg(scores, 5)
        print(
            f"  {name:48s} true {gain_ndcg(gains, scores, test.group_sizes):.4f}   "
            f"estimate {estimate.value:.4f} [{estimate.interval.low:.4f}, "
            f"{estimate.interval.high:.4f}]"
        )


def demo_env(settings: Any) -> dict[str, str]:
    """The configuration the demo's Definitions were built with (read at code-location load),
    for `make ui`, `dagster dev` and the CLI: without it they show partitions from 2026-01-01."""
    return {
        "LTR_START_DATE": settings.start_date,
        "LTR_TRAIN_WINDOW_DAYS": str(settings.train_window_days),
    }


def run_demo(days: int = 28, seed: int = 7) -> int:
    started = time.perf_counter()
    last = datetime.now(UTC).date() - timedelta(days=1)
    first = last - timedelta(days=days - 1)
    os.environ.setdefault("LTR_START_DATE", first.isoformat())
    # The demo's days are simulated with no ranking service interleaving a candidate, so no
    # evidence could ever promote one: each gated version goes live directly.
    os.environ.setdefault("LTR_ROLLOUT", "direct")

    from dagster import AssetCheckEvaluation, DagsterInstance

    from ltr_assets.definitions import defs
    from ltr_assets.gate.summary import CandidateSummary
    from ltr_assets.lake.paths import lake_from_settings
    from ltr_assets.registry.local import LocalRegistry
    from ltr_assets.simulation.simulator import Simulator, SimulatorConfig, render_lines
    from ltr_core.settings import Settings, env_file_path, write_env_file

    settings = Settings.from_env()
    write_env_file(env_file_path(os.environ), demo_env(settings))
    simulator = Simulator(SimulatorConfig(start=first, days=days, seed=seed))
    registry = LocalRegistry(settings.registry_dir, settings.weights_path, settings.artifact_keys)
    events_file = Path(settings.audit_log).parent / f"audit-{first}.jsonl"
    events_file.parent.mkdir(parents=True, exist_ok=True)
    events_file.write_text("")
    print(f"simulating {days} days, {first} .. {last}, into {events_file}; each day's lists are "
          "shown in the live version's order")  # fmt: skip

    # The report below says what each run did; Dagster's own step-by-step console log (and the
    # stack trace of the first day's intended gate failure) would bury it. The runs' full logs
    # stay in the instance for the UI.
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    daily = defs.resolve_job_def("ltr_daily_job")
    refresh = defs.resolve_job_def("ltr_label_refresh_job")
    instance = DagsterInstance.get()
    rows: list[DayRow] = []
    for i in range(days):
        day = first + timedelta(days=i)
        ranker, shown_by = _live_ranker(registry, settings.scorer)
        events = simulator.day_events(day, ranker, shown_by)
        events.sort(key=lambda e: (e["timestamp"], e["event_id"]))
        with events_file.open("a") as handle:
            for line in render_lines(events, "audit", seed + i):
                handle.write(line + "\n")
        result = daily.execute_in_process(
            partition_key=day.isoformat(), instance=instance, raise_on_error=False, run_config=quiet
        )
        if i > 0:  # as the schedule does: refresh the labels of the day before
            refresh.execute_in_process(
                partition_key=(day - timedelta(days=1)).isoformat(),
                instance=instance,
                raise_on_error=False,
                run_config=quiet,
            )
        failed = [
            e.event_specific_data.check_name
            for e in result.all_events
            if isinstance(e.event_specific_data, AssetCheckEvaluation)
            and not e.event_specific_data.passed
        ]
        row = DayRow(day, shown_by, result.success, failed, None, None, None, None)
        candidate = lake_from_settings(settings).candidate(day) / "candidate.json"
        if candidate.exists():
            metrics = CandidateSummary.from_json(json.loads(candidate.read_text())).metrics
            ndcg5 = metrics.counterfactual[5]
            row.estimate, row.low = ndcg5.value, ndcg5.interval.low
            row.vs_logged = metrics.vs_logged.difference
            row.truth = _candidate_truth(settings, simulator, day, simulator.truth_frame())
        rows.append(row)

    print("\nthe gate's counterfactual nDCG@5 of each night's candidate, and the truth")
    print("partition   shown by          run   estimate [low]    vs shown  true   failed checks")
    for r in rows:
        if r.estimate is None:
            figures = f"{'-':>16}  {'-':>8}  {'-':>5}"
        else:
            figures = (
                f"{r.estimate:.4f} [{r.low:.4f}]  {r.vs_logged:+.4f}  {r.truth:.4f}"
                if r.truth is not None
                else f"{r.estimate:.4f} [{r.low:.4f}]  {r.vs_logged:+.4f}  {'-':>5}"
            )
        print(
            f"{r.day}  {r.shown_by:16s}  {'ok  ' if r.ok else 'FAIL'}  {figures}  "
            f"{', '.join(r.failed) or '-'}"
        )

    latest = registry.latest_version()
    if latest is None:
        print("\nno version was published")
        return 1
    artifact = registry.load(latest)
    meta = CandidateSummary.from_json(artifact.metadata)
    print(
        f"\npublished versions: {len(registry.versions())}; latest = {latest} "
        f"(partition {meta.partition}, scorer {meta.scorer}, debias "
        f"{meta.debias.method}, weights by {meta.weights_method})"
    )
    for gate in meta.gate:
        print(f"  {gate.name:14s} {'pass' if gate.passed else 'FAIL'}  {gate.description}")
    curve = meta.propensity
    examination = np.asarray(curve.examination[:10])
    print(
        f"examination curve ({curve.method}), positions 1-10: "
        + " ".join(f"{v:.3f}" for v in examination)
    )
    true_curve = simulator.config.click_model.examination(np.arange(1, 11))
    print(
        "the simulator's true curve:                  " + " ".join(f"{v:.3f}" for v in true_curve)
    )
    print("weights (sum 1.0): " + ", ".join(f"{f}={w:.3f}" for f, w in artifact.weights.items()))
    _final_report(settings, simulator, artifact, meta, simulator.truth_frame())
    print(f"flat weights file: {settings.weights_path}")
    _serve_and_rank(simulator, last)  # a case from the newest day
    print(f"demo wall time: {time.perf_counter() - started:.1f} s")
    return 0


def _serve_and_rank(simulator: Any, day: date) -> None:
    """Start the ranking service on a free 127.0.0.1 port and rank one simulated case."""
    import socket
    import subprocess
    import sys

    import httpx

    from ltr_core.features import FEATURES

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "ltr_assets.cli", "serve", "--host", "127.0.0.1", "--port",
         str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                health = httpx.get(f"{url}/ltr/health", timeout=1).json()
                break
            except (httpx.HTTPError, ValueError):
                if time.monotonic() > deadline or server.poll() is not None:
                    print("the ranking service did not start")
                    return
                time.sleep(0.2)
        shown = [
            e
            for e in simulator.day_events(day)
            if e["event_type"] == "match_recommendation" and e["request_id"].endswith("-00000")
        ]
        body = {
            "case_id": shown[0]["case_id"],
            "candidates": [
                {"lawyer_id": e["lawyer_id"], "features": {f: e["features"][f] for f in FEATURES}}
                for e in shown
            ],
            "top_k": 5,
        }
        ranked = httpx.post(f"{url}/rank", json=body, timeout=5).json()
        print(f"\nranking service on {url}: version {health['version']} ({health['source']})")
        print(f"POST /rank for case {body['case_id']} with {len(shown)} candidates -> top 5:")
        for item in ranked["candidates"]:
            print(f"  {item['rank']}. {item['lawyer_id']}  score={item['score']:.4f}")
    finally:
        server.terminate()
        server.wait(timeout=10)
