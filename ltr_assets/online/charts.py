"""The online comparison's chart: the candidate's accumulated win share with its interval."""

from __future__ import annotations

from datetime import date

from ltr_assets.gate.charts import Chart, Series, Threshold
from ltr_assets.gate.nightly import day_label
from ltr_assets.online.decision import WinShare


def win_share_chart(path: list[tuple[date, WinShare]], margin: float) -> Chart:
    """The canary candidate's accumulated win share after each day with its 95% interval;
    promoted once the lower bound clears 0.5 − margin (with enough requests), retired when
    the upper bound falls below 0.5."""
    return Chart(
        title="Candidate's win share against the live version (95% interval)",
        x_labels=[day_label(day) for day, _ in path],
        series=[
            Series(
                "win share",
                [share.share for _, share in path],
                [share.low for _, share in path],
                [share.high for _, share in path],
            )
        ],
        y_label="win share",
        thresholds=[Threshold(0.5, "even"), Threshold(round(0.5 - margin, 4), "promote above")],
        y_range=(0.0, 1.0),
    )
