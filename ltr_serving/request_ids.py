"""The request ids the service answered lately, so that one reused for another list is refused
(409) and a retry of the same request is answered without being logged twice.

A `request_id` names one recommendation list: the impression log derives every event id from it
and the lawyer id, the pipeline groups a list's impressions by it and matches feedback to them
by it. Two lists under one id would give events with the same id and other content (the ingest
keeps one copy and reports the rest as conflicts, so an impression would be lost) and one query
group holding two cases. So the service remembers, per id, a fingerprint of its list (the case,
`top_k`, and each candidate's id, features and protected attributes, in any order) and what
answered it (the live version and the canary). The same list again, answered by the same
versions, is a retry: answered as before (the order depends only on the list, the versions and
the id) and not logged again, since the first answer's events already stand for it, with their
own timestamps. Anything else under a remembered id is a 409: another list, or the same list
after the versions changed (its answer could differ from the list that was logged).

Ids the service makes are remembered too, without a fingerprint (a cost every request would
pay): a client that sends one back is refused, since the list it named
was answered already and a new showing needs a new id. The memory is per server process and
bounded (the last `capacity` ids; the oldest is forgotten first), so a reuse across replicas,
restarts or more than `capacity` requests apart is not caught here; the ingest's
`duplicate_conflicts` check reports it then.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Literal

import msgspec
import numpy as np

from ltr_core.codec import ParsedRequest, attributes_dict

DEFAULT_CAPACITY = 100_000
Admission = Literal["new", "retry", "reused"]


def list_fingerprint(parsed: ParsedRequest) -> int:
    """A hash of the list a request asks for, the same whatever order its candidates come in
    (one sort by the ids' hashes)."""
    keys = np.fromiter(map(hash, parsed.ids), dtype=np.int64, count=len(parsed.ids))
    order = np.argsort(keys, kind="stable")
    attributes = b""
    if parsed.attributes is not None:
        values = [parsed.attributes[i] for i in order]  # msgspec structs, or pydantic models
        attributes = msgspec.json.encode(
            values if parsed.fast else [attributes_dict(v) for v in values]
        )
    matrix = parsed.matrix[order].tobytes()
    return hash((parsed.case_id, parsed.top_k, keys[order].tobytes(), matrix, attributes))


class RecentRequestIds:
    """request id -> (its list's fingerprint, None for an id the service made; the versions
    that answered it)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._seen: OrderedDict[str, tuple[int | None, tuple[str, str | None]]] = OrderedDict()

    def admit(
        self, request_id: str, fingerprint: int | None, answered_by: tuple[str, str | None]
    ) -> Admission:
        """`new` (now remembered), `retry` (the same list answered by the same versions) or
        `reused` (another list, other versions, or an id the service made: refused, the first
        list stays). `fingerprint` is None for an id the service makes."""
        seen = self._seen
        known = seen.get(request_id)
        if known is not None:
            same = fingerprint is not None and known == (fingerprint, answered_by)
            return "retry" if same else "reused"
        seen[request_id] = (fingerprint, answered_by)
        if len(seen) > self.capacity:
            seen.popitem(last=False)
        return "new"

    def forget(self, request_id: str) -> None:
        """Drop an id admitted as new whose request was then refused (nothing logged): its
        retry is a first answer, to be logged."""
        self._seen.pop(request_id, None)

    def first(self, request_id: str) -> tuple[int | None, tuple[str, str | None]] | None:
        """What the id was first admitted with (None when it is not remembered)."""
        return self._seen.get(request_id)

    def __len__(self) -> int:
        return len(self._seen)
