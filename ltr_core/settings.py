"""Settings from environment variables: the one place configuration is read.

Every variable has a documented default (docs/configuration.md). A bad value raises
ConfigError naming the variable, instead of failing somewhere deep in a run. `$LTR_HOME/ltr.env`
(KEY=VALUE lines, written by `ltr demo`) supplies defaults beneath the real environment, so the
UI, `dagster dev` and the CLI see the partition range the demo used.
"""

from __future__ import annotations

import math
import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

from ltr_core.artifacts.signing import ArtifactKeys, parse_keys
from ltr_core.features import PROTECTED_ATTRIBUTES
from ltr_core.vocabulary import (
    DEBIAS_METHODS,
    KAFKA_SECURITY_PROTOCOLS,
    PROPENSITY_METHODS,
    SCORERS,
    SERVING_SOURCES,
)


def default_max_body_bytes(max_candidates: int) -> int:
    """The /rank body cap when LTR_MAX_BODY_BYTES is unset: 2 KiB per candidate (a candidate
    with 11 full-precision features, a long id and attributes is ~0.5 KiB) plus 64 KiB."""
    return 64 * 1024 + 2048 * max_candidates


class ConfigError(ValueError):
    """An environment variable holds a value that cannot be used."""


ENV_FILE = "ltr.env"

# The variables whose values are secrets: an error about one never shows its value.
SECRETS = frozenset(
    {
        "LTR_RELOAD_TOKEN",
        "KAFKA_SASL_PASSWORD",
        "NOTIFY_WEBHOOK_URL",  # Slack-style URLs carry their secret in the path
        "AWS_SECRET_ACCESS_KEY",
        "LTR_ARTIFACT_SIGNING_KEY",
        "LTR_ARTIFACT_VERIFY_KEYS",
    }
)


@dataclass(frozen=True)
class Range:
    """The values a numeric variable may take, inclusive; `zero_off`: 0 is also allowed and
    turns the feature off."""

    low: float
    high: float
    zero_off: bool = False

    def text(self) -> str:
        span = f"[{_number(self.low)}, {_number(self.high)}]"
        return f"0 or {span}" if self.zero_off else span


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


MIN_SAMPLE_CAP = 10_000

# Every numeric variable's range, stated once: a value outside it is refused with the
# variable's name (huge values would otherwise overflow deep inside, e.g. in a timedelta).
RANGES: dict[str, Range] = {
    "LTR_NDCG_MIN": Range(0, 1),
    "LTR_FAIRNESS_MAX": Range(0, 1),
    "LTR_LATENCY_P95_MS": Range(0.01, 60_000),
    "LTR_MIN_SAMPLES": Range(1, 10_000_000),
    "LTR_REGRESSION_MARGIN": Range(0, 1),
    "LTR_FAIRNESS_MIN_GROUPS": Range(1, 1_000_000),
    "LTR_FAIRNESS_MIN_RATIO": Range(0, 1),
    "LTR_FAIRNESS_MIN_COVERAGE": Range(0, 1),
    "LTR_PROPENSITY_CLIP": Range(0.001, 1),
    "LTR_IPS_MAX_WEIGHT": Range(1, 1_000_000),
    "LTR_MAX_CANDIDATES": Range(1, 100_000),
    "LTR_MAX_BODY_BYTES": Range(1024, 1 << 30),
    "LTR_MAX_CLOCK_SKEW_HOURS": Range(0, 24 * 366),
    "LTR_TRAIN_WINDOW_DAYS": Range(1, 366),
    "LTR_FEEDBACK_WINDOW_HOURS": Range(1, 24 * 31),
    "LTR_KAFKA_GRACE_MINUTES": Range(0, 24 * 60),
    # one record past the window must never end a read (at least 2)
    "LTR_KAFKA_STOP_RECORDS": Range(2, 1_000_000),
    # the upper limit keeps the date arithmetic in range
    "LTR_MAX_EVENT_AGE_DAYS": Range(1, 36_500),
    "KAFKA_CONNECT_TIMEOUT_SECONDS": Range(0.1, 600),
    "LTR_QUARANTINE_WARN_RATIO": Range(0, 1),
    "LTR_KEEP_VERSIONS": Range(1, 100_000),
    "WEIGHTS_POLL_SECONDS": Range(0.1, 86_400, zero_off=True),
    "LTR_RELOAD_TIMEOUT_SECONDS": Range(0.1, 3_600),
    "LTR_SCORE_TIMEOUT_MS": Range(1, 600_000),
    # Row caps: 0 (no cap) or at least MIN_SAMPLE_CAP rows (a sample of a few lists is no fit).
    "LTR_CLICK_MODEL_MAX_ROWS": Range(MIN_SAMPLE_CAP, 1e10, zero_off=True),
    "LTR_TRAIN_MAX_ROWS": Range(MIN_SAMPLE_CAP, 1e10, zero_off=True),
    "LTR_WEIGHTS_MAX_ROWS": Range(MIN_SAMPLE_CAP, 1e10, zero_off=True),
}

