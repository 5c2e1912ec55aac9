"""A partition's candidate model: train on the window, evaluate, gate, and later publish it.

ltr_model[D] writes the candidate into the lake (`candidates/D/`); published_weights[D] hands it
to the registry only when every gate check passed.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from datetime import date
from functools import cache
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as package_version
from pathlib import Path
from typing import Any

from lightgbm.basic import LightGBMError

from ltr_assets.gate.evaluation import (
    FAIRNESS_COVERAGE_NAME,
    GATE_NAMES,
    REPORTED_K,
    SCORER_FIDELITY_NAME,
    Baseline,
    Evaluation,
    FairnessInputs,
    GateResult,
    decide_gate,
    evaluate,
    failing_check_lines,
    fairness_coverage_result,
    logged_order_scores,
    scorer_fidelity_result,
)
from ltr_assets.gate.model_card import model_card_document
from ltr_assets.gate.summary import (
    BaselineSummary,
    CandidateSummary,
    Comparison,
    Metrics,
    SplitCounts,
    TrainingWindow,
    debias_info,
    propensity_summary,
    sampling_records,
)
from ltr_assets.lake import atomic
from ltr_assets.lake.paths import Lake, LakePath
from ltr_assets.learning.click_signal import click_signal
from ltr_assets.learning.dataset import Split
from ltr_assets.learning.propensity import TooFewImpressions
from ltr_assets.learning.training import (
    NotEnoughData,
    TrainingOptions,
    check_features_vary,
    counterfactual_evaluator,
    load_window,
    split_by_time,
    train_ranker,
)
from ltr_assets.metrics.ranking import CounterfactualEvaluator, CounterfactualReport
from ltr_assets.registry import publication
from ltr_assets.registry.local import LocalRegistry
from ltr_assets.registry.publication import PublicationReport
from ltr_assets.registry.s3_mirror import S3Mirror
from ltr_core.artifacts.format import MODEL_FILE, WEIGHTS_FILE, RegistryError, weights_json
from ltr_core.scoring import make_scorer, predict
from ltr_core.settings import Settings
from ltr_core.vocabulary import Rollout

CANDIDATE_FILE = "candidate.json"
# Written instead of a candidate when the window cannot be trained on (`Untrainable`): what
# published_weights reads to record the refusal.
REFUSAL_FILE = "refused.json"


class Untrainable(RuntimeError):
    """The window cannot give a candidate (no clicks at all, too few lists, or too few
    impressions for the click model): a refusal of the min_samples check, not a crash.
    `result` is that check's failing result."""

    def __init__(self, result: GateResult) -> None:
        super().__init__(result.description)
        self.result = result


class GateNotPassed(RuntimeError):
    """published_weights was asked to publish a candidate that failed its gate. `checks` are
    the failing checks as an operator reads them (`<check>: <value> vs <threshold>`)."""

    def __init__(self, message: str, checks: list[str]) -> None:
        super().__init__(message)
        self.checks = checks


PUBLISHED_OUTCOME = "published"  # published_weights' `outcome`: "published <version>", or:
REFUSED_OUTCOME = "not published: gate refused"


def refusal_outcome(checks: list[str]) -> str:
    """published_weights' `outcome` on a refused night: the failing checks in one line."""
    return f"{REFUSED_OUTCOME}: {'; '.join(checks)}"


