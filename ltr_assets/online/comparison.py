"""The daily online comparison: a canary candidate against the live version, from the lake.

Day D's evidence. raw_events[D] holds what the ranking service logged: an interleaved request's
impressions carry policy "interleaved", the `team` that picked each shown candidate, and
`algorithm_version` naming that team's version (`ltr_serving.impressions`). Feedback events of D
are matched to them by (request_id, lawyer_id); an action of grade > 0 (click, contact,
contract; not decline) is a click. Each request is credited as `ltr_core.interleaving.credit`
credits it (a team scores one per clicked candidate it picked) and the credits are summed by
`ltr_assets.online.decision.tally`.

A candidate logged with propensity 1 (every draw shows it there: the two rankings' common top,
say) is settled: a coin alone chose its team, so its clicks credit neither team
(`ltr_core.interleaving`, "Settled candidates"); a request whose clicks are all on settled
candidates is no evidence, like one without a click.

Only requests that interleaved exactly this pair count: every live-team row names the live
version and every candidate-team row the candidate, with both teams shown. Requests of another
pair (a previous candidate before the service reloaded, a live version since rolled back) are
counted apart (`other_pairs`) and never enter the evidence; so are requests of this pair that
showed one team only (`one_team`: a list of one, or `top_k` 1), whose other version cannot be
verified. Feedback that arrives after
midnight on a request of D is in raw_events[D+1], which does not exist when D is compared: it is
not counted, for either team alike (what is lost is the same share of both teams' clicks).

Accumulation. The day's counts are written to the lake (`online_comparison/<D>.json`, replaced
when D is compared again, so a re-run never counts a day twice). The evidence on D is the sum
over the days since the candidate was set (its pointer's partition P: serving interleaves it
from P + 1 on at the earliest) up to D, of the days whose stored pair is this pair. A day of
that span not compared yet is counted (and stored) from its raw_events on the way; while one's
raw_events is not in the lake either, the comparison collects instead of deciding on the rest,
and its reason names the day: neither a decision nor the timeout is taken on evidence with a
day missing (a decision on the rest could be the opposite one, and the day may be the one that
decides). The timeout waits for such a day too: its check warns, so a canary held past its
limit is seen, and an operator materialises the day (`ltr night`, LTR_ALLOW_EMPTY_DAYS for a day
that really had no events) or decides by hand.
`days_collecting` counts the calendar days from the first of them on which serving interleaved
the pair, D included: a candidate published late (a night run days after its partition, a
catch-up or a backfill) starts its clock when users first see it, not at its partition. The rule
(`decision.decide`) retires an undecided candidate after LTR_CANARY_MAX_DAYS of them (every one
in the lake, as above), and one that serving has not interleaved LTR_CANARY_MAX_DAYS days after
its pointer was set (the pointer's `moved_at`, by the clock, up to the end of D: serving is not
following the registry).

Applying the decision. `apply` moves the registry's pointers (`publication.promote` /
`retire`, which mirror them to S3), with the evidence recorded in the pointer move and the
registry's history, and only if the candidate is still the one that was compared.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

import pandas as pd
import pyarrow.parquet as pq

from ltr_assets.lake import atomic
from ltr_assets.lake.paths import Lake, LakePath
from ltr_assets.lake.s3 import S3Path, named_parquet_errors
from ltr_assets.online.decision import (
    MIN_EVIDENCE,
    Decision,
    InterleavingCounts,
    OnlineDecision,
    WinShare,
    decide,
    tally,
    win_share,
)
from ltr_assets.registry import publication
from ltr_assets.registry.local import LocalRegistry
from ltr_assets.registry.s3_mirror import S3Mirror
from ltr_core.artifacts.format import InvalidPointer
from ltr_core.features import ACTION_GRADES, FEEDBACK, RECOMMENDATION
from ltr_core.interleaving import SETTLED_PROPENSITY, Credit

INTERLEAVED = "interleaved"
# How long a decided candidate may still be interleaved while serving reloads (the sensor ticks
# every 30 s; a replica without it polls every WEIGHTS_POLL_SECONDS, 300 by default).
STALE_GRACE = timedelta(minutes=15)
_COLUMNS = (
    "event_type",
    "timestamp",
    "request_id",
    "lawyer_id",
    "algorithm_version",
    "action",
    "policy",
    "team",
    "propensity",
)
_COUNT_FIELDS = tuple(f for f in InterleavingCounts.__dataclass_fields__)
# decided_before: a re-run of a day whose candidate the registry has decided since
Status = Literal["no_candidate", "not_started", "decided", "decided_before"]


@dataclass(frozen=True)
class Pair:
    """The two versions a comparison is about."""

    live: str
    candidate: str


@dataclass(frozen=True)
class DayCounts:
    """One day's interleaving counts for one pair, as stored in the lake."""

    day: date
    pair: Pair
    counts: InterleavingCounts
    interleaved_requests: int  # interleaved requests of this pair (with or without a click)
    other_pairs: int  # interleaved requests of another pair of versions (not counted)
    one_team: int = 0  # interleaved requests of this pair that showed one team (not counted)

    @property
    def served(self) -> bool:
        """Whether serving interleaved the pair on the day (any request, clicked or not)."""
        return self.interleaved_requests + self.one_team > 0

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "live": self.pair.live,
            "candidate": self.pair.candidate,
            **asdict(self.counts),
            "interleaved_requests": self.interleaved_requests,
            "other_pairs": self.other_pairs,
            "one_team": self.one_team,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DayCounts:
        return cls(
            day=date.fromisoformat(data["day"]),
            pair=Pair(str(data["live"]), str(data["candidate"])),
            # settled_only: days stored before it was counted have none
            counts=InterleavingCounts(**{k: data[k] for k in _COUNT_FIELDS if k in data}),
            interleaved_requests=int(data["interleaved_requests"]),
            other_pairs=int(data["other_pairs"]),
            one_team=int(data.get("one_team", 0)),  # days stored before it was counted
        )


