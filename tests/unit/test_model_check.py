"""The child-process model check: the structure, then LightGBM, once per model text and feature
list in a process."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from ltr_core.artifacts import model_check, model_format
from ltr_core.artifacts.model_format import MalformedModel
from ltr_core.features import FEATURES
from tests.support.artifacts import tiny_model_text
from tests.support.model_texts import edit_tree, tree_line


def test_the_same_model_is_checked_in_a_child_once(monkeypatch: pytest.MonkeyPatch) -> None:
    children: list[Any] = []
    run = subprocess.run

    def counting_run(*args: Any, **kwargs: Any) -> Any:
        children.append(args)
        return run(*args, **kwargs)

    monkeypatch.setattr(subprocess, "run", counting_run)
    monkeypatch.setattr(model_check, "_PASSED", set())
    text = tiny_model_text().encode()
    model_check.check_model_text(text, FEATURES)
    model_check.check_model_text(text, FEATURES)
    assert len(children) == 1
    with pytest.raises(MalformedModel, match="has features"):
        model_check.check_model_text(text, list(reversed(FEATURES)))  # another feature list
    assert len(children) == 2
    with pytest.raises(MalformedModel):
        model_check.check_model_text(text[: len(text) // 2], FEATURES)  # other bytes
    with pytest.raises(MalformedModel):
        model_check.check_model_text(text[: len(text) // 2], FEATURES)  # a refusal is not kept
    assert len(children) == 4


def test_the_structure_is_checked_in_the_child_and_its_pass_is_remembered_here(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The pure-Python format check runs in the child (it would hold this process's GIL for as
    long as a large model takes to read): never in this process, which learns the child's
    verdict, and `ensure_model_format` (the scorer's check) takes a text the child passed."""
    parses: list[int] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        parses.append(1)
        raise AssertionError("the format check ran in the calling process")

    monkeypatch.setattr(model_format, "check_model_format", counted)
    monkeypatch.setattr(model_check, "_PASSED", set())
    monkeypatch.setattr(model_format, "_PASSED", set())
    good = (tiny_model_text() + "\n").encode()  # bytes no other test has passed
    right = tree_line(tiny_model_text(), 0, "right_child")
    crafted = edit_tree(tiny_model_text(), 0, "right_child", " ".join(["0", *right[1:]]))
    crafted_bytes = crafted.encode()  # the root's right child is the root: a cycle
    with pytest.raises(MalformedModel, match="tree 0: "):
        model_check.check_model_text(crafted_bytes, FEATURES)
    model_check.check_model_text(good, FEATURES)
    model_format.ensure_model_format(good.decode(), FEATURES)
    assert parses == []
    with pytest.raises(AssertionError):  # other features: not remembered, checked here
        model_format.ensure_model_format(good, list(reversed(FEATURES)))
    # a parse-only check (no structure) tells the in-process check nothing
    monkeypatch.setattr(model_format, "_PASSED", set())
    model_check.check_model_text(good, FEATURES, check_format=False)
    with pytest.raises(AssertionError):
        model_format.ensure_model_format(good, FEATURES)
