"""Settings from environment variables: the one typed schema of the project's configuration.

Every variable is declared once, below, as a field of `Settings` or of one of its groups (gate,
event time, sample caps, Kafka, S3, serving): its name (the field's `validation_alias`; names
stay flat, `LTR_NDCG_MIN`, `S3_BUCKET`, ...), type, default, range and description. The
configuration reference (docs/configuration.md) is generated from it (`make docs`).

The environment is read through pydantic-settings with one source, `EnvironmentSource`: the
process environment over `$LTR_HOME/ltr.env` (KEY=VALUE lines, written by `ltr demo`), so the
UI, `dagster dev` and the CLI see the partition range the demo used. A blank value is the
default; path values have `$NAME` references expanded. A bad value raises ConfigError naming the
variable (never showing a secret's value), instead of failing somewhere deep in a run.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import re
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Self, TypeVar, Union, get_args, get_origin
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import CoreSchema, core_schema
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from ltr_core.artifacts.signing import ArtifactKeys, SigningKey, parse_keys
from ltr_core.features import PROTECTED_ATTRIBUTES
from ltr_core.s3_url import is_s3_url, looks_like_url, normalize_s3_url
from ltr_core.vocabulary import (
    CurveFamilySetting,
    DebiasMethod,
    Environment,
    ImpressionLog,
    KafkaSecurityProtocol,
    PropensityMethod,
    Rollout,
    ScorerName,
    ServingSource,
)


class ConfigError(ValueError):
    """An environment variable holds a value that cannot be used."""


log = logging.getLogger("ltr_core.settings")


ENV_FILE = "ltr.env"
# Variables the env file may not set: LTR_HOME locates the file itself.
NOT_IN_ENV_FILE = frozenset({"LTR_HOME"})
DEFAULT_HOME = Path("./var")  # LTR_HOME's default
# Secrets read by libraries (boto3's credential chain), not by the schema: never shown either.
EXTERNAL_SECRETS = frozenset({"AWS_SECRET_ACCESS_KEY"})


MAX_CANDIDATES_LIMIT = 100_000  # the most LTR_MAX_CANDIDATES may be


def default_max_body_bytes(max_candidates: int) -> int:
    """The /rank body cap when LTR_MAX_BODY_BYTES is unset: 2 KiB per candidate (a candidate
    with 11 full-precision features, a long id and attributes is ~0.5 KiB) plus 64 KiB."""
    return 64 * 1024 + 2048 * max_candidates


# --- what a field may carry besides its type ----------------------------------------------------

N = TypeVar("N", int, float)


@dataclass(frozen=True)
class Range:
    """The values a numeric variable may take, inclusive; `zero_off`: 0 is also allowed and
    turns the feature off. A value outside it is refused with the variable's name (huge values
    would otherwise overflow deep inside, e.g. in a timedelta)."""

    low: float
    high: float
    zero_off: bool = False

    def text(self) -> str:
        span = f"[{_number(self.low)}, {_number(self.high)}]"
        return f"0 or {span}" if self.zero_off else span

    def check(self, value: N) -> N:
        if (self.zero_off and value == 0) or self.low <= value <= self.high:
            return value
        raise ValueError(f"is outside its range {self.text()}")

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Marker:
    """A flag on a field: SECRET (its value is never shown; SecretStr fields are secret too),
    EXPAND (a path: `$NAME` references are expanded), VERBATIM (not stripped of whitespace),
    KEEP_EMPTY (an empty value means something, so it is not the default)."""

    name: str


SECRET = Marker("secret")
EXPAND = Marker("expand")
DATA_DIR_VARIABLE = "LTR_DATA_DIR"  # the one path setting that may be an s3:// URL
VERBATIM = Marker("verbatim")
KEEP_EMPTY = Marker("keep_empty")


@dataclass(frozen=True)
class Derived:
    """A default computed from other variables, described for the reference."""

    text: str


# --- value parsers (environment strings -> typed values) ----------------------------------------


def _to_float(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        number = float(value.strip())
    except ValueError:
        raise ValueError("is not a number") from None
    if not math.isfinite(number):
        raise ValueError("is not a finite number")
    return number


_INTEGER = re.compile(r"[+-]?[0-9]+")
# 1e5 is an integer too, written in ASCII digits (Python's own parsers also take `1_000` and
# other scripts' digits, which no operator means)
_INTEGRAL_FLOAT = re.compile(r"[+-]?[0-9]+(\.[0-9]*)?[eE][+-]?[0-9]+|[+-]?[0-9]+\.0*")


def _to_int(value: object) -> object:
    if not isinstance(value, str):
        return value
    text = value.strip()
    if _INTEGER.fullmatch(text):
        return int(text)
    number = float(text) if _INTEGRAL_FLOAT.fullmatch(text) else math.nan
    if not number.is_integer():
        raise ValueError("is not an integer")
    return int(number)


def _to_url(value: object) -> object:
    """Empty (not set), or an http(s) URL with a host. Whitespace or a control character
    inside is refused: `urlsplit` drops tabs and newlines silently, so the URL checked would
    not be the one used."""
    if not isinstance(value, str) or not value.strip():
        return value
    text = value.strip()
    if any(c.isspace() or not c.isprintable() for c in text):
        raise ValueError("holds whitespace or a control character inside the URL")
    parsed = urlsplit(text)
    try:
        port = parsed.port  # None when absent; ValueError when not a number in 0-65535
    except ValueError:
        port = 0
    if parsed.scheme not in ("http", "https") or not parsed.hostname or port == 0:
        raise ValueError(
            "is not an http(s) URL with a host and, if any, a port from 1 to 65535, e.g. "
            "http://127.0.0.1:8000"
        )
    return text


_TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def _to_topic(value: object) -> object:
    """A name Kafka accepts for a topic: caught here rather than by the broker, where the
    pipeline's read and the service's sink would fail on every attempt."""
    if not isinstance(value, str):
        return value
    if not _TOPIC_NAME.fullmatch(value) or value in (".", ".."):
        raise ValueError(
            "is not a Kafka topic name (1-249 of the characters A-Z a-z 0-9 . _ -, not . or ..)"
        )
    return value


def _to_brokers(value: object) -> object:
    """`host[:port],…` as aiokafka parses it, checked here: a port that is not a number made
    the read fail with a bare ValueError instead of falling back to the files."""
    if not isinstance(value, str) or not value.strip():
        return value
    if "@" in value:  # the message must not repeat it: it may hold a password
        raise ValueError(
            "holds `user:password@`: brokers are `host:port,…`, and credentials go in "
            "KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
        )
    for server in value.split(","):
        if "/" in server:
            raise ValueError(
                f"is not a list of Kafka brokers `host:port,…` ({server.strip()!r} is a URL: "
                "name the broker without a scheme; KAFKA_SECURITY_PROTOCOL says how to reach it)"
            )
        host, colon, port = server.strip().rpartition(":")
        if server.strip().endswith("]") or not colon:  # a bare host or [IPv6]: port 9092
            host, port = server.strip(), "9092"
        if not host or not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
            raise ValueError(
                f"is not a list of Kafka brokers `host:port,…` ({server.strip()!r}: the port "
                "must be a number from 1 to 65535)"
            )
    return value


def _to_bool(value: object) -> object:
    if not isinstance(value, str):
        return value
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("is not a boolean (true/false, 1/0, yes/no, on/off)")


def _to_date_text(value: object) -> object:
    if isinstance(value, str):
        try:
            date.fromisoformat(value)
        except ValueError:
            raise ValueError("is not a date YYYY-MM-DD") from None
    return value


def _to_floats(value: object) -> object:
    if not isinstance(value, str):
        return value
    try:
        numbers = tuple(float(part) for part in value.split(","))
    except ValueError:
        raise ValueError("is not a comma-separated list of numbers") from None
    if not all(math.isfinite(v) for v in numbers):
        raise ValueError("holds a value that is not finite")
    return numbers


def _to_attributes(value: object) -> object:
    """Set but empty (or "none"): the operator turned the fairness gate off on purpose."""
    if not isinstance(value, str):
        return value
    if value.strip().lower() in ("", "none"):
        return ()
    chosen = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = sorted(set(chosen) - set(PROTECTED_ATTRIBUTES))
    if unknown:
        allowed = ", ".join(PROTECTED_ATTRIBUTES)
        raise ValueError(f": unknown attributes {unknown}; one of {allowed}")
    return chosen


@dataclass(frozen=True)
class EmptyDays:
    """The days whose raw_events may be empty (LTR_ALLOW_EMPTY_DAYS). By default none: a day
    for which the source gives no record at all fails, naming the source, since that is far more
    often a source that matches nothing (a wrong path, a folder) than a day without events."""

    every: bool = False
    days: frozenset[date] = frozenset()

    def allows(self, day: date) -> bool:
        return self.every or day in self.days


def _to_empty_days(value: object) -> object:
    """Days `YYYY-MM-DD` separated by commas, or `all`."""
    if not isinstance(value, str):
        return value
    if value.strip().lower() == "all":
        return EmptyDays(every=True)
    days = set()
    for part in value.split(","):
        try:
            days.add(date.fromisoformat(part.strip()))
        except ValueError:
            raise ValueError(
                f": {part.strip()!r} is not a date YYYY-MM-DD "
                "(list days separated by commas, or write all)"
            ) from None
    return EmptyDays(days=frozenset(days))


def _key_parser(variable: str, *, single: bool) -> Callable[[object], object]:
    """`id:secret[,id:secret...]`; the error names the variable, never the secret."""

    def parse(value: object) -> object:
        if not isinstance(value, str):
            return value
        keys = parse_keys(value, variable)
        if not single:
            return keys
        if len(keys) > 1:
            raise ValueError(f"{variable} holds one key (id:secret), not a list")
        return keys[0]

    return parse


Float = Annotated[float, BeforeValidator(_to_float)]
Int = Annotated[int, BeforeValidator(_to_int)]
Bool = Annotated[bool, BeforeValidator(_to_bool)]
Text = str


def _to_url_without_credentials(value: object) -> object:
    """`_to_url`, refusing `user:password@`: S3 and the ranking service take their credentials
    from variables of their own, and a URL is shown in logs (the settings at start-up)."""
    text = _to_url(value)
    if isinstance(text, str) and "@" in urlsplit(text).netloc:
        raise ValueError(
            "holds `user:password@`: this URL takes no credentials (S3's are AWS_ACCESS_KEY_ID "
            "and AWS_SECRET_ACCESS_KEY, the service's LTR_RELOAD_TOKEN)"
        )
    return text


Url = Annotated[str, BeforeValidator(_to_url_without_credentials)]
Topic = Annotated[str, BeforeValidator(_to_topic)]
PathText = Annotated[str, EXPAND]


def _group_config() -> ConfigDict:
    return ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


# --- the groups ----------------------------------------------------------------------------------


class GateThresholds(BaseModel):
    """The publication gate: what a candidate must reach to be published."""

    model_config = _group_config()

    ndcg_min: Annotated[Float, Range(0, 1)] = Field(
        0.65,
        validation_alias="LTR_NDCG_MIN",
        description="minimum lower bound of the counterfactual test nDCG@5",
    )
    fairness_max: Annotated[Float, Range(0, 1)] = Field(
        0.05,
        validation_alias="LTR_FAIRNESS_MAX",
        description="largest upper bound of |Δ_exp@5| allowed per attribute value",
    )
    latency_p95_ms: Annotated[Float, Range(0.01, 60_000)] = Field(
        15.0,
        validation_alias="LTR_LATENCY_P95_MS",
        description="the p95 CPU time of the request path per request must be below this",
    )
    min_samples: Annotated[Int, Range(1, 10_000_000)] = Field(
        100,
        validation_alias="LTR_MIN_SAMPLES",
        description="minimum test lists with a positive label",
    )
    click_signal_min_z: Annotated[Float, Range(0, 1000)] = Field(
        3.0,
        validation_alias="LTR_CLICK_SIGNAL_MIN_Z",
        description="how many standard errors the click model's relevance must predict the test "
        "lists' clicks better than position alone by (the check `click_signal`: clicks that do "
        "not depend on the candidates give nothing to learn or judge a ranking by)",
    )
    regression_margin: Annotated[Float, Range(0, 1)] = Field(
        0.02,
        validation_alias="LTR_REGRESSION_MARGIN",
        description="how far below the logged order and the live version the lower bound of the "
        "paired nDCG@5 difference may fall",
    )
    fairness_min_groups: Annotated[Int, Range(1, 1_000_000)] = Field(
        30,
        validation_alias="LTR_FAIRNESS_MIN_GROUPS",
        description="attribute values in fewer test lists are judged on test + validation lists; "
        "still fewer, not gated (the WARN check fairness_coverage names them)",
    )
    fairness_min_ratio: Annotated[Float, Range(0, 1)] = Field(
        0.8,
        validation_alias="LTR_FAIRNESS_MIN_RATIO",
        description="lowest upper bound of the exposure ratio allowed (the four-fifths rule)",
    )
    fairness_min_coverage: Annotated[Float, Range(0, 1)] = Field(
        0.5,
        validation_alias="LTR_FAIRNESS_MIN_COVERAGE",
        description="fairness_coverage warns below this share of candidates with a known value",
    )
    fairness_attributes: Annotated[tuple[str, ...], BeforeValidator(_to_attributes), KEEP_EMPTY] = (
        Field(
            PROTECTED_ATTRIBUTES,
            validation_alias="LTR_FAIRNESS_ATTRIBUTES",
            description="attributes gated, comma-separated; an empty value (or `none`) turns the "
            "fairness gate off on purpose",
        )
    )


class EventTimeBounds(BaseModel):
    """How far an event's own timestamp may stray from its source's clock before it is
    quarantined (the audit-log files and Kafka alike)."""

    model_config = _group_config()

    max_clock_skew_hours: Annotated[Float, Range(0, 24 * 366)] = Field(
        24.0,
        validation_alias="LTR_MAX_CLOCK_SKEW_HOURS",
        description="an event stamped this long after the end of the last day its source can "
        "hold (a file's last-modified day; Kafka: today) is quarantined as `future_timestamp`",
    )
    # the upper limit keeps the date arithmetic in range
    max_event_age_days: Annotated[Int, Range(1, 36_500)] = Field(
        30,
        validation_alias="LTR_MAX_EVENT_AGE_DAYS",
        description="an event stamped more than this many days before its source's clock where "
        "it arrived is quarantined as `old_timestamp` in the day it arrived",
    )

    @property
    def max_clock_skew(self) -> timedelta:
        return timedelta(hours=self.max_clock_skew_hours)

    @property
    def max_event_age(self) -> timedelta:
        return timedelta(days=self.max_event_age_days)


MIN_SAMPLE_CAP = 10_000
# Row caps: 0 (no cap) or at least MIN_SAMPLE_CAP rows (a sample of a few lists is no fit).
RowCap = Annotated[Int, Range(MIN_SAMPLE_CAP, 1e10, zero_off=True)]


class SampleCaps(BaseModel):
    """How many rows the steps of ltr_model that fit well on a sample use at most (0: no cap).

    Each capped step fits on a deterministic sample of whole lists (a fixed-seed draw, so the
    same window gives the same sample) when its input holds more rows than the cap, and on all
    of it otherwise: the caps bite only on big windows (a 14-day window at the demo's traffic
    holds about 100,000 rows). Validation, the evaluation and the gate always use every row.
    What each sample held is recorded in the version's metadata (`sampling`). Measured in
    benchmarks/README.md, "scale"."""

    model_config = _group_config()

    click_model_rows: RowCap = Field(
        200_000,
        validation_alias="LTR_CLICK_MODEL_MAX_ROWS",
        description="the click model (examination curve, γ) and the click-gain model fit on a "
        "deterministic sample of whole training and validation lists of at most this many rows",
    )
    weights_rows: RowCap = Field(
        200_000,
        validation_alias="LTR_WEIGHTS_MAX_ROWS",
        description="the distilled and pairwise derivations of the published weights fit on a "
        "deterministic sample of whole training lists of at most this many rows",
    )
    train_rows: RowCap = Field(
        200_000,
        validation_alias="LTR_TRAIN_MAX_ROWS",
        description="LambdaRank trains on a deterministic sample of whole training lists of at "
        "most this many rows; validation (early stopping) and the test lists are never sampled",
    )
    seed: int = 0  # the sample's draw (not a variable)


class KafkaSettings(BaseModel):
    """The Kafka source (KAFKA_*): read when KAFKA_BOOTSTRAP_SERVERS is set, else the audit-log
    files are the only source. `ltr_assets.ingest.kafka` reads the topic with it; the ranking
    service writes its events to the same topic with LTR_IMPRESSION_LOG=kafka
    (`ltr_serving.kafka_sink`)."""

    model_config = _group_config()

    bootstrap_servers: Annotated[Text, BeforeValidator(_to_brokers)] = Field(
        validation_alias="KAFKA_BOOTSTRAP_SERVERS",
        description="Kafka brokers, `host:port,…`; unset: the audit-log files only",
    )
    topic: Topic = Field(
        "match_events", validation_alias="KAFKA_TOPIC", description="topic of the platform's events"
    )
    group_id: Text = Field(
        "ltr-raw-events",
        validation_alias="KAFKA_GROUP_ID",
        description="consumer group whose offsets show lag",
    )
    security_protocol: KafkaSecurityProtocol = Field(
        "PLAINTEXT", validation_alias="KAFKA_SECURITY_PROTOCOL", description="how to reach brokers"
    )
    sasl_mechanism: Text = Field(
        "",
        validation_alias="KAFKA_SASL_MECHANISM",
        description="SASL mechanism (`PLAIN` when unset and the protocol is SASL_*)",
    )
    sasl_username: Annotated[Text, VERBATIM] = Field(
        "", validation_alias="KAFKA_SASL_USERNAME", description="SASL user name"
    )
    sasl_password: Annotated[SecretStr, VERBATIM] = Field(
        SecretStr(""), validation_alias="KAFKA_SASL_PASSWORD", description="SASL password"
    )
    ssl_cafile: PathText = Field(
        "", validation_alias="KAFKA_SSL_CAFILE", description="CA bundle for SSL / SASL_SSL"
    )
    ssl_certfile: PathText = Field(
        "", validation_alias="KAFKA_SSL_CERTFILE", description="client certificate (mutual TLS)"
    )
    ssl_keyfile: PathText = Field(
        "", validation_alias="KAFKA_SSL_KEYFILE", description="client key (mutual TLS)"
    )
    connect_timeout_s: Annotated[Float, Range(0.1, 600)] = Field(
        3.0,
        validation_alias="KAFKA_CONNECT_TIMEOUT_SECONDS",
        description="bound on reaching the broker before falling back to the files",
    )
    grace_minutes: Annotated[Int, Range(0, 24 * 60)] = Field(
        135,
        validation_alias="LTR_KAFKA_GRACE_MINUTES",
        description=(
            "how far past midnight a day's read goes for late arrivals (and how far before it,"
            " for record timestamps a little earlier than the events' own times)"
        ),
    )
    # More than the impressions of one recommendation list, which share a key and so a partition
    # and may all carry one wrong clock; one record past the window never ends a read (>= 2).
    stop_records: Annotated[Int, Range(2, 1_000_000)] = Field(
        100,
        validation_alias="LTR_KAFKA_STOP_RECORDS",
        description="a partition's read of D ends once this many records in a row are stamped "
        "past the end of D plus the grace; an event of D after that is quarantined as "
        "`late_event` where it arrived",
    )
    request_timeout_s: float = 40.0  # not variables
    stall_timeout_s: float = 60.0
    event_time: EventTimeBounds = Field(default_factory=EventTimeBounds)

    @property
    def grace(self) -> timedelta:
        return timedelta(minutes=self.grace_minutes)

    @property
    def max_clock_skew(self) -> timedelta:
        return self.event_time.max_clock_skew

    @property
    def max_event_age(self) -> timedelta:
        return self.event_time.max_event_age


class S3Settings(BaseModel):
    """The registry's S3 mirror (and the lake's S3 endpoint and region). Credentials come from
    the AWS SDK's own chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles, roles)."""

    model_config = _group_config()

    bucket: Text = Field(
        "",
        validation_alias="S3_BUCKET",
        description="bucket of the registry's mirror; unset: local only",
    )
    prefix: Text = Field("ltr", validation_alias="S3_PREFIX", description="key prefix")
    endpoint: Url = Field(
        "",
        validation_alias="S3_ENDPOINT",
        description="S3-compatible endpoint, e.g. MinIO's `http://minio:9000`; unset: AWS",
    )
    region: Text = Field(
        "us-east-1",
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION"),
        description="the S3 region (AWS_REGION, else AWS_DEFAULT_REGION)",
    )