def _read_columns(path: LakePath) -> pd.DataFrame:
    """The columns the comparison needs of raw_events[D]; a day written before the
    logging-policy columns existed has no policy/team and reads as nulls."""
    source: Any = io.BytesIO(path.read_bytes()) if isinstance(path, S3Path) else str(path)
    with named_parquet_errors(path) if isinstance(path, S3Path) else contextlib.nullcontext():
        names = set(pq.read_schema(source).names)
        if isinstance(source, io.BytesIO):
            source.seek(0)
        present = [c for c in _COLUMNS if c in names]
        frame = pq.read_table(source, columns=present).to_pandas()
    for column in _COLUMNS:
        if column not in frame:
            frame[column] = None
    return frame


@dataclass(frozen=True)
class RequestCredits:
    """A day's interleaved requests of one pair, credited, and those left out."""

    credits: list[Credit]  # one per interleaved request of the pair showing both teams
    other_pairs: int  # interleaved requests of another pair of versions
    one_team: int  # interleaved requests of the pair that showed one team only


def request_credits(events: pd.DataFrame, pair: Pair) -> RequestCredits:
    """Per interleaved request of `pair` in a day's raw events, its credit; and the requests
    left out. The credit is `ltr_core.interleaving.credit` of the request's shown candidates,
    teams and clicks, with the candidates logged at propensity 1 settled, computed for all
    requests at once."""
    shown = events[(events["event_type"] == RECOMMENDATION) & (events["policy"] == INTERLEAVED)][
        ["request_id", "lawyer_id", "algorithm_version", "team", "propensity"]
    ]
    if shown.empty:
        return RequestCredits([], 0, 0)
    shown = shown.drop_duplicates(["request_id", "lawyer_id"])
    expected = shown["team"].map({"live": pair.live, "candidate": pair.candidate})
    # A missing propensity (a day logged before it was) leaves the candidate contested.
    contested = ~(pd.to_numeric(shown["propensity"]) >= SETTLED_PROPENSITY)
    shown = shown.assign(
        matches=shown["algorithm_version"] == expected,
        is_live=shown["team"] == "live",
        is_candidate=shown["team"] == "candidate",
    )
    per_request = shown.groupby("request_id").agg(
        matches=("matches", "all"), live=("is_live", "any"), candidate=("is_candidate", "any")
    )
    both_teams = per_request["live"] & per_request["candidate"]
    ours = per_request.index[per_request["matches"] & both_teams]
    other_pairs = int((~per_request["matches"]).sum())
    one_team = int((per_request["matches"] & ~both_teams).sum())
    shown = shown.assign(
        is_live=shown["is_live"] & contested,
        is_candidate=shown["is_candidate"] & contested,
        settled=~contested,
    )
    shown = shown[shown["request_id"].isin(ours)]
    feedback = events[(events["event_type"] == FEEDBACK) & events["request_id"].isin(ours)]
    grade = feedback["action"].map(ACTION_GRADES).fillna(0)
    clicked = set(
        zip(feedback["request_id"][grade > 0], feedback["lawyer_id"][grade > 0], strict=True)
    )
    shown = shown.assign(
        click=[
            (r, lawyer) in clicked
            for r, lawyer in zip(shown["request_id"], shown["lawyer_id"], strict=True)
        ]
    )
    shown = shown.assign(
        live_click=shown["click"] & shown["is_live"],
        candidate_click=shown["click"] & shown["is_candidate"],
        settled_click=shown["click"] & shown["settled"],
    )
    sums = shown.groupby("request_id")[
        ["live_click", "candidate_click", "is_live", "is_candidate", "settled_click"]
    ].sum()
    credits = [
        Credit(float(lc), float(cc), int(ls), int(cs), float(sc))
        for lc, cc, ls, cs, sc in sums.itertuples(index=False, name=None)
    ]
    return RequestCredits(credits, other_pairs, one_team)


