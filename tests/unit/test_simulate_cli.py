"""`ltr simulate`'s arguments and output: a mistake is a usage error naming the argument (exit
2, no traceback, no file), and a failed write leaves the previous file whole."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from ltr_assets import cli


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--start", "2026-13-01", "--days", "2"], "--start: '2026-13-01' is not a day"),
        (["--start", "9999-12-31", "--days", "2"], "runs past 9999-12-30"),
        (["--start", "2026-11-01", "--days", "0"], "--days: 0 is not in [1, 366]"),
        (["--start", "2026-11-01", "--days", "-2"], "--days: -2 is not in [1, 366]"),
        (["--start", "2026-11-01", "--days", "1", "--requests-per-day", "0"], "not in [1, "),
        (["--start", "2026-11-01", "--days", "1", "--bias-against", "foo"], "attribute=value"),
        (
            ["--start", "2026-11-01", "--days", "1", "--bias-against", "gender=Q"],
            "gender has no value 'Q' (F, M)",
        ),
        (["--start", "2026-11-01", "--days", "1", "--bias-strength", "nan"], "finite number"),
        (["--start", "2026-11-01", "--days", "1", "--position-bias", "-1"], "finite number >= 0"),
    ],
)
def test_a_mistaken_argument_is_a_usage_error_naming_it(
    arguments: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "events.jsonl"
    with pytest.raises(SystemExit) as exited:
        cli.main(["simulate", *arguments, "--out", str(out)])
    assert exited.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_the_last_day_whose_feedback_fits_the_calendar_can_be_simulated(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    arguments = ["--start", "9999-12-30", "--days", "1", "--requests-per-day", "2"]
    assert cli.main(["simulate", *arguments, "--out", str(out)]) == 0
    assert out.read_text().count("\n") > 0


def test_a_failed_write_leaves_the_previous_file_whole_and_no_partial_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "events.jsonl"
    out.write_text("the previous run's events\n")

    def disk_fills(*args: Any) -> Iterator[str]:
        yield '{"event_id": "e-1"}'
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "render_lines", disk_fills)
    arguments = ["--start", "2026-11-01", "--days", "1", "--requests-per-day", "2"]
    assert cli.main(["simulate", *arguments, "--out", str(out)]) == 1
    assert "No space left on device" in capsys.readouterr().err
    assert out.read_text() == "the previous run's events\n"
    assert [p.name for p in tmp_path.iterdir()] == ["events.jsonl"]


def test_the_demo_takes_a_number_of_days_it_can_simulate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(["demo", "--days", "0"])
    assert exited.value.code == 2 and "--days: 0 is not in [1, 366]" in capsys.readouterr().err


def test_a_link_keeps_its_target_written_a_pipe_is_written_to_a_folder_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["simulate", "--start", "2026-11-01", "--days", "1", "--requests-per-day", "2"]
    target = tmp_path / "events.jsonl"
    target.write_text("old\n")
    link = tmp_path / "latest.jsonl"
    link.symlink_to(target)
    assert cli.main([*arguments, "--out", str(link)]) == 0
    assert link.is_symlink() and target.read_text().count("\n") > 1  # the target rewritten

    fifo = tmp_path / "events.fifo"
    os.mkfifo(fifo)
    with ThreadPoolExecutor(1) as reader:
        read = reader.submit(fifo.read_text)
        assert cli.main([*arguments, "--out", str(fifo)]) == 0
        assert read.result(timeout=30) == target.read_text()  # the same events, streamed
    assert stat.S_ISFIFO(fifo.stat().st_mode)

    with pytest.raises(SystemExit) as exited:
        cli.main([*arguments, "--out", str(tmp_path)])
    assert exited.value.code == 2 and "is a directory" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "events.fifo", "events.jsonl", "latest.jsonl"
    ]  # fmt: skip
