"""Dagster stays at the edge: the serving app, the CLI's own commands and every domain module
load without it: Dagster is wiring over plain modules.

The wiring is `ltr_assets.definitions` and the package `ltr_assets.defs`; everything else in
`ltr_assets`, and all of `ltr_serving`, is imported here in a fresh interpreter, and
`sys.modules` must then hold no `dagster` module (nor dagster-aws, dagster-graphql, ...).
"""

from __future__ import annotations

import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import ltr_assets
import ltr_core
import ltr_serving

ROOT = Path(__file__).resolve().parents[2]
WIRING = ("ltr_assets.definitions", "ltr_assets.defs")


def _is_wiring(module: str) -> bool:
    return any(module == w or module.startswith(w + ".") for w in WIRING)


def dagster_free_modules() -> list[str]:
    """Every module of both packages except the Dagster wiring, found on disk (so a new module
    is checked without being listed here)."""
    found = []
    for package in (ltr_core, ltr_assets, ltr_serving):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if not _is_wiring(info.name):
                found.append(info.name)
    return sorted(found)


# Imports the modules one by one and names, for each, the dagster modules it pulled in; then
# runs two of the CLI's non-Dagster commands in the same interpreter.
PROBE = """
import importlib, json, sys

def dagster_loaded():
    return sorted(m for m in sys.modules if m.split(".")[0].startswith("dagster"))

culprits = {}
for name in json.loads(sys.argv[1]):
    before = set(dagster_loaded())
    importlib.import_module(name)
    pulled = sorted(set(dagster_loaded()) - before)
    if pulled:
        culprits[name] = pulled[:5]

from ltr_assets.cli import main
codes = [main(["registry", "list"]), main(["registry", "verify"])]
print(json.dumps({"culprits": culprits, "after_cli": dagster_loaded()[:5], "codes": codes}))
"""


def test_the_domain_the_cli_and_the_serving_app_load_no_dagster(tmp_path: Path) -> None:
    modules = dagster_free_modules()
    assert {
        "ltr_serving.app",
        "ltr_assets.cli",
        "ltr_core.settings",
        "ltr_assets.demo",
    } <= set(modules)
    assert not any(_is_wiring(m) for m in modules)
    env = {**os.environ, "LTR_HOME": str(tmp_path / "ltr"), "PYTHONPATH": str(ROOT)}
    for name in list(env):
        if name.startswith(("LTR_DATA_DIR", "LTR_REGISTRY_DIR", "WEIGHTS_PATH", "S3_")):
            del env[name]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(modules)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["culprits"] == {}, f"these imports load Dagster: {result['culprits']}"
    assert result["after_cli"] == [], "a non-Dagster CLI command loaded Dagster"
    assert result["codes"] == [0, 0]