def count_day(lake: Lake, day: date, pair: Pair) -> DayCounts:
    """Day D's counts for `pair` from raw_events[D] (FileNotFoundError when it is not in the
    lake: the comparison runs after the day's ingestion), with the feedback of raw_events[D+1]
    when it is there: a click after midnight on a list shown on D is D's evidence (the
    comparison of D+1 counts D again, `compare`)."""
    path = lake.raw_events(day)
    if not path.exists():
        raise FileNotFoundError(f"raw_events for {day} is not in the lake ({path})")
    events = _read_columns(path)
    following = lake.raw_events(day + timedelta(days=1))
    if following.exists():
        late = _read_columns(following)
        events = pd.concat([events, late[late["event_type"] == FEEDBACK]], ignore_index=True)
    day_credits = request_credits(events, pair)
    credits = day_credits.credits
    return DayCounts(
        day, pair, tally(credits), len(credits), day_credits.other_pairs, day_credits.one_team
    )


def store_day(lake: Lake, counts: DayCounts) -> LakePath:
    """Write (replace) the day's counts in the lake."""
    path = lake.online_comparison(counts.day)
    atomic.write_json(path, counts.to_json())
    return path


def load_day(lake: Lake, day: date) -> DayCounts | None:
    path = lake.online_comparison(day)
    if not path.exists():
        return None
    return DayCounts.from_json(json.loads(path.read_bytes()))


def add(a: InterleavingCounts, b: InterleavingCounts) -> InterleavingCounts:
    return InterleavingCounts(**{k: getattr(a, k) + getattr(b, k) for k in _COUNT_FIELDS})


def stored_days(
    lake: Lake, pair: Pair, since: date, day: date
) -> tuple[list[DayCounts], list[date]]:
    """The counts of `pair` for the days after `since` up to `day`, in order (a stored day of
    another pair is not its), and the days whose evidence is unknown. A day not compared yet
    (days materialised out of order, or a comparison that never ran) is counted now from its
    raw_events and stored; one whose raw_events is not in the lake either is unknown."""
    found: list[DayCounts] = []
    unknown: list[date] = []
    current = since + timedelta(days=1)
    while current <= day:
        stored = load_day(lake, current)
        if stored is None and lake.raw_events(current).exists():
            stored = count_day(lake, current, pair)
            store_day(lake, stored)
        if stored is None:
            unknown.append(current)
        elif stored.pair == pair:
            found.append(stored)
        current += timedelta(days=1)
    return found, unknown


