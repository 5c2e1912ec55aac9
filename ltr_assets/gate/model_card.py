"""A version's model card: one Markdown page an operator or reviewer reads to know what a model
is, how it compares with what serves now and with the platform's own order, and on what data.

Rendered from the candidate summary (`candidate.json`, which a published version's metadata.json
also holds), so the card on ltr_model and the `model_card.md` in the registry say the same.
Every float is shown to 4 places.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from ltr_assets.gate.evaluation import GateResult, gate_line
from ltr_core.artifacts.format import MODEL_CARD_FILE


def model_card_document(metadata: Mapping[str, Any]) -> dict[str, bytes]:
    """The registry document of a version, rendered from its full metadata on publish."""
    return {MODEL_CARD_FILE: render_model_card(metadata, metadata.get("version", "")).encode()}


def _f(value: Any, signed: bool = False) -> str:
    """A float to 4 places ("n/a" when missing or not finite)."""
    if value is None or not isinstance(value, int | float) or not math.isfinite(value):
        return "n/a"
    return f"{float(value):+.4f}" if signed else f"{float(value):.4f}"


def _estimate(report: Mapping[str, Any] | None) -> str:
    """`value [low, high]` of a counterfactual report as stored in the summary."""
    if not report:
        return "n/a"
    interval = report.get("interval") or {}
    return f"{_f(report.get('value'))} [{_f(interval.get('low'))}, {_f(interval.get('high'))}]"


def _paired(report: Mapping[str, Any] | None) -> str:
    if not report:
        return "n/a"
    interval = report.get("interval") or {}
    return (
        f"{_f(report.get('difference'), signed=True)} "
        f"[{_f(interval.get('low'), signed=True)}, {_f(interval.get('high'), signed=True)}]"
    )


def _gate(summary: Mapping[str, Any]) -> str:
    results = [GateResult(**g) for g in summary.get("gate", [])]
    return gate_line(results) if results else "not evaluated"


def _baseline_name(baseline: Mapping[str, Any]) -> str:
    version = baseline.get("version") or ""
    if not version:
        return "none published"
    return f"{baseline.get('label') or 'live'} {version}"


def _comparison(summary: Mapping[str, Any]) -> list[str]:
    comparison = summary.get("comparison") or {}
    baseline = summary.get("baseline") or {}
    candidate = comparison.get("candidate") or {}
    ks = sorted(candidate, key=lambda name: int(name.split("@")[1])) or ["ndcg@5"]
    base = comparison.get("baseline") or {}
    logged = comparison.get("logged_order") or {}
    lines = [
        "## Candidate vs baseline vs the platform's logged order",
        "",
        "Counterfactual nDCG (position-bias corrected: self-normalised IPS, rows past the "
        "largest IPS weight graded by the click model) on the same test lists, with bootstrap "
        "95% intervals over lists. Baseline: "
        f"{_baseline_name(baseline)}"
        + (f" ({baseline.get('status')}: {baseline.get('error')})" if baseline.get("error") else "")
        + ".",
        "",
        "| metric | candidate | baseline | logged order |",
        "|---|---|---|---|",
    ]
    for k in ks:
        lines.append(
            f"| counterfactual {k.replace('ndcg', 'nDCG')} | {_estimate(candidate.get(k))} | "
            f"{_estimate(base.get(k))} | {_estimate(logged.get(k))} |"
        )
    metrics = summary.get("metrics") or {}
    lines += [
        "",
        "Paired nDCG@5 differences on the same lists [95% CI]: candidate − logged order "
        f"{_paired(metrics.get('vs_logged'))}; candidate − baseline "
        f"{_paired(baseline.get('paired_ndcg_at_5'))}.",
    ]
    return lines


def _latency(summary: Mapping[str, Any]) -> list[str]:
    latency = (summary.get("metrics") or {}).get("latency") or {}
    data = latency.get("at_data_sizes") or {}
    top = latency.get("at_max_candidates") or {}
    limit = (summary.get("thresholds") or {}).get("latency_p95_ms")
    return [
        "## Latency",
        "",
        "The real /rank request path in-process (JSON body → validation → scorer → response): "
        "CPU time of the thread per request (what the code costs), and wall-clock time (which "
        "also counts waiting for a core on a busy machine).",
        "",
        "| list sizes | requests | CPU p50 ms | CPU p95 ms | CPU p99 ms | wall p95 ms |",
        "|---|---|---|---|---|---|",
        f"| the test lists' | {data.get('queries', 'n/a')} | {_f(data.get('cpu_p50_ms'))} | "
        f"{_f(data.get('cpu_p95_ms'))} | {_f(data.get('cpu_p99_ms'))} | "
        f"{_f(data.get('p95_ms'))} |",
        f"| {latency.get('max_candidates', 'n/a')} candidates | {top.get('queries', 'n/a')} | "
        f"{_f(top.get('cpu_p50_ms'))} | {_f(top.get('cpu_p95_ms'))} | "
        f"{_f(top.get('cpu_p99_ms'))} | {_f(top.get('p95_ms'))} |",
        "",
        f"Gate: the worse CPU p95 must be < {_f(limit)} ms.",
    ]


def _weights(summary: Mapping[str, Any]) -> list[str]:
    weights: Mapping[str, float] = summary.get("weights") or {}
    before: Mapping[str, float] = (summary.get("baseline") or {}).get("weights") or {}
    lines = [
        "## Weights",
        "",
        f"Derived linear weights ({summary.get('weights_method', 'n/a')}), normalised to sum 1; "
        f"change vs the baseline {_baseline_name(summary.get('baseline') or {})}.",
        "",
        "| feature | weight | baseline | change |",
        "|---|---|---|---|",
    ]
    for name, weight in weights.items():
        old = before.get(name)
        change = _f(weight - old, signed=True) if old is not None else "n/a"
        lines.append(f"| {name} | {_f(weight)} | {_f(old)} | {change} |")
    if not weights:
        lines.append("| n/a | | | |")
    return lines


def _propensity(summary: Mapping[str, Any]) -> list[str]:
    curve = summary.get("propensity") or {}
    lines = [
        "## Position bias (propensity curve)",
        "",
        f"Examination probability by rank position, relative to position 1 "
        f"(method: {curve.get('method', 'n/a')}).",
        "",
        "| position | estimate | 95% band |",
        "|---|---|---|",
    ]
    rows: Sequence[tuple[float, float, float]] = list(
        zip(curve.get("examination", []), curve.get("low", []), curve.get("high", []), strict=False)
    )
    for position, (value, low, high) in enumerate(rows, start=1):
        lines.append(f"| {position} | {_f(value)} | [{_f(low)}, {_f(high)}] |")
    return lines


def _data(summary: Mapping[str, Any]) -> list[str]:
    window = summary.get("training_window") or {}
    present = window.get("present") or []
    missing = window.get("missing") or []
    groups = window.get("groups") or {}
    rows = window.get("rows") or {}
    lines = [
        "## Training window and data",
        "",
        f"Rolling window of {window.get('days', 'n/a')} days ending {summary.get('partition')}: "
        f"{len(present)} present"
        + (f" ({present[0]} … {present[-1]})" if present else "")
        + f", {len(missing)} missing"
        + (f" ({', '.join(missing)})" if missing else "")
        + ".",
        "",
        "| split | lists | rows |",
        "|---|---|---|",
    ]
    for split in ("train", "valid", "test"):
        lines.append(f"| {split} | {groups.get(split, 'n/a')} | {rows.get(split, 'n/a')} |")
    samples = (summary.get("metrics") or {}).get("samples")
    lines += ["", f"Test lists with a positive label (samples): {samples}."]
    sampled = {
        step: record
        for step, record in (summary.get("sampling") or {}).items()
        if record.get("sampled")
    }
    if sampled:  # a cap bit (LTR_*_MAX_ROWS): say what each capped step fitted on
        lines += [
            "",
            "Fitted on a deterministic sample of whole lists (the caps LTR_*_MAX_ROWS): "
            + "; ".join(
                f"{step} {r['rows_used']} of {r['rows_available']} rows "
                f"({r['lists_used']} of {r['lists_available']} lists)"
                for step, r in sampled.items()
            )
            + ". Validation, the evaluation and the gate used every list.",
        ]
    return lines


def render_model_card(summary: Mapping[str, Any], version: str = "") -> str:
    """The card as Markdown; `version` is the registry version ("" for an unpublished
    candidate)."""
    title = f"version {version}" if version else "candidate"
    head = [
        f"# Model card: {title} (partition {summary.get('partition', 'n/a')})",
        "",
        f"- Gate: {_gate(summary)}",
        f"- Scorer: {summary.get('scorer', 'n/a')}; position-bias correction: "
        f"{(summary.get('debias') or {}).get('method', 'n/a')}; "
        f"best iteration: {summary.get('best_iteration', 'n/a')}",
        f"- Code: {summary.get('code_version', 'n/a')}",
    ]
    fairness = [
        "## Fairness per protected value",
        "",
        "Top-5 exposure vs candidate share over lists holding the value and others.",
        "",
        summary.get("fairness_table") or "n/a",
    ]
    sections = [
        head,
        _comparison(summary),
        fairness,
        _latency(summary),
        _weights(summary),
        _propensity(summary),
        _data(summary),
    ]
    return "\n\n".join("\n".join(section) for section in sections) + "\n"
