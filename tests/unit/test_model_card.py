"""The model card renders every section from a candidate summary, floats to 4 places."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from ltr_assets.gate.model_card import (
    intersections_table,
    live_intersections,
    live_model_card,
    model_card_document,
    render_model_card,
)
from ltr_assets.gate.summary import CandidateSummary
from ltr_assets.registry.local import LocalRegistry
from tests.support.artifacts import tiny_model_text, weights


def _report(value: float, low: float, high: float, k: int = 5) -> dict[str, Any]:
    return {"k": k, "value": value, "interval": {"low": low, "high": high, "clipped": False},
            "lists": 200, "lists_with_clicks": 150, "model_share": 0.1}  # fmt: skip


def _paired(difference: float, low: float, high: float) -> dict[str, Any]:
    return {"k": 5, "candidate": 0.8, "baseline": 0.8 - difference, "difference": difference,
            "interval": {"low": low, "high": high, "clipped": False}, "lists": 200}  # fmt: skip


def _latency(p50: float, p95: float, cpu_p95: float, cpu_p99: float) -> dict[str, Any]:
    return {"queries": 1000, "p50_ms": p50, "p95_ms": p95, "p99_ms": p95 * 1.2,
            "cpu_p50_ms": p50, "cpu_p95_ms": cpu_p95, "cpu_p99_ms": cpu_p99}  # fmt: skip


def _sampling(sampled: bool = False, rows: int = 8000, lists: int = 400) -> dict[str, Any]:
    return {"max_rows": 0, "rows_available": 8000, "lists_available": 400, "sampled": sampled,
            "seed": 0, "rows_used": rows, "lists_used": lists}  # fmt: skip


def _summary() -> dict[str, Any]:
    """A candidate.json as ltr_model writes it (every field CandidateSummary reads)."""
    ks = (1, 3, 5, 10)
    ndcg = {f"ndcg@{k}": _report(0.812345678, 0.7, 0.9, k) for k in ks}
    return {
        "partition": "2026-11-03",
        "scorer": "weights",
        "params": {"objective": "lambdarank"},
        "debias": {
            "method": "lightgbm_position",
            "propensity_clip": 0.05,
            "evaluation_ips_max_weight": 5.0,
            "label_gain": None,
            "ips_weights": False,
            "lightgbm_position": True,
        },  # fmt: skip
        "sampling": {"click_model": _sampling(), "lambdarank": _sampling()},
        "weights_validation_ndcg_at_5": {"distilled_nnls": 0.8},
        "model_validation_ndcg_at_5": 0.81,
        "warnings": [],
        "gate_passed": False,
        "best_iteration": 42,
        "code_version": "git:abc",
        "gate": [
            {
                "name": "ndcg_at_5",
                "passed": True,
                "value": 0.7,
                "threshold": 0.65,
                "description": "",
                "details": {},
            },
            {
                "name": "min_samples",
                "passed": False,
                "value": 12.0,
                "threshold": 50.0,
                "description": "",
                "details": {},
            },
        ],  # fmt: skip
        "comparison": {
            "candidate": {f"ndcg@{k}": _report(0.812345678, 0.7, 0.9, k) for k in ks},
            "baseline": {f"ndcg@{k}": _report(0.791111111, 0.68, 0.88, k) for k in ks},
            "logged_order": {f"ndcg@{k}": _report(0.75, 0.650012345, 0.85, k) for k in ks},
        },
        "baseline": {
            "version": "20261102_021500",
            "label": "baseline (published for 2026-11-03 or before)",
            "status": "ok",
            "error": "",
            "paired_ndcg_at_5": _paired(0.021234567, -0.01, 0.05),
            "weights": {"A": 0.6, "S": 0.4},
        },
        "metrics": {
            "scorer": "weights",
            "counterfactual": ndcg,
            "model_based": ndcg,
            "logged_ndcg": {
                f"ndcg@{k}": {
                    "k": k,
                    "value": 0.7,
                    "groups_used": 12,
                    "groups_excluded": 0,
                    "interval": {"low": 0.6, "high": 0.8, "clipped": False},
                }
                for k in ks
            },  # fmt: skip
            "vs_logged": _paired(0.0623456, 0.01, 0.1),
            "fairness": {},
            "latency": {
                "at_data_sizes": _latency(0.01, 0.5, 0.019411499999999988, 0.03),
                "at_max_candidates": _latency(2.0, 9.5, 3.123456, 4.0),
                "max_candidates": 1000,
            },
            "samples": 12,
            "test_groups": 200,
        },
        "thresholds": {"latency_p95_ms": 25.0},
        "fairness_table": "| value | lists |\n|---|---|\n| gender=F | 180 |",
        "weights": {"A": 0.55555555, "S": 0.44444445},
        "weights_method": "nnls",
        "propensity": {
            "method": "regression_em",
            "examination": [1.0, 0.61234567],
            "low": [1.0, 0.55],
            "high": [1.0, 0.67],
            "impressions": [4000, 4000],
            "clicks": [900, 500],
            "params": {},
            "sources": ["reference", "click_model"],
            "swapped_impressions": [0, 0],
        },  # fmt: skip
        "training_window": {
            "days": 14,
            "present": ["2026-11-01", "2026-11-02", "2026-11-03"],
            "missing": ["2026-10-31"],
            "groups": {"train": 400, "valid": 100, "test": 200},
            "rows": {"train": 8000, "valid": 2000, "test": 4000},
            "ids_on_several_days": 2,
        },
    }


def test_every_section_and_figure_of_the_card() -> None:
    card = render_model_card(CandidateSummary.from_json(_summary()), "20261103_021500")
    assert card.startswith("# Model card: version 20261103_021500 (partition 2026-11-03)")
    assert "## Gate: FAILED: min_samples: 12 vs 50" in card
    assert "| ndcg_at_5 | pass | 0.7000 | 0.6500 |" in card
    assert "| min_samples | **FAIL** | 12 | 50 |" in card  # counts, as whole numbers
    assert "## Counterfactual nDCG@5\n\n0.8123 [0.7000, 0.9000]" in card
    # Candidate vs baseline vs logged order, every k, with intervals, 4 places.
    assert "baseline (published for 2026-11-03 or before) 20261102_021500" in card
    assert (
        "| counterfactual nDCG@5 | 0.8123 [0.7000, 0.9000] | 0.7911 [0.6800, 0.8800] | "
        "0.7500 [0.6500, 0.8500] |" in card
    )
    for k in (1, 3, 10):
        assert f"| counterfactual nDCG@{k} |" in card
    assert "candidate − logged order +0.0623 [+0.0100, +0.1000]" in card
    assert "candidate − baseline +0.0212 [-0.0100, +0.0500]" in card
    # Fairness table as given, latency, weights with change, propensity, data.
    assert "## Fairness per protected value" in card and "| gender=F | 180 |" in card
    assert "| the test lists' | 1000 | 0.0100 | 0.0194 | 0.0300 | 0.5000 |" in card
    assert "| 1000 candidates | 1000 | 2.0000 | 3.1235 | 4.0000 |" in card
    assert "| A | 0.5556 | 0.6000 | -0.0444 |" in card
    assert "| S | 0.4444 | 0.4000 | +0.0444 |" in card
    assert "| 2 | 0.6123 | [0.5500, 0.6700] | click_model | 0 |" in card
    assert "sampling noise" in card and "not the click model's bias" in card
    assert "swap interventions" not in card
    assert "3 present (2026-11-01 … 2026-11-03), 1 missing (2026-10-31)" in card
    assert "| train | 400 | 8000 |" in card and "| test | 200 | 4000 |" in card
    assert "2 list ids were found on more than one day" in card
    assert "0.019411499999999988" not in card and "0.55555555" not in card


def test_first_version_has_no_baseline_column_values() -> None:
    summary = _summary()
    summary["baseline"] = {"version": "", "status": "none", "error": "", "paired_ndcg_at_5": None,
                           "weights": None, "label": ""}  # fmt: skip
    summary["comparison"]["baseline"] = None
    summary["gate"] = [g | {"passed": True} for g in summary["gate"]]
    card = render_model_card(CandidateSummary.from_json(summary))
    assert card.startswith("# Model card: candidate (partition 2026-11-03)")
    assert "## Gate: PASSED" in card and "Baseline: none published." in card
    # published_weights' compared_with: for which days none was (a backfill may have later ones)
    baseline = CandidateSummary.from_json(summary).baseline
    assert baseline.compared_with("2026-11-03") == "none published for 2026-11-03 or before"
    assert "| counterfactual nDCG@5 | 0.8123 [0.7000, 0.9000] | n/a |" in card
    assert "| A | 0.5556 | n/a | n/a |" in card


def test_registry_document_names_the_version() -> None:
    files = model_card_document({**_summary(), "version": "20261103_021500"})
    assert list(files) == ["model_card.md"]
    assert files["model_card.md"].decode().startswith("# Model card: version 20261103_021500")


def test_the_card_says_which_steps_fitted_on_a_sample_only_when_a_cap_bit() -> None:
    summary = _summary()
    assert "deterministic sample" not in render_model_card(CandidateSummary.from_json(summary))
    summary["sampling"] = {
        "click_model": _sampling(sampled=True, rows=3000, lists=150),
        "lambdarank": _sampling(),
    }
    card = render_model_card(CandidateSummary.from_json(summary))
    assert "click_model 3000 of 8000 rows (150 of 400 lists)" in card
    assert "lambdarank" not in card


def test_the_summary_round_trips_through_its_json_shape() -> None:
    recorded = json.loads(json.dumps(_summary()))
    summary = CandidateSummary.from_json(recorded)
    assert summary.metrics.counterfactual[5].value == 0.812345678
    assert summary.baseline.name == "baseline (published for 2026-11-03 or before) 20261102_021500"
    written = json.loads(json.dumps(summary.to_json()))
    assert written["thresholds"]["latency_p95_ms"] == 25.0  # the rest: GateThresholds' defaults
    written["thresholds"] = recorded["thresholds"]
    assert written == recorded


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("scorer",), "linear"),
        (("debias", "method"), "lightgbm"),
        (("propensity", "method"), "lightgbm"),
        (("baseline", "status"), "missing"),
        (("metrics", "counterfactual"), {"ndcg5": _report(0.8, 0.7, 0.9)}),
    ],
)
def test_a_summary_outside_the_closed_sets_is_refused(path: tuple[str, ...], value: Any) -> None:
    summary = _summary()
    parent = summary
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    with pytest.raises(ValidationError):
        CandidateSummary.from_json(summary)


def test_the_card_says_which_positions_swap_interventions_measured() -> None:
    summary = _summary()
    summary["propensity"] = {
        "method": "auto",
        "examination": [1.0, 0.52, 0.4],
        "low": [1.0, 0.47, 0.35],
        "high": [1.0, 0.58, 0.45],
        "impressions": [4000, 1500, 3000],
        "clicks": [900, 200, 300],
        "params": {},
        "sources": ["reference", "interventions", "click_model"],
        "swapped_impressions": [0, 1500, 120],
    }
    card = render_model_card(CandidateSummary.from_json(summary))
    assert "(method: auto)" in card and "1 positions measured by swap interventions" in card
    assert "| 2 | 0.5200 | [0.4700, 0.5800] | interventions | 1500 |" in card
    assert "| 3 | 0.4000 | [0.3500, 0.4500] | click_model | 120 |" in card
    summary["propensity"]["low"][1] = summary["propensity"]["high"][1] = None
    card = render_model_card(CandidateSummary.from_json(summary))
    assert "| 2 | 0.5200 | unbounded | interventions | 1500 |" in card


def test_positions_at_the_curves_floor_are_marked_as_such() -> None:
    """Users who only click the top result put every later θ at the floor: a band of
    [0.0010, 0.0010] read alone claims a precision the clipping made up."""
    summary = _summary()
    summary["propensity"].update(
        examination=[1.0, 0.3, 0.001],
        low=[1.0, 0.25, 0.001],
        high=[1.0, 0.35, 0.001],
        sources=["reference", "click_model", "click_model"],
        swapped_impressions=[0, 0, 0],
    )
    card = render_model_card(CandidateSummary.from_json(summary))
    assert "| 3 | 0.0010 (floor) | [0.0010, 0.0010] | click_model | 0 |" in card
    assert "| 2 | 0.3000 | [0.2500, 0.3500] | click_model | 0 |" in card
    assert "sit at the curve's floor, 0.001" in card
    summary["propensity"].update(examination=[1.0, 0.3, 0.002])
    card = render_model_card(CandidateSummary.from_json(summary))
    assert "(floor)" not in card and "curve's floor" not in card


def test_users_who_stop_after_a_click_are_flagged() -> None:
    summary = _summary()
    counts = {"lists": 900, "multi_click_lists": 0, "expected": 104.3, "z": -10.9}
    summary["propensity"]["params"]["click_count_test"] = counts
    card = render_model_card(CandidateSummary.from_json(summary))
    assert (
        "Clicks per list: 0 of the 900 held-out lists have two or more clicks, 104.3 "
        "expected by the click model (z = -10.90)."
    ) in card
    assert "seem to stop scanning after a click (a cascade)" in card
    summary["propensity"]["params"]["click_count_test"] = {**counts, "z": -2.9}
    card = render_model_card(CandidateSummary.from_json(summary))
    assert "(z = -2.90)." in card and "cascade" not in card
    del summary["propensity"]["params"]["click_count_test"]  # published before the test
    assert "Clicks per list" not in render_model_card(CandidateSummary.from_json(summary))


def test_a_version_published_before_curve_sources_still_reads() -> None:
    summary = _summary()
    for name in ("sources", "swapped_impressions"):
        del summary["propensity"][name]
    read = CandidateSummary.from_json(summary)
    assert read.propensity.sources == [] and not read.propensity.interventions_used
    assert "| 2 | 0.6123 | [0.5500, 0.6700] |\n" in render_model_card(read) + "\n"


FAIRNESS_WITH_INTERSECTIONS = (
    "| value | lists | gated |\n|---|---|---|\n"
    "| gender=F | 180 | pass |\n| ethnicity=preta | 90 | pass |\n"
    + "".join(f"| gender&ethnicity=F&v{i} | 40 | not gated: intersection |\n" for i in range(60))
    + "\nCoverage (candidates with a known value): gender 90%."
)


def test_the_summary_comes_first_and_the_intersections_last() -> None:
    summary = _summary()
    summary["fairness_table"] = FAIRNESS_WITH_INTERSECTIONS
    card = render_model_card(CandidateSummary.from_json(summary), "20261103_021500")
    headings = [line for line in card.splitlines() if line.startswith("## ")]
    order = [
        "## Gate",
        "## Counterfactual nDCG@5",
        "## Candidate vs baseline",
        "## Weights",
        "## Latency",
        "## Position bias",
        "## Fairness per protected value",
        "## Training window",
        "## Intersections of protected attributes",
    ]
    assert len(headings) == len(order)
    for heading, start in zip(headings, order, strict=True):
        assert heading.startswith(start), (heading, start)
    fairness, intersections = card.split("## Intersections of protected attributes")
    assert "| gender=F | 180 | pass |" in fairness and "| ethnicity=preta |" in fairness
    assert "Coverage (candidates with a known value): gender 90%." in fairness
    assert "&" not in fairness.split("## Fairness per protected value")[1]
    assert intersections.count("| gender&ethnicity=F&v") == 60
    assert intersections.index("| value | lists | gated |") < intersections.index("F&v0")


def test_the_uis_card_leaves_the_intersections_to_their_own_entry(tmp_path: Path) -> None:
    summary = {**_summary(), "fairness_table": FAIRNESS_WITH_INTERSECTIONS}
    read = CandidateSummary.from_json(summary)
    short = render_model_card(read, with_intersections=False)
    assert "F&v0" not in short and "60 rows, in the entry `fairness_intersections`" in short
    assert intersections_table(read).count("| gender&ethnicity=F&v") == 60
    registry = _registry(tmp_path)
    assert live_intersections(registry) == "No version is live yet."
    registry.publish(weights(1), tiny_model_text(), summary, "2026-11-03")
    assert "F&v0" not in live_model_card(registry)
    assert live_intersections(registry).count("| gender&ethnicity=F&v") == 60


def test_no_intersections_heading_without_intersections() -> None:
    card = render_model_card(CandidateSummary.from_json(_summary()))
    assert "Intersections" not in card


def test_every_float_of_the_card_is_shown_to_4_places() -> None:
    card = render_model_card(CandidateSummary.from_json(_summary()), "20261103_021500")
    decimals = re.findall(r"\d+\.(\d+)", card.replace("(position 1", ""))
    assert decimals and {len(d) for d in decimals} == {4}


def _registry(tmp_path: Path) -> LocalRegistry:
    return LocalRegistry(tmp_path / "reg", tmp_path / "models" / "ltr_weights.json")


def test_the_live_card_names_the_live_version_not_a_backfills_candidate(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    now = datetime(2026, 11, 26, 2, 15, tzinfo=UTC)
    summary = {**_summary(), "partition": "2026-11-25"}
    live = registry.publish(weights(1), tiny_model_text(), summary, "2026-11-25", now=now)
    backfill = {**_summary(), "partition": "2026-11-10"}
    old = registry.publish(
        weights(2), tiny_model_text(), backfill, "2026-11-10", now=now + timedelta(minutes=5)
    )
    assert old.version != live.version and not old.latest_moved
    card = live_model_card(registry)
    assert card.startswith(f"**Live version {live.version}** (partition 2026-11-25;")
    assert f"# Model card: version {live.version} (partition 2026-11-25)" in card
    assert old.version not in card


def test_the_live_card_when_nothing_is_live_or_the_metadata_is_no_summary(tmp_path: Path) -> None:
    registry = _registry(tmp_path)
    assert "No version is live yet" in live_model_card(registry)
    published = registry.publish(weights(1), tiny_model_text(), {}, "2026-11-25")
    card = live_model_card(registry)
    assert card.startswith(f"**Live version {published.version}**")
    assert f"No model card could be read for {published.version}" in card


def test_the_card_names_the_curve_family_and_why_auto_chose_it() -> None:
    summary = _summary()
    assert "Curve family" not in render_model_card(CandidateSummary.from_json(summary))
    summary["propensity"]["params"] = {
        "family": "per_position",
        "family_choice": {"setting": "auto", "free_curve_z": 3.25, "chosen": "per_position"},
    }
    card = render_model_card(CandidateSummary.from_json(summary))
    assert "Curve family: per_position (a free θ per position), chosen by `auto`" in card
    assert "z = 3.2500 standard errors" in card
    summary["propensity"]["params"] = {"family": "power_law", "exponent": 1.02}
    card = render_model_card(CandidateSummary.from_json(summary))
    assert "Curve family: power_law (θ_k = k^-η, one exponent)." in card
    assert "span" not in card  # no family test recorded: nothing said about the intervals


def test_the_card_says_which_other_curve_the_gates_intervals_span() -> None:
    summary = _summary()
    test = {"held_out_nll": {}, "free_curve_z": -0.5, "lists": 300}
    summary["propensity"]["params"] = {"family": "per_position", "family_test": test}
    card = render_model_card(CandidateSummary.from_json(summary))
    assert "do not rule out the power law (z = -0.5000 < 2)" in card
    assert "intervals also span the estimates under it" in card
    summary["propensity"]["params"]["family_test"] = {**test, "free_curve_z": 2.5}
    assert "span" not in render_model_card(CandidateSummary.from_json(summary))
    summary["propensity"]["params"] = {"family": "power_law", "family_test": test}
    card = render_model_card(CandidateSummary.from_json(summary))
    assert "also span the estimates under a free θ per position" in card