def accumulate(days: Iterable[DayCounts]) -> InterleavingCounts:
    """The days' counts summed."""
    total = InterleavingCounts(0, 0, 0)
    for stored in days:
        total = add(total, stored.counts)
    return total


def _days_since_set(pointer: dict[str, Any], partition_day: date, now: datetime) -> int:
    """Whole days since the candidate's pointer was set (`moved_at`); a pointer without it
    (written before it was recorded) counts from the end of its partition."""
    try:
        moved = datetime.fromisoformat(str(pointer["moved_at"]))
    except (KeyError, ValueError):
        moved = datetime.combine(partition_day + timedelta(days=1), time(), tzinfo=UTC)
    if moved.tzinfo is None:
        moved = moved.replace(tzinfo=UTC)
    return max((now - moved) // timedelta(days=1), 0)


def share_by_day(lake: Lake, pair: Pair, days: list[date]) -> list[tuple[date, WinShare]]:
    """The candidate's accumulated win share and interval after each of its days with
    evidence: how the comparison got to its decision."""
    total = InterleavingCounts(0, 0, 0)
    path = []
    for day in days:
        stored = load_day(lake, day)
        if stored is not None and stored.pair == pair:
            total = add(total, stored.counts)
            path.append((day, win_share(total)))
    return path


def stale_interleaving(
    lake: Lake, registry: LocalRegistry, day: date, current: str | None = None
) -> tuple[int, str]:
    """Requests serving interleaved on `day` with a candidate the registry had decided
    (promoted, retired, cleared: its history) more than STALE_GRACE before they were served,
    and the sentence that says so (empty when none): serving did not follow the decision (its
    reload failed or is off), so users still see the decided candidate, or the old live
    version after a promotion. `current`, the candidate being compared now, is never stale:
    whether or not a candidate is set, serving interleaving a decided pair is told."""
    path = lake.raw_events(day)
    decided: dict[str, datetime] = {}
    for entry in registry.history():
        try:
            decided[str(entry["version"])] = datetime.fromisoformat(str(entry["at"]))
        except (KeyError, ValueError):
            continue
    decided.pop(current or "", None)
    if not decided or not path.exists():
        return 0, ""
    events = _read_columns(path)
    shown = events[
        (events["event_type"] == RECOMMENDATION)
        & (events["policy"] == INTERLEAVED)
        & (events["team"] == "candidate")
    ]
    when = pd.to_datetime(shown["algorithm_version"].map(decided), utc=True)
    late = shown[pd.to_datetime(shown["timestamp"], utc=True) > when + STALE_GRACE]
    requests = late["request_id"].nunique()
    if requests == 0:
        return 0, ""
    versions = ", ".join(sorted(set(late["algorithm_version"])))
    return requests, (
        f"; but serving interleaved {requests} request(s) on {day} with candidate {versions} "
        "after the registry had decided it: is serving following the registry (its reload)?"
    )


@dataclass(frozen=True)
class Thresholds:
    min_requests: int
    margin: float
    max_days: int
    min_evidence: int = MIN_EVIDENCE

    @classmethod
    def from_settings(cls, settings: Any) -> Thresholds:
        return cls(
            settings.interleave_min_requests,
            settings.interleave_margin,
            settings.canary_max_days,
            settings.interleave_min_evidence,
        )


@dataclass(frozen=True)
class Recount:
    """D-1 counted again by D's comparison (its clicks after midnight are in raw_events[D])."""

    day: date
    before: InterleavingCounts  # as stored (counted by D-1's own night)
    after: InterleavingCounts

    def summary(self) -> str:
        """What changed, as the UI shows it."""
        b, a = self.before, self.after
        return (
            f"{self.day}: wins / losses / ties {b.wins} / {b.losses} / {b.ties} → "
            f"{a.wins} / {a.losses} / {a.ties} (clicks after its midnight)"
        )


@dataclass(frozen=True)
class Comparison:
    """What the comparison of day D found and decided."""

    day: date
    status: Status
    explanation: str
    pair: Pair | None = None
    candidate_partition: str = ""
    today: DayCounts | None = None
    total: InterleavingCounts | None = None
    days_with_evidence: list[date] = field(default_factory=list)
    days_collecting: int = 0
    outcome: OnlineDecision | None = None
    stale_requests: int = 0  # interleaved with a candidate decided before (`stale_interleaving`)
    retired_on_day: bool = False  # decided_before: the registry retired the pair's candidate on D
    recount: Recount | None = None  # D-1 counted again with its late clicks
    missing_days: list[date] = field(default_factory=list)  # of the span, not in the lake
    timeout_held: bool = False  # past LTR_CANARY_MAX_DAYS, collecting for the missing days

    @property
    def decision(self) -> Decision | None:
        return self.outcome.decision if self.outcome is not None else None

    def evidence(self) -> dict[str, Any]:
        """What a pointer move records: the pair, the decision, the counts and the interval."""
        if self.outcome is None or self.pair is None or self.total is None:
            return {"day": self.day.isoformat(), "status": self.status}
        ev = self.outcome.evidence
        return {
            "decided_by": "online_comparison",
            "day": self.day.isoformat(),
            "live": self.pair.live,
            "candidate": self.pair.candidate,
            "decision": self.outcome.decision.value,
            "reason": self.outcome.reason,
            "timed_out": self.outcome.timed_out,
            "clicked_requests": ev.clicked,
            "requests": ev.requests,
            "wins": ev.wins,
            "losses": ev.losses,
            "ties": ev.ties,
            "win_share": None if ev.share is None else round(ev.share, 4),
            "low": round(ev.low, 4),
            "high": round(ev.high, 4),
            "confidence": ev.confidence,
            "live_ctr": None if ev.live_ctr is None else round(ev.live_ctr, 4),
            "candidate_ctr": None if ev.candidate_ctr is None else round(ev.candidate_ctr, 4),
            "days_collecting": self.days_collecting,
            "days_with_evidence": [d.isoformat() for d in self.days_with_evidence],
        }


def compare(
    lake: Lake,
    registry: LocalRegistry,
    day: date,
    thresholds: Thresholds,
    now: datetime | None = None,
) -> Comparison:
    """Count day D for the registry's current pair, store the day, sum the candidate's days and
    decide. No candidate, or a candidate set on D or later (not interleaved on D), decides
    nothing and stores nothing. `now` (default: the clock) times a candidate serving has not
    interleaved yet."""
    candidate = registry.candidate()  # InvalidPointer: an unreadable candidate is an error
    live = registry.latest_version()
    current = Pair(live, candidate["version"]) if candidate is not None and live else None
    earlier = _decided_before(lake, registry, day, current)
    if earlier is not None:
        return earlier
    # requests of a pair the registry had decided: serving is not following it, whatever the
    # current candidate (its own requests, or none, are what the evidence says)
    stale, why = stale_interleaving(
        lake, registry, day, candidate["version"] if candidate is not None else None
    )
    if candidate is None:
        return Comparison(
            day, "no_candidate", "no candidate: nothing to compare" + why, stale_requests=stale
        )
    if live is None:
        return Comparison(day, "no_candidate", "no live version: nothing to compare with")
    pair = Pair(live, candidate["version"])
    partition = str(candidate.get("partition", ""))
    since = date.fromisoformat(partition)
    days_collecting = (day - since).days
    if days_collecting <= 0:
        return Comparison(
            day,
            "not_started",
            f"candidate {pair.candidate} was set for partition {partition}: it was not "
            f"interleaved on {day}" + why,
            pair=pair,
            candidate_partition=partition,
            stale_requests=stale,
        )
    today = count_day(lake, day, pair)
    store_day(lake, today)
    recounted = _recount_previous_day(lake, pair, since, day)
    stored, unknown = stored_days(lake, pair, since, day)
    total, days = accumulate(stored), [d.day for d in stored if d.counts.requests > 0]
    # the first day serving interleaved the pair (any request of it, clicked or not)
    served = next((d.day for d in stored if d.served), None)
    if served is not None:
        days_collecting = (day - served).days + 1
        waited = None
    else:
        days_collecting = 0
        # by the end of D at most: a late comparison of D cannot know what serving did after it
        end_of_day = datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC)
        waited = _days_since_set(candidate, since, min(now or datetime.now(UTC), end_of_day))
    outcome = decide(
        total,
        days_collecting=days_collecting,
        min_requests=thresholds.min_requests,
        margin=thresholds.margin,
        max_days=thresholds.max_days,
        days_unserved=waited,
        min_evidence=thresholds.min_evidence,
    )
    timeout_held = False
    if unknown:
        # part of the evidence is missing: a decision on the rest could be the opposite one,
        # and the timeout must not run out on days whose evidence nobody has seen
        timeout_held = outcome.timed_out
        outcome = replace(
            outcome,
            decision=Decision.COLLECT,
            reason=_missing_days_reason(unknown, outcome),
            timed_out=False,
        )
    return Comparison(
        day,
        "decided",
        outcome.reason + why,
        pair=pair,
        candidate_partition=partition,
        today=today,
        total=total,
        days_with_evidence=days,
        days_collecting=days_collecting,
        outcome=outcome,
        recount=recounted,
        missing_days=unknown,
        timeout_held=timeout_held,
        stale_requests=stale,
    )


