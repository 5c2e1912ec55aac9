"""The demo's command and report: `ltr demo` outside `make demo` without a Dagster instance
directory says how to make one (exit 2) instead of failing inside Dagster; a clipped interval is
marked in the report."""

from __future__ import annotations

from pathlib import Path

import pytest

from ltr_assets.demo import CLIPPED_NOTE, estimate_text
from ltr_assets.metrics.ranking import Interval
from tests.support.cli import run_ltr

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("argv", "again"),
    [(["demo", "--days", "1"], "demo"), (["night", "2026-11-02"], "night 2026-11-02")],
)
def test_ltr_demo_without_dagster_home_says_how_to_make_one(
    tmp_path: Path, argv: list[str], again: str
) -> None:
    """So does `ltr night`: the command to paste ends with the command given."""
    unset = run_ltr(*argv, home=tmp_path, DAGSTER_HOME="")
    missing = run_ltr(*argv, home=tmp_path, DAGSTER_HOME=str(tmp_path / "nope"))
    assert unset.returncode == missing.returncode == 2
    assert "DAGSTER_HOME is not set" in unset.stderr
    assert "is not a directory" in missing.stderr
    for done in (unset, missing):
        assert "make demo" in done.stderr
        # every path written out, so that it can be pasted anywhere ("$LTR_HOME" pasted where
        # it is unset is /dagster; dagster.yaml is the repository's)
        assert f"mkdir -p {tmp_path.resolve() / 'dagster'} && cp {ROOT / 'dagster.yaml'} " in (
            done.stderr
        )
        assert f"LTR_HOME={tmp_path.resolve()} DAGSTER_HOME={tmp_path.resolve() / 'dagster'} " in (
            done.stderr
        )
        assert done.stderr.startswith(f"ltr {argv[0]}: ")
        assert done.stderr.rstrip().endswith(f"/ltr {again}")
        assert "Traceback" not in done.stderr


def test_a_clipped_interval_is_marked_in_the_report() -> None:
    clipped = Interval(1.03, 1.2).within(0.0, 1.0)
    assert estimate_text(1.0073, clipped) == "1.0073 [1.0000, 1.0000]*"
    assert estimate_text(0.95, Interval(0.91, 0.98)) == "0.9500 [0.9100, 0.9800]"
    assert CLIPPED_NOTE.startswith("* interval clipped")
