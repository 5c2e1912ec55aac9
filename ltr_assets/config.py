"""Settings from environment variables: the one place configuration is read.

Every variable has a documented default (README, "Configuration"). A bad value raises
ConfigError naming the variable, instead of failing somewhere deep in a run. `$LTR_HOME/ltr.env`
(KEY=VALUE lines, written by `ltr demo`) supplies defaults beneath the real environment, so the
UI, `dagster dev` and the CLI see the partition range the demo used.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from ltr_assets.schema import PROTECTED_ATTRIBUTES
from ltr_assets.signing import ArtifactKeys, parse_keys

SCORERS = ("weights", "model")
DEBIAS_METHODS = ("click_model", "ips", "lightgbm_position", "none")  # ltr_assets.debias
PROPENSITY_METHODS = ("regression_em", "pinned")  # ltr_assets.propensity
SERVING_SOURCES = ("auto", "file", "s3")
KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")


def default_max_body_bytes(max_candidates: int) -> int:
    """The /rank body cap when LTR_MAX_BODY_BYTES is unset: 2 KiB per candidate (a candidate
    with 11 full-precision features, a long id and attributes is ~0.5 KiB) plus 64 KiB."""
    return 64 * 1024 + 2048 * max_candidates


class ConfigError(ValueError):
    """An environment variable holds a value that cannot be used."""


ENV_FILE = "ltr.env"


def env_file_path(env: Mapping[str, str]) -> Path:
    """Where the env file lives: `$LTR_HOME/ltr.env` (LTR_HOME from the real environment)."""
    return Path(_str(env, "LTR_HOME", "./var")) / ENV_FILE


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; blank lines and `#` comments skipped, surrounding quotes removed. A
    missing file is no configuration; a malformed line raises ConfigError naming the file."""
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
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        values[key] = value
    return values


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


def _float(
    env: Mapping[str, str], name: str, default: float, minimum: float | None = None
) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{name}={raw!r} is not a finite number")
    if minimum is not None and value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum:g}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(f"{name}={raw!r} must be at least {minimum}")
    return value


MIN_SAMPLE_CAP = 10_000


def _cap(env: Mapping[str, str], name: str, default: int) -> int:
    """A row cap: 0 (no cap) or at least MIN_SAMPLE_CAP rows (a sample of a few lists is not a
    fit)."""
    value = _int(env, name, default, minimum=0)
    if 0 < value < MIN_SAMPLE_CAP:
        raise ConfigError(f"{name}={value} must be 0 (no cap) or at least {MIN_SAMPLE_CAP}")
    return value


def _choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = _str(env, name, default)
    if value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
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