def _missing_days_reason(unknown: list[date], rule: OnlineDecision) -> str:
    """Why a comparison with days of its span not in the lake collects: the days, what to do
    about them, and what the rule says without them (a retirement by the timeout included,
    which waits for them too)."""
    missing = ", ".join(d.isoformat() for d in unknown)
    days = "these days" if len(unknown) > 1 else "this day"
    held = (
        "; LTR_CANARY_MAX_DAYS is past, but its timeout does not retire on days whose "
        "evidence is unknown: it waits for them too"
        if rule.timed_out
        else ""
    )
    verdict = "" if rule.decision is Decision.COLLECT else f"{rule.decision.value}, "
    return (
        f"collecting: raw_events of {missing} (days of this canary) not in the lake, so their "
        f"evidence is unknown{held}. Materialise them (`ltr night DAY`; a day that really had "
        f"no events needs LTR_ALLOW_EMPTY_DAYS), then compare again, or decide by hand "
        f"(`ltr registry retire`). Without {days}: {verdict}{rule.reason}"
    )


def _recount_previous_day(lake: Lake, pair: Pair, since: date, day: date) -> Recount | None:
    """Count D-1 again now that raw_events[D] holds the feedback that came after its midnight
    (when D-1 is one of this candidate's days, stored for this pair): its counts before and
    after, or None when it was not recounted."""
    previous = day - timedelta(days=1)
    stored = load_day(lake, previous) if previous > since else None
    if stored is not None and stored.pair == pair and lake.raw_events(previous).exists():
        again = count_day(lake, previous, pair)
        store_day(lake, again)
        return Recount(previous, stored.counts, again.counts)
    return None


