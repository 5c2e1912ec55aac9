"""A version's model card: one Markdown page an operator or reviewer reads to know what a model
is, how it compares with what serves now and with the platform's own order, and on what data.

Rendered from the candidate summary (`candidate.json`, which a published version's metadata.json
also holds), so the card on ltr_model and the `model_card.md` in the registry say the same.
Every float is shown to 4 places. The summary comes first (gate, headline figure, comparison,
weights, latency, curve, fairness, data); the long table of intersections comes last.
`live_model_card` renders the card of the version serving now, for published_weights.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from ltr_assets.gate.evaluation import gate_line
from ltr_assets.gate.summary import CandidateSummary
from ltr_assets.learning.propensity import CASCADE_Z, FREE_CURVE_Z, MIN_THETA
from ltr_assets.metrics.ranking import CounterfactualReport, PairedReport
from ltr_core.artifacts.format import MODEL_CARD_FILE, RegistryError
from ltr_core.artifacts.store import LocalVersions


def model_card_document(metadata: Mapping[str, Any]) -> dict[str, bytes]:
    """The registry document of a version, rendered from its full metadata on publish."""
    summary = CandidateSummary.from_json(metadata)
    return {MODEL_CARD_FILE: render_model_card(summary, metadata.get("version", "")).encode()}


def _f(value: float | None, signed: bool = False) -> str:
    """A float to 4 places ("n/a" when missing or not finite)."""
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{float(value):+.4f}" if signed else f"{float(value):.4f}"


COUNT_CHECKS = frozenset({"min_samples"})  # gate checks whose figures are counts


def _figure(value: float | None, count: bool) -> str:
    """A gate figure: a count as a whole number ("417", not "417.0000"), else as `_f`."""
    if count and value is not None and math.isfinite(value) and float(value).is_integer():
        return f"{int(value)}"
    return _f(value)


def _estimate(report: CounterfactualReport | None) -> str:
    """`value [low, high]` of a counterfactual report."""
    if report is None:
        return "n/a"
    return f"{_f(report.value)} [{_f(report.interval.low)}, {_f(report.interval.high)}]"


def _paired(report: PairedReport | None) -> str:
    if report is None:
        return "n/a"
    interval = report.interval
    return (
        f"{_f(report.difference, signed=True)} "
        f"[{_f(interval.low, signed=True)}, {_f(interval.high, signed=True)}]"
    )


def _gate(summary: CandidateSummary) -> str:
    return gate_line(summary.gate) if summary.gate else "not evaluated"


def _comparison(summary: CandidateSummary) -> list[str]:
    comparison = summary.comparison
    baseline = summary.baseline
    candidate = comparison.candidate
    ks = sorted(candidate) or [5]
    base = comparison.baseline or {}
    logged = comparison.logged_order
    lines = [
        "## Candidate vs baseline vs the platform's logged order",
        "",
        "Counterfactual nDCG (position-bias corrected: self-normalised IPS, rows past the "
        "largest IPS weight graded by the click model) on the same test lists, with bootstrap "
        "95% intervals over lists. Baseline: "
        f"{baseline.name}"
        + (f" ({baseline.status}: {baseline.error})" if baseline.error else "")
        + ".",
        "",
        "| metric | candidate | baseline | logged order |",
        "|---|---|---|---|",
    ]
    for k in ks:
        lines.append(
            f"| counterfactual nDCG@{k} | {_estimate(candidate.get(k))} | "
            f"{_estimate(base.get(k))} | {_estimate(logged.get(k))} |"
        )
    lines += [
        "",
        "Paired nDCG@5 differences on the same lists [95% CI]: candidate − logged order "
        f"{_paired(summary.metrics.vs_logged)}; candidate − baseline "
        f"{_paired(baseline.paired_ndcg_at_5)}.",
    ]
    return lines


def _latency(summary: CandidateSummary) -> list[str]:
    latency = summary.metrics.latency
    data = latency.at_data_sizes
    top = latency.at_max_candidates
    return [
        "## Latency",
        "",
        "The real /rank request path in-process (JSON body → validation → scorer → response): "
        "CPU time of the thread per request (what the code costs), and wall-clock time (which "
        "also counts waiting for a core on a busy machine).",
        "",
        "| list sizes | requests | CPU p50 ms | CPU p95 ms | CPU p99 ms | wall p95 ms |",
        "|---|---|---|---|---|---|",
        f"| the test lists' | {data.queries} | {_f(data.cpu_p50_ms)} | "
        f"{_f(data.cpu_p95_ms)} | {_f(data.cpu_p99_ms)} | "
        f"{_f(data.p95_ms)} |",
        f"| {latency.max_candidates} candidates | {top.queries} | "
        f"{_f(top.cpu_p50_ms)} | {_f(top.cpu_p95_ms)} | "
        f"{_f(top.cpu_p99_ms)} | {_f(top.p95_ms)} |",
        "",
        f"Gate: the worse CPU p95 must be < {_f(summary.thresholds.latency_p95_ms)} ms.",
    ]


def _weights(summary: CandidateSummary) -> list[str]:
    weights = summary.weights
    before = summary.baseline.weights or {}
    lines = [
        "## Weights",
        "",
        f"Derived linear weights ({summary.weights_method}), normalised to sum 1; "
        f"change vs the baseline {summary.baseline.name}.",
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


def _band(low: float | None, high: float | None) -> str:
    if low is None and high is None:
        return "unbounded"
    return f"[{_f(low)}, {_f(high)}]"


def _propensity(summary: CandidateSummary) -> list[str]:
    curve = summary.propensity
    lines = [
        "## Position bias (propensity curve)",
        "",
        f"Examination probability by rank position, relative to position 1 "
        f"(method: {curve.method}). The 95% band of a click-model position is the curve's "
        "sampling noise (lists resampled, the relevance model held fixed), not the click "
        "model's bias: where users differ from its assumptions the truth can lie outside it.",
    ]
    family = _family_line(curve.params)
    if family:
        lines += ["", family]
    counts = _click_count_line(curve.params)
    if counts:
        lines += ["", counts]
    if curve.interventions_used:
        used = sum(source == "interventions" for source in curve.sources)
        lines += [
            "",
            f"{used} positions measured by swap interventions (positions 1 and k exchanged on "
            "a random share of requests), the others by the click model; a band is unbounded "
            "where the swapped clicks are too few to bound it.",
        ]
    if any(_at_floor(value) for value in curve.examination):
        lines += [
            "",
            f"Positions marked (floor) sit at the curve's floor, {MIN_THETA:g}: the logs show "
            "(almost) no examination there, and estimate and band are clipped to it, so the "
            "band does not say how far below the floor the truth may lie.",
        ]
    rows = zip(curve.examination, curve.low, curve.high, strict=False)
    if not curve.sources:  # a pinned curve, or a version published before sources were kept
        lines += ["", "| position | estimate | 95% band |", "|---|---|---|"]
        for position, (value, low, high) in enumerate(rows, start=1):
            lines.append(f"| {position} | {_theta(value)} | {_band(low, high)} |")
        return lines
    lines += [
        "",
        "| position | estimate | 95% band | source | swapped impressions |",
        "|---|---|---|---|---|",
    ]
    extra = zip(curve.sources, curve.swapped_impressions, strict=False)
    for position, ((value, low, high), (source, swapped)) in enumerate(
        zip(rows, extra, strict=False), start=1
    ):
        lines.append(
            f"| {position} | {_theta(value)} | {_band(low, high)} | {source} | {swapped} |"
        )
    return lines


def _at_floor(value: float) -> bool:
    return value <= MIN_THETA * (1.0 + 1e-9)


def _theta(value: float) -> str:
    return f"{_f(value)} (floor)" if _at_floor(value) else _f(value)


def _click_count_line(params: dict[str, Any]) -> str:
    """Whether users click several candidates of a list as often as the click model says: far
    fewer is the mark of users who stop after a click, whom the curve does not describe."""
    test = params.get("click_count_test")
    if not isinstance(test, dict):  # pinned, or published before the test was recorded
        return ""
    z = float(test["z"])
    line = (
        f"Clicks per list: {test['multi_click_lists']} of the {test['lists']} held-out lists "
        f"have two or more clicks, {float(test['expected']):.1f} expected by the click model "
        f"(z = {z:.2f})."
    )
    if z > CASCADE_Z:
        return line
    return line + (
        " **These users seem to stop scanning after a click (a cascade)**: far fewer lists "
        "have several clicks than users who examine each position independently would give. "
        "The curve then also measures how often users stop, not only how far they look, "
        "and the counterfactual estimates and their intervals lean on a model these clicks "
        "do not follow (on simulated cascade users the gate's intervals missed the true "
        'nDCG@5 for most rankings; docs/benchmarks.md, "Click signal and click count"). '
        "Judge this version by the online comparison rather than by the offline figures alone."
    )


def _family_line(params: dict[str, Any]) -> str:
    """What the click model's curve is shaped by, and why (LTR_PROPENSITY_FAMILY=auto)."""
    family = params.get("family")
    if family is None:  # pinned, or published before the family was recorded
        return ""
    shape = "θ_k = k^-η, one exponent" if family == "power_law" else "a free θ per position"
    line = f"Curve family: {family} ({shape})"
    choice = params.get("family_choice")
    if isinstance(choice, dict):
        line += (
            f", chosen by `auto`: the free curve's held-out log-likelihood gain is "
            f"z = {_f(choice.get('free_curve_z'))} standard errors (it replaces the power law "
            f"from z ≥ {FREE_CURVE_Z:g})"
        )
    line += "."
    # the other family the logs do not rule out, whose estimates the gate's intervals span
    # (ClickModel.alternative_curves): the free curve always, the power law below the z rule
    test = params.get("family_test")
    z = test.get("free_curve_z") if isinstance(test, dict) else None
    if not isinstance(z, int | float):
        return line
    if family == "power_law":
        line += (
            " The gate's 95% intervals also span the estimates under a free θ per position, "
            "which nests the power law."
        )
    elif z < FREE_CURVE_Z:
        line += (
            f" The held-out lists do not rule out the power law (z = {_f(z)} < "
            f"{FREE_CURVE_Z:g}), so the gate's 95% intervals also span the estimates under it."
        )
    return line


