"""The client's request ids the service answered lately, so that one reused for another list is
refused (409) rather than logged.

A `request_id` names one recommendation list: the impression log derives every event id from it
and the lawyer id, the pipeline groups a list's impressions by it and matches feedback to them
by it. Two lists under one id would give events with the same id and other content (the ingest
keeps one copy and reports the rest as conflicts, so an impression would be lost) and one query
group holding two cases. A retry of the same request (same case, same candidates, in any order)
may reuse its id: it is the same list, and its events deduplicate.

The memory is per server process and bounded (the last `capacity` ids; the oldest is
forgotten first), so a reuse across replicas, restarts or more than `capacity` requests apart
is not caught here; the ingest's `duplicate_conflicts` check reports it then. Ids the service
makes (`r-` + 32 random hex digits) are never remembered: they cannot collide.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

DEFAULT_CAPACITY = 100_000


class RecentRequestIds:
    """request id -> a fingerprint of its list (case id and the set of lawyer ids)."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._seen: OrderedDict[str, int] = OrderedDict()

    def admit(self, request_id: str, case_id: str, lawyer_ids: Sequence[str]) -> bool:
        """True (and remembered) when the id is new or names the same list as before; False
        when it was used for another list. Cost: one hash of the case id and the id set."""
        fingerprint = hash((case_id, frozenset(lawyer_ids)))
        seen = self._seen
        known = seen.get(request_id)
        if known is not None:
            return known == fingerprint
        seen[request_id] = fingerprint
        if len(seen) > self.capacity:
            seen.popitem(last=False)
        return True

    def __len__(self) -> int:
        return len(self._seen)
