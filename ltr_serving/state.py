"""The live version and its reloads.

Everything a request needs (scorer, version, when it was loaded) is ONE immutable `LiveModel`.
A request reads `state.live` once and uses only that object, so a swap never changes a request
in flight. A reload builds the next LiveModel completely (read, validate, build the scorer) before
a single reference assignment swaps it in; reloads are serialized by a lock, and a failed one
leaves the current LiveModel untouched.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from ltr_assets.schema import FEATURES
from ltr_assets.scoring import Scorer, WeightsScorer, make_scorer
from ltr_serving.metrics import ServingMetrics
from ltr_serving.scoring_pool import ScoringPool
from ltr_serving.settings import ServingSettings
from ltr_serving.store import StoredArtifact, StoreUnavailable, WeightStore

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

    @property
    def explains(self) -> bool:
        """Whether per-feature contributions exist (the linear weights scorer only)."""
        return isinstance(self.scorer, WeightsScorer)


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


class ServingState:
    """The live model plus what requests need next to it (settings, metrics): one dependency."""

    def __init__(
        self, store: WeightStore, settings: ServingSettings, metrics: ServingMetrics
    ) -> None:
        self.store = store
        self.settings = settings
        self.scorer_kind = settings.scorer
        self.metrics = metrics
        self.scoring = ScoringPool(settings.score_timeout_ms / 1000)  # /rank's model scoring
        metrics.watch_scoring(self.scoring)
        self.live: LiveModel | None = None
        self.last_attempt: ReloadAttempt | None = None
        self._reload_lock = threading.Lock()
        self._attempted_marker: str | None = None

    def reload(self, trigger: str) -> ReloadAttempt:
        """Load whatever `latest` points at now; swap it in only if it is entirely valid.

        Blocking (file reads, model parsing): call it from a worker thread, not the event loop.
        """
        with self._reload_lock:
            start = time.perf_counter()
            previous = self.live
            previous_version = previous.version if previous else None
            # Read the marker before loading: if latest moves meanwhile, the next poll sees a
            # different marker and loads again, which is harmless; the reverse would miss it.
            marker = self.store.current_marker()
            try:
                candidate = self._build(self.store.load())
            except Exception as exc:  # any failure refuses the artifact; the old one serves on
                retryable = isinstance(exc, StoreUnavailable)
                attempt = ReloadAttempt(
                    at=datetime.now(UTC),
                    trigger=trigger,
                    ok=False,
                    version=previous_version,
                    previous_version=previous_version,
                    error=str(exc) or type(exc).__name__,
                    duration_s=time.perf_counter() - start,
                    retryable=retryable,
                )
                if not retryable:  # a bad artifact is not retried until latest changes
                    self._attempted_marker = marker
                self.last_attempt = attempt
                self.metrics.reload_failures.labels(trigger).inc()
                log.error(
                    "reload refused",
                    extra={"trigger": trigger, "error": attempt.error, "live": previous_version},
                )
                return attempt
            self.live = candidate  # the swap: one reference assignment
            self._attempted_marker = marker
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

    def poll_once(self) -> ReloadAttempt | None:
        """Reload when the store's marker differs from the last one tried (good or bad).

        A refused artifact is not retried on every tick: only a change (a new publish, a
        rollback, a repaired pointer) triggers the next attempt.
        """
        marker = self.store.current_marker()
        if marker is None or marker == self._attempted_marker:
            return None
        return self.reload("poll")

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
    """Serve only what the gate evaluated: a registry version must record the scorer it was
    gated for, and it must be the one this process runs. The flat WEIGHTS_PATH file is exempt:
    it holds weights only, so it can only ever run as the weights scorer (checked above)."""
    if artifact.flat:
        return
    gated = artifact.gated_scorer
    if gated is None:
        raise ValueError(
            f"version {artifact.version} records no gated_scorer, so nothing says its gate "
            f"evaluated the {scorer_kind} scorer (LTR_SCORER) that serving runs; refused"
        )
    if gated != scorer_kind:
        raise ValueError(
            f"version {artifact.version} was gated for the {gated} scorer, but serving runs "
            f"LTR_SCORER={scorer_kind}; refused"
        )


def _smoke_test(scorer: Scorer) -> None:
    """Score one row before going live: a scorer that cannot score is refused, not served."""
    scores = scorer.score(np.full((1, len(FEATURES)), 0.5))
    if scores.shape != (1,) or not np.isfinite(scores).all():
        raise ValueError(f"the new scorer returned {scores!r} for a test row")
