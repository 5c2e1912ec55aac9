"""The closed sets of names the settings, the artifacts and the gate share, each declared once
as a `Literal` type (what mypy checks) with its values as a tuple (what validation reads)."""

from __future__ import annotations

from typing import Literal, get_args

ScorerName = Literal["weights", "model"]
DebiasMethod = Literal["click_model", "ips", "lightgbm_position", "none"]
# How the examination curve is obtained: `auto` is the click model's curve with the positions
# enough swap interventions reached measured by them instead (regression_em when none did).
PropensityMethod = Literal["auto", "regression_em", "pinned"]
# The family the click model fits the examination curve in: θ_k = k^-η (one exponent pooled over
# every position), or one free θ per position.
CurveFamily = Literal["power_law", "per_position"]
# The setting LTR_PROPENSITY_FAMILY: one of the families, or `auto` (the power law unless the
# held-out likelihood shows the free curve fits better; `ltr_assets.learning.propensity`).
CurveFamilySetting = Literal["auto", "power_law", "per_position"]
# Where each position of a published examination curve comes from: position 1 by definition,
# swap interventions, or the click model (or the pinned curve).
CurveSource = Literal["reference", "interventions", "click_model"]
# The branch of the ranking service that served a logged impression (ltr_core.exploration), and
# the interleaving team that picked it (ltr_core.interleaving).
LoggingPolicy = Literal["deterministic", "swap", "interleaved"]
InterleavingTeam = Literal["live", "candidate"]
# How a gated version goes live: as the canary candidate (interleaved with the live version until
# promoted or retired), or directly as latest.
Rollout = Literal["canary", "direct"]
ServingSource = Literal["auto", "file", "s3"]
# Where serving logs its impressions and feedback: JSONL files, Kafka, or nowhere.
ImpressionLog = Literal["file", "kafka", "off"]
# What kind of deployment this is: production refuses settings meant for simulations only.
Environment = Literal["development", "production"]
KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
# The version a candidate is compared with, as the gate found it: none published yet, loaded and
# scored, or unreadable (the gate fails with the reason).
BaselineStatus = Literal["none", "ok", "unreadable"]
# What a finished daily run amounted to (the run tag ltr/outcome): a blocking gate check failed,
# a step failed otherwise, a version was published, it succeeded without publishing, or someone
# canceled it.
GateOutcome = Literal["gate_refused", "crashed", "published", "succeeded", "canceled"]

SCORERS: tuple[ScorerName, ...] = get_args(ScorerName)
DEBIAS_METHODS: tuple[DebiasMethod, ...] = get_args(DebiasMethod)
PROPENSITY_METHODS: tuple[PropensityMethod, ...] = get_args(PropensityMethod)
CURVE_FAMILIES: tuple[CurveFamily, ...] = get_args(CurveFamily)
CURVE_FAMILY_SETTINGS: tuple[CurveFamilySetting, ...] = get_args(CurveFamilySetting)
CURVE_SOURCES: tuple[CurveSource, ...] = get_args(CurveSource)
LOGGING_POLICIES: tuple[LoggingPolicy, ...] = get_args(LoggingPolicy)
INTERLEAVING_TEAMS: tuple[InterleavingTeam, ...] = get_args(InterleavingTeam)
ROLLOUTS: tuple[Rollout, ...] = get_args(Rollout)
SERVING_SOURCES: tuple[ServingSource, ...] = get_args(ServingSource)
IMPRESSION_LOGS: tuple[ImpressionLog, ...] = get_args(ImpressionLog)
ENVIRONMENTS: tuple[Environment, ...] = get_args(Environment)
KAFKA_SECURITY_PROTOCOLS: tuple[KafkaSecurityProtocol, ...] = get_args(KafkaSecurityProtocol)
BASELINE_STATUSES: tuple[BaselineStatus, ...] = get_args(BaselineStatus)
GATE_OUTCOMES: tuple[GateOutcome, ...] = get_args(GateOutcome)
