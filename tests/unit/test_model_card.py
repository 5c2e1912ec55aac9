"""The model card renders every section from a candidate summary, floats to 4 places."""

from __future__ import annotations

from typing import Any

from ltr_assets.gate.model_card import model_card_document, render_model_card


def _report(value: float, low: float, high: float, k: int = 5) -> dict[str, Any]:
    return {"k": k, "value": value, "interval": {"low": low, "high": high}, "lists": 200,
            "lists_with_clicks": 150}  # fmt: skip


def _summary() -> dict[str, Any]:
    ks = (1, 3, 5, 10)
    return {
        "partition": "2026-11-03",
        "scorer": "linear",
        "debias": {"method": "lightgbm_position"},
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
            "paired_ndcg_at_5": {
                "difference": 0.021234567,
                "interval": {"low": -0.01, "high": 0.05},
            },  # fmt: skip
            "weights": {"A": 0.6, "S": 0.4},
        },
        "metrics": {
            "vs_logged": {"difference": 0.0623456, "interval": {"low": 0.01, "high": 0.1}},
            "latency": {
                "at_data_sizes": {
                    "queries": 1000,
                    "p50_ms": 0.01,
                    "p95_ms": 0.5,
                    "p99_ms": 0.6,
                    "cpu_p50_ms": 0.01,
                    "cpu_p95_ms": 0.019411499999999988,
                    "cpu_p99_ms": 0.03,
                },  # fmt: skip
                "at_max_candidates": {
                    "queries": 1000,
                    "p50_ms": 2.0,
                    "p95_ms": 9.5,
                    "p99_ms": 11.0,
                    "cpu_p50_ms": 2.0,
                    "cpu_p95_ms": 3.123456,
                    "cpu_p99_ms": 4.0,
                },  # fmt: skip
                "max_candidates": 1000,
            },
            "samples": 12,
        },
        "thresholds": {"latency_p95_ms": 25.0},
        "fairness_table": "| value | lists |\n|---|---|\n| gender=F | 180 |",
        "weights": {"A": 0.55555555, "S": 0.44444445},
        "weights_method": "nnls",
        "propensity": {
            "method": "lightgbm",
            "examination": [1.0, 0.61234567],
            "low": [1.0, 0.55],
            "high": [1.0, 0.67],
        },  # fmt: skip
        "training_window": {
            "days": 14,
            "present": ["2026-11-01", "2026-11-02", "2026-11-03"],
            "missing": ["2026-10-31"],
            "groups": {"train": 400, "valid": 100, "test": 200},
            "rows": {"train": 8000, "valid": 2000, "test": 4000},
        },
    }


def test_every_section_and_figure_of_the_card() -> None:
    card = render_model_card(_summary(), "20261103_021500")
    assert card.startswith("# Model card: version 20261103_021500 (partition 2026-11-03)")
    assert "- Gate: FAILED: min_samples: 12 vs 50" in card
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
    assert "| 2 | 0.6123 | [0.5500, 0.6700] |" in card
    assert "3 present (2026-11-01 … 2026-11-03), 1 missing (2026-10-31)" in card
    assert "| train | 400 | 8000 |" in card and "| test | 200 | 4000 |" in card
    assert "0.019411499999999988" not in card and "0.55555555" not in card


def test_first_version_has_no_baseline_column_values() -> None:
    summary = _summary()
    summary["baseline"] = {"version": "", "status": "none", "error": "", "paired_ndcg_at_5": None,
                           "weights": None, "label": ""}  # fmt: skip
    summary["comparison"]["baseline"] = None
    summary["gate"] = [g | {"passed": True} for g in summary["gate"]]
    card = render_model_card(summary)
    assert card.startswith("# Model card: candidate (partition 2026-11-03)")
    assert "- Gate: PASSED" in card and "Baseline: none published." in card
    assert "| counterfactual nDCG@5 | 0.8123 [0.7000, 0.9000] | n/a |" in card
    assert "| A | 0.5556 | n/a | n/a |" in card


def test_registry_document_names_the_version() -> None:
    files = model_card_document({**_summary(), "version": "20261103_021500"})
    assert list(files) == ["model_card.md"]
    assert files["model_card.md"].decode().startswith("# Model card: version 20261103_021500")


def test_the_card_says_which_steps_fitted_on_a_sample_only_when_a_cap_bit() -> None:
    summary = _summary()
    assert "deterministic sample" not in render_model_card(summary)
    record = {"rows_available": 8000, "lists_available": 400, "max_rows": 0, "seed": 0}
    summary["sampling"] = {
        "click_model": record | {"sampled": True, "rows_used": 3000, "lists_used": 150},
        "lambdarank": record | {"sampled": False, "rows_used": 8000, "lists_used": 400},
    }
    card = render_model_card(summary)
    assert "click_model 3000 of 8000 rows (150 of 400 lists)" in card
    assert "lambdarank" not in card