_FATES = {  # history.jsonl's actions, as a sentence says them
    "promoted": "promoted",
    "retired": "retired",
    "cleared_by_rollback": "cleared by a rollback",
    "replaced": "replaced by a newer candidate",
    "cleared_by_publish": "cleared when a publication moved latest past it",
}


def _decided_before(
    lake: Lake, registry: LocalRegistry, day: date, current: Pair | None
) -> Comparison | None:
    """A re-run (a backfill) of a day the lake holds counts of for another pair than the
    registry's current one, whose candidate the registry has decided since: what the day
    compared and what became of its candidate, deciding nothing again. Without this the re-run
    would report on today's candidate ("not interleaved on D") and hide the day's decision."""
    stored = load_day(lake, day)
    if stored is None or stored.pair == current:
        return None
    candidate = stored.pair.candidate
    fates = [e for e in registry.history() if e.get("version") == candidate]
    if not fates:
        return None  # not decided yet (its pointer is being replaced under us?): compare as usual
    fate = fates[-1]
    evidence = fate.get("evidence")
    decided_on = str(evidence.get("day", "")) if isinstance(evidence, dict) else ""
    action = str(fate.get("action", "decided"))
    when = (
        f"{_FATES.get(action, action)} on {decided_on or publication.minute_text(fate.get('at'))}"
    )
    counts = stored.counts
    explanation = (
        f"{day} compared candidate {candidate} with live {stored.pair.live} "
        f"({counts.clicked_requests} clicked requests, {counts.requests} where the rankings "
        f"differ: {counts.wins} won / {counts.losses} lost / {counts.ties} tied); the candidate "
        f"was {when}{_since(registry, fate)}. Re-running {day} decides nothing again: the "
        "registry has moved on"
    )
    return Comparison(
        day,
        "decided_before",
        explanation,
        pair=stored.pair,
        today=stored,
        retired_on_day=action == "retired" and decided_on == day.isoformat(),
    )


