"""The charts put into the UI's metadata: valid SVG that draws each band, threshold and refused
night, read from what ltr_model recorded in the lake."""

from __future__ import annotations

import base64
import copy
import json
import xml.etree.ElementTree as ET
from datetime import date
from pathlib import Path
from typing import Any

from ltr_assets.gate.charts import Chart, Series, Threshold, markdown_image, render_svg
from ltr_assets.gate.nightly import (
    fairness_chart,
    gate_charts,
    ndcg_chart,
    read_nights,
)
from ltr_assets.gate.summary import CandidateSummary
from ltr_assets.lake.paths import Lake
from ltr_assets.online.charts import win_share_chart
from ltr_assets.online.decision import WinShare
from tests.unit.test_model_card import _summary

SVG = "{http://www.w3.org/2000/svg}"


def _tree(svg: str) -> ET.Element:
    return ET.fromstring(svg)  # raises on anything that is not well-formed XML


def _texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def test_a_band_a_threshold_and_gaps_are_drawn() -> None:
    chart = Chart(
        title="t <&>",
        x_labels=["1", "2", "3", "4"],
        series=[Series("s", [0.5, None, 0.7, 0.8], [0.4, None, 0.6, 0.7], [0.6, None, 0.8, 0.9])],
        y_label="y",
        thresholds=[Threshold(0.65, "min")],
    )
    root = _tree(render_svg(chart))
    # one point alone (an error bar) and one run of two points (a polygon) around the gap
    assert len(list(root.iter(f"{SVG}polygon"))) == 1
    assert len(list(root.iter(f"{SVG}circle"))) == 3  # the None point is not drawn
    assert "min 0.65" in _texts(root) and "t <&>" in _texts(root)
    dashed = [e for e in root.iter(f"{SVG}line") if e.get("stroke-dasharray") == "2 3"]
    assert len(dashed) == 2  # the threshold and its legend entry


def test_every_series_has_a_style_of_its_own_and_its_legend_fits() -> None:
    """The fairness chart draws one series per protected value: 12 in the demo, more than the
    palette's colours."""
    series = [Series(f"ethnicity=value-{i}", [0.9, 0.8]) for i in range(12)]
    threshold = Threshold(0.8, "LTR_FAIRNESS_MIN_RATIO")
    root = _tree(render_svg(Chart("t", ["a", "b"], series, "y", thresholds=[threshold])))
    width = float(root.get("width", "0"))
    lines = [e for e in root.iter(f"{SVG}polyline")]
    styles = {(e.get("stroke"), e.get("stroke-dasharray")) for e in lines}
    assert len(lines) == len(styles) == 12
    legend = [t for t in root.iter(f"{SVG}text") if t.text and t.text.startswith(("eth", "LTR"))]
    assert "LTR_FAIRNESS_MIN_RATIO 0.8" in [t.text for t in legend]
    for text in legend:  # 11 px sans-serif: at most about 6.2 px a character
        assert float(text.get("x", "0")) + 6.2 * len(text.text or "") <= width, text.text


def test_points_outside_the_range_stay_inside_the_plot() -> None:
    chart = Chart("t", ["a", "b"], [Series("s", [-5.0, 5.0])], "y", y_range=(0.0, 1.0))
    ys = [float(c.get("cy", "nan")) for c in _tree(render_svg(chart)).iter(f"{SVG}circle")]
    assert all(36 <= y <= 300 - 48 for y in ys)


def test_the_markdown_image_carries_the_svg() -> None:
    chart = Chart("curve", ["1"], [Series("s", [1.0])], "y")
    text = markdown_image(chart)
    assert text.startswith("![curve](data:image/svg+xml;base64,")
    encoded = text.split(",", 1)[1].rstrip(")")
    assert base64.b64decode(encoded).decode() == render_svg(chart)


def _night(day: str, value: float, passed: bool, ratio: float) -> dict[str, Any]:
    data = copy.deepcopy(_summary())
    data["partition"] = day
    data["gate_passed"] = passed
    data["metrics"]["counterfactual"]["ndcg@5"]["value"] = value
    data["metrics"]["fairness"] = {
        "min_ratio": 0.8,
        "values": [
            {"attribute": "gender", "value": "F", "gated": True, "ratio": ratio,
             "ratio_ci": {"low": ratio - 0.1, "high": ratio + 0.1}},
            {"attribute": "pcd", "value": "true", "gated": False, "ratio": 0.1,
             "ratio_ci": {"low": 0.0, "high": 0.2}},
        ],
    }  # fmt: skip
    return data


def _lake_with_nights(tmp_path: Path) -> Lake:
    lake = Lake(tmp_path / "lake")
    for day, value, passed, ratio in [
        ("2026-11-01", 0.70, False, 0.9),
        ("2026-11-03", 0.74, True, 1.0),  # 11-02 never trained: left out
    ]:
        folder = Path(str(lake.candidate(date.fromisoformat(day))))
        folder.mkdir(parents=True)
        (folder / "candidate.json").write_text(json.dumps(_night(day, value, passed, ratio)))
    return lake


def test_the_nights_are_read_oldest_first_and_refused_ones_are_marked(tmp_path: Path) -> None:
    nights = read_nights(_lake_with_nights(tmp_path), date(2026, 11, 3), 14)
    assert [n.day for n in nights] == [date(2026, 11, 1), date(2026, 11, 3)]
    assert [n.gate_passed for n in nights] == [False, True]
    assert set(nights[0].ratios) == {"gender=F"}  # only gated values are charted

    ndcg = ndcg_chart(nights)
    values, refused = ndcg.series
    assert values.y == [0.70, 0.74] and refused.y == [0.70, None] and refused.markers_only
    assert values.low == [0.7, 0.7] and ndcg.thresholds[0].value == 0.65
    fairness = fairness_chart(nights)
    assert [s.label for s in fairness.series] == ["gender=F"]
    assert fairness.thresholds[0].value == 0.8


def test_ltr_models_charts_are_three_images(tmp_path: Path) -> None:
    curve = CandidateSummary.from_json(_summary()).propensity
    text = gate_charts(_lake_with_nights(tmp_path), date(2026, 11, 3), curve)
    assert text.count("![") == 3 and text.count("data:image/svg+xml;base64,") == 3


def test_the_win_share_chart_shows_the_promotion_line() -> None:
    share = WinShare(300, 250, 140, 100, 10, 0.58, 0.52, 0.64, 0.95, 0.1, 0.12)
    chart = win_share_chart([(date(2026, 11, 4), share)], margin=0.02)
    assert [t.value for t in chart.thresholds] == [0.5, 0.48]
    assert chart.series[0].low == [0.52] and chart.series[0].y == [0.58]


def test_markers_only_draws_no_line() -> None:
    chart = Chart("t", ["a", "b", "c"], [Series("s", [0.1, None, 0.3], markers_only=True)], "y")
    root = _tree(render_svg(chart))
    assert len(list(root.iter(f"{SVG}polyline"))) == 0
    assert len(list(root.iter(f"{SVG}circle"))) == 2
