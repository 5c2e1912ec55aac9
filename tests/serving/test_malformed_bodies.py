"""Bodies that are not JSON, or not UTF-8 text, anywhere in them: a 422 like any other malformed
body, from a real server process, and the request pipelined behind it on the same connection is
answered."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from urllib.parse import urlparse

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ltr_core import codec
from ltr_core.features import FEATURES
from ltr_core.settings import Settings
from tests.support.serving import (
    TOKEN,
    Publisher,
    ServerProcess,
    metric_value,
    rank_body,
    weights_for,
)

GOOD = orjson.dumps(rank_body(3))
VALID = orjson.dumps(
    {
        "case_id": "c-1",
        "candidates": [
            {
                "lawyer_id": "l-1",
                "features": dict.fromkeys(FEATURES, 0.5),
                "protected_attributes": {"gender": "x"},
            }
        ],
    }
)

# Not UTF-8, in every position a body can hold bytes: string values, keys, ids, feature names,
# attribute values, between tokens, and a whole body in another encoding.
NOT_UTF8 = {
    "invalid byte in a value": VALID.replace(b'"c-1"', b'"c-\xff"'),
    "invalid byte in a key": VALID.replace(b'"case_id"', b'"case_\xffid"'),
    "truncated sequence at a string's end": VALID.replace(b'"c-1"', b'"c-1\xc3"'),
    "encoded surrogate": VALID.replace(b'"l-1"', b'"l-\xed\xa0\x80"'),
    "overlong encoding": VALID.replace(b'"l-1"', b'"l-\xc0\x80"'),
    "past U+10FFFF": VALID.replace(b'"l-1"', b'"\xf4\x90\x80\x80"'),
    "in a feature name": VALID.replace(f'"{FEATURES[0]}"'.encode(), b'"\xfe"'),
    "in an attribute value": VALID.replace(b'"x"', b'"\x80"'),
    "between tokens": VALID.replace(b'"candidates"', b'\xff"candidates"'),
    "latin-1 text": VALID.decode().replace("c-1", "caf\u00e9").encode("latin-1"),
}


def _request(path: str, body: bytes, headers: str = "") -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{headers}\r\n"
    )
    return head.encode() + body


def _responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """Read `count` HTTP/1.1 responses (each with a Content-Length) from one connection."""
    buffer = b""
    answers: list[tuple[int, bytes]] = []
    while len(answers) < count:
        while b"\r\n\r\n" not in buffer:
            chunk = sock.recv(65536)
            assert chunk, f"the server closed the connection after {len(answers)} answer(s)"
            buffer += chunk
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        fields = dict(line.lower().split(": ", 1) for line in lines[1:])
        length = int(fields["content-length"])
        while len(buffer) < length:
            chunk = sock.recv(65536)
            assert chunk, "the server closed the connection mid-answer"
            buffer += chunk
        answers.append((int(lines[0].split()[1]), buffer[:length]))
        buffer = buffer[length:]
    return answers


def _pipelined(server: ServerProcess, *requests: bytes) -> list[tuple[int, bytes]]:
    url = urlparse(server.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(b"".join(requests))  # one write: the second waits behind the first
        return _responses(sock, len(requests))


def test_a_body_that_is_not_utf8_anywhere_is_a_422_and_the_next_request_is_answered(
    serving_env: Callable[..., Settings],
    publisher: Publisher,
    start_server_process: Callable[[], ServerProcess],
) -> None:
    serving_env()
    version = publisher.publish(weights_for(1))
    server = start_server_process()
    for name, body in NOT_UTF8.items():
        with pytest.raises(UnicodeDecodeError):
            body.decode()
        (status, answer), (next_status, next_answer) = _pipelined(
            server, _request("/rank", body), _request("/rank", GOOD)
        )
        assert status == 422, (name, answer)
        detail = json.loads(answer)["detail"]
        assert detail[0]["type"] == "json_invalid" and detail[0]["loc"] == ["body"], name
        assert "not UTF-8" in detail[0]["msg"] and detail[0]["input"] is None, name
        assert next_status == 200, (name, next_answer)
        assert json.loads(next_answer)["version"] == version
    # /reload reads no body: whatever bytes it carries, it answers on its own terms
    auth = f"Authorization: Bearer {TOKEN}\r\n"
    (status, answer), (next_status, _) = _pipelined(
        server,
        _request("/reload", NOT_UTF8["invalid byte in a value"], auth),
        _request("/rank", GOOD),
    )
    assert (status, next_status) == (200, 200), answer
    with server.client() as client:
        metrics = client.get("/metrics").text
    labels = 'method="POST",route="/rank",status="500"'
    assert metric_value(metrics, "ltr_http_request_duration_seconds_count", labels) == 0.0
    assert server.process.poll() is None


@settings(max_examples=300, deadline=None)
@given(
    position=st.integers(min_value=0, max_value=len(VALID)),
    junk=st.binary(min_size=1, max_size=4),
)
def test_any_bytes_anywhere_give_a_request_or_a_422_never_another_error(
    position: int, junk: bytes
) -> None:
    """The codec's contract, over bytes inserted at any position of a valid body."""
    body = VALID[:position] + junk + VALID[position:]
    try:
        codec.parse_request(body, 1000)
    except codec.RequestError as refused:
        assert refused.errors and all(e["loc"][0] == "body" for e in refused.errors)