def _since(registry: LocalRegistry, fate: dict[str, Any]) -> str:
    """What became of the live version after a candidate's `fate` (its history entry): a
    rollback since then (the history's, or latest.json's own record of one), and the version
    live now; "" when the registry's pointer cannot be read."""
    try:
        pointer = registry.pointer()
    except InvalidPointer:
        return ""
    if pointer is None:
        return "; nothing is live now"
    live = str(pointer["version"])
    promoted = fate.get("action") == "promoted"
    if promoted and live == fate.get("version"):
        return "; it is the live version now"
    rollback = ""
    history = registry.history()
    for entry in history[history.index(fate) + 1 :] if fate in history else []:
        entry_evidence = entry.get("evidence")  # a rollback that cleared a later candidate
        if isinstance(entry_evidence, dict) and entry_evidence.get("rolled_back_to"):
            to, at = entry_evidence["rolled_back_to"], entry.get("at")
            rollback = f"to {to} on {publication.minute_text(at)}"
            break
    decided_at, moved_at = _moment(fate.get("at")), _moment(pointer.get("moved_at"))
    if pointer.get("rolled_back") and decided_at and moved_at and moved_at > decided_at:
        rollback = f"to {live} on {publication.minute_text(pointer['moved_at'])}"
    what = "that promotion" if promoted else "latest"
    since = f"; {what} was since rolled back ({rollback})" if rollback else ""
    return f"{since}; the live version is now {live}"


def _moment(at: object) -> datetime | None:
    """A registry timestamp (ISO; UTC when it names no zone), None when unreadable."""
    try:
        moment = datetime.fromisoformat(str(at))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Applied:
    """What the registry did with a decision."""

    moved: bool  # a pointer moved (promote: latest and candidate; retire: candidate)
    action: str  # "promoted" | "retired" | "none"
    s3_synced: bool | None = None  # None: no S3 mirror, or nothing moved
    s3_error: str = ""
    s3_pointers_changed: list[str] = field(default_factory=list)  # by the move's S3 sync


def apply(
    comparison: Comparison,
    registry: LocalRegistry,
    mirror: S3Mirror | None,
    scorer: str | None = None,
) -> Applied:
    """Promote or retire the compared candidate (RegistryError when the candidate changed since
    it was compared, or cannot be promoted); collect or no candidate moves nothing."""
    decision = comparison.decision
    if decision is None or decision is Decision.COLLECT or comparison.pair is None:
        return Applied(False, "none")
    expected = comparison.pair.candidate
    evidence = comparison.evidence()
    if decision is Decision.PROMOTE:
        report = publication.promote(registry, mirror, evidence, scorer, expected=expected)
        return Applied(
            True, "promoted", report.s3_published, report.s3_error, report.s3_pointers_changed
        )
    changed: list[str] = []
    _, ok, error = publication.retire(registry, mirror, evidence, expected, changed)
    return Applied(True, "retired", ok, error, changed)