class ServingSettings(BaseModel):
    """The ranking service (ltr_serving) and how the pipeline reaches it."""

    model_config = _group_config()

    url: Url = Field(
        "",
        validation_alias="LTR_SERVING_URL",
        description="base URL of the ranking service, for the reload sensors and `ltr`",
    )
    source: ServingSource = Field(
        "auto",
        validation_alias="LTR_SERVING_SOURCE",
        description="where serving reads versions: `file`, `s3`, or `auto` (S3 when S3_BUCKET "
        "is set)",
    )
    reload_token: Annotated[SecretStr, VERBATIM] = Field(
        SecretStr(""),
        validation_alias="LTR_RELOAD_TOKEN",
        description="bearer token for `POST /reload` (the sensors send it); unset disables "
        "reload over HTTP. To rotate it, list the new and the old one, comma-separated "
        "(`new,old`): the service accepts either, the sensors send the first (so a token "
        "cannot contain a comma)",
    )
    poll_seconds: Annotated[Float, Range(0.1, 86_400, zero_off=True)] = Field(
        300.0,
        validation_alias="WEIGHTS_POLL_SECONDS",
        description="how often serving looks for a new version (0: never)",
    )
    reload_timeout_s: Annotated[Float, Range(0.1, 3_600)] = Field(
        60.0,
        validation_alias="LTR_RELOAD_TIMEOUT_SECONDS",
        description="how long a reload may read the artifact before it is given up",
    )
    max_candidates: Annotated[Int, Range(1, MAX_CANDIDATES_LIMIT)] = Field(
        1000,
        validation_alias="LTR_MAX_CANDIDATES",
        description="largest candidate list `/rank` accepts (and the gate's latency test size)",
    )
    max_body_bytes: Annotated[
        Int, Range(1024, 1 << 30), Derived("64 KiB + 2 KiB × `LTR_MAX_CANDIDATES`")
    ] = Field(
        validation_alias="LTR_MAX_BODY_BYTES",
        description="largest `/rank` body; larger gets a 413 before parsing",
    )
    score_timeout_ms: Annotated[Float, Range(1, 600_000)] = Field(
        1000.0,
        validation_alias="LTR_SCORE_TIMEOUT_MS",
        description="how long `/rank` waits for a free model-scoring worker, and then for its "
        "answer; past either the request gets a 503",
    )
    impression_log: ImpressionLog = Field(
        "file",
        validation_alias="LTR_IMPRESSION_LOG",
        description="where serving logs one `match_recommendation` event per shown candidate "
        "and the `POST /feedback` events: `file` (JSONL under LTR_SERVING_LOG_DIR), `kafka` "
        "(records to KAFKA_TOPIC, which needs KAFKA_BOOTSTRAP_SERVERS; what Kafka does not "
        "take in time is written to the files instead), `off`",
    )
    impression_kafka_timeout_s: Annotated[Float, Range(0.1, 600)] = Field(
        5.0,
        validation_alias="LTR_IMPRESSION_KAFKA_TIMEOUT_SECONDS",
        description="with LTR_IMPRESSION_LOG=kafka: bound on connecting to Kafka, on handing it "
        "a record and on its acknowledgement; past it the events are spilled to the files "
        "under LTR_SERVING_LOG_DIR (/rank never waits on Kafka; /feedback answers once its "
        "events are acknowledged or spilled)",
    )
    impression_kafka_retry_s: Annotated[Float, Range(0.1, 86_400)] = Field(
        10.0,
        validation_alias="LTR_IMPRESSION_KAFKA_RETRY_SECONDS",
        description="with LTR_IMPRESSION_LOG=kafka: while Kafka is unreachable (events spilled "
        "to files), how often the service tries to connect again",
    )
    impression_queue: Annotated[Int, Range(1, 10_000_000)] = Field(
        10_000,
        validation_alias="LTR_IMPRESSION_QUEUE",
        description="requests waiting for the impression log's writer process; when full "
        "(the writer is behind), the serving process writes a request's events to a spill file "
        "itself, so nothing is dropped and `/rank` pays for that only while the writer is behind",
    )
    log_rotate_s: Annotated[Float, Range(0.1, 7_200)] = Field(
        300.0,
        validation_alias="LTR_SERVING_LOG_ROTATE_SECONDS",
        description="how long a serving-log file stays open (`.jsonl.part`) before it is "
        "completed as `.jsonl`, the only files raw_events reads (also completed at 64 MiB and at "
        "shutdown; one file is open per day of the events); `/feedback` refuses an event this "
        "long before its day's nightly read (02:15 UTC the next day) as `late_event`. At most "
        "2 hours, so a day's last file is complete before that read",
    )
    feedback_token: Annotated[SecretStr, VERBATIM] = Field(
        SecretStr(""),
        validation_alias="LTR_FEEDBACK_TOKEN",
        description="bearer token for `POST /feedback`; unset: the endpoint answers 503. To "
        "rotate it, list the new and the old one, comma-separated (`new,old`): either is "
        "accepted while the platform's producers move to the new one (so a token cannot "
        "contain a comma)",
    )
    explore_rate: Annotated[Float, Range(0, 1)] = Field(
        0.05,
        validation_alias="LTR_EXPLORE_RATE",
        description="share of `/rank` requests (chosen by a hash of the request id) shown with "
        "positions 1 and k swapped, k uniform in 2..LTR_EXPLORE_MAX_POSITION, to measure the "
        "position bias; 0: never",
    )
    interleave_rate: Annotated[Float, Range(0, 1)] = Field(
        0.2,
        validation_alias="LTR_INTERLEAVE_RATE",
        description="share of `/rank` requests (chosen by a hash of the request id, disjoint "
        "from the explored share) answered by team-draft interleaving of the live version and "
        "the canary candidate while one is loaded (otherwise served as the others); "
        "LTR_EXPLORE_RATE + LTR_INTERLEAVE_RATE must be at most 1",
    )
    explore_max_position: Annotated[Int, Range(2, 1000)] = Field(
        10,
        validation_alias="LTR_EXPLORE_MAX_POSITION",
        description="deepest position an exploration swap exchanges with position 1",
    )
    simulated_clock: Bool = Field(
        False,
        validation_alias="LTR_SIMULATED_CLOCK",
        description="for simulations of past days only: a `/rank` request's `X-LTR-Clock: <ISO "
        "timestamp>` header sets the time of the impressions it logs (otherwise the service's "
        "UTC clock; feedback events carry their own time, judged against a `/feedback` "
        "request's `X-LTR-Clock`, and not at all without one); refused when "
        "LTR_ENVIRONMENT=production",
    )

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        if isinstance(data, dict) and not _given(data, cls, "max_body_bytes"):
            field = cls.model_fields["max_candidates"]
            try:
                candidates = _to_int(_value(data, field, "max_candidates"))
            except ValueError:  # reported by max_candidates itself
                candidates = field.default
            if not isinstance(candidates, int) or not 1 <= candidates <= MAX_CANDIDATES_LIMIT:
                candidates = field.default  # out of range: reported by max_candidates alone
            size = default_max_body_bytes(candidates)
            data = {**data, "max_body_bytes": size}
        return data

    @model_validator(mode="after")
    def _rates(self) -> Self:
        if self.explore_rate + self.interleave_rate > 1.0 + 1e-12:
            raise ValueError(
                f"LTR_EXPLORE_RATE ({self.explore_rate:g}) + LTR_INTERLEAVE_RATE "
                f"({self.interleave_rate:g}) must be at most 1: their shares of requests are "
                "disjoint"
            )
        return self

    @property
    def reload_enabled(self) -> bool:
        return bool(bearer_tokens(self.reload_token))

    @property
    def feedback_enabled(self) -> bool:
        return bool(bearer_tokens(self.feedback_token))


