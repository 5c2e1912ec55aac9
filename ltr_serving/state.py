"""The live version and its reloads.

Everything a request needs (scorer, version, when it was loaded) is ONE immutable `LiveModel`.
A request reads `state.live` once and uses only that object, so a swap never changes a request
in flight. A reload builds the next LiveModel completely (read, validate, build the scorer) before
a single reference assignment swaps it in; reloads run one at a time, each bounded in time (see
`ServingState`), and a failed one leaves the current LiveModel untouched.

The canary candidate. A reload also loads the version `candidate.json` names, validated and
smoke-tested exactly like the live one, and the LiveModel carries it (`candidate`), so a request
reads both rankers from the one object. A candidate that fails is refused and logged, shown in
/ltr/health (`candidate_status`), and the live version serves alone: a bad candidate never fails
the reload of the live version. No candidate.json means no candidate; one naming the live
version (a promotion half-way) counts as none.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Literal

import numpy as np

from ltr_core.artifacts.format import check_servable
from ltr_core.codec import Exploration
from ltr_core.features import FEATURES
from ltr_core.scoring import Scorer, WeightsScorer, make_scorer
from ltr_core.settings import Settings
from ltr_serving.impressions import RecordLog
from ltr_serving.metrics import ServingMetrics
from ltr_serving.request_ids import RecentRequestIds
from ltr_serving.scoring_pool import ScoringPool
from ltr_serving.store import StoredArtifact, StoreError, StoreUnavailable, WeightStore

log = logging.getLogger("ltr_serving.reload")


@dataclass(frozen=True, slots=True)
class LiveModel:
    version: str
    scorer_kind: str
    scorer: Scorer
    loaded_at: datetime
    source: str
    origin: str
    partition: str | None
    candidate: LiveModel | None = None  # the canary candidate interleaved with this version


@dataclass(frozen=True, slots=True)
class CandidateStatus:
    """What the last reload did with candidate.json: `none` (there is none), `loaded`,
    `refused` (invalid: the live version serves alone) or `unavailable` (the store could not be
    read; retried by the next poll)."""

    state: Literal["none", "loaded", "refused", "unavailable"]
    version: str | None = None
    error: str | None = None
    at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ReloadAttempt:
    at: datetime
    trigger: str
    ok: bool
    version: str | None  # the version live after the attempt
    previous_version: str | None
    error: str | None
    duration_s: float
    retryable: bool = False  # the store could not be read: the same artifact may load later
    busy: bool = False  # another reload was (and may still be) in flight: nothing was tried


MAX_ERROR_CHARS = 1_000  # of a refusal's message kept for health, /reload and the log


def error_text(exc: BaseException) -> str:
    """A refusal's message as health, /reload and the log show it: bounded, since a crafted
    artifact's text can end up quoted in it, and health is read by every load balancer."""
    text = str(exc) or type(exc).__name__
    if len(text) <= MAX_ERROR_CHARS:
        return text
    return f"{text[:MAX_ERROR_CHARS]}... ({len(text) - MAX_ERROR_CHARS} characters cut)"