def _data(summary: CandidateSummary) -> list[str]:
    window = summary.training_window
    present = [d.isoformat() for d in window.present]
    missing = [d.isoformat() for d in window.missing]
    lines = [
        "## Training window and data",
        "",
        f"Rolling window of {window.days} days ending {summary.partition.isoformat()}: "
        f"{len(present)} present"
        + (f" ({present[0]} … {present[-1]})" if present else "")
        + f", {len(missing)} missing"
        + (f" ({', '.join(missing)})" if missing else "")
        + ".",
        "",
        "| split | lists | rows |",
        "|---|---|---|",
    ]
    groups, rows = window.groups, window.rows
    lines += [
        f"| train | {groups.train} | {rows.train} |",
        f"| valid | {groups.valid} | {rows.valid} |",
        f"| test | {groups.test} | {rows.test} |",
    ]
    lines += ["", f"Test lists with a positive label (samples): {summary.metrics.samples}."]
    if window.ids_on_several_days:
        lines += [
            "",
            f"{window.ids_on_several_days} list ids were found on more than one day (a list "
            "shown across midnight, or a client that reuses request ids): each day's part "
            "counts as a list of its own.",
        ]
    sampled = {step: record for step, record in summary.sampling.items() if record.sampled}
    if sampled:  # a cap bit (LTR_*_MAX_ROWS): say what each capped step fitted on
        lines += [
            "",
            "Fitted on a deterministic sample of whole lists (the caps LTR_*_MAX_ROWS): "
            + "; ".join(
                f"{step} {r.rows_used} of {r.rows_available} rows "
                f"({r.lists_used} of {r.lists_available} lists)"
                for step, r in sampled.items()
            )
            + ". Validation, the evaluation and the gate used every list.",
        ]
    return lines


