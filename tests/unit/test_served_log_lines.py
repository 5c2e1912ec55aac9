"""The impression log repeats what was scored: a features object with a key given twice (the
last value is the one scored) is logged with the scored values, not the body's text."""

from __future__ import annotations

import orjson

from ltr_core.codec import Exploration, parse_request, parse_served
from ltr_core.features import FEATURES
from ltr_serving.impressions import ImpressionRecord, impression_events
from ltr_serving.log_process import decode_record, encode_record

REST = ",".join(f'"{name}":0.5' for name in FEATURES[1:])


def _body(features: str) -> bytes:
    return (
        '{"case_id":"c-1","candidates":[{"lawyer_id":"l-1","features":{' + features + "}}]}"
    ).encode()


def _logged(body: bytes) -> list[dict[str, object]]:
    parsed = parse_request(body, 10)
    record = ImpressionRecord(
        parsed, "r-1", "deterministic", [0], [0.5], "20261101_000000", 1.8e9, Exploration(0.0, 10)
    )
    record.body = body
    written = decode_record(encode_record(record)[4:])  # what the writer process reads
    assert isinstance(written, ImpressionRecord)
    return impression_events(written)


def test_a_key_given_twice_is_logged_with_the_value_scored() -> None:
    body = _body(f'"{FEATURES[0]}":5.0,"{FEATURES[0]}":0.25,' + REST)
    assert parse_request(body, 10).matrix[0, 0] == 0.25  # scored: the last one
    assert parse_served(body, fast=True).raw_features is None  # not repeated as written
    (event,) = _logged(body)
    assert event["features"] == {FEATURES[0]: 0.25, **dict.fromkeys(FEATURES[1:], 0.5)}


def test_an_ordinary_body_is_logged_as_its_text() -> None:
    body = _body(f'"{FEATURES[0]}":1,' + REST)
    served = parse_served(body, fast=True)
    assert served.raw_features is not None and bytes(served.raw_features[0]).startswith(b'{"A":1,')
    (event,) = _logged(body)
    assert orjson.loads(orjson.dumps(event["features"]))[FEATURES[0]] == 1
