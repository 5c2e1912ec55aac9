"""What the Definitions declare for the operator: freshness and declarative automation."""

from __future__ import annotations

from datetime import timedelta

from dagster._core.definitions.freshness import CronFreshnessPolicy

from ltr_assets.definitions import defs


def test_published_weights_is_overdue_without_a_publication_by_six_utc() -> None:
    (spec,) = defs.resolve_assets_def("published_weights").specs
    policy = spec.freshness_policy
    assert isinstance(policy, CronFreshnessPolicy)
    assert policy.deadline_cron == "0 6 * * *"
    assert policy.timezone == "UTC"
    assert policy.lower_bound_delta == timedelta(hours=6)  # any publication after midnight UTC
