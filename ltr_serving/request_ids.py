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

Whoever answers first logs: the first and its retries may be in flight together (the model
scorer awaits the scoring pool), and the first may be refused (503) after a retry was admitted.
So each id's entry records whether its list was answered and how many of its requests are in
flight: the first answered request logs it (when the service logs), and an entry never answered
with no request in flight is replaced by the next list under its id (a refused request named
nothing).

Ids the service makes are remembered too, without a fingerprint (a cost every request would
pay): a client that sends one back is refused, since the list it named was answered already
and a new showing needs a new id. The memory is per server process and bounded (the last
`capacity` ids; the oldest with no request in flight is forgotten first), so a reuse across
replicas, restarts or more than `capacity` requests apart is not caught here; the ingest's
`duplicate_conflicts` check reports it then.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Literal

import msgspec
import numpy as np

from ltr_core.codec import NO_ATTRIBUTES, ParsedRequest, attributes_dict

DEFAULT_CAPACITY = 100_000
Admission = Literal["new", "retry", "reused"]


def list_fingerprint(parsed: ParsedRequest) -> int:
    """A hash of the list a request asks for, the same whatever order its candidates come in
    (one sort by the ids' hashes)."""
    keys = np.fromiter(map(hash, parsed.ids), dtype=np.int64, count=len(parsed.ids))
    order = np.argsort(keys, kind="stable")
    attributes = b""
    if parsed.attributes is not None:
        # as the impression log has them: the attributes set, none set is None (`{}`, all
        # null and no object are one list); msgspec structs encode so, pydantic models not
        values = [parsed.attributes[i] for i in order]
        attributes = msgspec.json.encode(
            [None if v == NO_ATTRIBUTES else v for v in values]
            if parsed.fast
            else [attributes_dict(v) for v in values]
        )
    matrix = (parsed.matrix[order] + 0.0).tobytes()  # + 0.0: -0.0 is the same feature as 0.0
    return hash((parsed.case_id, parsed.top_k, keys[order].tobytes(), matrix, attributes))


@dataclass(slots=True)
class Admitted:
    """One remembered id: its list, what answered it, whether it was answered, and how many
    requests under it are in flight."""

    fingerprint: int | None
    answered_by: tuple[str, str | None]
    answered: bool = False
    in_flight: int = 0

    def answer(self) -> bool:
        """Record an answer under the id: True for the first (it logs the list), else False."""
        if self.answered:
            return False
        self.answered = True
        return True


class RecentRequestIds:
    """request id -> its `Admitted` entry (the fingerprint is None for an id the service made).
    Used from the event loop only: no lock."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._seen: OrderedDict[str, Admitted] = OrderedDict()

    def admit(
        self, request_id: str, fingerprint: int | None, answered_by: tuple[str, str | None]
    ) -> tuple[Admission, Admitted | None]:
        """`new` (now remembered), `retry` (the same list answered by the same versions) or
        `reused` (another list, other versions, or an id the service made: refused, the first
        list stays; no entry). An admitted request counts as in flight until `release`.
        `fingerprint` is None for an id the service makes."""
        seen = self._seen
        known = seen.get(request_id)
        if known is not None:
            if fingerprint is not None and (known.fingerprint, known.answered_by) == (
                fingerprint,
                answered_by,
            ):
                known.in_flight += 1
                seen.move_to_end(request_id)  # used lately: forgotten last
                return "retry", known
            if known.answered or known.in_flight:
                return "reused", None
            del seen[request_id]  # refused before it was logged: the id named nothing
        entry = seen[request_id] = Admitted(fingerprint, answered_by, in_flight=1)
        if len(seen) > self.capacity:
            self._forget_oldest()
        return "new", entry

    def _forget_oldest(self) -> None:
        """Forget the oldest id with no request in flight: one in flight may still log its
        list, so another list must not take its id meanwhile (kept, as the newest, until then).
        The ids in flight are at most the requests being served, so the loop is short."""
        seen = self._seen
        for _ in range(len(seen)):
            request_id, oldest = next(iter(seen.items()))
            if not oldest.in_flight:
                del seen[request_id]
                return
            seen.move_to_end(request_id)

    @staticmethod
    def release(entry: Admitted) -> None:
        """The request admitted under `entry` is answered or refused."""
        entry.in_flight -= 1

    def first(self, request_id: str) -> tuple[int | None, tuple[str, str | None]] | None:
        """What the id was first admitted with (None when it is not remembered)."""
        known = self._seen.get(request_id)
        return None if known is None else (known.fingerprint, known.answered_by)

    def __len__(self) -> int:
        return len(self._seen)
