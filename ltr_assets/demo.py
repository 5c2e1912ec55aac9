"""`make demo`: simulate weeks of events, run the nightly pipeline day by day, print a report.

It drives the same Definitions the UI loads, against the Dagster instance in DAGSTER_HOME, so the
runs, materializations and check results are there to browse afterwards (`make ui`).
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd


def _baselines(simulator, settings, day: date, model_text: str) -> dict[str, float]:
    """Test-split nDCG@5 of the LightGBM model, the true-utility ranking (oracle), the
    platform's own order and a random ranking, on the published version's test groups."""
    from ltr_assets.lake import Lake
    from ltr_assets.metrics import ndcg_at_k
    from ltr_assets.scoring import ModelScorer
    from ltr_assets.training import load_window, split_by_time

    window = load_window(Lake(settings.data_dir), day, settings.train_window_days)
    _, _, test = split_by_time(window.frame)
    truth = pd.DataFrame(
        [(c.case_id, c.lawyer_id, c.utility) for c in simulator.truth],
        columns=["case_id", "lawyer_id", "utility"],
    )
    frame = test.frame.merge(truth, on=["case_id", "lawyer_id"], how="left")
    rng = np.random.default_rng(0)
    return {
        "model": ndcg_at_k(
            test.y, ModelScorer.from_model_text(model_text).score(test.X), test.group_sizes
        ).value,
        "oracle": ndcg_at_k(test.y, frame["utility"].to_numpy(), test.group_sizes).value,
        "random": ndcg_at_k(test.y, rng.random(len(frame)), test.group_sizes).value,
        "platform_order": ndcg_at_k(
            test.y, -frame["rank_position"].to_numpy(dtype=float), test.group_sizes
        ).value,
    }


def run_demo(days: int = 28, seed: int = 7) -> int:
    started = time.perf_counter()
    last = datetime.now(UTC).date() - timedelta(days=1)
    first = last - timedelta(days=days - 1)
    os.environ.setdefault("LTR_START_DATE", first.isoformat())

    from dagster import DagsterInstance

    from ltr_assets.config import Settings
    from ltr_assets.definitions import defs
    from ltr_assets.registry import LocalRegistry
    from ltr_assets.simulator import Simulator, SimulatorConfig, render_lines

    settings = Settings.from_env()
    simulator = Simulator(SimulatorConfig(start=first, days=days, seed=seed))
    events = simulator.events()
    events_file = Path(settings.audit_log).parent / f"audit-{first}.jsonl"
    events_file.parent.mkdir(parents=True, exist_ok=True)
    events_file.write_text("".join(line + "\n" for line in render_lines(events, "audit", seed)))
    print(f"simulated {len(events)} events, {first} .. {last}, into {events_file}")

    # The report below says what each run did; Dagster's own step-by-step console log (and the
    # stack trace of the first day's intended gate failure) would bury it. The runs' full logs
    # stay in the instance for the UI.
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    daily = defs.resolve_job_def("ltr_daily_job")
    refresh = defs.resolve_job_def("ltr_label_refresh_job")
    instance = DagsterInstance.get()
    rows = []
    for i in range(days):
        day = first + timedelta(days=i)
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
            if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed
        ]
        candidate = settings.data_dir / "candidates" / day.isoformat() / "candidate.json"
        ndcg = gap = None
        if candidate.exists():
            summary = json.loads(candidate.read_text())
            ndcg = summary["metrics"]["ndcg"]["ndcg@5"]["value"]
            gap = summary["metrics"]["fairness"]["gap"]
        rows.append((day, result.success, failed, ndcg, gap))

    print("\npartition    run      nDCG@5  fairness_gap  failed checks")
    for day, ok, failed, ndcg, gap in rows:
        figures = f"{ndcg:7.4f}  {gap:12.4f}" if ndcg is not None else f"{'-':>7}  {'-':>12}"
        print(f"{day}  {'ok  ' if ok else 'FAIL'}  {figures}  {', '.join(failed) or '-'}")

    registry = LocalRegistry(settings.registry_dir, settings.weights_path)
    latest = registry.latest_version()
    if latest is None:
        print("\nno version was published")
        return 1
    artifact = registry.load(latest)
    meta = artifact.metadata
    print(
        f"\npublished versions: {len(registry.versions())}; latest = {latest} "
        f"(partition {meta['partition']}, scorer {meta['scorer']}, "
        f"weights by {meta['weights_method']})"
    )
    for gate in meta["gate"]:
        print(f"  {gate['name']:14s} {'pass' if gate['passed'] else 'FAIL'}  {gate['description']}")
    print("weights (sum 1.0): " + ", ".join(f"{f}={w:.3f}" for f, w in artifact.weights.items()))
    baselines = _baselines(
        simulator, settings, date.fromisoformat(meta["partition"]), artifact.model_text
    )
    print(
        f"test-split nDCG@5: published {meta['scorer']} scorer "
        f"{meta['metrics']['ndcg']['ndcg@5']['value']:.4f}, "
        f"LightGBM model {baselines['model']:.4f}, "
        f"oracle {baselines['oracle']:.4f}, platform order {baselines['platform_order']:.4f}, "
        f"random {baselines['random']:.4f}"
    )
    print(f"flat weights file: {settings.weights_path}")
    _serve_and_rank(simulator, last)  # a case from the newest day
    print(f"demo wall time: {time.perf_counter() - started:.1f} s")
    return 0


def _serve_and_rank(simulator, day: date) -> None:
    """Start the ranking service on a free 127.0.0.1 port and rank one simulated case."""
    import socket
    import subprocess
    import sys

    import httpx

    from ltr_assets.schema import FEATURES

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
        events = [e for e in simulator.day_events(day) if e["event_type"] == "match_recommendation"]
        request_id = events[0]["request_id"]
        shown = [e for e in events if e["request_id"] == request_id]
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