# Every variable the project reads besides the numeric ones: an `LTR_*` name in the env file
# that is neither is most likely a typo, and is warned about.
OTHER_VARIABLES = frozenset(
    {
        "LTR_HOME",
        "LTR_DATA_DIR",
        "LTR_REGISTRY_DIR",
        "WEIGHTS_PATH",
        "LTR_AUDIT_LOG",
        "LTR_START_DATE",
        "LTR_ALLOW_EMPTY_DAYS",
        "LTR_FAIRNESS_ATTRIBUTES",
        "LTR_PROPENSITY_METHOD",
        "LTR_PROPENSITY_CURVE",
        "LTR_DEBIAS",
        "LTR_DASK_SCHEDULER",
        "LTR_SCORER",
        "LTR_RELOAD_TOKEN",
        "LTR_ARTIFACT_SIGNING_KEY",
        "LTR_ARTIFACT_VERIFY_KEYS",
        "LTR_SERVING_URL",
        "LTR_SERVING_SOURCE",
        "NOTIFY_WEBHOOK_URL",
        "S3_BUCKET",
        "S3_PREFIX",
        "S3_ENDPOINT",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "KAFKA_BOOTSTRAP_SERVERS",
        "KAFKA_TOPIC",
        "KAFKA_GROUP_ID",
        "KAFKA_SECURITY_PROTOCOL",
        "KAFKA_SASL_MECHANISM",
        "KAFKA_SASL_USERNAME",
        "KAFKA_SASL_PASSWORD",
        "KAFKA_SSL_CAFILE",
        "KAFKA_SSL_CERTFILE",
        "KAFKA_SSL_KEYFILE",
    }
)
KNOWN_VARIABLES = frozenset(RANGES) | OTHER_VARIABLES
# Variables the env file may not set: LTR_HOME locates the file itself.
NOT_IN_ENV_FILE = frozenset({"LTR_HOME"})


