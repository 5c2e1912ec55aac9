"""How old the live version is for a night (`live_version_age`, published_weights' WARN check):
by its training partition, so a week of refused nights warns although the asset materialized
every night (freshness stays green), and a backfill of an old day measures it at the newest
night run."""

from __future__ import annotations

from datetime import date

import pytest

from ltr_assets.registry.publication import live_version_age
from ltr_core.settings import Settings

DAY = date(2026, 12, 6)
LIVE = "20261201_021503"
REFUSED = ["min_samples: 12 vs 100", "ndcg_at_5: 0.61 vs 0.65"]


def test_a_live_version_within_the_limit_passes() -> None:
    age = live_version_age(DAY, LIVE, "2026-12-04", limit=3)
    assert (age.passed, age.age_days, age.limit) == (True, 2, 3)
    assert age.description == (
        f"live version {LIVE} was trained on 2026-12-04, 2 days before 2026-12-06 (limit 3)"
    )
    # At the limit itself still passes; the night's own version, age 0.
    assert live_version_age(DAY, LIVE, "2026-12-03", limit=3).passed
    today = live_version_age(DAY, LIVE, "2026-12-06", limit=0)
    assert (today.passed, today.age_days) == (True, 0)


def test_a_live_version_older_than_the_limit_warns_naming_the_refused_checks() -> None:
    age = live_version_age(DAY, LIVE, "2026-11-30", limit=3, refused=REFUSED)
    assert (age.passed, age.age_days, age.live_partition) == (False, 6, "2026-11-30")
    assert age.description == (
        f"live version {LIVE} was trained on 2026-11-30, 6 days before 2026-12-06 (limit 3): "
        "no version of the nights since went live; 2026-12-06's candidate was refused by the "
        "gate: min_samples: 12 vs 100; ndcg_at_5: 0.61 vs 0.65"
    )
    # One day past the limit is enough; a published night names no refusal.
    published = live_version_age(DAY, LIVE, "2026-12-02", limit=3)
    assert (published.passed, published.age_days) == (False, 4)
    assert "refused" not in published.description


def test_nothing_live_warns() -> None:
    age = live_version_age(DAY, "", "", limit=3, refused=REFUSED[:1])
    assert (age.passed, age.age_days, age.live_version) == (False, None, "")
    assert age.description == (
        "nothing is live on 2026-12-06: no version has gone live yet; 2026-12-06's candidate "
        "was refused by the gate: min_samples: 12 vs 100"
    )


def test_a_live_version_without_a_training_partition_warns_its_age_unknown() -> None:
    age = live_version_age(DAY, LIVE, "", limit=3)
    assert (age.passed, age.age_days) == (False, None)
    assert "its age on 2026-12-06 is unknown" in age.description


def test_a_day_older_than_the_live_version_with_no_newer_night_passes() -> None:
    age = live_version_age(date(2026, 11, 20), LIVE, "2026-11-30", limit=3, refused=REFUSED)
    assert (age.passed, age.age_days, age.measured_on) == (True, -10, date(2026, 11, 20))
    assert age.description.startswith(
        f"live version {LIVE} was trained on 2026-11-30, 10 days after 2026-11-20: the live "
        "version is newer than this day"
    )


def test_a_backfill_of_an_old_day_measures_the_age_at_the_newest_night() -> None:
    """Measured at the old day the stale live version would look newer than the day, and the
    check's latest result (the backfill's) would pass."""
    old_day, newest = date(2026, 11, 20), date(2026, 12, 5)
    age = live_version_age(old_day, LIVE, "2026-11-27", limit=3, newest_night=newest)
    assert (age.passed, age.age_days, age.measured_on) == (False, 8, newest)
    assert age.description == (
        f"live version {LIVE} was trained on 2026-11-27, 8 days before 2026-12-05, the newest "
        "night run (limit 3): no version of the nights since went live"
    )
    # The newest night itself, or a night newer than any recorded: measured at the day.
    assert live_version_age(newest, LIVE, "2026-11-27", 3, newest_night=newest).age_days == 8
    later = live_version_age(DAY, LIVE, "2026-12-04", 3, newest_night=newest)
    assert (later.passed, later.measured_on) == (True, DAY)


@pytest.mark.parametrize(("raw", "limit"), [(None, 3), ("7", 7), ("0", 0)])
def test_the_limit_is_ltr_live_max_age_days(raw: str | None, limit: int) -> None:
    env = {} if raw is None else {"LTR_LIVE_MAX_AGE_DAYS": raw}
    assert Settings.from_env({"LTR_HOME": "/srv/ltr", **env}).live_max_age_days == limit


def test_a_stale_version_made_live_by_a_rollback_names_the_rollback() -> None:
    age = live_version_age(
        DAY, LIVE, "2026-11-09", 3, by_rollback_at="2026-12-06T11:09:17.072766+00:00"
    )
    assert not age.passed
    assert age.description == (
        f"live version {LIVE} was trained on 2026-11-09, 27 days before 2026-12-06 (limit 3): "
        "made live by a rollback at 2026-12-06 11:09 UTC"
    )
