"""The service's memory of the client's request ids (`ltr_serving.request_ids`)."""

from __future__ import annotations

import pytest

from ltr_serving.request_ids import RecentRequestIds


def test_an_id_names_one_list_in_any_order_and_another_list_is_refused() -> None:
    ids = RecentRequestIds()
    assert ids.admit("r-1", "c-1", ["a", "b", "c"])
    assert ids.admit("r-1", "c-1", ["c", "a", "b"])  # a retry, reordered
    assert not ids.admit("r-1", "c-2", ["a", "b", "c"])  # another case
    assert not ids.admit("r-1", "c-1", ["a", "b"])  # another candidate set
    assert ids.admit("r-1", "c-1", ["b", "c", "a"])  # a refusal does not replace the first list
    assert ids.admit("r-2", "c-2", ["a", "b", "c"])
    assert len(ids) == 2


def test_the_oldest_id_is_forgotten_first_past_the_capacity() -> None:
    ids = RecentRequestIds(capacity=3)
    for n in range(4):
        assert ids.admit(f"r-{n}", f"c-{n}", ["a"])
    assert len(ids) == 3
    assert ids.admit("r-0", "c-other", ["a"])  # forgotten: taken as new
    assert not ids.admit("r-3", "c-other", ["a"])  # remembered


def test_a_capacity_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RecentRequestIds(capacity=0)
