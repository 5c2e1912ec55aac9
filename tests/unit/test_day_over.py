"""raw_events refuses a day that has not ended (UTC): a run launched early, by hand or by a
schedule tick previewed for a future time and committed, would ingest part of the day, train
and publish on it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from ltr_assets.ingest.day import DayNotOver, check_day_over

DAY = date(2026, 12, 6)


def test_a_day_is_ingested_only_once_it_has_ended_in_utc() -> None:
    with pytest.raises(
        DayNotOver, match=r"2026-12-06 has not ended yet \(it ends at 2026-12-07 00:00 UTC"
    ):
        check_day_over(DAY, datetime(2026, 12, 6, 11, 21, tzinfo=UTC))
    with pytest.raises(DayNotOver, match="run it after midnight UTC"):
        check_day_over(DAY, datetime(2026, 12, 6, 23, 59, 59, tzinfo=UTC))
    # 01:30 in UTC+3 is 22:30 UTC on the 6th: not over
    with pytest.raises(DayNotOver):
        check_day_over(DAY, datetime(2026, 12, 7, 1, 30, tzinfo=timezone(timedelta(hours=3))))
    check_day_over(DAY, datetime(2026, 12, 7, 0, 0, tzinfo=UTC))
    check_day_over(DAY - timedelta(days=30), datetime(2026, 12, 6, 11, 21, tzinfo=UTC))
