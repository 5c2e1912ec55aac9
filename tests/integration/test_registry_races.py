"""Two real processes on one registry, racing a pointer move against a publish whose retention
deletes old versions: a rollback (below) and a promotion of the canary candidate (the last test).
Rollback validates and moves the pointer under the registry's lock, and retention
never deletes what a pointer names, so `latest` always names a version that loads."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from ltr_assets.registry.local import LocalRegistry
from tests.support.artifacts import tiny_model_text, weights

WORKER = r"""
import json, sys, time
from pathlib import Path
from ltr_assets.registry import publication
from ltr_assets.registry.local import LocalRegistry, RegistryError

root, role, go, delay = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), float(sys.argv[4])
registry = LocalRegistry(root)
while not go.exists():
    time.sleep(0.0005)
time.sleep(delay)
if role == "rollback":
    try:
        publication.rollback(registry, None, sys.argv[5], scorer="weights")
        print("ok")
    except RegistryError as exc:
        print(f"refused: {exc}")
elif role == "promote":
    try:
        report = publication.promote(registry, None, {"race": True}, scorer="weights")
        print("promoted", report.version)
    except RegistryError as exc:
        print(f"refused: {exc}")
else:  # "publish" (direct) or "publish-canary"
    model_text = Path(sys.argv[5]).read_text()
    weights = json.loads(sys.argv[6])
    report = publication.publish(
        registry, None, weights, model_text, {"gated_scorer": "weights"}, "2026-11-27", keep=1,
        rollout="canary" if role == "publish-canary" else "direct",
    )
    print("published", report.version)
"""

ROUNDS = 8


def _worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, *args], stdout=subprocess.PIPE, text=True
    )


def test_rollback_racing_retention_never_leaves_latest_naming_a_deleted_version(
    tmp_path: Path,
) -> None:
    model = tmp_path / "model.txt"
    model.write_text(tiny_model_text())
    outcomes = []
    for round_ in range(ROUNDS):
        root = tmp_path / f"registry-{round_}"
        registry = LocalRegistry(root)
        meta = {"gated_scorer": "weights"}
        target = registry.publish(
            weights(0), model.read_text(), meta, "2026-11-25",
            now=datetime(2026, 11, 25, 2, 15, tzinfo=UTC),
        ).version  # fmt: skip
        registry.publish(
            weights(1), model.read_text(), meta, "2026-11-26",
            now=datetime(2026, 11, 26, 2, 15, tzinfo=UTC),
        )  # fmt: skip
        go = tmp_path / f"go-{round_}"
        # Stagger the two across rounds, from the rollback well ahead of the publish to well
        # behind it, so the rollback's validation overlaps each step of the publish (its own
        # validation, the pointer move, retention) in some round, whatever the machine's load.
        ahead = 0.06 * (round_ - ROUNDS // 2)
        rollback = _worker(str(root), "rollback", str(go), f"{max(ahead, 0):.2f}", target)
        publish = _worker(
            str(root), "publish", str(go), f"{max(-ahead, 0):.2f}", str(model),
            json.dumps(weights(2)),
        )  # fmt: skip
        go.touch()
        rolled, _ = rollback.communicate(timeout=120)
        published, _ = publish.communicate(timeout=120)
        assert rollback.returncode == 0 and publish.returncode == 0
        latest = registry.latest_version()
        assert latest is not None
        assert registry.verify(latest) == [], f"round {round_}: latest {latest} does not load"
        if rolled.startswith("ok") and latest != target:
            assert published.startswith("published")  # the publish came after the rollback
        outcomes.append(rolled.split(":")[0].strip())
    assert "ok" in outcomes  # the rollback did succeed in some rounds


CANARY_ROUNDS = 6


def test_promote_racing_a_canary_publish_never_leaves_a_pointer_on_a_deleted_version(
    tmp_path: Path,
) -> None:
    """Two real processes on one registry: a promotion of the canary candidate and a canary publish
    whose retention (keep=1) deletes every version no pointer names. Promote moves latest and
    clears the candidate under the registry's lock, the publish sets the candidate under it, and
    retention re-checks both pointers under it before each deletion, so neither pointer ever
    names a deleted version, whichever comes first."""
    model = tmp_path / "model.txt"
    model.write_text(tiny_model_text())
    promoted_first = 0
    for round_ in range(CANARY_ROUNDS):
        root = tmp_path / f"registry-{round_}"
        registry = LocalRegistry(root)
        meta = {"gated_scorer": "weights"}
        registry.publish(
            weights(0), model.read_text(), meta, "2026-11-25",
            now=datetime(2026, 11, 25, 2, 15, tzinfo=UTC), rollout="canary",
        )  # fmt: skip
        candidate = registry.publish(
            weights(1), model.read_text(), meta, "2026-11-26",
            now=datetime(2026, 11, 26, 2, 15, tzinfo=UTC), rollout="canary",
        ).version  # fmt: skip
        assert registry.candidate_version() == candidate
        go = tmp_path / f"go-{round_}"
        ahead = 0.06 * (round_ - CANARY_ROUNDS // 2)
        promote = _worker(str(root), "promote", str(go), f"{max(ahead, 0):.2f}")
        publish = _worker(
            str(root), "publish-canary", str(go), f"{max(-ahead, 0):.2f}", str(model),
            json.dumps(weights(2)),
        )  # fmt: skip
        go.touch()
        promoted, _ = promote.communicate(timeout=120)
        published, _ = publish.communicate(timeout=120)
        assert promote.returncode == 0 and publish.returncode == 0, (promoted, published)
        pointed = registry.pointed_versions()
        assert "latest.json" in pointed
        for pointer, version in pointed.items():
            assert registry.verify(version) == [], f"round {round_}: {pointer} -> {version}"
        new = published.split()[-1]
        if promoted.startswith("promoted"):
            promoted_version = promoted.split()[-1]
            assert registry.latest_version() == promoted_version
            if promoted_version == candidate:  # the promote won: the publish's is the candidate
                promoted_first += 1
                assert registry.candidate_version() == new
            else:  # the publish won and replaced the candidate, which was then promoted
                assert promoted_version == new and registry.candidate() is None
    assert promoted_first > 0