def bearer_tokens(setting: SecretStr) -> tuple[str, ...]:
    """The tokens a bearer-token setting holds: one, or while it is rotated several,
    comma-separated, the new one first. The service accepts any of them; a client of the
    project's own (the reload sensor, `ltr registry`) sends the first."""
    return tuple(t.strip() for t in setting.get_secret_value().split(",") if t.strip())


def bearer_accepted(setting: SecretStr, given: str) -> bool:
    """Whether `given` is one of the setting's tokens, compared in constant time per token
    (digests of a fixed length, so not even a token's length leaks through timing)."""
    digest = hashlib.sha256(given.strip().encode()).digest()
    matches = [
        hmac.compare_digest(digest, hashlib.sha256(token.encode()).digest())
        for token in bearer_tokens(setting)
    ]
    return any(matches)


# --- the whole configuration --------------------------------------------------------------------


class Settings(BaseSettings):
    """The project's configuration: `Settings.from_env()` reads it (the environment over
    `$LTR_HOME/ltr.env`); `Settings.from_env(mapping)` reads a mapping instead (tests)."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    home: Annotated[Path, EXPAND] = Field(
        DEFAULT_HOME,
        validation_alias="LTR_HOME",
        description="root of local state (and of the env file `ltr.env`); environment only",
    )
    environment: Environment = Field(
        "development",
        validation_alias="LTR_ENVIRONMENT",
        description="`development` or `production`; production refuses settings meant for "
        "simulations only (LTR_SIMULATED_CLOCK)",
    )
    data_dir: Annotated[Path, EXPAND, Derived("`$LTR_HOME/lake`")] = Field(
        validation_alias=DATA_DIR_VARIABLE,
        description="the data lake: a folder, or `s3://bucket[/prefix]` for a lake shared on S3 "
        "(reached through S3_ENDPOINT, AWS_REGION and the AWS credential chain)",
    )
    # LTR_DATA_DIR when it is s3://bucket[/prefix] (normalized); "" for a local folder, then
    # data_dir is the lake; when set, data_dir is $LTR_HOME/lake (unused)
    lake_url: str = ""
    registry_dir: Annotated[Path, EXPAND, Derived("`$LTR_HOME/registry`")] = Field(
        validation_alias="LTR_REGISTRY_DIR",
        description="published versions and the `latest` pointer",
    )
    weights_path: Annotated[Path, EXPAND, Derived("`$LTR_HOME/models/ltr_weights.json`")] = Field(
        validation_alias="WEIGHTS_PATH", description="the flat live weights file"
    )
    serving_log_dir: Annotated[Path, EXPAND, Derived("`$LTR_HOME/serving-log`")] = Field(
        validation_alias="LTR_SERVING_LOG_DIR",
        description="where the ranking service writes the impressions and feedback it could not "
        "send to Kafka (or all of them with `LTR_IMPRESSION_LOG=file`), one folder per UTC day "
        "of JSONL files; `raw_events` reads a day's folder beside Kafka and the audit log",
    )
    audit_log: Annotated[PathText, Derived("`$LTR_HOME/events/*.jsonl`")] = Field(
        validation_alias="LTR_AUDIT_LOG",
        description="audit-log file or glob (a folder is refused: name its files)",
    )
    start_date: Annotated[Text, BeforeValidator(_to_date_text)] = Field(
        "2026-01-01",
        validation_alias="LTR_START_DATE",
        description="first daily partition, YYYY-MM-DD (read at code-location load)",
    )
    allow_empty_days: Annotated[EmptyDays, BeforeValidator(_to_empty_days)] = Field(
        default_factory=EmptyDays,
        validation_alias="LTR_ALLOW_EMPTY_DAYS",
        description="days whose raw_events may be empty, `2026-12-25,2026-12-26`, or `all`; "
        "unset: none (a day with no record from its source fails, naming the source)",
    )
    train_window_days: Annotated[Int, Range(1, 366)] = Field(
        14,
        validation_alias="LTR_TRAIN_WINDOW_DAYS",
        description="rolling training window (read at code-location load, and by each run)",
    )
    feedback_window_hours: Annotated[Int, Range(1, 24 * 31)] = Field(
        24,
        validation_alias="LTR_FEEDBACK_WINDOW_HOURS",
        description="feedback later than this after its impression is not counted",
    )
    quarantine_warn_ratio: Annotated[Float, Range(0, 1)] = Field(
        0.05,
        validation_alias="LTR_QUARANTINE_WARN_RATIO",
        description="the raw_events check warns above this share quarantined",
    )
    scorer: ScorerName = Field(
        "weights",
        validation_alias="LTR_SCORER",
        description="what serving runs and the gate evaluates",
    )
    debias: DebiasMethod = Field(
        "click_model",
        validation_alias="LTR_DEBIAS",
        description="position-bias correction in training",
    )
    propensity_curve: Annotated[tuple[float, ...], BeforeValidator(_to_floats)] = Field(
        (),
        validation_alias="LTR_PROPENSITY_CURVE",
        description="a pinned examination curve, `1,θ_2,θ_3,…` (in (0, 1], never increasing)",
    )
    propensity_method: Annotated[
        PropensityMethod, Derived("`auto` (`pinned` when a curve is given)")
    ] = Field(
        validation_alias="LTR_PROPENSITY_METHOD",
        description="how the examination curve is obtained: `regression_em` fits the click "
        "model; `auto` takes the click model's curve except at the positions that enough swap "
        "interventions measured (LTR_PROPENSITY_MIN_SWAPPED), the same as `regression_em` when "
        "the window has no swapped impression; `pinned` takes LTR_PROPENSITY_CURVE",
    )
    propensity_family: CurveFamilySetting = Field(
        "per_position",
        validation_alias="LTR_PROPENSITY_FAMILY",
        description="the family the click model fits the examination curve in: `power_law` "
        "(θ_k = k^-η, one exponent pooled over every position), `per_position` (a free θ per "
        "position), or `auto`: the power law unless the held-out lists show the free curve "
        "fits better (its per-list log-likelihood gain at least 2 standard errors above 0; not "
        "the default: it makes the gate's estimate worse at η 1, docs/benchmarks.md); the "
        "curve's metadata gives both families' held-out fit and the choice",
    )
    propensity_min_swapped: Annotated[Int, Range(1, 1_000_000_000)] = Field(
        1000,
        validation_alias="LTR_PROPENSITY_MIN_SWAPPED",
        description="LTR_PROPENSITY_METHOD=auto: the swapped impressions a position's "
        "intervention estimate must rest on to replace the click model's (both of each swap: "
        "a swap(1, k) counts two)",
    )
    propensity_clip: Annotated[Float, Range(0.001, 1)] = Field(
        0.05,
        validation_alias="LTR_PROPENSITY_CLIP",
        description="training with LTR_DEBIAS=ips: propensities below this count as this",
    )
    ips_max_weight: Annotated[Float, Range(1, 1_000_000)] = Field(
        5.0,
        validation_alias="LTR_IPS_MAX_WEIGHT",
        description="the gate's estimator: IPS up to this weight 1/θ, the click model past it "
        "(SWITCH); a large value gives plain IPS",
    )
    dask_scheduler: Text = Field(
        "",
        validation_alias="LTR_DASK_SCHEDULER",
        description="a Dask scheduler address (`tcp://host:8786`): ltr_model trains LambdaRank "
        "with lightgbm.dask on that cluster; unset: this machine",
    )
    num_threads: Annotated[Int, Range(1, 4096, zero_off=True)] = Field(
        0,
        validation_alias="LTR_NUM_THREADS",
        description="LightGBM threads per fit (0: all cores)",
    )
    keep_versions: Annotated[Int, Range(1, 100_000)] = Field(
        30,
        validation_alias="LTR_KEEP_VERSIONS",
        description="registry versions kept (plus latest, the candidate and the newest night's)",
    )
    live_max_age_days: Annotated[Int, Range(0, 36_500)] = Field(
        3,
        validation_alias="LTR_LIVE_MAX_AGE_DAYS",
        description="published_weights' WARN check `live_version_age` fails for day D when the "
        "live version was trained on a partition more than this many days before D, or before "
        "the newest night run when D is older (nights refused by the gate, or whose version "
        "never went live, make it older)",
    )
    rollout: Rollout = Field(
        "canary",
        validation_alias="LTR_ROLLOUT",
        description="how `published_weights` puts a gated version live: `canary` makes it the "
        "candidate (`candidate.json`; serving interleaves it with the live version and the daily "
        "`online_comparison` promotes or retires it), except the very first version, which goes "
        "straight to latest (nothing to compare with); `direct` moves latest at once",
    )
    interleave_min_requests: Annotated[Int, Range(1, 10_000_000)] = Field(
        200,
        validation_alias="LTR_INTERLEAVE_MIN_REQUESTS",
        description="interleaved requests with a click, summed over the candidate's days, that "
        "a promotion needs at least (`online_comparison`)",
    )
    interleave_min_evidence: Annotated[Int, Range(1, 10_000_000)] = Field(
        30,
        validation_alias="LTR_INTERLEAVE_MIN_EVIDENCE",
        description="of those, requests with a click where the two rankings differ (the win "
        "share's own requests) that a promotion needs at least: below, its interval is not "
        "to be trusted",
    )
    interleave_margin: Annotated[Float, Range(0, 0.49)] = Field(
        0.02,
        validation_alias="LTR_INTERLEAVE_MARGIN",
        description="a candidate is promoted when the lower 95% bound of its win share against "
        "live is at least 0.5 minus this (not worse by more than the margin)",
    )
    canary_max_days: Annotated[Int, Range(1, 365)] = Field(
        3,
        validation_alias="LTR_CANARY_MAX_DAYS",
        description="days, from the first on which serving interleaved the candidate, after "
        "which a candidate that is neither promoted nor shown worse is retired; while a day of "
        "them is not in the lake the comparison keeps collecting instead, naming the day",
    )
    notify_webhook_url: Annotated[SecretStr, BeforeValidator(_to_url), SECRET] = Field(
        SecretStr(""),
        validation_alias="NOTIFY_WEBHOOK_URL",
        description="Slack-compatible webhook for run notifications (its URL embeds a secret)",
    )
    signing_key: Annotated[
        SigningKey | None,
        BeforeValidator(_key_parser("LTR_ARTIFACT_SIGNING_KEY", single=True)),
        SECRET,
    ] = Field(
        None,
        validation_alias="LTR_ARTIFACT_SIGNING_KEY",
        description="`key_id:secret`: every version published is signed with it; unset: "
        "versions are not signed",
    )
    verify_keys: Annotated[
        tuple[SigningKey, ...],
        BeforeValidator(_key_parser("LTR_ARTIFACT_VERIFY_KEYS", single=False)),
        SECRET,
    ] = Field(
        (),
        validation_alias="LTR_ARTIFACT_VERIFY_KEYS",
        description="`key_id:secret[,…]`: the keys a signature may be made with; when set, a "
        "version without a valid signature by one of them is refused",
    )
    gate: GateThresholds = Field(default_factory=GateThresholds)
    event_time: EventTimeBounds = Field(default_factory=EventTimeBounds)
    sample_caps: SampleCaps = Field(default_factory=SampleCaps)
    kafka: KafkaSettings | None = None  # None when KAFKA_BOOTSTRAP_SERVERS is unset
    s3: S3Settings = Field(default_factory=S3Settings)
    serving: ServingSettings = Field(default_factory=lambda: ServingSettings.model_validate({}))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the environment over `$LTR_HOME/ltr.env`."""
        return init_settings, EnvironmentSource(settings_cls, layered_env(os.environ))

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """The settings from the environment over `$LTR_HOME/ltr.env`, or from `env` alone (an
        explicit mapping is the whole configuration: no file beneath it). ConfigError names the
        variable of a bad value."""
        try:
            if env is None:
                return cls()
            return cls(_build_sources=((EnvironmentSource(cls, env),), {}))
        except ValidationError as exc:
            raise ConfigError(describe_errors(exc)) from None

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data: Any) -> Any:
        """The defaults computed from other variables: the paths under LTR_HOME, the lake on S3,
        the propensity method."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        home = Path(str(_value(data, cls.model_fields["home"], "home")))
        under_home = {
            "registry_dir": home / "registry",
            "weights_path": home / "models" / "ltr_weights.json",
            "serving_log_dir": home / "serving-log",
            "audit_log": str(home / "events" / "*.jsonl"),
        }
        for name, default in under_home.items():
            if not _given(data, cls, name):
                data[name] = default
        if not _given(data, cls, "data_dir"):
            data["data_dir"] = home / "lake"
        else:
            alias, raw = _given_item(data, cls, "data_dir")
            if isinstance(raw, str) and looks_like_url(raw) and not is_s3_url(raw):
                raise ConfigError(
                    f"{alias}={raw!r} must be a folder or s3://bucket[/prefix] (a URL of "
                    "another form would be taken for a local folder named like it)"
                )
            if isinstance(raw, str) and is_s3_url(raw):
                try:
                    data["lake_url"] = normalize_s3_url(raw)
                except ValueError:
                    raise ConfigError(
                        f"{alias}={raw!r} must be a folder or s3://bucket[/prefix]"
                    ) from None
                data.pop(alias)
                data["data_dir"] = home / "lake"
        if not _given(data, cls, "propensity_method"):
            curve = _given(data, cls, "propensity_curve")
            data["propensity_method"] = "pinned" if curve else "auto"
        return data

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.serving.simulated_clock and self.environment == "production":
            raise ValueError(
                "LTR_SIMULATED_CLOCK=true lets clients set the time of logged events; it is "
                "refused when LTR_ENVIRONMENT=production"
            )
        if self.serving.impression_log == "kafka" and self.kafka is None:
            raise ValueError(
                "LTR_IMPRESSION_LOG=kafka needs KAFKA_BOOTSTRAP_SERVERS (the brokers of "
                "KAFKA_TOPIC, which the pipeline's raw_events reads)"
            )
        if self.propensity_method == "pinned" and not self.propensity_curve:
            raise ValueError("LTR_PROPENSITY_METHOD=pinned needs LTR_PROPENSITY_CURVE (θ_1,θ_2,…)")
        if self.dask_scheduler and self.debias == "lightgbm_position":
            raise ValueError(
                "LTR_DASK_SCHEDULER cannot be used with LTR_DEBIAS=lightgbm_position "
                "(lightgbm.dask takes no positions)"
            )
        signing = self.signing_key
        for key in self.verify_keys:
            if signing is not None and key.key_id == signing.key_id and key != signing:
                raise ValueError(
                    f"key id {key.key_id!r} has one secret in LTR_ARTIFACT_SIGNING_KEY and "
                    "another in LTR_ARTIFACT_VERIFY_KEYS"
                )
        return self

    @property
    def artifact_keys(self) -> ArtifactKeys:
        """LTR_ARTIFACT_SIGNING_KEY and LTR_ARTIFACT_VERIFY_KEYS (repr: key ids only)."""
        return ArtifactKeys(self.signing_key, self.verify_keys)

    @property
    def first_day(self) -> date:
        """LTR_START_DATE as a date: the first daily partition (no read takes a day before)."""
        return date.fromisoformat(self.start_date)

    @property
    def serving_store(self) -> Literal["file", "s3"]:
        """Where serving reads versions: LTR_SERVING_SOURCE, `auto` resolved by S3_BUCKET."""
        if self.serving.source == "auto":
            return "s3" if self.s3.bucket else "file"
        return self.serving.source


def _given(data: Mapping[str, Any], model: type[BaseModel], name: str) -> bool:
    return _given_item(data, model, name)[0] != ""


def _given_item(data: Mapping[str, Any], model: type[BaseModel], name: str) -> tuple[str, Any]:
    """(the key under which the field `name` is given in `data`, its value), or ("", None)."""
    for key in (*aliases(model.model_fields[name]), name):
        if key in data:
            return key, data[key]
    return "", None


def _value(data: Mapping[str, Any], field: FieldInfo, name: str) -> Any:
    for key in (*aliases(field), name):
        if key in data:
            return data[key]
    return field.default


# --- the schema, walked: names, groups, markers -------------------------------------------------


def aliases(field: FieldInfo) -> tuple[str, ...]:
    """The environment names of a field, in order of preference (none for a group)."""
    alias = field.validation_alias
    if isinstance(alias, str):
        return (alias,)
    if isinstance(alias, AliasChoices):
        return tuple(choice for choice in alias.choices if isinstance(choice, str))
    return ()


def group_of(field: FieldInfo) -> type[BaseModel] | None:
    """The model of a group field (`KafkaSettings | None` too), or None for a variable."""
    annotation = field.annotation
    candidates = (
        get_args(annotation)
        if get_origin(annotation) in (Union, types.UnionType)
        else (annotation,)
    )
    for candidate in candidates:
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def has_marker(field: FieldInfo, marker: object) -> bool:
    return any(item == marker for item in field.metadata)


def is_secret(field: FieldInfo) -> bool:
    return field.annotation is SecretStr or has_marker(field, SECRET)


def variables(model: type[BaseModel] = Settings) -> Iterator[tuple[str, FieldInfo]]:
    """Every (environment name, field) of the schema, groups included, each name once."""
    seen: set[str] = set()
    for field in model.model_fields.values():
        group = group_of(field)
        items = variables(group) if group else ((name, field) for name in aliases(field))
        for name, item in items:
            if name not in seen:
                seen.add(name)
                yield name, item


def _range(field: FieldInfo) -> Range | None:
    return next((item for item in field.metadata if isinstance(item, Range)), None)


KNOWN_VARIABLES = frozenset(name for name, _ in variables())
# Every numeric variable's range, from the schema.
RANGES: dict[str, Range] = {
    name: found for name, field in variables() if (found := _range(field)) is not None
}
# The variables whose values are secrets: an error about one never shows its value.
SECRETS = frozenset(name for name, field in variables() if is_secret(field)) | EXTERNAL_SECRETS


# --- the source: a flat environment, routed to the schema's groups ------------------------------


class EnvironmentSource(PydanticBaseSettingsSource):
    """A flat mapping of environment variables as the schema's input: each variable under its
    field's alias, each group given the variables of its fields (a group that is optional, like
    Kafka, only when one of its required variables is set). Values are stripped (unless
    VERBATIM), a blank value is the default (unless KEEP_EMPTY), and `$NAME` references in path
    values (EXPAND) are expanded from the same mapping."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self.env = env

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # __call__ reads the whole mapping at once

    def __call__(self) -> dict[str, Any]:
        return self._route(self.settings_cls)

    def _route(self, model: type[BaseModel]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for name, field in model.model_fields.items():
            group = group_of(field)
            if group is not None:
                routed = self._route(group)
                if field.is_required() or field.default is not None or _complete(group, routed):
                    data[name] = routed
                continue
            for alias in aliases(field):
                if alias in self.env:
                    value = self._read(alias, field)
                    if value is not None:
                        data[alias] = value
        return data

    def _read(self, name: str, field: FieldInfo) -> str | None:
        raw = self.env[name]
        if not raw.strip() and not has_marker(field, KEEP_EMPTY):
            return None
        value = raw if has_marker(field, VERBATIM) else raw.strip()
        if not has_marker(field, EXPAND):
            return value
        path = expand_home(name, expand(name, value, self.env), self.env)
        if name != DATA_DIR_VARIABLE and looks_like_url(path):  # the lake alone may be on S3
            raise ConfigError(
                f"{name}={path!r} must be a local path, not a URL (only {DATA_DIR_VARIABLE} "
                "may be s3://bucket[/prefix]; the registry's mirror is S3_BUCKET)"
            )
        return path


def _complete(group: type[BaseModel], routed: Mapping[str, Any]) -> bool:
    """Whether every required variable of an optional group is given."""
    required = [f for f in group.model_fields.values() if f.is_required() and aliases(f)]
    return bool(required) and all(
        any(alias in routed for alias in aliases(field)) for field in required
    )


_REFERENCE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*)|(\$)|)")