def env_file_path(env: Mapping[str, str]) -> Path:
    """Where the env file lives: `$LTR_HOME/ltr.env` (LTR_HOME from the real environment)."""
    return Path(_path(env, "LTR_HOME", "./var")) / ENV_FILE


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and `#` comments skipped, surrounding quotes removed. A
    missing file is no configuration. A malformed line raises ConfigError naming the file and
    the line number, never the line's content (it may hold a secret); so does a variable the
    file may not set (LTR_HOME). An unknown `LTR_*` name is warned about (a likely typo)."""
    if not path.is_file():
        return {}
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.removeprefix("export ").partition("=")
        key = key.strip()
        if not sep or not key.isidentifier():
            raise ConfigError(
                f"{path}:{number}: not a KEY=VALUE line (its content is not shown: it may "
                "hold a secret)"
            )
        if key in NOT_IN_ENV_FILE:
            raise ConfigError(
                f"{path}:{number}: {key} cannot be set in {ENV_FILE}: it locates the file "
                "itself; set it in the environment"
            )
        if key.startswith("LTR_") and key not in KNOWN_VARIABLES:
            warnings.warn(
                f"{path}:{number}: {key} is not a variable the project reads (a typo?)",
                UnknownVariableWarning,
                stacklevel=2,
            )
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


class UnknownVariableWarning(UserWarning):
    """An `LTR_*` variable in the env file that the project does not read."""


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    """Leave the configuration a process used where later processes (UI, CLI) read it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# written by `ltr demo`; the real environment overrides these values"]
    lines += [f"{key}={value}" for key, value in sorted(values.items())]
    tmp = path.with_suffix(".env.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)


def layered_env(env: Mapping[str, str]) -> dict[str, str]:
    """The env file's values beneath `env`: a variable set in the environment always wins."""
    return {**read_env_file(env_file_path(env)), **env}


def _shown(name: str, raw: str) -> str:
    """`NAME='value'` for an error message; a secret's value is never shown."""
    return f"{name}=<secret>" if name in SECRETS else f"{name}={raw!r}"


def _checked(name: str, raw: str, value: float) -> None:
    """Raise ConfigError unless `value` lies in the variable's range (RANGES)."""
    allowed = RANGES[name]
    if allowed.zero_off and value == 0:
        return
    if not allowed.low <= value <= allowed.high:
        raise ConfigError(f"{_shown(name, raw)} is outside its range {allowed.text()}")


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{_shown(name, raw)} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{_shown(name, raw)} is not a finite number")
    _checked(name, raw, value)
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = _integral(name, raw)  # 1e5 is an integer too
    _checked(name, raw, value)
    return value


def _integral(name: str, raw: str) -> int:
    try:
        number = float(raw)
    except ValueError:
        number = math.nan
    if not number.is_integer():
        raise ConfigError(f"{_shown(name, raw)} is not an integer")
    return int(number)


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _str(env, name, default)
    if value not in choices:
        raise ConfigError(f"{_shown(name, value)} must be one of {', '.join(choices)}")
    return value


def _attributes(env: Mapping[str, str]) -> tuple[str, ...]:
    """LTR_FAIRNESS_ATTRIBUTES: unset means all four; set but empty (or "none") means the
    operator turned the fairness gate off on purpose."""
    name = "LTR_FAIRNESS_ATTRIBUTES"
    if name not in env:
        return PROTECTED_ATTRIBUTES
    raw = env[name].strip()
    if raw.lower() in ("", "none"):
        return ()
    chosen = tuple(part.strip() for part in raw.split(",") if part.strip())
    unknown = sorted(set(chosen) - set(PROTECTED_ATTRIBUTES))
    if unknown:
        allowed = ", ".join(PROTECTED_ATTRIBUTES)
        raise ConfigError(f"{name}={raw!r}: unknown attributes {unknown}; one of {allowed}")
    return chosen


def _float_list(env: Mapping[str, str], name: str) -> tuple[float, ...]:
    raw = env.get(name, "").strip()
    if not raw:
        return ()
    try:
        values = tuple(float(part) for part in raw.split(","))
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a comma-separated list of numbers") from None
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{name}={raw!r} holds a value that is not finite")
    return values


def _str(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name, "").strip()
    return raw or default


_REFERENCE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*)|(\$)|)")


def _path(env: Mapping[str, str], name: str, default: str) -> str:
    """A path setting, with `$NAME` and `${NAME}` replaced by the variables' values in `env`
    (`$$` is a `$`), as a shell would: a reference is never kept literally, so a variable that
    is not set, or a `$` that starts no reference, is refused naming both. The default is used
    as it is."""
    raw = env.get(name, "").strip()
    if not raw:
        return default

    def value(match: re.Match[str]) -> str:
        braced, bare, dollar = match.groups()
        if dollar:
            return "$"
        variable = braced or bare
        if variable is None:
            raise ConfigError(
                f"{name}={raw!r}: a $ must start $NAME or ${{NAME}} (write $$ for a $ itself)"
            )
        if variable not in env:
            raise ConfigError(f"{name}={raw!r}: ${variable} is not set")
        return env[variable]

    return _REFERENCE.sub(value, raw)


@dataclass(frozen=True)
class EmptyDays:
    """The days whose raw_events may be empty (LTR_ALLOW_EMPTY_DAYS). By default none: a day
    for which the source gives no record at all fails, naming the source, since that is far more
    often a source that matches nothing (a wrong path, a folder) than a day without events."""

    every: bool = False
    days: frozenset[date] = frozenset()

    def allows(self, day: date) -> bool:
        return self.every or day in self.days


