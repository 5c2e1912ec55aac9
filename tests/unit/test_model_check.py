"""The child-process model check runs once per model text and feature list in a process."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from ltr_core.artifacts import model_check
from ltr_core.features import FEATURES
from tests.support.artifacts import tiny_model_text


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
    with pytest.raises(model_check.UnsafeModel, match="features"):
        model_check.check_model_text(text, list(reversed(FEATURES)))  # another feature list
    assert len(children) == 2
    with pytest.raises(model_check.UnsafeModel):
        model_check.check_model_text(text[: len(text) // 2], FEATURES)  # other bytes
    with pytest.raises(model_check.UnsafeModel):
        model_check.check_model_text(text[: len(text) // 2], FEATURES)  # a refusal is not kept
    assert len(children) == 4
