"""The service's memory of request ids (`ltr_serving.request_ids`)."""

from __future__ import annotations

import numpy as np
import pytest

from ltr_core.codec import ParsedRequest, parse_request
from ltr_core.features import FEATURES
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
    zero, negative_zero = _list(["l-1", "l-2", "l-3"]), _list(["l-1", "l-2", "l-3"])
    zero.matrix[:, 1], negative_zero.matrix[:, 1] = 0.0, -0.0  # one feature, spelled two ways
    assert list_fingerprint(negative_zero) == list_fingerprint(zero)
    swapped = _list(["l-1", "l-2", "l-3"])
    swapped.matrix[[0, 1]] = swapped.matrix[[1, 0]]  # two lawyers' features exchanged
    assert list_fingerprint(swapped) != first


def test_a_list_is_the_same_however_its_attributes_are_spelled() -> None:
    """No attributes object, `{}` and all null are one list (the log has None for each); an
    attribute set to null is as if left out; the exact pydantic path (taken here for a first
    duplicate key of the wrong type) fingerprints a list as msgspec's does."""

    def parsed(attributes: str, head: str = "") -> int:
        candidate = (
            '{"lawyer_id": "l-1", "features": {'
            + ", ".join(f'"{code}": 0.5' for code in FEATURES)
            + "}"
            + attributes
            + "}"
        )
        body = '{"case_id": "c-1", ' + head + '"candidates": [' + candidate + "]}"
        return list_fingerprint(parse_request(body.encode(), 10))

    none = parsed("")
    assert parsed(', "protected_attributes": {}') == none
    assert parsed(', "protected_attributes": {"gender": null}') == none
    assert parsed(', "protected_attributes": null') == none
    set_ = parsed(', "protected_attributes": {"gender": "F"}')
    assert set_ != none
    assert parsed(', "protected_attributes": {"gender": "F", "pcd": null}') == set_
    exact = parsed(
        ', "protected_attributes": {"gender": "F"}', head='"explain": "x", "explain": false, '
    )
    assert exact == set_
    assert parsed(', "protected_attributes": {"gender": "M"}') != set_


def _admit(ids: RecentRequestIds, request_id: str, fingerprint: int | None, by=LIVE) -> str:
    """Admit and release at once (a request answered without waiting)."""
    admission, entry = ids.admit(request_id, fingerprint, by)
    if entry is not None:
        entry.answer()
        ids.release(entry)
    return admission


def test_an_id_names_one_list_a_retry_is_told_apart_and_another_list_is_refused() -> None:
    ids = RecentRequestIds()
    assert _admit(ids, "r-1", 11) == "new"
    assert _admit(ids, "r-1", 11) == "retry"
    assert _admit(ids, "r-1", 12) == "reused"  # another list
    assert _admit(ids, "r-1", 11, ("v2", None)) == "reused"  # the same list, another version
    assert _admit(ids, "r-1", 11, ("v1", "v2")) == "reused"  # ... or with a canary beside it
    assert _admit(ids, "r-1", 11) == "retry"  # a refusal does not replace the first list
    assert ids.first("r-1") == (11, LIVE) and ids.first("r-9") is None
    assert _admit(ids, "r-2", 12) == "new"
    assert len(ids) == 2


def test_the_first_answer_under_an_id_logs_whichever_request_it_is() -> None:
    """The first request and its retry in flight together (the model scorer awaits the pool):
    the first is refused (503) after the retry was admitted, so the retry logs the list."""
    ids = RecentRequestIds()
    first_admission, first = ids.admit("r-1", 11, LIVE)
    retry_admission, retry = ids.admit("r-1", 11, LIVE)
    assert (first_admission, retry_admission) == ("new", "retry")
    assert first is not None and retry is not None
    ids.release(first)  # refused: logged nothing
    assert ids.admit("r-1", 12, LIVE) == ("reused", None)  # its retry is still in flight
    assert retry.answer()  # answered: the first answer, so it logs
    ids.release(retry)
    assert _admit(ids, "r-1", 11) == "retry"
    assert not retry.answer()  # logged once


def test_a_retry_answered_after_the_first_is_not_logged_again() -> None:
    ids = RecentRequestIds()
    _, first = ids.admit("r-1", 11, LIVE)
    _, retry = ids.admit("r-1", 11, LIVE)
    assert first is not None and retry is not None
    assert first.answer()
    assert not retry.answer()


def test_an_id_whose_request_was_refused_names_nothing_once_no_request_is_in_flight() -> None:
    """A request refused after its id was admitted (scoring busy) logged nothing: the id is
    free again, for its retry or another list."""
    ids = RecentRequestIds()
    _, refused = ids.admit("r-1", 11, LIVE)
    assert refused is not None
    ids.release(refused)
    assert _admit(ids, "r-1", 12, ("v2", None)) == "new"
    assert ids.first("r-1") == (12, ("v2", None))


def test_an_id_the_service_made_is_refused_when_a_client_sends_it_back() -> None:
    ids = RecentRequestIds()
    assert _admit(ids, "r-made", None) == "new"  # no fingerprint: the list is not kept
    assert _admit(ids, "r-made", 11) == "reused"
    assert ids.first("r-made") == (None, LIVE)


def test_the_oldest_id_is_forgotten_first_past_the_capacity() -> None:
    ids = RecentRequestIds(capacity=3)
    for n in range(4):
        assert _admit(ids, f"r-{n}", n) == "new"
    assert len(ids) == 3
    assert _admit(ids, "r-0", 99) == "new"  # forgotten: taken as new
    assert _admit(ids, "r-3", 99) == "reused"  # remembered


def test_an_id_in_flight_is_not_forgotten_past_the_capacity_and_a_retry_is_kept_longer() -> None:
    """An id whose request still waits on the scoring pool may yet log its list: forgetting it
    would let another list take the id, and both be logged under it."""
    ids = RecentRequestIds(capacity=2)
    _, waiting = ids.admit("r-waiting", 1, LIVE)
    assert waiting is not None
    for n in range(5):
        assert _admit(ids, f"r-{n}", n) == "new"
    assert ids.first("r-waiting") == (1, LIVE)  # kept while in flight
    assert ids.admit("r-waiting", 99, LIVE) == ("reused", None)
    waiting.answer()
    ids.release(waiting)
    assert _admit(ids, "r-retried", 7) == "new"
    assert _admit(ids, "r-retried", 7) == "retry"  # used lately: now the newest
    assert _admit(ids, "r-9", 9) == "new"
    assert ids.first("r-retried") == (7, LIVE) and ids.first("r-waiting") is None


def test_a_capacity_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RecentRequestIds(capacity=0)