def _gate_lines(summary: CandidateSummary) -> list[str]:
    """One row per gate check: the first thing a reader asks is whether and why it passed."""
    lines = [f"## Gate: {_gate(summary)}", ""]
    if not summary.gate:
        return lines + ["No gate result was recorded."]
    lines += ["| check | result | value | threshold |", "|---|---|---|---|"]
    for result in summary.gate:
        verdict = "pass" if result.passed else "**FAIL**"
        count = result.name in COUNT_CHECKS
        figures = f"{_figure(result.value, count)} | {_figure(result.threshold, count)}"
        lines.append(f"| {result.name} | {verdict} | {figures} |")
    for warning in summary.warnings:  # not gated: they warn
        verdict = "pass" if warning.passed else "**WARN**"
        figures = f"{_f(warning.value)} | {_f(warning.threshold)}"
        lines.append(f"| {warning.name} (warning) | {verdict} | {figures} |")
    lines += [f"\nWarning, {w.name}: {w.description}." for w in summary.warnings if not w.passed]
    return lines


def _headline(summary: CandidateSummary) -> list[str]:
    """The one figure the gate judges first: counterfactual nDCG@5 with its interval."""
    return [
        "## Counterfactual nDCG@5",
        "",
        f"{_estimate(summary.metrics.counterfactual.get(5))} (bootstrap 95% interval over "
        f"the {summary.metrics.test_groups} test lists; scorer {summary.metrics.scorer}).",
    ]


