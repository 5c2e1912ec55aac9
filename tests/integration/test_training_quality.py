"""Training on simulated days: close to the oracle, far above random, and the gate sees bias."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from ltr_assets.gate.candidate import Untrainable, train_candidate
from ltr_assets.gate.model_card import render_model_card
from ltr_assets.ingest.day import ingest_day
from ltr_assets.ingest.matrix import build_feature_matrix
from ltr_assets.ingest.sources import AuditLogSource
from ltr_assets.lake import atomic
from ltr_assets.lake.paths import Lake
from ltr_assets.learning.training import (
    load_window,
    split_by_time,
    train_ranker,
)
from ltr_assets.metrics.ranking import ndcg_at_k
from ltr_assets.registry.local import LocalRegistry
from ltr_assets.simulation.simulator import ClickModel
from ltr_core.scoring import make_scorer
from ltr_core.settings import Settings
from tests.conftest import START, write_simulated_events
from tests.support.defaults import DEFAULTS, TRAINING

# Whole simulated windows trained, several times a test.
# Beside the other pytest worker's CPU-heavy tests, LightGBM takes several times as long as
# alone: the default limit (pyproject.toml) is for hangs, not for this.
pytestmark = pytest.mark.timeout(1800)

DAYS = 6
DAY_LIST = [START + timedelta(days=i) for i in range(DAYS)]


def _lake(tmp_path: Path) -> Lake:
    """tmp_path/events.jsonl ingested day by day into tmp_path/lake, then each day's feature
    matrix built (after every day is ingested: a list's feedback may come the day after)."""
    lake = Lake(tmp_path / "lake")
    source = AuditLogSource(str(tmp_path / "events.jsonl"))
    for day in DAY_LIST:
        ingest_day(source.read_day(day), day, lake, source.name)
    for day in DAY_LIST:
        build_feature_matrix(lake, day, DEFAULTS.feedback_window_hours)
    return lake


def _train(tmp_path: Path, **config):
    simulator = write_simulated_events(tmp_path / "events.jsonl", days=DAYS, **config)
    lake = _lake(tmp_path)
    window = load_window(lake, DAY_LIST[-1], DAYS)
    train, valid, test = split_by_time(window.frame)
    return simulator, test, train_ranker(train, valid, TRAINING), lake


def test_the_published_derivation_is_the_best_on_validation(tmp_path: Path) -> None:
    _, _, ranker, _ = _train(tmp_path)
    chosen = ranker.weights_validation[ranker.weights_method]
    assert chosen == max(ranker.weights_validation.values())
    assert set(ranker.weights_validation) == {
        "gain_importance",
        "distilled_nnls",
        "pairwise_logistic",
    }
    assert abs(sum(ranker.weights.values()) - 1.0) < 1e-12
    assert min(ranker.weights.values()) >= 0.0
    assert ranker.info["debias"]["method"] == "click_model"


def test_the_gate_evaluates_whichever_scorer_serving_runs(tmp_path: Path) -> None:
    _, test, _, lake = _train(tmp_path)
    last = START + timedelta(days=DAYS - 1)
    registry = LocalRegistry(tmp_path / "registry")
    reports = {}
    for kind in ("weights", "model"):
        settings = Settings.from_env({"LTR_HOME": str(tmp_path), "LTR_SCORER": kind,
                                      "LTR_TRAIN_WINDOW_DAYS": str(DAYS)})  # fmt: skip
        reports[kind] = train_candidate(lake, registry, last, settings)
    for kind, report in reports.items():
        assert report.evaluation.scorer == kind
        artifact_dir = report.path
        weights = json.loads((artifact_dir / "ltr_weights.json").read_text())
        model = (artifact_dir / "model.txt").read_text()
        scorer = make_scorer(kind, weights, model)
        expected = ndcg_at_k(test.y, scorer.score(test.X), test.group_sizes, 5).value
        assert report.evaluation.logged_ndcg[5].value == expected
        latency = report.evaluation.latency
        assert latency.at_data_sizes.queries == latency.at_max_candidates.queries == 1000
        assert latency.max_candidates == 1000
        gate = next(g for g in report.gate if g.name == "latency_p95")
        assert (
            gate.value
            == latency.worst.cpu_p95_ms
            == max(latency.at_data_sizes.cpu_p95_ms, latency.at_max_candidates.cpu_p95_ms)
        )
    by_model, by_weights = reports["model"].evaluation, reports["weights"].evaluation
    assert by_model.ndcg5.value != by_weights.ndcg5.value
    signal = next(g for g in reports["model"].gate if g.name == "click_signal")
    assert signal.passed and signal.value >= 10.0, signal.description


def test_clicks_blind_to_the_candidates_are_refused_by_click_signal(tmp_path: Path) -> None:
    """Users who click whoever is shown (position bias, no relevance): the click model's γ
    still fits the noise its early stopping happened to keep, so the candidate learned from it
    and judged by it looks better than the logged order; what γ cannot do is predict the test
    lists' clicks, and click_signal refuses the night with the likely causes."""
    write_simulated_events(tmp_path / "events.jsonl", days=DAYS, click_model=ClickModel(blind=True))
    settings = Settings.from_env({"LTR_HOME": str(tmp_path), "LTR_TRAIN_WINDOW_DAYS": str(DAYS)})
    lake = _lake(tmp_path)
    report = train_candidate(lake, LocalRegistry(tmp_path / "registry"), DAY_LIST[-1], settings)
    signal = next(g for g in report.gate if g.name == "click_signal")
    assert not signal.passed and signal.value < 3.0, signal.description
    assert signal.details["lists"] == report.summary.training_window.groups.test
    assert signal.details["clicks"] > 500  # plenty of clicks: only their meaning is missing
    assert "do not depend on which lawyers were shown" in signal.description
    assert not report.gate_passed


def test_users_who_stop_at_their_first_click_are_flagged_on_the_model_card(
    tmp_path: Path,
) -> None:
    """Cascade users: their clicks carry a signal (click_signal passes), but the click model's
    curve does not describe them, and the card says so; position-based users are not flagged."""
    cards = {}
    for cascade in (True, False):
        home = tmp_path / str(cascade)
        users = ClickModel(cascade=cascade)
        write_simulated_events(home / "events.jsonl", days=DAYS, click_model=users)
        settings = Settings.from_env({"LTR_HOME": str(home), "LTR_TRAIN_WINDOW_DAYS": str(DAYS)})
        registry = LocalRegistry(home / "registry")
        report = train_candidate(_lake(home), registry, DAY_LIST[-1], settings)
        signal = next(g for g in report.gate if g.name == "click_signal")
        assert signal.passed, signal.description
        counts = report.summary.propensity.params["click_count_test"]
        assert (counts["z"] <= -3.0) is cascade, counts
        cards[cascade] = render_model_card(report.summary)
    assert "Clicks per list: 0 of the" in cards[True]
    assert "seem to stop scanning after a click (a cascade)" in cards[True]
    assert "Clicks per list: " in cards[False] and "a cascade" not in cards[False]


def test_clicks_only_in_the_newest_lists_are_refused_for_the_training_split(
    tmp_path: Path,
) -> None:
    """The click model is fitted on the training split (the window's oldest lists): when only
    the newest days have feedback, the refusal counts the training split's clicked lists (0)
    and says the newer ones have some, instead of naming the window as empty."""
    events = tmp_path / "events.jsonl"
    write_simulated_events(events, days=DAYS)
    # feedback sent on the last day only: it reaches the last two days' lists (a list's
    # feedback may come the day after), never the training split (the oldest 65% of lists)
    newest = str(START + timedelta(days=DAYS - 1))
    kept = [
        line
        for line in events.read_text().splitlines(keepends=True)
        if '"offer_feedback"' not in line or json.loads(line)["timestamp"][:10] >= newest
    ]
    events.write_text("".join(kept))
    lake = _lake(tmp_path)
    settings = Settings.from_env({"LTR_HOME": str(tmp_path), "LTR_TRAIN_WINDOW_DAYS": str(DAYS)})
    with pytest.raises(Untrainable) as refused:
        train_candidate(lake, LocalRegistry(tmp_path / "registry"), DAY_LIST[-1], settings)
    result = refused.value.result
    assert (result.name, result.passed, result.value) == ("min_samples", False, 0.0)
    assert result.details["counted_in"] == "training split"
    assert "the training split's" in result.description
    assert "hold no click" in result.description and "newer lists do" in result.description


def test_a_window_too_thin_for_the_click_model_is_refused_not_crashed(tmp_path: Path) -> None:
    """Enough lists for the splits but no position shown often enough for the click model (a
    quiet first night): refused on min_samples with the click model's reason and a refusal file
    for published_weights, not a step failure."""
    write_simulated_events(tmp_path / "events.jsonl", days=DAYS, requests_per_day=25)
    lake = _lake(tmp_path)
    settings = Settings.from_env({"LTR_HOME": str(tmp_path), "LTR_TRAIN_WINDOW_DAYS": str(DAYS)})
    with pytest.raises(Untrainable) as refused:
        train_candidate(lake, LocalRegistry(tmp_path / "registry"), DAY_LIST[-1], settings)
    result = refused.value.result
    assert (result.name, result.passed) == ("min_samples", False)
    # counted as the check counts when it runs: the test split's lists with a click
    assert result.details["counted_in"] == "test split"
    assert 0 < result.value <= round(DAYS * 25 * 0.2)
    assert "click model cannot be fitted" in result.description
    assert "shown 200 times" in result.description
    refusal = json.loads((lake.candidate(DAY_LIST[-1]) / "refused.json").read_text())
    assert "click model cannot be fitted" in refusal["reason"]


def test_days_before_the_first_partition_are_not_missing_from_the_window(tmp_path: Path) -> None:
    """A 7-day window on the third night after LTR_START_DATE: the days before the start are no
    partitions (nobody can backfill them), so only a real gap counts as missing."""
    write_simulated_events(tmp_path / "events.jsonl", days=DAYS)
    lake = _lake(tmp_path)
    atomic.remove(lake.feature_matrix(DAY_LIST[1]))  # a real gap
    end = DAY_LIST[2]
    window = load_window(lake, end, 7, first=START)
    assert window.days_present == [DAY_LIST[0], DAY_LIST[2]]
    assert window.days_missing == [DAY_LIST[1]]
    assert len(load_window(lake, end, 7).days_missing) == 5  # without the start: 4 more