def _empty_days(env: Mapping[str, str]) -> EmptyDays:
    """LTR_ALLOW_EMPTY_DAYS: days `YYYY-MM-DD` separated by commas, or `all`."""
    name = "LTR_ALLOW_EMPTY_DAYS"
    raw = env.get(name, "").strip()
    if not raw:
        return EmptyDays()
    if raw.lower() == "all":
        return EmptyDays(every=True)
    days = set()
    for part in raw.split(","):
        try:
            days.add(date.fromisoformat(part.strip()))
        except ValueError:
            raise ConfigError(
                f"{name}={raw!r}: {part.strip()!r} is not a date YYYY-MM-DD "
                "(list days separated by commas, or write all)"
            ) from None
    return EmptyDays(days=frozenset(days))


@dataclass(frozen=True)
class GateThresholds:
    """The publication gate's thresholds; the defaults are the platform's publication contract
    (docs/methodology.md, "The gate")."""

    ndcg_min: float = 0.65
    fairness_max: float = 0.05
    latency_p95_ms: float = 15.0
    min_samples: int = 100
    regression_margin: float = 0.02
    # Attribute values in fewer lists than this (test and validation pooled) are not gated; the
    # WARN check fairness_coverage names them.
    fairness_min_groups: int = 30
    fairness_min_ratio: float = 0.8  # the four-fifths rule
    fairness_min_coverage: float = 0.5  # share of candidates with a known value, per attribute
    fairness_attributes: tuple[str, ...] = PROTECTED_ATTRIBUTES


@dataclass(frozen=True)
class SampleCaps:
    """How many rows the steps of ltr_model that fit well on a sample use at most (0: no cap).

    Each capped step fits on a deterministic sample of whole lists (a fixed-seed draw, so the
    same window gives the same sample) when its input holds more rows than the cap, and on all
    of it otherwise: the caps bite only on big windows (the demo's window stays under them).
    Validation, the evaluation and the gate always use every row. What each
    sample held is recorded in the version's metadata (`sampling`). What a cap costs:
    docs/benchmarks.md, "scale"."""

    # the click model (examination curve θ, attractiveness γ) and the click-gain model, fitted
    # on the training and validation lists (LTR_CLICK_MODEL_MAX_ROWS)
    click_model_rows: int = 200_000
    # the distilled and pairwise derivations of the published linear weights, fitted on the
    # training lists (LTR_WEIGHTS_MAX_ROWS)
    weights_rows: int = 200_000
    # LambdaRank's training lists (LTR_TRAIN_MAX_ROWS); validation (early stopping) and the
    # test lists are never sampled
    train_rows: int = 200_000
    seed: int = 0


DEFAULT_KAFKA_STOP_RECORDS = 100
# An event stamped more than this many days before its source's clock is quarantined as
# old_timestamp (LTR_MAX_EVENT_AGE_DAYS).
DEFAULT_MAX_EVENT_AGE_DAYS = 30


@dataclass(frozen=True)
class KafkaSettings:
    """The Kafka source's connection, security and reading settings (KAFKA_*), declared once;
    `ltr_assets.ingest.kafka` reads the topic with them."""

    bootstrap_servers: str
    topic: str = "match_events"
    group_id: str = "ltr-raw-events"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = ""
    sasl_username: str = ""
    sasl_password: str = field(default="", repr=False)
    ssl_cafile: str = ""
    ssl_certfile: str = ""
    ssl_keyfile: str = ""
    connect_timeout_s: float = 3.0
    request_timeout_s: float = 40.0
    stall_timeout_s: float = 60.0
    grace: timedelta = timedelta(hours=2, minutes=15)
    # A partition's read of day D ends once this many records in a row are stamped at or after
    # the end of D plus the grace (LTR_KAFKA_STOP_RECORDS): more than the impressions of one
    # recommendation list, which share a key and so a partition and may all carry one wrong
    # clock; fewer records past the window never end the read.
    stop_records: int = DEFAULT_KAFKA_STOP_RECORDS
    max_clock_skew: timedelta = timedelta(hours=24)
    max_event_age: timedelta = timedelta(days=DEFAULT_MAX_EVENT_AGE_DAYS)


