"""The online comparison's counting from the lake: per-request credit of interleaved requests of
exactly the compared pair, day counts stored and replaced, evidence summed over the candidate's
days, and the decision applied to the registry only for the candidate that was compared."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ltr_assets.defs.online import decision_check_result
from ltr_assets.lake import atomic
from ltr_assets.lake.paths import Lake
from ltr_assets.online import comparison as cmp
from ltr_assets.online.decision import (
    Decision,
    InterleavingCounts,
    OnlineDecision,
    decide,
    tally,
)
from ltr_assets.registry.local import LocalRegistry
from ltr_core.artifacts.format import RegistryError
from ltr_core.interleaving import credit, request_rng, team_draft
from tests.support.artifacts import tiny_model_text, weights

META = {"gated_scorer": "weights"}
DAY = date(2026, 11, 27)
PAIR = cmp.Pair("20261125_021500", "20261126_021501")


def _impressions(
    request_id: str,
    lawyers: list[str],
    teams: list[str],
    versions: dict[str, str],
    propensities: list[float] | None = None,
) -> list[dict[str, Any]]:
    logged = propensities or [0.5] * len(lawyers)
    return [
        {
            "event_type": "match_recommendation",
            "request_id": request_id,
            "lawyer_id": lawyer,
            "algorithm_version": versions[team],
            "action": None,
            "policy": "interleaved",
            "team": team,
            "propensity": propensity,
        }
        for lawyer, team, propensity in zip(lawyers, teams, logged, strict=True)
    ]


def _feedback(request_id: str, lawyer: str, action: str) -> dict[str, Any]:
    return {
        "event_type": "offer_feedback",
        "request_id": request_id,
        "lawyer_id": lawyer,
        "algorithm_version": None,
        "action": action,
        "policy": None,
        "team": None,
        "propensity": None,
    }


def _versions(pair: cmp.Pair) -> dict[str, str]:
    return {"live": pair.live, "candidate": pair.candidate}


def _write_day(lake: Lake, day: date, rows: list[dict[str, Any]]) -> None:
    path = lake.raw_events(day)
    assert isinstance(path, Path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(path)


def test_credit_per_request_matches_the_interleaving_credit_on_random_requests() -> None:
    """Many random interleaved requests with random clicks: the lake counting gives exactly
    `tally` of `ltr_core.interleaving.credit` per request."""
    rng = np.random.default_rng(3)
    rows: list[dict[str, Any]] = []
    expected = []
    for i in range(300):
        n = int(rng.integers(2, 12))
        lawyers = [f"l{j}" for j in range(n)]
        draft = team_draft(
            lawyers, list(rng.permutation(lawyers)), request_rng(f"r{i}"), top_k=None
        )
        rows += _impressions(
            f"r{i}", list(draft.items), list(draft.teams), _versions(PAIR), list(draft.propensities)
        )
        labels: dict[str, float] = {}
        for lawyer in draft.items:
            u = rng.random()
            if u < 0.1:
                rows.append(_feedback(f"r{i}", lawyer, "click"))
                labels[lawyer] = 1.0
            elif u < 0.13:
                rows += [_feedback(f"r{i}", lawyer, "click"), _feedback(f"r{i}", lawyer, "contact")]
                labels[lawyer] = 2.0
            elif u < 0.2:
                rows.append(_feedback(f"r{i}", lawyer, "decline"))  # not a click
        expected.append(credit(draft.items, draft.teams, labels, settled=draft.settled))
    day = cmp.request_credits(pd.DataFrame(rows), PAIR)
    assert (day.other_pairs, day.one_team) == (0, 0)
    credits = day.credits
    assert tally(credits) == tally(expected)
    assert tally(credits).requests > 50 and tally(credits).without_click > 0


def test_only_requests_of_exactly_this_pair_count(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    stale = cmp.Pair("20261120_000000", PAIR.candidate)  # live since rolled back
    other = cmp.Pair(PAIR.live, "20261124_000000")  # a previous candidate
    rows = [
        *_impressions("ours", ["a", "b"], ["live", "candidate"], _versions(PAIR)),
        _feedback("ours", "b", "click"),
        *_impressions("stale", ["a", "b"], ["live", "candidate"], _versions(stale)),
        _feedback("stale", "b", "click"),
        *_impressions("other", ["a", "b"], ["candidate", "live"], _versions(other)),
        _feedback("other", "a", "click"),
        # one team only: the pair cannot be verified
        *_impressions("alone", ["a"], ["candidate"], _versions(PAIR)),
        _feedback("alone", "a", "click"),
        # a deterministic request is no interleaving evidence
        {**_impressions("det", ["a"], ["live"], _versions(PAIR))[0], "policy": "deterministic"},
        _feedback("det", "a", "click"),
    ]
    _write_day(lake, DAY, rows)
    day = cmp.count_day(lake, DAY, PAIR)
    assert (day.counts.wins, day.counts.losses, day.counts.ties) == (1, 0, 0)
    assert day.interleaved_requests == 1 and day.other_pairs == 2 and day.one_team == 1
    assert (day.counts.live_shown, day.counts.candidate_shown) == (1, 1)


def test_clicks_on_settled_candidates_are_no_evidence_so_a_worse_candidate_is_retired(
    tmp_path: Path,
) -> None:
    """A candidate identical to live on 39 lists in 40 and worse on the rest (it demotes live's
    best lawyer, the one users click): the clicks on lists where the rankings agree credit a
    coin's team and are left out, so the evidence is the lists that differ, and the rule
    retires the candidate instead of letting coin-flip wins pull its share to ½ (counted, they
    put its interval's upper bound above 0.5: no verdict)."""
    lake = Lake(tmp_path / "lake")
    lawyers = ["a", "b", "c", "d"]
    rows: list[dict[str, Any]] = []
    differing = 0
    counted = []  # the same requests with every click credited, settled or not
    for i in range(2000):
        candidate = ["b", "c", "d", "a"] if i % 40 == 0 else lawyers
        differing += candidate != lawyers
        draft = team_draft(lawyers, candidate, request_rng(f"r{i}"))
        counted.append(credit(draft.items, draft.teams, {"a": 1.0}))
        rows += _impressions(
            f"r{i}", list(draft.items), list(draft.teams), _versions(PAIR), list(draft.propensities)
        )
        rows.append(_feedback(f"r{i}", "a", "click"))  # the best lawyer, wherever shown
    _write_day(lake, DAY, rows)
    day = cmp.count_day(lake, DAY, PAIR)
    assert day.interleaved_requests == 2000 and day.counts.requests == differing
    assert day.counts.wins == 0 and day.counts.without_click == 0
    assert day.counts.settled_only == 2000 - differing and day.counts.clicked_requests == 2000

    def rule(counts: InterleavingCounts) -> OnlineDecision:
        return decide(counts, days_collecting=1, min_requests=200, margin=0.02, max_days=3)

    assert rule(day.counts).decision is Decision.RETIRE
    diluted = rule(tally(counted))
    assert diluted.decision is Decision.COLLECT and diluted.evidence.high > 0.5


def test_a_day_without_the_policy_columns_has_no_evidence(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    rows = [{"event_type": "match_recommendation", "request_id": "r", "lawyer_id": "a"}]
    _write_day(lake, DAY, rows)
    day = cmp.count_day(lake, DAY, PAIR)
    assert day.counts == InterleavingCounts(0, 0, 0) and day.other_pairs == 0


def _registry(tmp_path: Path) -> LocalRegistry:
    return LocalRegistry(tmp_path / "reg", tmp_path / "models" / "ltr_weights.json")


def _with_candidate(
    tmp_path: Path, partition: str = "2026-11-25"
) -> tuple[LocalRegistry, cmp.Pair]:
    registry = _registry(tmp_path)
    at = datetime(2026, 11, 25, 2, 15, tzinfo=UTC)
    live = registry.publish(weights(0), tiny_model_text(), META, "2026-11-24", now=at)
    candidate = registry.publish(
        weights(1),
        tiny_model_text(),
        META,
        partition,
        now=at.replace(second=1),
        rollout="canary",
    )
    assert candidate.candidate_set
    return registry, cmp.Pair(live.version, candidate.version)


def _clicked_requests(pair: cmp.Pair, prefix: str, wins: int, losses: int) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for i in range(wins + losses):
        rid = f"{prefix}-{i}"
        rows += _impressions(rid, ["a", "b"], ["live", "candidate"], _versions(pair))
        rows.append(_feedback(rid, "b" if i < wins else "a", "click"))
    return rows


THRESHOLDS = cmp.Thresholds(min_requests=200, margin=0.02, max_days=3)


def test_days_accumulate_and_a_rerun_replaces_its_day(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    registry, pair = _with_candidate(tmp_path)
    d1, d2 = date(2026, 11, 26), date(2026, 11, 27)
    _write_day(lake, d1, _clicked_requests(pair, "a", 60, 40))
    _write_day(lake, d2, _clicked_requests(pair, "b", 30, 20))
    first = cmp.compare(lake, registry, d1, THRESHOLDS)
    assert first.decision is Decision.COLLECT and first.days_collecting == 1
    second = cmp.compare(lake, registry, d2, THRESHOLDS)
    again = cmp.compare(lake, registry, d2, THRESHOLDS)  # re-run: the day is replaced
    for result in (second, again):
        assert result.total is not None
        assert (result.total.wins, result.total.losses) == (90, 60)
        assert result.days_with_evidence == [d1, d2] and result.days_collecting == 2
    # a stored day of another pair is not this candidate's evidence
    cmp.store_day(
        lake,
        cmp.DayCounts(
            d1, cmp.Pair(pair.live, "20261101_000000"), InterleavingCounts(9, 0, 0), 9, 0
        ),
    )
    stored, unknown = cmp.stored_days(lake, pair, date(2026, 11, 25), d2)
    assert (cmp.accumulate(stored).wins, [d.day for d in stored], unknown) == (30, [d2], [])


def test_clicks_after_midnight_count_for_the_day_their_list_was_shown(tmp_path: Path) -> None:
    """Feedback is filed by its own timestamp: a click at 00:10 on a list shown at 23:55 is in
    raw_events[D+1]. It is D's evidence: counted when D+1 is compared (D is counted again),
    or at once when D is compared after D+1 was ingested."""
    lake = Lake(tmp_path / "lake")
    registry, pair = _with_candidate(tmp_path)
    d1, d2 = date(2026, 11, 26), date(2026, 11, 27)
    shown = [_impressions(f"late-{i}", ["a", "b"], ["live", "candidate"], _versions(pair))
             for i in range(5)]  # fmt: skip
    _write_day(lake, d1, [row for rows in shown for row in rows])
    first = cmp.compare(lake, registry, d1, THRESHOLDS)
    assert first.total is not None and first.total.clicked_requests == 0  # not clicked yet
    clicks = [_feedback(f"late-{i}", "b", "click") for i in range(5)]
    _write_day(lake, d2, clicks + _clicked_requests(pair, "d2", 2, 1))
    second = cmp.compare(lake, registry, d2, THRESHOLDS)
    assert second.total is not None and (second.total.wins, second.total.losses) == (7, 1)
    recounted = cmp.load_day(lake, d1)
    assert recounted is not None and recounted.counts.wins == 5
    assert second.recount is not None and second.recount.day == d1
    assert (second.recount.before.wins, second.recount.after.wins) == (0, 5)
    assert second.recount.summary() == (
        "2026-11-26: wins / losses / ties 0 / 0 / 0 → 5 / 0 / 0 (clicks after its midnight)"
    )
    assert first.recount is None  # the candidate's first day: no day before it to recount
    again = cmp.compare(lake, registry, d1, THRESHOLDS)  # a re-run of D after D+1's ingestion
    assert again.today is not None and again.today.counts.wins == 5


def test_days_compared_out_of_order_decide_on_all_the_evidence(tmp_path: Path) -> None:
    """The canary's last day compared before the earlier ones: those are counted from their
    raw_events on the way, so the decision rests on every day (here a promotion that the last
    day alone would not make); a day whose raw_events is missing holds the decision back."""
    lake = Lake(tmp_path / "lake")
    registry, pair = _with_candidate(tmp_path)
    d1, d2 = date(2026, 11, 26), date(2026, 11, 27)
    _write_day(lake, d1, _clicked_requests(pair, "a", 120, 80))
    _write_day(lake, d2, _clicked_requests(pair, "b", 30, 20))
    result = cmp.compare(lake, registry, d2, THRESHOLDS)
    assert result.total is not None and (result.total.wins, result.total.losses) == (150, 100)
    assert result.decision is Decision.PROMOTE and result.days_collecting == 2
    assert result.days_with_evidence == [d1, d2] and lake.online_comparison(d1).exists()

    atomic.remove(lake.online_comparison(d1))
    atomic.remove(lake.raw_events(d1))  # day 1 not ingested: its evidence is unknown
    held = cmp.compare(lake, registry, d2, THRESHOLDS)
    assert held.decision is Decision.COLLECT and held.days_with_evidence == [d2]
    assert "raw_events of 2026-11-26" in held.explanation


def test_no_candidate_and_a_candidate_not_yet_interleaved_decide_nothing(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    registry = _registry(tmp_path)
    none = cmp.compare(lake, registry, DAY, THRESHOLDS)
    assert none.status == "no_candidate" and none.decision is None
    assert cmp.apply(none, registry, None).moved is False
    registry, _ = _with_candidate(tmp_path, partition=DAY.isoformat())
    early = cmp.compare(lake, registry, DAY, THRESHOLDS)  # set for D itself: not yet served
    assert early.status == "not_started" and early.decision is None
    assert not lake.online_comparison(DAY).exists()


def test_a_rerun_of_a_day_decided_before_reports_that_day_and_decides_nothing(
    tmp_path: Path,
) -> None:
    """A backfill of days whose candidate the registry has since retired, with a newer candidate
    being compared now: each day reports what it compared and what became of that candidate,
    rather than "the current candidate was not interleaved on D"; the day it was retired still
    warns, as the night did; nothing moves."""
    lake = Lake(tmp_path / "lake")
    registry, old = _with_candidate(tmp_path)
    d1, d2 = date(2026, 11, 26), date(2026, 11, 27)
    _write_day(lake, d1, _clicked_requests(old, "a", 10, 12))
    _write_day(lake, d2, _clicked_requests(old, "b", 20, 80))
    assert cmp.compare(lake, registry, d1, THRESHOLDS).decision is Decision.COLLECT
    retired = cmp.compare(lake, registry, d2, THRESHOLDS)
    assert retired.decision is Decision.RETIRE and cmp.apply(retired, registry, None).moved
    at = datetime(2026, 11, 28, 2, 15, tzinfo=UTC)
    newer = registry.publish(weights(2), tiny_model_text(), META, "2026-11-27", now=at,
                             rollout="canary")  # fmt: skip
    assert newer.candidate_set

    first, second = (cmp.compare(lake, registry, d, THRESHOLDS) for d in (d1, d2))
    for day, rerun, (wins, losses) in ((d1, first, (10, 12)), (d2, second, (20, 80))):
        assert rerun.status == "decided_before" and rerun.decision is None
        assert rerun.pair == old
        assert rerun.explanation.startswith(
            f"{day} compared candidate {old.candidate} with live {old.live} "
            f"({wins + losses} clicked requests, {wins + losses} where the rankings differ: "
            f"{wins} won / {losses} lost / 0 tied); the candidate was retired on 2026-11-27; "
            f"the live version is now {old.live}."
        )
        assert cmp.apply(rerun, registry, None).moved is False
    assert (first.retired_on_day, second.retired_on_day) == (False, True)
    assert (
        decision_check_result(first, None).passed,
        decision_check_result(second, None).passed,
    ) == (True, False)
    candidate = registry.candidate() or {}
    assert candidate.get("version") == newer.version and registry.latest_version() == old.live


def test_a_rerun_after_a_rollback_says_so_in_words(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    registry, pair = _with_candidate(tmp_path)
    d1 = date(2026, 11, 26)
    _write_day(lake, d1, _clicked_requests(pair, "a", 10, 12))
    assert cmp.compare(lake, registry, d1, THRESHOLDS).decision is Decision.COLLECT
    registry.rollback(pair.live)  # clears the candidate, recorded with a timestamp only
    rerun = cmp.compare(lake, registry, d1, THRESHOLDS)
    assert rerun.status == "decided_before" and not rerun.retired_on_day
    assert re.search(
        r"the candidate was cleared by a rollback on \d{4}-\d\d-\d\d \d\d:\d\d UTC; "
        rf"the live version is now {pair.live}\. ",
        rerun.explanation,
    ), rerun.explanation


def test_a_rerun_of_a_promotion_since_rolled_back_says_so_and_names_the_live_version(
    tmp_path: Path,
) -> None:
    """`ltr registry rollback` of a promoted version, then its night re-run: the message says
    the promotion was rolled back, to what and when, and which version is live now; without
    the rollback it says the promoted candidate is the live version."""
    lake = Lake(tmp_path / "lake")
    registry, pair = _with_candidate(tmp_path)
    d1 = date(2026, 11, 26)
    _write_day(lake, d1, _clicked_requests(pair, "a", 150, 100))
    promoted = cmp.compare(lake, registry, d1, THRESHOLDS)
    assert promoted.decision is Decision.PROMOTE and cmp.apply(promoted, registry, None).moved
    at = datetime(2026, 11, 27, 2, 15, tzinfo=UTC)
    newer = registry.publish(weights(2), tiny_model_text(), META, "2026-11-26", now=at,
                             rollout="canary")  # fmt: skip
    assert newer.candidate_set
    live = cmp.compare(lake, registry, d1, THRESHOLDS)
    assert live.status == "decided_before"
    assert "the candidate was promoted on 2026-11-26; it is the live version now. " in (
        live.explanation
    )

    registry.rollback(pair.live)  # clears the newer candidate too
    rerun = cmp.compare(lake, registry, d1, THRESHOLDS)
    assert rerun.status == "decided_before" and rerun.decision is None
    assert re.search(
        rf"the candidate was promoted on 2026-11-26; that promotion was since rolled back "
        rf"\(to {pair.live} on \d{{4}}-\d\d-\d\d \d\d:\d\d UTC\); the live version is now "
        rf"{pair.live}\. Re-running",
        rerun.explanation,
    ), rerun.explanation


def test_promotion_moves_latest_with_the_evidence(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    registry, pair = _with_candidate(tmp_path)
    _write_day(lake, date(2026, 11, 26), _clicked_requests(pair, "a", 150, 100))
    result = cmp.compare(lake, registry, date(2026, 11, 26), THRESHOLDS)
    assert result.decision is Decision.PROMOTE
    applied = cmp.apply(result, registry, None)
    assert applied.action == "promoted"
    assert registry.latest_version() == pair.candidate and registry.candidate() is None
    pointer = registry.pointer() or {}
    assert pointer["promoted"]["evidence"]["wins"] == 150
    assert registry.history()[-1]["action"] == "promoted"


def test_retirement_clears_the_candidate_and_leaves_latest(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    registry, pair = _with_candidate(tmp_path)
    _write_day(lake, date(2026, 11, 26), _clicked_requests(pair, "a", 30, 70))
    result = cmp.compare(lake, registry, date(2026, 11, 26), THRESHOLDS)
    assert result.decision is Decision.RETIRE
    assert cmp.apply(result, registry, None).action == "retired"
    assert registry.latest_version() == pair.live and registry.candidate() is None
    assert registry.history()[-1]["evidence"]["losses"] == 70
    assert registry.history()[-1]["evidence"]["timed_out"] is False


def test_a_retirement_by_timeout_says_so_in_its_evidence(tmp_path: Path) -> None:
    lake = Lake(tmp_path / "lake")
    registry, pair = _with_candidate(tmp_path)
    days = [date(2026, 11, 26) + timedelta(days=i) for i in range(THRESHOLDS.max_days)]
    for day in days:  # too few clicked requests to decide either way, every day
        _write_day(lake, day, _clicked_requests(pair, "a", 10, 10))
        result = cmp.compare(lake, registry, day, THRESHOLDS)
    assert result.decision is Decision.RETIRE and result.days_collecting == len(days)
    assert cmp.apply(result, registry, None).action == "retired"
    assert registry.history()[-1]["evidence"]["timed_out"] is True


def test_the_timeout_waits_for_a_day_missing_from_the_lake_and_names_it(tmp_path: Path) -> None:
    """LTR_CANARY_MAX_DAYS=2, candidate set on 11-27, 11-28 served, 11-29 skipped entirely (no
    raw_events), 11-30 served: the comparison of 11-30 does not retire by the timeout on a day
    whose evidence nobody has seen; it collects, names 11-29, and its check warns (held past
    the limit). Once 11-29 is in the lake (an empty day), the timeout retires."""
    lake = Lake(tmp_path / "lake")
    registry, pair = _with_candidate(tmp_path, partition="2026-11-27")
    limit = cmp.Thresholds(min_requests=200, margin=0.02, max_days=2)
    d28, d29, d30 = (date(2026, 11, d) for d in (28, 29, 30))
    _write_day(lake, d28, _clicked_requests(pair, "a", 10, 10))
    assert cmp.compare(lake, registry, d28, limit).decision is Decision.COLLECT
    _write_day(lake, d30, _clicked_requests(pair, "c", 10, 10))
    held = cmp.compare(lake, registry, d30, limit)
    assert held.decision is Decision.COLLECT, held.explanation
    assert held.outcome is not None and not held.outcome.timed_out
    assert held.missing_days == [d29] and held.timeout_held
    assert "raw_events of 2026-11-29" in held.explanation
    assert "LTR_CANARY_MAX_DAYS is past" in held.explanation
    assert "retire, undecided after 3 days (limit 2)" in held.explanation
    check = decision_check_result(held, None)
    assert not check.passed and "2026-11-29" in (check.description or "")
    assert cmp.apply(held, registry, None).moved is False

    _write_day(lake, d29, [])  # materialised: a day that really had no events
    retired = cmp.compare(lake, registry, d30, limit)
    assert retired.decision is Decision.RETIRE and retired.outcome is not None
    assert retired.outcome.timed_out and not retired.missing_days


def test_a_decision_is_refused_when_the_candidate_changed_since_the_comparison(
    tmp_path: Path,
) -> None:
    lake = Lake(tmp_path / "lake")
    registry, pair = _with_candidate(tmp_path)
    _write_day(lake, date(2026, 11, 26), _clicked_requests(pair, "a", 150, 100))
    result = cmp.compare(lake, registry, date(2026, 11, 26), THRESHOLDS)
    newer = registry.publish(
        weights(2), tiny_model_text(), META, "2026-11-26",
        now=datetime(2026, 11, 27, 2, 15, tzinfo=UTC), rollout="canary",
    )  # fmt: skip
    with pytest.raises(RegistryError, match="changed since it was compared"):
        cmp.apply(result, registry, None)
    assert registry.latest_version() == pair.live
    assert registry.candidate_version() == newer.version


def test_a_nightly_publish_leaves_a_candidate_that_is_still_being_compared(
    tmp_path: Path,
) -> None:
    registry, pair = _with_candidate(tmp_path)
    result = registry.publish(
        weights(3), tiny_model_text(), META, "2026-11-26",
        now=datetime(2026, 11, 27, 2, 15, tzinfo=UTC), rollout="canary",
        replace_candidate=False,
    )  # fmt: skip
    assert not result.candidate_set and not result.latest_moved
    assert "still being compared" in result.reason
    assert registry.candidate_version() == pair.candidate
    assert registry.latest_version() == pair.live
    assert result.version in registry.versions() and registry.history() == []


def test_a_re_run_of_the_candidate_s_own_night_replaces_it(tmp_path: Path) -> None:
    """The night re-run after its data was fixed: its new build is compared, not the candidate
    built from the bad data (which kept being interleaved and could be promoted)."""
    registry, pair = _with_candidate(tmp_path)  # partition 2026-11-25
    result = registry.publish(
        weights(3), tiny_model_text(), META, "2026-11-25",
        now=datetime(2026, 11, 27, 2, 15, tzinfo=UTC), rollout="canary",
        replace_candidate=False,
    )  # fmt: skip
    assert result.candidate_set and not result.latest_moved
    assert registry.candidate_version() == result.version != pair.candidate
    assert registry.latest_version() == pair.live
    last = registry.history()[-1]
    assert (last["action"], last["version"]) == ("replaced", pair.candidate)
    assert last["evidence"] == {"by": result.version}


def test_a_candidate_published_late_starts_its_clock_when_serving_first_interleaves_it(
    tmp_path: Path,
) -> None:
    """A candidate published days after its partition (a catch-up) is not timed out by the days
    before serving could interleave it: its days count from the first day serving did. One
    serving never interleaves is retired once it has waited max_days."""
    lake = Lake(tmp_path / "lake")
    registry, pair = _with_candidate(tmp_path)  # partition 2026-11-25
    moved_at = datetime.fromisoformat((registry.candidate() or {})["moved_at"])
    unserved = [date(2026, 11, 26) + timedelta(days=i) for i in range(4)]
    deterministic = {**_impressions("d", ["a"], ["live"], _versions(pair))[0], "policy": None}
    for day in unserved:  # served before the candidate was published: nothing of this pair
        _write_day(lake, day, [deterministic])
    waiting = cmp.compare(lake, registry, unserved[-1], THRESHOLDS, now=moved_at)
    assert waiting.decision is Decision.COLLECT and waiting.days_collecting == 0
    assert waiting.outcome is not None and "serving to interleave it" in waiting.outcome.reason
    served = date(2026, 11, 30)
    _write_day(lake, served, _clicked_requests(pair, "a", 10, 10))
    first = cmp.compare(lake, registry, served, THRESHOLDS, now=moved_at + timedelta(days=1))
    assert first.decision is Decision.COLLECT and first.days_collecting == 1

    # One set today that serving never interleaves: a comparison of a day before it was set
    # cannot know what serving does after that day; days later, it is retired.
    today = datetime.now(UTC).date()
    stuck, _ = _with_candidate(tmp_path / "stuck", partition=today.isoformat())
    set_at = datetime.fromisoformat((stuck.candidate() or {})["moved_at"])
    later = set_at + timedelta(days=THRESHOLDS.max_days, minutes=5)
    after = (later + timedelta(days=1)).date()
    lake2 = Lake(tmp_path / "lake2")
    next_day = today + timedelta(days=1)
    for offset in range((after - next_day).days + 1):  # every day in the lake, none served
        _write_day(lake2, next_day + timedelta(days=offset), [deterministic])
    early = cmp.compare(lake2, stuck, next_day, THRESHOLDS, now=later)  # compared late
    assert early.decision is Decision.COLLECT
    never = cmp.compare(lake2, stuck, after, THRESHOLDS, now=later)
    assert never.decision is Decision.RETIRE and never.outcome is not None
    assert never.outcome.timed_out
    assert "not interleaved 3 days after it was set" in never.outcome.reason


def test_a_decided_candidate_still_interleaved_is_told(tmp_path: Path) -> None:
    """Retired, but serving kept interleaving it (no reload): requests served within
    STALE_GRACE of the decision are the reload's delay, later ones are not; the comparison
    with no candidate says how many and names the version."""
    lake = Lake(tmp_path / "lake")
    registry, pair = _with_candidate(tmp_path)
    registry.retire({"note": "test"}, expected=pair.candidate)
    decided = datetime.fromisoformat(registry.history()[-1]["at"])
    rows = []
    for i, after in enumerate([timedelta(minutes=5), timedelta(hours=1), timedelta(hours=2)]):
        for row in _impressions(f"r-{i}", ["a", "b"], ["live", "candidate"], _versions(pair)):
            rows.append({**row, "timestamp": decided + after})
    day = decided.date()
    _write_day(lake, day, rows)
    result = cmp.compare(lake, registry, day, THRESHOLDS)
    assert result.status == "no_candidate" and result.stale_requests == 2
    assert pair.candidate in result.explanation and "following the registry" in result.explanation
    assert cmp.stale_interleaving(lake, registry, day - timedelta(days=1)) == (0, "")


def test_a_decided_pair_interleaved_beside_a_new_candidate_is_told(tmp_path: Path) -> None:
    """Promoted, and the next night set a new candidate, but serving kept interleaving the
    promoted pair (no reload): none of the day's interleaved requests are of the current pair,
    and the check warns rather than pass with "needs serving to interleave it"."""
    lake = Lake(tmp_path / "lake")
    registry, old = _with_candidate(tmp_path)
    registry.promote({"note": "test"}, expected=old.candidate)
    decided = datetime.fromisoformat(registry.history()[-1]["at"])
    day = decided.date()
    newer = registry.publish(
        weights(2), tiny_model_text(), META, (day - timedelta(days=1)).isoformat(),
        now=decided, rollout="canary",
    )  # fmt: skip
    assert newer.candidate_set
    rows = []
    for i in range(97):
        for row in _impressions(f"r-{i}", ["a", "b"], ["live", "candidate"], _versions(old)):
            rows.append({**row, "timestamp": decided + timedelta(hours=1)})
    _write_day(lake, day, rows)
    result = cmp.compare(lake, registry, day, THRESHOLDS)
    assert result.status == "decided" and result.decision is Decision.COLLECT
    assert result.today is not None and result.today.interleaved_requests == 0
    assert result.today.other_pairs == 97 and result.stale_requests == 97
    assert old.candidate in result.explanation
    assert "following the registry" in result.explanation
    check = decision_check_result(result, None)
    assert not check.passed and "following the registry" in (check.description or "")