def expand(name: str, raw: str, env: Mapping[str, str]) -> str:
    """A path value with `$NAME` and `${NAME}` replaced by the variables' values in `env` (`$$`
    is a `$`), as a shell would: a reference is never kept literally, so a variable that is not
    set, or a `$` that starts no reference, is refused naming both. `$LTR_HOME` unset is its
    default (the configuration reference shows the paths' defaults as `$LTR_HOME/...`)."""
    env = {"LTR_HOME": str(DEFAULT_HOME), **env}

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


def expand_home(name: str, path: str, env: Mapping[str, str]) -> str:
    """`~` and `~/…` at a path's start as a shell expands them, to $HOME (from `env`, else the
    process's): a compose file or a Kubernetes manifest passes `~` on unexpanded, and a folder
    named `~` in the working directory is never what was meant. `~user` is refused."""
    if not path.startswith("~"):
        return path
    head, sep, rest = path.partition("/")
    if head != "~":
        raise ConfigError(f"{name}={path!r}: only ~ or ~/… is expanded (write the full path)")
    # HOME set but empty is refused (a shell would make `~/x` `/x`); unset, the account's
    # home directory, as a shell does
    home = env["HOME"].strip() if "HOME" in env else os.path.expanduser("~")
    if home in ("", "~"):
        raise ConfigError(f"{name}={path!r}: ~ needs HOME to be set (it is empty)")
    return home.rstrip("/") + sep + rest if rest or sep else home


