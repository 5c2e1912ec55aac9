"""LightGBM model texts written by hand, and edits of real ones, for the model format tests.

`write_model` produces the text LightGBM writes (header, `tree_sizes`, one block per tree, the
sections after the trees) for trees given as arrays; `edit_tree` changes one line of one tree of
a real model text and recomputes `tree_sizes`, as an attacker who knows the format would.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from ltr_core.features import FEATURES


@dataclass
class TreeSpec:
    """Node i splits on split_feature[i] at threshold[i] (value <= threshold goes left); a child
    >= 0 is a node, a child < 0 the leaf ~child."""

    split_feature: list[int]
    threshold: list[float]
    left_child: list[int]
    right_child: list[int]
    leaf_value: list[float]
    decision_type: list[int] | None = None  # 2 (numerical, default left) for every split
    extra: dict[str, str] = field(default_factory=dict)  # lines added or replaced verbatim


def _join(values: Sequence[object]) -> str:
    return " ".join(repr(v) if isinstance(v, float) else str(v) for v in values)


def tree_block(index: int, tree: TreeSpec) -> str:
    splits = len(tree.split_feature)
    leaves = len(tree.leaf_value)
    lines = {
        "num_leaves": str(leaves),
        "num_cat": "0",
        "split_feature": _join(tree.split_feature),
        "split_gain": _join([1.0] * splits),
        "threshold": _join(tree.threshold),
        "decision_type": _join(tree.decision_type or [2] * splits),
        "left_child": _join(tree.left_child),
        "right_child": _join(tree.right_child),
        "leaf_value": _join(tree.leaf_value),
        "leaf_weight": _join([1.0] * leaves),
        "leaf_count": _join([1] * leaves),
        "internal_value": _join([0.0] * splits),
        "internal_weight": _join([1.0] * splits),
        "internal_count": _join([leaves] * splits),
        "is_linear": "0",
        "shrinkage": "1",
        **tree.extra,
    }
    body = "".join(f"{key}={value}\n" for key, value in lines.items())
    return f"Tree={index}\n{body}\n\n"


def write_model(
    trees: Sequence[TreeSpec],
    features: Sequence[str] = FEATURES,
    header: Mapping[str, str] | None = None,
) -> str:
    """A complete model text in LightGBM's format; `header` adds or replaces header lines."""
    blocks = [tree_block(i, tree) for i, tree in enumerate(trees)]
    fields = {
        "version": "v4",
        "num_class": "1",
        "num_tree_per_iteration": "1",
        "label_index": "0",
        "max_feature_idx": str(len(features) - 1),
        "objective": "lambdarank",
        "feature_names": " ".join(features),
        "feature_infos": " ".join(["[0:1]"] * len(features)),
        "tree_sizes": " ".join(str(len(block.encode())) for block in blocks),
        **(header or {}),
    }
    head = "tree\n" + "".join(f"{key}={value}\n" for key, value in fields.items()) + "\n"
    tail = "end of trees\n\nfeature_importances:\nA=1\n\nparameters:\n[boosting: gbdt]\n"
    tail += "\nend of parameters\n\npandas_categorical:null\n"
    return head + "".join(blocks) + tail


def stump(
    feature: int = 0, threshold: float = 0.5, low: float = -1.0, high: float = 1.0
) -> TreeSpec:
    """One split: value <= threshold scores `low`, above it `high`."""
    return TreeSpec([feature], [threshold], [-1], [-2], [low, high])


def chain(depth: int, feature: int = 0) -> TreeSpec:
    """A valid tree of `depth` splits in a line: every value in [0, 1] goes left at every split
    (threshold 1.0), so a row visits all of them before reaching the last leaf."""
    return TreeSpec(
        split_feature=[(feature + k) % len(FEATURES) for k in range(depth)],
        threshold=[1.0] * depth,
        left_child=[k + 1 for k in range(depth - 1)] + [~depth],
        right_child=[~k for k in range(depth)],
        leaf_value=[0.001 * (k + 1) for k in range(depth + 1)],
    )


def _tree_spans(text: str) -> tuple[int, list[int]]:
    sizes = [int(s) for s in re.search(r"^tree_sizes=(.*)$", text, re.M)[1].split()]  # type: ignore[index]
    return text.index("\nTree=") + 1, sizes


def edit_tree(text: str, index: int, key: str, value: str) -> str:
    """Replace `key=...` in tree `index` of a real model text by `key=value`, recomputing
    `tree_sizes` so that LightGBM still finds every tree."""
    start, sizes = _tree_spans(text)
    blocks, pos = [], start
    for size in sizes:
        blocks.append(text[pos : pos + size])
        pos += size
    blocks[index], count = re.subn(rf"(?m)^{key}=.*$", f"{key}={value}", blocks[index], count=1)
    assert count == 1, f"tree {index} has no {key} line"
    new_sizes = " ".join(str(len(block.encode())) for block in blocks)
    head = re.sub(r"(?m)^tree_sizes=.*$", f"tree_sizes={new_sizes}", text[:start], count=1)
    return head + "".join(blocks) + text[pos:]


def tree_line(text: str, index: int, key: str) -> list[str]:
    """The values of `key` in tree `index` of a model text."""
    start, sizes = _tree_spans(text)
    block = text[start + sum(sizes[:index]) : start + sum(sizes[: index + 1])]
    return re.search(rf"(?m)^{key}=(.*)$", block)[1].split(" ")  # type: ignore[index]