@dataclass(frozen=True)
class GateThresholds:
    """The publication gate. Defaults are DESIGN.md's."""

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
    of it otherwise: the caps bite only on big windows (the demo's 14-day window holds about
    100,000 rows). Validation, the evaluation and the gate always use every row. What each
    sample held is recorded in the version's metadata (`sampling`). Measured in
    benchmarks/README.md, "scale"."""

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


@dataclass(frozen=True)
class KafkaSettings:
    """The Kafka source's connection, security and reading settings (KAFKA_*), declared once;
    `ltr_assets.kafka` reads the topic with them."""

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
    max_clock_skew: timedelta = timedelta(hours=24)


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
    lake_url: str = ""  # LTR_DATA_DIR when it is s3://bucket[/prefix]: the lake shared on S3
    dask_scheduler: str = ""  # LTR_DASK_SCHEDULER: train LambdaRank on this Dask cluster
    sample_caps: SampleCaps = field(default_factory=SampleCaps)
    # LTR_ARTIFACT_SIGNING_KEY / LTR_ARTIFACT_VERIFY_KEYS (secrets: their repr shows key ids only)
    artifact_keys: ArtifactKeys = field(default_factory=ArtifactKeys)
    score_timeout_ms: float = 1000.0  # LTR_SCORE_TIMEOUT_MS: /rank's bound on model scoring

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = layered_env(os.environ) if env is None else env
        home = Path(_str(env, "LTR_HOME", "./var"))
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
                env, "LTR_FAIRNESS_MIN_GROUPS", GateThresholds.fairness_min_groups, minimum=1
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
        if not 0.0 < clip <= 1.0:
            raise ConfigError(f"LTR_PROPENSITY_CLIP={clip} must lie in (0, 1]")
        ips_max_weight = _float(env, "LTR_IPS_MAX_WEIGHT", 5.0)
        if not ips_max_weight >= 1.0:
            raise ConfigError(f"LTR_IPS_MAX_WEIGHT={ips_max_weight} must be at least 1")
        max_candidates = _int(env, "LTR_MAX_CANDIDATES", 1000, minimum=1)
        skew = _float(env, "LTR_MAX_CLOCK_SKEW_HOURS", 24.0)
        if skew < 0:
            raise ConfigError(f"LTR_MAX_CLOCK_SKEW_HOURS={skew!r} must not be negative")
        data_dir = _str(env, "LTR_DATA_DIR", str(home / "lake"))
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
            registry_dir=Path(_str(env, "LTR_REGISTRY_DIR", str(home / "registry"))),
            weights_path=Path(_str(env, "WEIGHTS_PATH", str(home / "models" / "ltr_weights.json"))),
            audit_log=_str(env, "LTR_AUDIT_LOG", str(home / "events" / "*.jsonl")),
            start_date=start_date,
            s3_bucket=env.get("S3_BUCKET", "").strip(),
            s3_prefix=_str(env, "S3_PREFIX", "ltr"),
            s3_endpoint=env.get("S3_ENDPOINT", "").strip(),
            gate=gate,
            train_window_days=_int(env, "LTR_TRAIN_WINDOW_DAYS", 14, minimum=1),
            feedback_window_hours=_int(env, "LTR_FEEDBACK_WINDOW_HOURS", 24, minimum=1),
            quarantine_warn_ratio=_float(env, "LTR_QUARANTINE_WARN_RATIO", 0.05),
            scorer=scorer,
            reload_token=env.get("LTR_RELOAD_TOKEN", ""),
            poll_seconds=_float(env, "WEIGHTS_POLL_SECONDS", 300.0),
            notify_webhook_url=env.get("NOTIFY_WEBHOOK_URL", "").strip(),
            serving_url=env.get("LTR_SERVING_URL", "").strip(),
            kafka=_kafka(env, skew),
            s3_region=_str(env, "AWS_REGION", _str(env, "AWS_DEFAULT_REGION", "us-east-1")),
            keep_versions=_int(env, "LTR_KEEP_VERSIONS", 30, minimum=1),
            max_candidates=max_candidates,
            serving_source=_choice(env, "LTR_SERVING_SOURCE", "auto", SERVING_SOURCES),
            debias=debias,
            propensity_method=propensity_method,
            propensity_curve=curve,
            propensity_clip=clip,
            ips_max_weight=ips_max_weight,
            max_body_bytes=_int(
                env, "LTR_MAX_BODY_BYTES", default_max_body_bytes(max_candidates), minimum=1024
            ),
            max_clock_skew_hours=skew,
            dask_scheduler=dask_scheduler,
            sample_caps=SampleCaps(
                click_model_rows=_cap(env, "LTR_CLICK_MODEL_MAX_ROWS", SampleCaps.click_model_rows),
                weights_rows=_cap(env, "LTR_WEIGHTS_MAX_ROWS", SampleCaps.weights_rows),
                train_rows=_cap(env, "LTR_TRAIN_MAX_ROWS", SampleCaps.train_rows),
            ),
            artifact_keys=_artifact_keys(env),
            score_timeout_ms=_float(env, "LTR_SCORE_TIMEOUT_MS", 1000.0, minimum=1.0),
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


def _kafka(env: Mapping[str, str], skew_hours: float) -> KafkaSettings | None:
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
        ssl_cafile=_str(env, "KAFKA_SSL_CAFILE", ""),
        ssl_certfile=_str(env, "KAFKA_SSL_CERTFILE", ""),
        ssl_keyfile=_str(env, "KAFKA_SSL_KEYFILE", ""),
        connect_timeout_s=_float(env, "KAFKA_CONNECT_TIMEOUT_SECONDS", 3.0),
        grace=timedelta(minutes=_int(env, "LTR_KAFKA_GRACE_MINUTES", 135)),
        max_clock_skew=timedelta(hours=skew_hours),
    )


def _check_date(name: str, value: str) -> None:
    from datetime import date

    try:
        date.fromisoformat(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a date YYYY-MM-DD") from None
