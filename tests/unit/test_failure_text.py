"""What a night that published nothing says: a refusal names the live version its record
reports, never assumes it is the previous one (the same run's online comparison may have
promoted the candidate); a crash says so."""

from __future__ import annotations

from ltr_assets.notify import failure_text


def test_a_refusal_names_the_version_live_after_the_run() -> None:
    text = failure_text("ltr_daily_job", "2026-12-05", "abcdef123456", True, "min_samples", "v9")
    assert text == (
        ":no_entry: ltr_daily_job [2026-12-05] (run abcdef12) gate refused: min_samples. "
        "Nothing was published; live: v9."
    )
    assert "stays live" not in text


def test_a_refusal_before_any_version_and_a_crash() -> None:
    first = failure_text("ltr_daily_job", "2026-11-01", "abcdef123456", True, "min_samples")
    assert first.endswith("gate refused: min_samples. Nothing was published.")
    crash = failure_text("ltr_daily_job", "2026-11-01", "abcdef123456", False, "ltr_model: boom")
    assert crash == ":x: ltr_daily_job [2026-11-01] (run abcdef12) crashed: ltr_model: boom"