class _Outcome:
    """What a reload worker produced, handed over under `ServingState._handover`."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.abandoned = False  # the caller stopped waiting: the worker must not swap
        self.attempt: ReloadAttempt | None = None


class ServingState:
    """The live model plus what requests need next to it (settings, metrics): one dependency.

    Reloads run one at a time, each in a worker thread of its own that the caller waits for at
    most `settings.serving.reload_timeout_s`: a read that hangs (a stalled volume, a FIFO where
    a file should be) fails that reload as retryable and never holds the caller, the event loop or
    /ltr/health (which reads only `live` and `last_attempt`). The hung worker keeps the reload
    slot until its read returns; reloads asked for meanwhile wait for the slot at most the same
    bound and are then answered "busy". A worker whose caller gave up never swaps its result in.
    """

    def __init__(self, store: WeightStore, settings: Settings, metrics: ServingMetrics) -> None:
        self.store = store
        self.settings = settings
        self.scorer_kind = settings.scorer
        self.metrics = metrics
        self.scoring = ScoringPool(
            settings.serving.score_timeout_ms / 1000
        )  # /rank's model scoring
        metrics.watch_scoring(self.scoring)
        self.live: LiveModel | None = None
        self.candidate_status = CandidateStatus("none")
        serving = settings.serving
        # Swap interventions (`ltr_core.exploration`); None when LTR_EXPLORE_RATE=0.
        self.exploration: Exploration | None = (
            Exploration(serving.explore_rate, serving.explore_max_position)
            if serving.explore_rate > 0
            else None
        )
        self.simulated_clock = serving.simulated_clock
        # the request ids answered lately: one reused for another list is a 409, a retry of the
        # same list is answered and not logged again
        self.request_ids = RecentRequestIds()
        self.events: RecordLog | None = (
            None  # set by the app's lifespan (None: LTR_IMPRESSION_LOG=off)
        )
        self.last_attempt: ReloadAttempt | None = None
        self.stuck_since: datetime | None = None  # a worker outlived its caller's wait
        self._slot = threading.Lock()  # held by the one reload worker in flight
        self._handover = threading.Lock()  # orders a worker's swap against its caller giving up
        self._attempted_marker: str | None = None
        # the live version loaded but its candidate could not be read: the poller retries the
        # candidate alone (not a reload of the live version on every tick)
        self._candidate_pending = False

    def reload(self, trigger: str) -> ReloadAttempt:
        """Load whatever `latest` points at now; swap it in only if it is entirely valid.

        Blocking (waits for the worker): call it from a worker thread, not the event loop."""
        return self._run(trigger, only_if_changed=False) or self._busy(trigger)

    def poll_once(self) -> ReloadAttempt | None:
        """Reload when the store's marker differs from the last one tried (good or bad).

        A refused artifact is not retried on every tick: only a change (a new publish, a
        rollback, a repaired pointer) triggers the next attempt; an unreadable store is retried.
        None when nothing changed (or another reload is in flight: the next tick looks again).
        """
        attempt = self._run("poll", only_if_changed=True)
        return None if attempt is None or attempt.busy else attempt

    def _run(self, trigger: str, only_if_changed: bool) -> ReloadAttempt | None:
        timeout = self.settings.serving.reload_timeout_s
        if not self._slot.acquire(timeout=timeout):
            return self._busy(trigger)
        outcome = _Outcome()
        start = time.perf_counter()
        worker = threading.Thread(
            target=self._work,
            args=(trigger, only_if_changed, outcome),
            name=f"ltr-reload-{trigger}",
            daemon=True,
        )
        try:
            worker.start()
        except BaseException:
            self._slot.release()
            raise
        outcome.done.wait(timeout)
        with self._handover:
            if outcome.done.is_set():
                return outcome.attempt
            outcome.abandoned = True
            self.stuck_since = datetime.now(UTC)
        attempt = self._retryable_failure(
            trigger,
            f"reading the artifact took longer than {timeout:g} s "
            "(LTR_RELOAD_TIMEOUT_SECONDS); the store may be stalled",
            time.perf_counter() - start,
        )
        self._record_failure(attempt)
        return attempt

    def _retryable_failure(
        self, trigger: str, error: str, duration_s: float = 0.0, busy: bool = False
    ) -> ReloadAttempt:
        """An attempt that did not load anything and may succeed later; the live version
        stays."""
        version = self.live.version if self.live else None
        return ReloadAttempt(
            at=datetime.now(UTC),
            trigger=trigger,
            ok=False,
            version=version,
            previous_version=version,
            error=error,
            duration_s=duration_s,
            retryable=True,
            busy=busy,
        )

    def _busy(self, trigger: str) -> ReloadAttempt:
        return self._retryable_failure(
            trigger,
            "reload in progress: another reload has held the slot for more than "
            f"{self.settings.serving.reload_timeout_s:g} s (LTR_RELOAD_TIMEOUT_SECONDS)",
            busy=True,
        )

    def _work(self, trigger: str, only_if_changed: bool, outcome: _Outcome) -> None:
        """The worker: owns the slot from its start to its end, however long its reads take."""
        try:
            attempt = self._attempt(trigger, only_if_changed, outcome)
            with self._handover:
                outcome.attempt = attempt
                outcome.done.set()
        except Exception as exc:  # a bug, not a refusal: still a failed attempt the caller sees
            log.exception("reload worker failed")
            attempt = self._retryable_failure(
                trigger, f"reload failed: {type(exc).__name__}: {exc}"
            )
            self._record_failure(attempt)
            with self._handover:
                outcome.attempt = attempt
                outcome.done.set()
        except BaseException:
            log.exception("reload worker failed")
            with self._handover:
                outcome.done.set()
        finally:
            with self._handover:
                self.stuck_since = None
            self._slot.release()

    def _attempt(
        self, trigger: str, only_if_changed: bool, outcome: _Outcome
    ) -> ReloadAttempt | None:
        start = time.perf_counter()
        previous = self.live
        previous_version = previous.version if previous else None
        # Read the marker before loading: if latest moves meanwhile, the next poll sees a
        # different marker and loads again, which is harmless; the reverse would miss it.
        marker: str | None = None
        try:
            marker = self.store.current_marker()
            if only_if_changed and (marker is None or marker == self._attempted_marker):
                if marker is not None and self._candidate_pending:
                    self._renew_candidate(outcome)
                return None
            candidate, canary, retry_canary = self._with_candidate(self._build(self.store.load()))
        except Exception as exc:  # any failure refuses the artifact; the old one serves on
            retryable = isinstance(exc, StoreUnavailable)
            attempt = ReloadAttempt(
                at=datetime.now(UTC),
                trigger=trigger,
                ok=False,
                version=previous_version,
                previous_version=previous_version,
                error=error_text(exc),
                duration_s=time.perf_counter() - start,
                retryable=retryable,
            )
            # a bad artifact is not retried until latest changes; an unreadable store is, by
            # the next poll whatever the marker then (it may be back to the last one loaded)
            self._attempted_marker = None if retryable else marker
            self._record_failure(attempt)
            if not retryable:  # latest refused; candidate.json's news still counts (a
                self._renew_candidate(outcome)  # rollback or a retirement clears it)
            return attempt
        with self._handover:
            if outcome.abandoned:  # the caller reported a timeout: this result is not used
                log.warning("a reload finished after its caller gave up; not swapped in")
                return None
            self.live = candidate  # the swap: one reference assignment
            self.candidate_status = canary
        self._attempted_marker = marker
        self._candidate_pending = retry_canary  # an unreadable candidate: retried alone
        attempt = ReloadAttempt(
            at=candidate.loaded_at,
            trigger=trigger,
            ok=True,
            version=candidate.version,
            previous_version=previous_version,
            error=None,
            duration_s=time.perf_counter() - start,
        )
        self.last_attempt = attempt
        self.metrics.reloads.labels(trigger).inc()
        self.metrics.reload_duration.observe(attempt.duration_s)
        self.metrics.set_live(
            candidate.version,
            candidate.scorer_kind,
            candidate.source,
            candidate.loaded_at.timestamp(),
        )
        self.metrics.set_candidate(canary.version, canary.state)
        log.info(
            "reloaded",
            extra={
                "trigger": trigger,
                "version": candidate.version,
                "previous_version": previous_version,
                "origin": candidate.origin,
                "duration_ms": round(attempt.duration_s * 1000, 3),
            },
        )
        return attempt

    def _renew_candidate(self, outcome: _Outcome) -> None:
        """The candidate read again beside the same live version: the poller's retry of one
        that could not be read (the markers have not changed since), or after latest was
        refused, so that a candidate gone or changed meanwhile is not interleaved on."""
        live = self.live
        if live is None:
            return
        with_candidate, canary, retry = self._with_candidate(replace(live, candidate=None))
        with self._handover:
            if outcome.abandoned or self.live is not live:
                return
            self.live = with_candidate
            self.candidate_status = canary
        self._candidate_pending = retry
        self.metrics.set_candidate(canary.version, canary.state)

    def _with_candidate(self, live: LiveModel) -> tuple[LiveModel, CandidateStatus, bool]:
        """`live` carrying the canary candidate, if there is a valid one; its status; whether
        reading it failed in a way worth retrying. Never raises for the candidate's sake."""
        now = datetime.now(UTC)
        artifact: StoredArtifact | None = None
        try:
            artifact = self.store.load_candidate()
            if artifact is None:
                return live, CandidateStatus("none", at=now), False
            if artifact.version == live.version:  # promoted, candidate.json not yet cleared
                return live, CandidateStatus("none", at=now), False
            model = self._build(artifact)
        except Exception as exc:
            retryable = isinstance(exc, StoreUnavailable)
            error = error_text(exc)
            log.error(
                "candidate unavailable; live serves alone"
                if retryable
                else "candidate refused; live serves alone",
                extra={"error": error, "live": live.version},
            )
            state: Literal["refused", "unavailable"] = "unavailable" if retryable else "refused"
            named = exc.version if isinstance(exc, StoreError) else None
            if named is None and not isinstance(exc, StoreError):  # refused by _build
                named = artifact.version if artifact is not None else None
            return live, CandidateStatus(state, named, error, now), retryable
        log.info("candidate loaded", extra={"candidate": model.version, "live": live.version})
        return (
            replace(live, candidate=model),
            CandidateStatus("loaded", model.version, at=now),
            False,
        )

    def _record_failure(self, attempt: ReloadAttempt) -> None:
        self.last_attempt = attempt
        self.metrics.reload_failures.labels(attempt.trigger).inc()
        log.error(
            "reload refused" if not attempt.retryable else "reload failed; will retry",
            extra={"trigger": attempt.trigger, "error": attempt.error, "live": attempt.version},
        )

    def _build(self, artifact: StoredArtifact) -> LiveModel:
        if self.scorer_kind == "model" and artifact.model_text is None:
            raise ValueError(f"LTR_SCORER=model needs a model; {artifact.origin} has none")
        check_gated_scorer(artifact, self.scorer_kind)
        # The model text has passed the registry's checksum check before it reaches LightGBM.
        scorer = make_scorer(self.scorer_kind, artifact.weights, artifact.model_text or "")
        if isinstance(scorer, WeightsScorer):
            scorer.vector.setflags(write=False)  # immutable, like the LiveModel holding it
        _smoke_test(scorer)
        return LiveModel(
            version=artifact.version,
            scorer_kind=scorer.kind,
            scorer=scorer,
            loaded_at=datetime.now(UTC),
            source=artifact.source,
            origin=artifact.origin,
            partition=artifact.partition,
        )


def check_gated_scorer(artifact: StoredArtifact, scorer_kind: str) -> None:
    """Serve only what the gate evaluated (`check_servable`, the rule rollback applies too).
    The flat WEIGHTS_PATH file is exempt: it holds weights only, so it can only ever run as the
    weights scorer (checked above)."""
    if artifact.flat:
        return
    check_servable(artifact.metadata, scorer_kind)


def _smoke_test(scorer: Scorer) -> None:
    """Score one row before going live: a scorer that cannot score is refused, not served."""
    scores = scorer.score(np.full((1, len(FEATURES)), 0.5))
    if scores.shape != (1,) or not np.isfinite(scores).all():
        raise ValueError(f"the new scorer returned {scores!r} for a test row")
