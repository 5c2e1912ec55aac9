"""The service's memory of request ids (`ltr_serving.request_ids`)."""

from __future__ import annotations

import numpy as np
import pytest

from ltr_core.codec import ParsedRequest
from ltr_serving.request_ids import RecentRequestIds, list_fingerprint

LIVE = ("v1", None)


def _list(
    ids: list[str], case_id: str = "c-1", top_k: int | None = None, scale: float = 1.0
) -> ParsedRequest:
    rows = np.array([[float(int(i[-1])) * scale, 0.5] for i in ids])
    return ParsedRequest(case_id, ids, rows, top_k, explain=False)


def test_a_list_is_the_same_in_any_order_and_differs_in_anything_that_is_logged() -> None:
    first = list_fingerprint(_list(["l-1", "l-2", "l-3"]))
    reordered = _list(["l-3", "l-1", "l-2"])
    assert list_fingerprint(reordered) == first
    for other in (
        _list(["l-1", "l-2", "l-3"], case_id="c-2"),
        _list(["l-1", "l-2", "l-3"], top_k=2),
        _list(["l-1", "l-2"]),
        _list(["l-1", "l-2", "l-3"], scale=0.5),  # the same lawyers, other features
    ):
        assert list_fingerprint(other) != first
    swapped = _list(["l-1", "l-2", "l-3"])
    swapped.matrix[[0, 1]] = swapped.matrix[[1, 0]]  # two lawyers' features exchanged
    assert list_fingerprint(swapped) != first


def test_an_id_names_one_list_a_retry_is_told_apart_and_another_list_is_refused() -> None:
    ids = RecentRequestIds()
    assert ids.admit("r-1", 11, LIVE) == "new"
    assert ids.admit("r-1", 11, LIVE) == "retry"
    assert ids.admit("r-1", 12, LIVE) == "reused"  # another list
    assert ids.admit("r-1", 11, ("v2", None)) == "reused"  # the same list, another version
    assert ids.admit("r-1", 11, ("v1", "v2")) == "reused"  # ... or with a canary beside it
    assert ids.admit("r-1", 11, LIVE) == "retry"  # a refusal does not replace the first list
    assert ids.first("r-1") == (11, LIVE) and ids.first("r-9") is None
    assert ids.admit("r-2", 12, LIVE) == "new"
    assert len(ids) == 2


def test_a_forgotten_id_is_new_again() -> None:
    """A request refused after its id was admitted (scoring busy) logged nothing: its retry
    must be logged, so it is admitted as new."""
    ids = RecentRequestIds()
    assert ids.admit("r-1", 11, LIVE) == "new"
    ids.forget("r-1")
    ids.forget("r-never")  # forgetting an unknown id is harmless
    assert ids.admit("r-1", 11, LIVE) == "new"


def test_an_id_the_service_made_is_refused_when_a_client_sends_it_back() -> None:
    ids = RecentRequestIds()
    assert ids.admit("r-made", None, LIVE) == "new"  # no fingerprint: the list is not kept
    assert ids.admit("r-made", 11, LIVE) == "reused"
    assert ids.first("r-made") == (None, LIVE)


def test_the_oldest_id_is_forgotten_first_past_the_capacity() -> None:
    ids = RecentRequestIds(capacity=3)
    for n in range(4):
        assert ids.admit(f"r-{n}", n, LIVE) == "new"
    assert len(ids) == 3
    assert ids.admit("r-0", 99, LIVE) == "new"  # forgotten: taken as new
    assert ids.admit("r-3", 99, LIVE) == "reused"  # remembered


def test_a_capacity_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RecentRequestIds(capacity=0)