@dataclass(frozen=True)
class Settings:
    home: Path
    data_dir: Path  # the local lake; not used when lake_url is set
    registry_dir: Path
    weights_path: Path
    audit_log: str
    start_date: str
    s3_bucket: str
    s3_prefix: str
    s3_endpoint: str
    gate: GateThresholds = field(default_factory=GateThresholds)
    train_window_days: int = 14
    feedback_window_hours: int = 24
    quarantine_warn_ratio: float = 0.05
    scorer: str = "weights"
    reload_token: str = field(default="", repr=False)
    poll_seconds: float = 300.0
    reload_timeout_s: float = 60.0
    notify_webhook_url: str = field(default="", repr=False)  # Slack URLs embed a secret
    serving_url: str = ""
    kafka: KafkaSettings | None = None  # None when KAFKA_BOOTSTRAP_SERVERS is unset
    s3_region: str = "us-east-1"
    keep_versions: int = 30
    max_candidates: int = 1000
    serving_source: str = "auto"
    debias: str = "click_model"
    propensity_method: str = "regression_em"
    propensity_curve: tuple[float, ...] = ()  # the pinned curve, θ_1 = 1 first
    propensity_clip: float = 0.05
    ips_max_weight: float = 5.0  # the gate's estimator: IPS up to this weight, the model past it
    max_body_bytes: int = default_max_body_bytes(1000)
    max_clock_skew_hours: float = 24.0
    max_event_age_days: int = DEFAULT_MAX_EVENT_AGE_DAYS
    allow_empty_days: EmptyDays = field(default_factory=EmptyDays)
    lake_url: str = ""  # LTR_DATA_DIR when it is s3://bucket[/prefix]: the lake shared on S3
    dask_scheduler: str = ""  # LTR_DASK_SCHEDULER: train LambdaRank on this Dask cluster
    sample_caps: SampleCaps = field(default_factory=SampleCaps)
    # LTR_ARTIFACT_SIGNING_KEY / LTR_ARTIFACT_VERIFY_KEYS (secrets: their repr shows key ids only)
    artifact_keys: ArtifactKeys = field(default_factory=ArtifactKeys)
    score_timeout_ms: float = 1000.0  # LTR_SCORE_TIMEOUT_MS: /rank's bound on model scoring

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = layered_env(os.environ) if env is None else env
        home = Path(_path(env, "LTR_HOME", "./var"))
        scorer = _str(env, "LTR_SCORER", "weights")
        if scorer not in SCORERS:
            raise ConfigError(f"LTR_SCORER={scorer!r} must be one of {', '.join(SCORERS)}")
        start_date = _str(env, "LTR_START_DATE", "2026-01-01")
        _check_date("LTR_START_DATE", start_date)
        gate = GateThresholds(
            ndcg_min=_float(env, "LTR_NDCG_MIN", GateThresholds.ndcg_min),
            fairness_max=_float(env, "LTR_FAIRNESS_MAX", GateThresholds.fairness_max),
            latency_p95_ms=_float(env, "LTR_LATENCY_P95_MS", GateThresholds.latency_p95_ms),
            min_samples=_int(env, "LTR_MIN_SAMPLES", GateThresholds.min_samples),
            regression_margin=_float(
                env, "LTR_REGRESSION_MARGIN", GateThresholds.regression_margin
            ),
            fairness_min_groups=_int(
                env, "LTR_FAIRNESS_MIN_GROUPS", GateThresholds.fairness_min_groups
            ),
            fairness_min_ratio=_float(
                env, "LTR_FAIRNESS_MIN_RATIO", GateThresholds.fairness_min_ratio
            ),
            fairness_min_coverage=_float(
                env, "LTR_FAIRNESS_MIN_COVERAGE", GateThresholds.fairness_min_coverage
            ),
            fairness_attributes=_attributes(env),
        )
        curve = _float_list(env, "LTR_PROPENSITY_CURVE")
        propensity_method = _choice(
            env, "LTR_PROPENSITY_METHOD", "pinned" if curve else "regression_em", PROPENSITY_METHODS
        )
        if propensity_method == "pinned" and not curve:
            raise ConfigError("LTR_PROPENSITY_METHOD=pinned needs LTR_PROPENSITY_CURVE (θ_1,θ_2,…)")
        clip = _float(env, "LTR_PROPENSITY_CLIP", 0.05)
        ips_max_weight = _float(env, "LTR_IPS_MAX_WEIGHT", 5.0)
        max_candidates = _int(env, "LTR_MAX_CANDIDATES", 1000)
        skew = _float(env, "LTR_MAX_CLOCK_SKEW_HOURS", 24.0)
        max_age = _int(env, "LTR_MAX_EVENT_AGE_DAYS", DEFAULT_MAX_EVENT_AGE_DAYS)
        data_dir = _path(env, "LTR_DATA_DIR", str(home / "lake"))
        lake_url = _lake_url(data_dir)
        debias = _choice(env, "LTR_DEBIAS", "click_model", DEBIAS_METHODS)
        dask_scheduler = env.get("LTR_DASK_SCHEDULER", "").strip()
        if dask_scheduler and debias == "lightgbm_position":
            raise ConfigError(
                "LTR_DASK_SCHEDULER cannot be used with LTR_DEBIAS=lightgbm_position "
                "(lightgbm.dask takes no positions)"
            )
        return cls(
            home=home,
            data_dir=home / "lake" if lake_url else Path(data_dir),
            lake_url=lake_url,
            registry_dir=Path(_path(env, "LTR_REGISTRY_DIR", str(home / "registry"))),
            weights_path=Path(
                _path(env, "WEIGHTS_PATH", str(home / "models" / "ltr_weights.json"))
            ),
            audit_log=_path(env, "LTR_AUDIT_LOG", str(home / "events" / "*.jsonl")),
            start_date=start_date,
            s3_bucket=env.get("S3_BUCKET", "").strip(),
            s3_prefix=_str(env, "S3_PREFIX", "ltr"),
            s3_endpoint=env.get("S3_ENDPOINT", "").strip(),
            gate=gate,
            train_window_days=_int(env, "LTR_TRAIN_WINDOW_DAYS", 14),
            feedback_window_hours=_int(env, "LTR_FEEDBACK_WINDOW_HOURS", 24),
            quarantine_warn_ratio=_float(env, "LTR_QUARANTINE_WARN_RATIO", 0.05),
            scorer=scorer,
            reload_token=env.get("LTR_RELOAD_TOKEN", ""),
            poll_seconds=_float(env, "WEIGHTS_POLL_SECONDS", 300.0),
            reload_timeout_s=_float(env, "LTR_RELOAD_TIMEOUT_SECONDS", 60.0),
            notify_webhook_url=env.get("NOTIFY_WEBHOOK_URL", "").strip(),
            serving_url=env.get("LTR_SERVING_URL", "").strip(),
            kafka=_kafka(env, skew, max_age),
            s3_region=_str(env, "AWS_REGION", _str(env, "AWS_DEFAULT_REGION", "us-east-1")),
            keep_versions=_int(env, "LTR_KEEP_VERSIONS", 30),
            max_candidates=max_candidates,
            serving_source=_choice(env, "LTR_SERVING_SOURCE", "auto", SERVING_SOURCES),
            debias=debias,
            propensity_method=propensity_method,
            propensity_curve=curve,
            propensity_clip=clip,
            ips_max_weight=ips_max_weight,
            max_body_bytes=_int(env, "LTR_MAX_BODY_BYTES", default_max_body_bytes(max_candidates)),
            max_clock_skew_hours=skew,
            max_event_age_days=max_age,
            allow_empty_days=_empty_days(env),
            dask_scheduler=dask_scheduler,
            sample_caps=SampleCaps(
                click_model_rows=_int(env, "LTR_CLICK_MODEL_MAX_ROWS", SampleCaps.click_model_rows),
                weights_rows=_int(env, "LTR_WEIGHTS_MAX_ROWS", SampleCaps.weights_rows),
                train_rows=_int(env, "LTR_TRAIN_MAX_ROWS", SampleCaps.train_rows),
            ),
            artifact_keys=_artifact_keys(env),
            score_timeout_ms=_float(env, "LTR_SCORE_TIMEOUT_MS", 1000.0),
        )


