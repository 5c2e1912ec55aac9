"""The configuration reference is generated from the schema: the committed file is current, and
every variable of the schema is in it with its range and default."""

from __future__ import annotations

from pathlib import Path

from ltr_core.settings import RANGES, SECRETS, variables
from ltr_core.settings_doc import render

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_the_committed_reference_is_what_the_schema_gives() -> None:
    assert DOC.read_text() == render(), "docs/configuration.md is stale: run `make docs`"


def test_every_variable_is_documented_with_its_range_and_secrets_are_marked() -> None:
    text = render()
    rows = {line.split(" | ")[0].removeprefix("| "): line for line in text.splitlines()}
    for name, _ in variables():
        row = next((line for key, line in rows.items() if f"`{name}`" in key), None)
        assert row is not None, name
        if name in RANGES:
            assert f" | {RANGES[name].text()} | " in row, name
        if name in SECRETS:
            assert "**secret**" in row, name
