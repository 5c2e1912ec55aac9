"""`make demo`: simulate weeks of traffic with the feedback loop, run the nightly pipeline day by
day, and print what the gate decided next to what the simulator knows is true.

The loop runs as in production. Until the first publication, each day's lists are shown in the
platform's own v2.8 order and written to the audit log. From the first publication on, the
ranking service (`ltr serve`, started once on a free 127.0.0.1 port) ranks every case of a day
over HTTP (`POST /rank`, exploration swaps included); the simulated users act on the order it
returned, under the simulator's click model, and their feedback goes to `POST /feedback`; the
pipeline's raw_events reads what the service logged (LTR_SERVING_LOG_DIR). After each night that
publishes, the service is told to reload (`POST /reload`, as the reload sensor does), so the
version serving the next day is the one just published
(`ltr_assets.simulation.through_service`). The demo launches its runs from the code location the
UI loads, as the schedule does (`ltr_assets.defs.launch`), against the Dagster instance in
DAGSTER_HOME, so the runs (with their origin, partition, ltr/outcome and ltr/reason tags),
materializations and check results are there to browse afterwards (`make ui`).
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

from ltr_assets.metrics.ranking import Interval

if TYPE_CHECKING:
    from ltr_assets.gate.summary import CandidateSummary
    from ltr_assets.simulation.through_service import ServedDay, ServiceProcess


# How the report names a night's outcome (its run's ltr/outcome).
NIGHT_WORDS = {
    "published": "published",
    "gate_refused": "refused",
    "crashed": "CRASHED",
    "succeeded": "ok",
}


@dataclass
class DayRow:
    day: date
    shown_by: str
    outcome: str  # the night's ltr/outcome: published | gate_refused | crashed | succeeded
    failed: list[str]
    estimate: float | None  # counterfactual nDCG@5 of the candidate
    low: float | None
    vs_logged: float | None
    truth: float | None  # the simulator's true nDCG@5 of the same scorer on the same lists
    served: ServedDay | None = None  # how the service served the day (None: v2.8, audit log)
    online: dict[str, Any] | None = None  # online_comparison's metadata for the day


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


def _version_truth(settings: Any, simulator: Any, version: str, days: list[date]) -> float:
    """True nDCG@5 of a registry version's scorer (the one serving runs) on every list of
    `days` (the simulator's true gains; the lists are the same whichever ranker showed them)."""
    from ltr_assets.metrics.ranking import gain_ndcg
    from ltr_assets.registry.local import LocalRegistry
    from ltr_core.scoring import make_scorer

    registry = LocalRegistry(settings.registry_dir, None, settings.artifact_keys)
    artifact = registry.load(version)
    scorer = make_scorer(settings.scorer, artifact.weights, artifact.model_text)
    cases = [case for day in days for case in simulator.day_cases(day)]
    matrix = np.vstack([case.features for case in cases])
    gains = np.concatenate([case.gains for case in cases])
    sizes = [len(case.lawyer_ids) for case in cases]
    return gain_ndcg(gains, scorer.score(matrix), sizes)


@dataclass
class OnlineVerdict:
    """A candidate the online comparison decided on, its evidence, and the truth."""

    candidate: str
    live: str
    day: date
    decision: str
    evidence: dict[str, Any]
    days: list[date]
    truth_candidate: float
    truth_live: float


def _online_verdicts(settings: Any, simulator: Any, rows: list[DayRow]) -> list[OnlineVerdict]:
    """Every promotion and retirement of the run, with the truth on the days it was compared."""
    verdicts = []
    for row in rows:
        online = row.online or {}
        if online.get("decision") not in ("promote", "retire"):
            continue
        days = [date.fromisoformat(d) for d in online.get("days_with_evidence", [])]
        candidate, live = online["candidate"], online["live"]
        verdicts.append(
            OnlineVerdict(
                candidate,
                live,
                row.day,
                online["decision"],
                online,
                days,
                _version_truth(settings, simulator, candidate, days),
                _version_truth(settings, simulator, live, days),
            )
        )
    return verdicts


def _print_online(verdicts: list[OnlineVerdict]) -> None:
    print(
        "\nonline comparisons (team-draft interleaving of the canary candidate with live): the "
        "verdict and its evidence beside the simulator's true nDCG@5 of both on the same days"
    )
    if not verdicts:
        print("  no candidate was promoted or retired")
        return
    agree = signed = 0
    for v in verdicts:
        e = v.evidence
        delta = v.truth_candidate - v.truth_live
        timeout = bool(e.get("timed_out"))
        right = (v.decision == "promote") == (delta >= 0)
        if not timeout:  # a timeout says "not shown either way", not "worse"
            signed += 1
            agree += right
        verdict = (
            "no verdict on the sign (undecided in time)"
            if timeout
            else f"verdict {'agrees' if right else 'disagrees'} with the truth's sign"
        )
        print(
            f"  {v.day}  {v.decision:7s} {v.candidate} vs live {v.live}: "
            f"{e.get('clicked_requests')} clicked requests on {len(v.days)} day(s), "
            f"{e.get('requests')} where the rankings differ "
            f"({e.get('wins')} won / {e.get('losses')} lost / {e.get('ties')} tied), "
            f"win share {e.get('win_share')} [95% {e.get('win_share_95ci')}], "
            f"CTR cand {e.get('candidate_ctr')} live {e.get('live_ctr')}"
        )
        print(
            f"      truth: nDCG@5 candidate {v.truth_candidate:.4f}, live {v.truth_live:.4f}, "
            f"Δ {delta:+.4f}  -> {verdict}; {e.get('reason')}"
        )
    print(
        f"  {agree} of {signed} verdicts (promotions and retirements as worse) agree with the "
        f"sign of the true difference; {len(verdicts) - signed} retired undecided"
    )


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
    clipped_any = False
    for name, scores in rankings.items():
        estimate = judge.ndcg(scores, 5)
        clipped_any = clipped_any or estimate.interval.clipped
        print(
            f"  {name:48s} true {gain_ndcg(gains, scores, test.group_sizes):.4f}   "
            f"estimate {estimate_text(estimate.value, estimate.interval)}"
        )
    if clipped_any:
        print(f"  {CLIPPED_NOTE}")


CLIPPED_NOTE = (
    "* interval clipped to nDCG's range [0, 1]; the estimate itself is a ratio of sums over "
    "the lists, which for a very good ranking may pass 1"
)


def estimate_text(value: float, interval: Interval) -> str:
    """`0.9512 [0.9100, 0.9800]`, with a `*` (CLIPPED_NOTE) when the interval was clipped to
    the metric's range: without it an estimate above 1 beside an interval ending at 1 reads as
    an estimate outside its own interval."""
    mark = "*" if interval.clipped else ""
    return f"{value:.4f} [{interval.low:.4f}, {interval.high:.4f}]{mark}"


# The online decision rule at the demo's traffic (benchmarks/online.py, docs/methodology.md).
DEMO_RULE = {"LTR_INTERLEAVE_MIN_REQUESTS": "100", "LTR_CANARY_MAX_DAYS": "5"}
# What keeps 28 nights within minutes on 2 cores (the measured time is in the README): a night's
# training and gate cost about 1.3 s per day of window (LambdaRank on 400 lists a day
# dominates) plus 0.1 s per 100 candidates of LTR_MAX_CANDIDATES (the latency gate times 1,000
# requests at that size). The demo's lists hold at most 30 candidates. On a window of 7 x 400
# lists LightGBM runs faster on one thread than on two (measured side by side): its per-round
# work is too small to pay for OpenMP's synchronisation. Production keeps the defaults
# (14 days, 1,000 candidates, all cores).
DEMO_SCALE = {"LTR_TRAIN_WINDOW_DAYS": "7", "LTR_MAX_CANDIDATES": "200", "LTR_NUM_THREADS": "1"}


def demo_env(settings: Any) -> dict[str, str]:
    """The configuration the demo's Definitions were built with (read at code-location load),
    for `make ui`, `dagster dev` and the CLI: without it they show partitions from 2026-01-01;
    and the online rule it ran with, so a run launched from the UI decides alike."""
    return {
        "LTR_START_DATE": settings.start_date,
        "LTR_TRAIN_WINDOW_DAYS": str(settings.train_window_days),
        "LTR_INTERLEAVE_MIN_REQUESTS": str(settings.interleave_min_requests),
        "LTR_INTERLEAVE_MIN_EVIDENCE": str(settings.interleave_min_evidence),
        "LTR_CANARY_MAX_DAYS": str(settings.canary_max_days),
        "LTR_MAX_CANDIDATES": str(settings.serving.max_candidates),
        "LTR_NUM_THREADS": str(settings.num_threads),
    }


class DemoLoop:
    """The demo's days, one `run_day` each: traffic (v2.8 into the audit log before the first
    publication, the ranking service after it), then that night's pipeline runs, launched from
    the code location as scheduled runs are (so the UI lists them under the location and they
    carry ltr/outcome and ltr/reason). The service is started at the first publication and
    stopped by `close` (its whole process group), which also releases the location."""

    def __init__(
        self,
        settings: Any,
        simulator: Any,
        events_file: Path,
        seed: int,
        instance: Any,
        explore_rate: float | None = None,
    ) -> None:
        from ltr_assets.defs.launch import LocationLauncher
        from ltr_assets.registry.local import LocalRegistry

        self.settings = settings
        self.simulator = simulator
        self.events_file = events_file
        self.seed = seed
        self.instance = instance
        self.explore_rate = explore_rate
        self.registry = LocalRegistry(
            settings.registry_dir, settings.weights_path, settings.artifact_keys
        )
        self.launcher = LocationLauncher(instance)
        self.service: ServiceProcess | None = None
        self.served_version: str | None = None
        self.served_candidate: str | None = None
        self.sent = (0, 0)  # impressions and feedback events the service logged in all
        self.days_run = 0
        self.results: dict[date, Any] = {}  # each day's daily-job result

    def sync_service(self) -> str | None:
        """Once a version is published: the service started (first time) or told to reload
        (when `latest` or the canary candidate moved since it last loaded, as the reload
        sensors do after a publication or an online decision); the version it serves (None
        before)."""
        from ltr_assets.simulation.through_service import ServiceError, ServiceProcess

        latest = self.registry.latest_version()
        if latest is None:
            return None
        candidate = self.registry.candidate_version()
        if self.service is None:
            self.service = ServiceProcess(
                self.settings.serving_log_dir, explore_rate=self.explore_rate
            )
            health = self.service.start()
            self.served_version = health["version"]
            self.served_candidate = (health.get("candidate") or {}).get("version")
        elif (latest, candidate) != (self.served_version, self.served_candidate):
            self.served_version = self.service.client.reload()
            health = self.service.client.health()
            self.served_candidate = (health.get("candidate") or {}).get("version")
        if self.served_version != latest:
            raise ServiceError(f"the service serves {self.served_version}, latest is {latest}")
        if self.served_candidate != candidate:
            raise ServiceError(
                f"the service interleaves {self.served_candidate}, the candidate is {candidate}"
            )
        return self.served_version

    def run_day(self, day: date) -> DayRow:
        from ltr_assets.gate.summary import CandidateSummary
        from ltr_assets.lake.paths import lake_from_settings
        from ltr_assets.simulation.simulator import PLATFORM_VERSION, render_lines
        from ltr_assets.simulation.through_service import serve_day, wait_until_logged

        served = None
        if self.sync_service() is None:  # before the first publication: v2.8, the audit log
            events = self.simulator.day_events(day)
            events.sort(key=lambda e: (e["timestamp"], e["event_id"]))
            with self.events_file.open("a") as handle:
                for line in render_lines(events, "audit", self.seed + self.days_run):
                    handle.write(line + "\n")
            shown_by = PLATFORM_VERSION
        else:
            assert self.service is not None
            served = serve_day(self.simulator, day, self.service.client)
            self.sent = (self.sent[0] + served.impressions, self.sent[1] + served.feedback)
            wait_until_logged(self.service.client, self.service.log_dir, day, *self.sent)
            shown_by = served.version
        # The report below says what each run did; Dagster's own step-by-step console log (and
        # the stack trace of the first day's intended gate failure) would bury it. The runs'
        # full logs stay in the instance for the UI.
        quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
        run = self.launcher.create_run("ltr_daily_job", day.isoformat(), quiet)
        result, outcome = self.launcher.execute_and_tag(run)
        if self.days_run > 0:  # as the schedule does: refresh the labels of the day before
            self.launcher.launch(
                "ltr_label_refresh_job", (day - timedelta(days=1)).isoformat(), quiet
            )
        self.days_run += 1
        self.results[day] = result
        failed = _failed_checks(self.instance, run.run_id)
        assert outcome is not None  # ltr_daily_job's runs are tagged (TAGGED_JOBS)
        row = DayRow(day, shown_by, outcome.outcome, failed, None, None, None, None, served)
        for materialization in result.asset_materializations_for_node("online_comparison"):
            row.online = {k: v.value for k, v in materialization.metadata.items()}
        candidate = lake_from_settings(self.settings).candidate(day) / "candidate.json"
        if candidate.exists():
            metrics = CandidateSummary.from_json(json.loads(candidate.read_text())).metrics
            ndcg5 = metrics.counterfactual[5]
            row.estimate, row.low = ndcg5.value, ndcg5.interval.low
            row.vs_logged = metrics.vs_logged.difference
            row.truth = _candidate_truth(
                self.settings, self.simulator, day, self.simulator.truth_frame()
            )
        return row

    def close(self) -> None:
        """Stop the service (if started) and release the code location."""
        try:
            if self.service is not None:
                self.service.stop()
        finally:
            self.launcher.close()


def run_demo(days: int = 28, seed: int = 7) -> int:
    started = time.perf_counter()
    last = datetime.now(UTC).date() - timedelta(days=1)
    first = last - timedelta(days=days - 1)
    os.environ.setdefault("LTR_START_DATE", first.isoformat())
    # The canary rollout (the default) with the decision rule sized for the demo's traffic:
    # 400 lists a day, 20% interleaved, about 60 of them clicked. The defaults (200 clicked
    # requests within 3 days) assume more traffic than that; docs/methodology.md measures it.
    for name, value in {**DEMO_RULE, **DEMO_SCALE}.items():
        os.environ.setdefault(name, value)

    from dagster import DagsterInstance

    from ltr_assets.gate.summary import CandidateSummary
    from ltr_assets.simulation.simulator import Simulator, SimulatorConfig
    from ltr_core.settings import Settings, env_file_path, write_env_file

    settings = Settings.from_env()
    write_env_file(env_file_path(os.environ), demo_env(settings))
    simulator = Simulator(SimulatorConfig(start=first, days=days, seed=seed))
    events_file = Path(settings.audit_log).parent / f"audit-{first}.jsonl"
    events_file.parent.mkdir(parents=True, exist_ok=True)
    events_file.write_text("")
    print(f"simulating {days} days, {first} .. {last}: the platform's v2.8 orders the lists into "
          f"{events_file} until the first publication; from then on the ranking service ranks "
          f"them over HTTP and logs them under {settings.serving_log_dir}")  # fmt: skip

    loop = DemoLoop(settings, simulator, events_file, seed, DagsterInstance.get())
    try:
        rows = [loop.run_day(first + timedelta(days=i)) for i in range(days)]
        _print_days(rows)
        _print_online(_online_verdicts(settings, simulator, rows))
        registry = loop.registry
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
        _print_curve(meta, simulator)
        _show_curve_with_truth(loop.instance, latest, meta, simulator)
        print(
            "weights (sum 1.0): " + ", ".join(f"{f}={w:.3f}" for f, w in artifact.weights.items())
        )
        _final_report(settings, simulator, artifact, meta, simulator.truth_frame())
        print(f"flat weights file: {settings.weights_path}")
        loop.sync_service()  # the night's publication, if any, is what the sample sees
        _rank_sample(loop.service, simulator, last)  # a case from the newest day
    finally:
        loop.close()
    print(f"demo wall time: {time.perf_counter() - started:.1f} s")
    return 0


def _failed_checks(instance: Any, run_id: str) -> list[str]:
    """The checks the run's evaluations failed, as the instance stored them: the run's own
    steps' and those published_weights records itself into the run (`live_version_age`,
    `retention`, `s3_published`), which the in-process result does not list."""
    from dagster import AssetCheckEvaluation, DagsterEventType

    failed = []
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.get_dagster_event().event_specific_data
        if isinstance(evaluation, AssetCheckEvaluation) and not evaluation.passed:
            failed.append(evaluation.check_name)
    return failed


def _print_days(rows: list[DayRow]) -> None:
    print(
        "\nthe gate's counterfactual nDCG@5 of each night's candidate, and the truth; the lists "
        "were shown by v2.8 or by the service (swaps: requests its exploration swapped)"
    )
    print("partition   shown by         swaps  night      estimate [low]    vs shown  true   "
          "online decision        failed checks")  # fmt: skip
    for r in rows:
        if r.estimate is None:
            figures = f"{'-':>16}  {'-':>8}  {'-':>5}"
        else:
            figures = (
                f"{r.estimate:.4f} [{r.low:.4f}]  {r.vs_logged:+.4f}  {r.truth:.4f}"
                if r.truth is not None
                else f"{r.estimate:.4f} [{r.low:.4f}]  {r.vs_logged:+.4f}  {'-':>5}"
            )
        swaps = f"{r.served.swapped:5d}" if r.served is not None else f"{'-':>5}"
        print(
            f"{r.day}  {r.shown_by:15s}  {swaps}  {NIGHT_WORDS[r.outcome]:9s}  {figures}  "
            f"{_online_cell(r.online):21s}  {', '.join(r.failed) or '-'}"
        )
    served = [r.served for r in rows if r.served is not None]
    if served:
        print(
            f"through the service: {sum(s.requests for s in served)} requests on "
            f"{len(served)} days ({sum(s.swapped for s in served)} swapped), "
            f"{sum(s.impressions for s in served)} impressions logged, "
            f"{sum(s.feedback for s in served)} feedback events posted, "
            f"{sum(s.seconds for s in served):.1f} s"
        )


def _online_cell(online: dict[str, Any] | None) -> str:
    """`collect 112/31 0.54` (the decision, clicked requests so far / those where the rankings
    differ, win share), or `-`."""
    undecided = (None, "no_candidate", "not_started", "decided_before")
    if not online or online.get("decision") in undecided:
        return "-"
    clicked = f"{online.get('clicked_requests', '')}/{online.get('requests', '')}"
    return f"{online['decision']} {clicked} {online.get('win_share', '')}"


_SOURCE_TAGS = {"click_model": "cm", "interventions": "sw", "reference": "ref"}


def _print_curve(meta: CandidateSummary, simulator: Any) -> None:
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
    if curve.sources:
        print(
            "where each position's value comes from:      "
            + " ".join(f"{_SOURCE_TAGS.get(s, s):>5s}" for s in curve.sources[:10])
            + "   (sw: swap interventions, cm: click model, ref: position 1)"
        )
    if curve.swapped_impressions:
        print(
            "swapped impressions at each position:        "
            + " ".join(f"{n:5d}" for n in curve.swapped_impressions[:10])
        )


def _show_curve_with_truth(
    instance: Any, version: str, meta: CandidateSummary, simulator: Any
) -> None:
    """The live version's examination curve beside the simulator's truth, for the UI: an
    observation on published_weights (only the demo knows the truth, so the pipeline's own
    charts cannot draw it)."""
    from dagster import AssetKey, AssetObservation, MetadataValue

    from ltr_assets.gate.charts import markdown_image
    from ltr_assets.gate.nightly import CURVE_POSITIONS, curve_chart

    positions = np.arange(1, CURVE_POSITIONS + 1)
    truth = [float(v) for v in simulator.config.click_model.examination(positions)]
    chart = markdown_image(curve_chart(meta.propensity, truth))
    instance.report_runless_asset_event(
        AssetObservation(
            asset_key=AssetKey("published_weights"),
            partition=meta.partition.isoformat(),
            description=f"the live version {version}'s examination curve beside the truth",
            metadata={"version": version, "curve_vs_truth": MetadataValue.md(chart)},
        )
    )


def _rank_sample(service: ServiceProcess | None, simulator: Any, day: date) -> None:
    """Rank one simulated case of `day` on the running service (no simulated clock: it is
    logged at today's time, in today's folder, which no partition of the demo reads)."""
    from ltr_assets.simulation.through_service import rank_body

    if service is None:
        return
    case = simulator.day_cases(day)[0]
    body = {**rank_body(case), "top_k": 5}
    del body["request_id"]  # the service makes one: this is not one of the day's requests
    health = service.client.health()
    ranked = service.client.http.post("/rank", json=body).json()
    print(f"\nranking service on {service.url}: version {health['version']} ({health['source']})")
    print(f"POST /rank for case {body['case_id']} with {len(case.lawyer_ids)} candidates -> top 5:")
    for item in ranked["candidates"]:
        print(f"  {item['rank']}. {item['lawyer_id']}  score={item['score']:.4f}")