def _artifact_keys(env: Mapping[str, str]) -> ArtifactKeys:
    """LTR_ARTIFACT_SIGNING_KEY (one `id:secret`) and LTR_ARTIFACT_VERIFY_KEYS (`id:secret,...`);
    a malformed value names its variable, never its secret."""
    signing_raw = env.get("LTR_ARTIFACT_SIGNING_KEY", "").strip()
    verify_raw = env.get("LTR_ARTIFACT_VERIFY_KEYS", "").strip()
    try:
        signing = parse_keys(signing_raw, "LTR_ARTIFACT_SIGNING_KEY") if signing_raw else ()
        verifying = parse_keys(verify_raw, "LTR_ARTIFACT_VERIFY_KEYS") if verify_raw else ()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if len(signing) > 1:
        raise ConfigError("LTR_ARTIFACT_SIGNING_KEY holds one key (id:secret), not a list")
    for key in verifying:
        if signing and key.key_id == signing[0].key_id and key != signing[0]:
            raise ConfigError(
                f"key id {key.key_id!r} has one secret in LTR_ARTIFACT_SIGNING_KEY and another "
                "in LTR_ARTIFACT_VERIFY_KEYS"
            )
    return ArtifactKeys(signing[0] if signing else None, verifying)


def _lake_url(value: str) -> str:
    """LTR_DATA_DIR as an s3://bucket[/prefix] URL (normalized, no trailing slash), or "" for a
    local folder."""
    if not value.lower().startswith("s3://"):
        return ""
    bucket, _, prefix = value[len("s3://") :].partition("/")
    prefix = prefix.strip("/")
    if not bucket or any(part in {"", ".", ".."} for part in prefix.split("/") if prefix):
        raise ConfigError(f"LTR_DATA_DIR={value!r} must be a folder or s3://bucket[/prefix]")
    return f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"