@cache
def code_version() -> str:
    """The git commit of the code that trained a model, or the package version."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return "git:" + out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        try:
            return "pkg:" + package_version("ltr-platform")
        except PackageNotFoundError:
            return "unknown"


@dataclass
class CandidateReport:
    day: date
    path: LakePath
    evaluation: Evaluation
    gate: list[GateResult]
    summary: CandidateSummary
    warnings: list[GateResult]  # non-blocking checks (fairness_coverage)

    @property
    def gate_passed(self) -> bool:
        return all(result.passed for result in self.gate)


@dataclass(frozen=True)
class _Compared:
    """The baseline as the gate found it, with what the model card shows of it."""

    baseline: Baseline
    scores: Any = None  # its scores on the test lists (None: no usable baseline)
    weights: dict[str, float] | None = None


def _baseline(
    registry: LocalRegistry,
    partition: date,
    scorer_kind: str,
    test: Split,
    judge: CounterfactualEvaluator,
    candidate_scores: Any,
) -> _Compared:
    """The version to compare with, and the paired difference on the test lists. A broken
    version is no yardstick, and no reason to publish either: the gate fails with the reason."""
    version = registry.baseline_for(partition.isoformat())
    if version is None:
        return _Compared(Baseline.none())
    label = baseline_label(version, registry.latest_version(), partition.isoformat())
    try:
        artifact = registry.load(version)
        live = make_scorer(scorer_kind, artifact.weights, artifact.model_text)
        live_scores = live.score(test.X)
    except Exception as exc:  # unreadable for any reason: the gate reports it, never crashes
        return _Compared(
            Baseline(version, "unreadable", f"{type(exc).__name__}: {exc}", label=label)
        )
    paired = judge.paired(candidate_scores, live_scores, 5)
    return _Compared(
        Baseline(version, "ok", paired=paired, label=label), live_scores, artifact.weights
    )


def _ndcg_table(judge: CounterfactualEvaluator, scores: Any) -> dict[int, CounterfactualReport]:
    """Counterfactual nDCG@1/3/5/10 with 95% intervals of one ranking of the test lists."""
    return {k: judge.ndcg(scores, k) for k in REPORTED_K}


def baseline_label(version: str, live_version: str | None, partition: str) -> str:
    """ "live" when the compared version is the one serving; in a backfill (live was trained for
    a later day) it is only the newest version published for the partition or before it."""
    if version == live_version:
        return "live"
    return f"baseline (published for {partition} or before)"


def train_candidate(
    lake: Lake, registry: LocalRegistry, day: date, settings: Settings
) -> CandidateReport:
    """Train on the rolling window ending at `day`, evaluate what serving will run, gate it."""
    window = load_window(lake, day, settings.train_window_days, settings.first_day)
    folder = lake.candidate(day)
    for stale in (CANDIDATE_FILE, REFUSAL_FILE, WEIGHTS_FILE, MODEL_FILE):
        atomic.remove(folder / stale)  # a re-run decides afresh
    found: int | None = None  # clicked lists of the training split, when it is what lacks them
    try:
        train, valid, test = split_by_time(window.frame)
        check_features_vary(train)
        if not (train.y > 0).any():
            # the click model is fitted on the training split: clicks only in the newer
            # validation and test lists leave it nothing to learn from
            found, later = 0, _clicked_lists(valid.frame) + _clicked_lists(test.frame)
            raise NotEnoughData(
                f"the training split's {train.groups} lists (the oldest of the window's "
                f"{train.groups + valid.groups + test.groups}) hold no click or other positive "
                "feedback"
                + (f" ({later} newer lists do)" if later else "")
                + ": there is nothing to learn position bias or relevance from (is feedback "
                "reaching the pipeline? see raw_events' feedback count per day)"
            )
    except NotEnoughData as exc:
        counted_in = "training split" if found is not None else "window"
        if found is None:
            found = 0 if window.frame.empty else _clicked_lists(window.frame)
        raise _refusal(folder, str(exc), found, counted_in, settings) from None
    window.frame = window.frame.iloc[:0]  # the splits hold copies of the rows: free the window's
    try:
        ranker = train_ranker(train, valid, TrainingOptions.from_settings(settings))
    except TooFewImpressions as exc:
        # enough lists for the splits but too few impressions for the click model (a quiet
        # first night): refused with the click model's reason, counting what the check counts
        why = f"the click model cannot be fitted on the training split: {exc}"
        raise _refusal(folder, why, _clicked_lists(test.frame), "test split", settings) from None
    except LightGBMError as exc:
        if "num_features" not in str(exc):
            raise
        # features that vary, but too rarely for any split to leave min_data_in_leaf rows on
        # each side: LightGBM drops them all (check_features_vary caught the constant case)
        why = (
            "no feature varies enough over the training split to be split on (LightGBM kept "
            "none of them: every feature takes one value but in a few rows)"
        )
        raise _refusal(folder, why, _clicked_lists(test.frame), "test split", settings) from None
    scorer = make_scorer(settings.scorer, ranker.weights, ranker.booster)
    judge = counterfactual_evaluator(test, ranker.debiaser)
    fairness = FairnessInputs(
        test_merit=ranker.debiaser.expected_gain(test.X),
        valid=valid,
        valid_merit=ranker.debiaser.expected_gain(valid.X),
    )
    evaluation = evaluate(
        scorer, test, judge, fairness, settings.gate, max_candidates=settings.serving.max_candidates
    )
    candidate_scores = scorer.score(test.X)
    compared = _baseline(registry, day, settings.scorer, test, judge, candidate_scores)
    baseline = compared.baseline
    signal = click_signal(
        ranker.debiaser.click_model, test.positions, test.y, test.X, test.group_sizes
    )
    gate = decide_gate(evaluation, settings.gate, baseline, signal)
    warnings = [
        fairness_coverage_result(evaluation.fairness),
        scorer_fidelity_result(
            ranker.weights_method,
            judge.paired(predict(ranker.booster, test.X), candidate_scores, 5)
            if scorer.kind == "weights"
            else None,
            settings.gate.regression_margin,
        ),
    ]
    atomic.write_bytes(folder / WEIGHTS_FILE, weights_json(ranker.weights))
    atomic.write_text(folder / MODEL_FILE, ranker.booster.model_to_string())
    summary = CandidateSummary(
        partition=day,
        scorer=scorer.kind,
        training_window=TrainingWindow(
            days=settings.train_window_days,
            present=tuple(window.days_present),
            missing=tuple(window.days_missing),
            groups=SplitCounts(train.groups, valid.groups, test.groups),
            rows=SplitCounts(len(train.frame), len(valid.frame), len(test.frame)),
            ids_on_several_days=window.ids_on_several_days,
        ),
        params=ranker.info["params"],
        best_iteration=ranker.info["best_iteration"],
        debias=debias_info(ranker.info["debias"]),
        sampling=sampling_records(ranker.info["sampling"]),
        propensity=propensity_summary(ranker.propensity.to_dict()),
        weights_method=ranker.weights_method,
        weights_validation_ndcg_at_5=ranker.weights_validation,
        model_validation_ndcg_at_5=ranker.model_validation_ndcg5,
        baseline=BaselineSummary(
            version=baseline.version,
            status=baseline.status,
            label=baseline.label if baseline.version else "",
            error=baseline.error,
            paired_ndcg_at_5=baseline.paired,
            weights=compared.weights,
        ),
        # Candidate vs baseline vs the platform's logged order on the same test lists, judged
        # by the same evaluator: the model card's comparison.
        comparison=Comparison(
            candidate=_ndcg_table(judge, candidate_scores),
            baseline=None if compared.scores is None else _ndcg_table(judge, compared.scores),
            logged_order=_ndcg_table(judge, logged_order_scores(test)),
        ),
        weights=dict(ranker.weights),
        metrics=Metrics.of(evaluation),
        gate=tuple(gate),
        warnings=tuple(warnings),
        fairness_table=evaluation.fairness.table(),
        gate_passed=all(result.passed for result in gate),
        thresholds=settings.gate,
        code_version=code_version(),
    )
    text = json.dumps(summary.to_json(), indent=2, default=str) + "\n"
    atomic.write_text(folder / CANDIDATE_FILE, text)
    return CandidateReport(day, folder, evaluation, gate, summary, warnings)


def not_evaluated_results(refused: GateResult) -> list[GateResult]:
    """ltr_model's check results when nothing was trained: `refused` (min_samples) and every
    other check of the gate, and fairness_coverage, failing as not evaluated."""
    why = f"not evaluated: nothing was trained ({refused.description})"
    others = [
        GateResult(name, False, float("nan"), float("nan"), why, {"trained": False})
        for name in (*GATE_NAMES, FAIRNESS_COVERAGE_NAME, SCORER_FIDELITY_NAME)
        if name != refused.name
    ]
    return [refused, *others]


def _refusal(
    folder: LakePath, reason: str, found: int, counted_in: str, settings: Settings
) -> Untrainable:
    """Record why the window gave no candidate (REFUSAL_FILE) and the min_samples check's
    failing result; the caller raises what this returns."""
    result = GateResult(
        "min_samples",
        False,
        float(found),
        float(settings.gate.min_samples),
        f"not trained: {reason}",
        {"trained": False, "lists_with_positive_label": found, "counted_in": counted_in},
    )
    refusal = {"reason": reason, "checks": failing_check_lines([result])}
    atomic.write_text(folder / REFUSAL_FILE, json.dumps(refusal, indent=2) + "\n")
    return Untrainable(result)


def _clicked_lists(frame: Any) -> int:
    """Lists of the window with at least one positive label (what min_samples counts)."""
    clicked = frame.groupby("group_id", sort=False)["label"].max()
    return int((clicked > 0).sum())


def publish_candidate(
    lake: Lake,
    registry: LocalRegistry,
    day: date,
    *,
    mirror: S3Mirror | None,
    keep: int,
    force: bool = False,
    rollout: Rollout = "direct",
    replace_candidate: bool = True,
) -> PublicationReport:
    """Publish ltr_model[day]'s candidate locally and to S3 (`mirror`, None for local only),
    keeping the newest `keep` versions (LTR_KEEP_VERSIONS); refuses one that failed its gate.
    `rollout` (LTR_ROLLOUT): canary makes it the registry's candidate when a version is live;
    `replace_candidate=False` leaves a candidate that is still being compared in place."""
    folder = lake.candidate(day)
    refused = folder / REFUSAL_FILE
    if refused.exists() and not (folder / CANDIDATE_FILE).exists():
        refusal = json.loads(refused.read_text())
        checks = [str(c) for c in refusal.get("checks", [])]
        raise GateNotPassed(f"no candidate for {day}: {refusal.get('reason', '')}", checks)
    try:
        recorded = json.loads((folder / CANDIDATE_FILE).read_text())
        weights = json.loads((folder / WEIGHTS_FILE).read_text())
        model_text = (folder / MODEL_FILE).read_text()
    except FileNotFoundError as exc:
        raise RegistryError(f"no candidate model for {day}: {exc.filename} is missing") from None
    summary = CandidateSummary.from_json(recorded)
    if not summary.gate_passed:
        checks = failing_check_lines(summary.gate)
        raise GateNotPassed(f"candidate for {day} failed its gate ({'; '.join(checks)})", checks)
    # published as recorded (the registry records the partition itself)
    metadata = {k: v for k, v in recorded.items() if k != "partition"}
    return publication.publish(
        registry,
        mirror,
        weights,
        model_text,
        metadata,
        day.isoformat(),
        force=force,
        keep=keep,
        documents=model_card_document,
        rollout=rollout,
        replace_candidate=replace_candidate,
    )
