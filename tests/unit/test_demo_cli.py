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


@pytest.mark.slow  # starts the CLI as a process twice: not in make test-fast
def test_a_dagster_home_without_dagster_yaml_is_warned_about(tmp_path: Path) -> None:
    """Dagster's defaults have no run limits: the one-pipeline-run-at-a-time limit is gone."""
    bare = tmp_path / "dagster"
    bare.mkdir()
    done = run_ltr("night", "2025-12-31", home=tmp_path, DAGSTER_HOME=str(bare))
    assert done.returncode == 2  # the day is no partition (from LTR_START_DATE on)
    assert f"warning: DAGSTER_HOME='{bare}' has no dagster.yaml" in done.stderr
    assert f"copy {ROOT / 'dagster.yaml'} there" in done.stderr
    (bare / "dagster.yaml").write_text((ROOT / "dagster.yaml").read_text())
    configured = run_ltr("night", "2025-12-31", home=tmp_path, DAGSTER_HOME=str(bare))
    assert configured.returncode == 2 and "warning" not in configured.stderr


def test_a_clipped_interval_is_marked_in_the_report() -> None:
    clipped = Interval(1.03, 1.2).within(0.0, 1.0)
    assert estimate_text(1.0073, clipped) == "1.0073 [1.0000, 1.0000]*"
    assert estimate_text(0.95, Interval(0.91, 0.98)) == "0.9500 [0.9100, 0.9800]"
    assert CLIPPED_NOTE.startswith("* interval clipped")