def _kafka(env: Mapping[str, str], skew_hours: float, max_age_days: int) -> KafkaSettings | None:
    """The Kafka source's settings, or None when KAFKA_BOOTSTRAP_SERVERS is not set."""
    servers = env.get("KAFKA_BOOTSTRAP_SERVERS", "").strip()
    if not servers:
        return None
    return KafkaSettings(
        bootstrap_servers=servers,
        topic=_str(env, "KAFKA_TOPIC", "match_events"),
        group_id=_str(env, "KAFKA_GROUP_ID", "ltr-raw-events"),
        security_protocol=_choice(
            env, "KAFKA_SECURITY_PROTOCOL", "PLAINTEXT", KAFKA_SECURITY_PROTOCOLS
        ),
        sasl_mechanism=_str(env, "KAFKA_SASL_MECHANISM", ""),
        sasl_username=env.get("KAFKA_SASL_USERNAME", ""),
        sasl_password=env.get("KAFKA_SASL_PASSWORD", ""),
        ssl_cafile=_path(env, "KAFKA_SSL_CAFILE", ""),
        ssl_certfile=_path(env, "KAFKA_SSL_CERTFILE", ""),
        ssl_keyfile=_path(env, "KAFKA_SSL_KEYFILE", ""),
        connect_timeout_s=_float(env, "KAFKA_CONNECT_TIMEOUT_SECONDS", 3.0),
        grace=timedelta(minutes=_int(env, "LTR_KAFKA_GRACE_MINUTES", 135)),
        stop_records=_int(env, "LTR_KAFKA_STOP_RECORDS", DEFAULT_KAFKA_STOP_RECORDS),
        max_clock_skew=timedelta(hours=skew_hours),
        max_event_age=timedelta(days=max_age_days),
    )


def _check_date(name: str, value: str) -> None:
    try:
        date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a date YYYY-MM-DD") from None
