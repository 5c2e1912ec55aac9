"""Response and status bodies of the ranking service (pydantic v2); the request body is
`ltr_core.rank_api`, shared with the pipeline's latency gate."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainValidator, WithJsonSchema
from pydantic_core import PydanticCustomError

from ltr_core.codec import CONTROL_MESSAGE, has_control_characters
from ltr_core.rank_api import ID_MAX_LENGTH, IMPRESSION_ID_PREFIX
from ltr_core.vocabulary import LoggingPolicy


class RankedCandidate(BaseModel):
    lawyer_id: str
    rank: int = Field(description="1-based position")
    score: float = Field(
        description="the score of the version that placed the candidate: the served version's, "
        "except in an `interleaved` answer, where each candidate carries the score of the team "
        "(live or canary candidate) that picked it, so that list need not be in score order"
    )
    contributions: dict[str, float] | None = Field(
        default=None,
        description="weight × value per feature, only with explain=true and the weights scorer "
        "(they sum to the score); absent otherwise",
    )


class RankResponse(BaseModel):
    case_id: str
    version: str = Field(description="the artifact version that ranked this request")
    scorer: str
    request_id: str = Field(
        description="the request's id: the client's `request_id`, else one the service made "
        "(`r-` and 32 hex digits); every logged impression carries it"
    )
    policy: LoggingPolicy = Field(
        description="`swap`: an exploration request, positions 1 and k exchanged "
        "(LTR_EXPLORE_RATE); `interleaved`: team-draft interleaving of the live version and "
        "the canary candidate (LTR_INTERLEAVE_RATE, while a candidate is loaded); "
        "`deterministic`: ordered by score"
    )
    candidates: list[RankedCandidate]


class ReloadAttemptOut(BaseModel):
    at: datetime
    trigger: str
    ok: bool
    version: str | None
    previous_version: str | None
    error: str | None
    duration_ms: float


class ScoringHealth(BaseModel):
    """The pool that scores /rank with the model scorer (the weights scorer needs none)."""

    workers: int
    busy: int = Field(description="workers scoring a request now")
    waiting: int = Field(
        description="requests waiting for a worker (in line, within LTR_SCORE_TIMEOUT_MS)"
    )
    stuck: int = Field(
        description="workers still running a request that already failed with a timeout"
    )
    timeout_ms: float = Field(description="LTR_SCORE_TIMEOUT_MS")


class KafkaSinkHealth(BaseModel):
    """The Kafka sink (LTR_IMPRESSION_LOG=kafka)."""

    state: str = Field(
        description="connecting (at startup) | connected (events go to Kafka) | spilling (Kafka "
        "did not take them in time: they go to the files under LTR_SERVING_LOG_DIR, and the "
        "sink reconnects every LTR_IMPRESSION_KAFKA_RETRY_SECONDS) | closed"
    )
    since: datetime = Field(description="when the sink entered this state")
    topic: str
    bootstrap_servers: str
    sent: int = Field(description="events acknowledged by Kafka")
    spilled: int = Field(description="events written to the files instead")
    lost: int = Field(description="events neither sent nor spilled (the files failed too)")
    in_flight: int = Field(
        description="events on their way to Kafka: neither acknowledged nor spilled yet"
    )
    last_error: str | None
    last_error_at: datetime | None


class EventLogHealth(BaseModel):
    """The impression and feedback log (LTR_IMPRESSION_LOG)."""

    requested: str = Field(description="LTR_IMPRESSION_LOG: file | kafka | off")
    sink: str = Field(description="the sink writing: file or kafka")
    queue_depth: int = Field(description="records waiting to be written")
    queue_capacity: int = Field(description="LTR_IMPRESSION_QUEUE")
    logged_impressions: int
    logged_feedback: int
    dropped: int = Field(description="events dropped because the queue was full")
    failed: int = Field(description="events the sink failed to write")
    writer_restarts: int = Field(
        default=0,
        description="times the writer process was found gone and replaced (what it had not "
        "confirmed was handed to the new one)",
    )
    last_error: str | None
    last_error_at: datetime | None
    kafka: KafkaSinkHealth | None = Field(
        default=None, description="the Kafka sink's state; null for the file sink"
    )


class CandidateHealth(BaseModel):
    """The canary candidate (`candidate.json`) and the interleaving that compares it."""

    state: Literal["none", "loaded", "refused", "unavailable"] = Field(
        description="none (no candidate.json) | loaded (interleaved) | refused (invalid: the "
        "live version serves alone) | unavailable (could not be read; retried)"
    )
    version: str | None
    loaded_at: datetime | None
    origin: str | None
    error: str | None = Field(description="why the candidate was refused or unreadable")
    interleave_rate: float = Field(description="LTR_INTERLEAVE_RATE")
    interleaving: bool = Field(description="whether requests are being interleaved now")


class HealthResponse(BaseModel):
    status: str = Field(
        description="ok | degraded (last reload or poll refused or failed, or an event-log "
        "error in the last 5 minutes) | unavailable"
    )
    version: str | None
    scorer: str
    loaded_at: datetime | None
    source: str | None = Field(description="file or s3")
    origin: str | None
    partition: str | None
    last_reload: ReloadAttemptOut | None
    last_reload_error: str | None
    poll_seconds: float
    reload_enabled: bool
    scoring: ScoringHealth
    reload_stuck_since: datetime | None = Field(
        default=None,
        description="set while a reload's read has outlived LTR_RELOAD_TIMEOUT_SECONDS "
        "(a stalled store); reloads are answered 503 until it returns",
    )
    event_log: EventLogHealth | None = Field(
        default=None, description="the impression and feedback log; null when off"
    )
    candidate: CandidateHealth | None = Field(
        default=None, description="the canary candidate and the interleaving rate"
    )


class ReloadResponse(BaseModel):
    reloaded: bool
    version: str | None
    previous_version: str | None
    error: str | None
    candidate_state: Literal["none", "loaded", "refused", "unavailable"] = Field(
        default="none",
        description="the canary candidate after this reload (a refused candidate never fails "
        "the reload: the live version serves alone)",
    )
    candidate_version: str | None = None
    candidate_error: str | None = None


class ValidationErrorItem(BaseModel):
    type: str
    loc: list[str | int] = Field(
        description='where, e.g. ["body", "candidates", 2, "features", "A"]'
    )
    msg: str
    input: Any = Field(default=None, description="the offending value when it is a scalar")


class ValidationErrorResponse(BaseModel):
    """422: the request body is invalid (FastAPI's shape)."""

    detail: list[ValidationErrorItem]


class ErrorResponse(BaseModel):
    """An error with its reason: 401, 403, 409, 415 and 503 answers."""

    detail: str


class BodyTooLargeResponse(BaseModel):
    """413: the body is larger than LTR_MAX_BODY_BYTES; it was not read further nor parsed."""

    detail: str
    limit_bytes: int


# ids as /rank takes them (an impression's ids came through /rank): at most ID_MAX_LENGTH
# characters, no control characters
def _no_control_characters(text: str) -> str:
    if has_control_characters(text):
        raise ValueError(CONTROL_MESSAGE)
    return text


_FeedbackId = Annotated[
    str, Field(max_length=ID_MAX_LENGTH), AfterValidator(_no_control_characters)
]
_ID_JSON_SCHEMA = {"type": "string", "maxLength": ID_MAX_LENGTH}
# the integers JSON parsers read exactly as integers (signed or unsigned 64-bit)
_ID_INTEGER_JSON_SCHEMA = {"type": "integer", "minimum": -(2**63), "maximum": 2**64 - 1}


def _a_feedback_event_id(text: str) -> str:
    """The ingest strips white space at either end of an id, so "fb-1" and " fb-1" would be
    one event there (one kept, the other lost as a conflict): refused, as /rank refuses such
    ids. An impression's id (`imp-…`) is refused too."""
    if text.strip() != text:
        raise ValueError("event_id must not have white space at either end (the ingest strips it)")
    if text.startswith(IMPRESSION_ID_PREFIX):
        raise ValueError(
            f"event_id must not start with {IMPRESSION_ID_PREFIX!r}: the service names its "
            "impression events so, and the ingest keeps one event per id"
        )
    return text


def _id_or_integer(value: object) -> str | int:
    """An id the ingest also takes as an integer (case and lawyer ids). One validator, not a
    union: a union reports each member's failure, under loc entries named after pydantic's
    internal validators, so a client read two errors for one bad id."""
    if type(value) is int:
        return value
    if type(value) is float:  # a fraction, or an integer past 64 bits (read as a float)
        raise PydanticCustomError(
            "id_type",
            "Input should be a string or an integer of at most 64 bits: the pipeline's ingest "
            "refuses any other number as an id; send ids as strings",
        )
    if type(value) is not str:
        raise PydanticCustomError("id_type", "Input should be a string or an integer")
    if len(value) > ID_MAX_LENGTH:
        raise PydanticCustomError(
            "string_too_long",
            "String should have at most {max_length} characters",
            {"max_length": ID_MAX_LENGTH},
        )
    if has_control_characters(value):
        raise PydanticCustomError("value_error", CONTROL_MESSAGE)
    return value


_FeedbackIdOrInteger = Annotated[
    str | int,
    PlainValidator(_id_or_integer),
    WithJsonSchema({"anyOf": [_ID_JSON_SCHEMA, _ID_INTEGER_JSON_SCHEMA]}),
]


class FeedbackEvent(BaseModel):
    """One `offer_feedback` event, in the flat envelope the pipeline's ingest reads; it is
    logged with every key it was sent with (other keys included), as compact JSON with the
    values the ingest reads (a number is a 64-bit integer or a double: a larger integer in
    another key is logged as a double), after the ingest's own validation. Within one batch,
    an `event_id` names one event: a second, different event under it is refused."""

    model_config = ConfigDict(extra="allow")

    event_type: Literal["offer_feedback"]
    timestamp: str | float = Field(
        description="when the user acted: ISO 8601 (Z, an offset; naive is UTC) or epoch "
        "seconds/milliseconds; the log folder is its UTC day. Refused (`late_event`) once that "
        "day's nightly read (02:15 UTC the next day, less LTR_SERVING_LOG_ROTATE_SECONDS) has "
        "come: no scheduled run would read it"
    )
    case_id: Annotated[_FeedbackIdOrInteger, Field(description="the case the ranking was for")]
    lawyer_id: Annotated[_FeedbackIdOrInteger, Field(description="the lawyer acted upon")]
    action: Literal["decline", "click", "contact", "contract"]
    request_id: _FeedbackId | None = Field(
        default=None, description="the /rank response's request_id the feedback answers"
    )
    event_id: Annotated[_FeedbackId, AfterValidator(_a_feedback_event_id)] | None = Field(
        default=None,
        description="the client's id (dedup key; not starting with `imp-`, the service's "
        "impression ids; no white space at either end); derived from the content if absent",
    )


class FeedbackResponse(BaseModel):
    """200: every event was logged. 422: `rejected` events were not (each named in `detail`
    with its field, loc ["body", index, field] in a batch); the `accepted` ones were logged."""

    accepted: int
    rejected: int
    detail: list[ValidationErrorItem] = Field(default_factory=list)