def _is_intersection(row: str) -> bool:
    """A fairness table row of an intersection: its attribute (before `=`) joins two with `&`
    (`| gender&ethnicity=F&preta | ...`). Read from the recorded table, so the split also holds
    for versions published before the card put intersections last."""
    cells = row.strip().strip("|").split("|")
    return bool(cells) and "&" in cells[0].partition("=")[0]


def _split_fairness(table: str) -> tuple[str, str]:
    """(values table with its coverage note, intersections table) of a recorded fairness table;
    the intersections table is "" when there is none."""
    lines = table.splitlines()
    if len(lines) < 2 or not lines[0].startswith("|"):
        return table, ""
    head, body = lines[:2], lines[2:]
    rows = [line for line in body if line.startswith("|")]
    rest = [line for line in body if not line.startswith("|")]
    values = [row for row in rows if not _is_intersection(row)]
    crossed = [row for row in rows if _is_intersection(row)]
    values_table = "\n".join([*head, *values, *rest]).rstrip()
    return values_table, "\n".join([*head, *crossed]) if crossed else ""


def intersections_table(summary: CandidateSummary) -> str:
    """The fairness table's intersections of protected attributes ("" when none): the UI shows
    them in an entry of their own, as collapsed as Dagster's metadata gets."""
    return _split_fairness(summary.fairness_table or "n/a")[1]


def render_model_card(
    summary: CandidateSummary, version: str = "", with_intersections: bool = True
) -> str:
    """The card as Markdown, summary first (Dagster's UI opens a long entry at its end and
    renders no collapsible `<details>`, so the long intersections table goes last, under its own
    heading, or, `with_intersections=False`, is left to the UI's `fairness_intersections`
    entry); `version` is the registry version ("" for an unpublished candidate)."""
    title = f"version {version}" if version else "candidate"
    head = [
        f"# Model card: {title} (partition {summary.partition.isoformat()})",
        "",
        f"- Scorer: {summary.scorer}; position-bias correction: {summary.debias.method}; "
        f"best iteration: {summary.best_iteration}",
        f"- Code: {summary.code_version}",
    ]
    values, intersections = _split_fairness(summary.fairness_table or "n/a")
    fairness = [
        "## Fairness per protected value",
        "",
        "Top-5 exposure vs candidate share over lists holding the value and others.",
        "",
        values,
    ]
    sections = [
        head,
        _gate_lines(summary),
        _headline(summary),
        _comparison(summary),
        _weights(summary),
        _latency(summary),
        _propensity(summary),
        fairness,
        _data(summary),
    ]
    if intersections:
        rows = len(intersections.splitlines()) - 2  # the header and its rule
        sections.append(
            [
                "## Intersections of protected attributes (reported, not gated)",
                "",
                intersections
                if with_intersections
                else f"{rows} rows, in the entry `fairness_intersections` beside this card.",
            ]
        )
    return "\n\n".join("\n".join(section) for section in sections) + "\n"


def live_model_card(registry: LocalVersions, with_intersections: bool = False) -> str:
    """The card of the version `latest` points at, labelled with it: what serves now, which
    after a backfill is not the version the run just published. Rendered again from the
    version's metadata.json, so a version published before the card's order changed reads
    summary-first too; its stored model_card.md when that metadata is not a summary."""
    pointer = registry.pointer()
    if pointer is None:
        return "# Live model card\n\nNo version is live yet: `latest` points at none.\n"
    version, partition = str(pointer["version"]), str(pointer.get("partition", ""))
    label = (
        f"**Live version {version}** (partition {partition or 'n/a'}; the version `latest` "
        "points at, which serving ranks with).\n\n"
    )
    try:
        metadata = registry.metadata(version)
        summary = CandidateSummary.from_json(metadata)
        return label + render_model_card(summary, version, with_intersections)
    except (RegistryError, ValidationError) as exc:
        stored = registry.versions_dir / version / MODEL_CARD_FILE
        if stored.is_file():
            return label + stored.read_text()
        return label + f"No model card could be read for {version}: {exc}\n"


def live_intersections(registry: LocalVersions) -> str:
    """The live version's intersections table, for the UI entry beside its card."""
    pointer = registry.pointer()
    if pointer is None:
        return "No version is live yet."
    try:
        summary = CandidateSummary.from_json(registry.metadata(str(pointer["version"])))
    except (RegistryError, ValidationError) as exc:
        return f"Not readable for {pointer['version']}: {exc}"
    return intersections_table(summary) or "No intersection was reported."