# a value's credentials: everything up to its last `@`, after a URL's scheme
_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)?.*@", re.DOTALL)


def _shown(name: str, raw: object) -> str:
    """`NAME='value'` for an error message; a secret's value is never shown, nor the part of
    any value before an `@` (`user:password@host`, wherever a variable holds one)."""
    if name in SECRETS:
        return f"{name}=<secret>"
    if isinstance(raw, str) and "@" in raw:
        hidden = _USERINFO.sub(r"\1<hidden>@", raw)
        return f"{name}={hidden!r}"
    return f"{name}={raw!r}"


def describe_errors(error: ValidationError) -> str:
    """One line per bad value, each naming its variable (never a secret's value)."""
    lines = []
    for item in error.errors(include_url=False):
        location = [part for part in item["loc"] if isinstance(part, str)]
        name = location[-1] if location else ""
        context = item.get("ctx") or {}
        if item["type"] == "value_error":
            message = str(context.get("error", item["msg"]))
        elif item["type"] == "literal_error":
            message = f"must be one of {context.get('expected', '')}"
        else:
            message = item["msg"]
        if name not in KNOWN_VARIABLES or message.startswith(name):
            lines.append(message)  # a rule across variables, or a message naming its own
        else:
            separator = "" if message.startswith(":") else " "
            lines.append(f"{_shown(name, item['input'])}{separator}{message}")
    return "; ".join(lines)


# --- the env file -------------------------------------------------------------------------------


def env_file_path(env: Mapping[str, str]) -> Path:
    """Where the env file lives: `$LTR_HOME/ltr.env` (LTR_HOME from the real environment)."""
    raw = env.get("LTR_HOME", "").strip()
    home = expand_home("LTR_HOME", expand("LTR_HOME", raw, env), env) if raw else DEFAULT_HOME
    return Path(home) / ENV_FILE


def _warn_unknown(path: Path, number: int, key: str) -> None:
    """Log an `LTR_*` variable of the env file that the project does not read, once per
    process: the file is read each time the settings are."""
    if (str(path), key) in _WARNED:
        return
    _WARNED.add((str(path), key))
    log.warning("%s:%d: %s is not a variable the project reads (a typo?)", path, number, key)


_WARNED: set[tuple[str, str]] = set()


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
            _warn_unknown(path, number, key)
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
