"""LightGBM's text model format, read in pure Python and checked before LightGBM parses it.

LightGBM trusts the model text it loads: a child index out of range makes prediction read
outside its arrays (a crash), a child that points back up the tree makes it loop forever, on the
first row that takes that branch. A check that parses the model and scores one row cannot see
either. `check_model_format` reads the whole text the way LightGBM does and refuses any model
whose structure is not a bounded tree ensemble over exactly the expected features:

- the header: `tree`, `version=v4`, one class and one tree per iteration, label 0,
  `max_feature_idx` + 1 features named exactly as expected, as many `feature_infos`, a ranking
  objective, `tree_sizes`; no other header line;
- the trees are located exactly as LightGBM locates them, by `tree_sizes` (byte lengths counted
  from the first `Tree=` line), and each block must be `Tree=<i>`, its key=value lines and the
  blank line that ends a tree for LightGBM, so both parsers see the same lines;
- per tree: `num_leaves` within bounds and every array of the length LightGBM reads; every child
  index in range; every node and leaf reached exactly once from the root (no cycle, no orphan,
  no shared child); depth at most MAX_DEPTH; split features below `max_feature_idx` + 1; finite
  thresholds, leaf values and shrinkage; decision types numerical (default-left and missing-value
  bits only);
- across trees: bounded counts of bytes, trees and leaves, so reading is bounded, and a bound on
  the sum of each tree's largest |leaf value|, so no row can score to infinity;
- after the trees: only the sections LightGBM writes (`end of trees`, feature importances,
  parameters, `pandas_categorical:null`).

Refused rather than validated, since the project trains neither: categorical splits
(`num_cat` > 0, `cat_boundaries`, `cat_threshold`, or decision_type bit 0), whose bitsets are a
second index structure to trust, and linear trees (`is_linear=1` and their leaf coefficients).
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

MAX_MODEL_BYTES = 64 * 1024 * 1024
MAX_TREES = 10_000
MAX_LEAVES_PER_TREE = 4096
MAX_TOTAL_LEAVES = 2_000_000
MAX_DEPTH = 64
MAX_ABS_SCORE = 1e300  # the sum over trees of the largest |leaf value|: any score is finite
RANKING_OBJECTIVES = ("lambdarank", "rank_xendcg")

_HEADER_KEYS = {
    "version",
    "num_class",
    "num_tree_per_iteration",
    "label_index",
    "max_feature_idx",
    "objective",
    "feature_names",
    "feature_infos",
    "tree_sizes",
}
# Arrays LightGBM reads per split (num_leaves - 1 values) and per leaf (num_leaves values).
_SPLIT_ARRAYS = ("split_feature", "threshold", "decision_type", "left_child", "right_child")
_SPLIT_INFO = ("split_gain", "internal_value", "internal_weight", "internal_count")
_LEAF_INFO = ("leaf_weight", "leaf_count")
_TREE_KEYS = {
    "num_leaves",
    "num_cat",
    "leaf_value",
    "is_linear",
    "shrinkage",
    *_SPLIT_ARRAYS,
    *_SPLIT_INFO,
    *_LEAF_INFO,
}
_CATEGORICAL_KEYS = {"cat_boundaries", "cat_threshold"}
_LINEAR_KEYS = {"leaf_const", "num_features", "leaf_features", "leaf_coeff"}
_INT = re.compile(r"-?[0-9]{1,10}")
_FLOAT = re.compile(r"-?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]{1,3})?")
_NON_FINITE = {"inf", "-inf", "nan", "-nan"}  # allowed in informational arrays only
_FEATURE_INFO = re.compile(r"none|\[[^\[\]:\s]+:[^\[\]:\s]+\]")
_CATEGORIES = re.compile(r"-?[0-9]+(?::-?[0-9]+)*")  # a categorical feature's values
_PARAMETER = re.compile(r"\[[a-z0-9_]+: [^\n]*\]")
_IMPORTANCE = re.compile(r"[^=\s]+=[0-9]+")
_SECTIONS = {"feature_importances:": _IMPORTANCE, "feature importances:": _IMPORTANCE,
             "parameters:": _PARAMETER}  # fmt: skip
# decision_type: bit 0 categorical (refused), bit 1 default left, bits 2-3 the missing-value
# type (0 none, 1 zero, 2 NaN); nothing else is defined.
_NUMERICAL_DECISIONS = frozenset(
    default | missing << 2 for default in (0, 2) for missing in (0, 1, 2)
)


class MalformedModel(ValueError):
    """The model text is not a tree ensemble LightGBM can be trusted to load and score."""


@dataclass(frozen=True)
class Tree:
    """One tree as LightGBM holds it: node i splits on `split_feature[i]`; a child >= 0 is a
    node, a child < 0 is the leaf ~child."""

    split_feature: tuple[int, ...]
    threshold: tuple[float, ...]
    decision_type: tuple[int, ...]
    left_child: tuple[int, ...]
    right_child: tuple[int, ...]
    leaf_value: tuple[float, ...]
    depth: int

    @property
    def num_leaves(self) -> int:
        return len(self.leaf_value)


@dataclass(frozen=True)
class ModelShape:
    """What the checked text holds."""

    features: tuple[str, ...]
    objective: str
    trees: tuple[Tree, ...]

    @property
    def leaves(self) -> int:
        return sum(tree.num_leaves for tree in self.trees)


def check_model_format(model: bytes | str, features: Sequence[str]) -> ModelShape:
    """Parse and check LightGBM model text (see the module docstring); MalformedModel says why
    it is refused. Costs one linear pass over the text."""
    data = model.encode() if isinstance(model, str) else bytes(model)
    if len(data) > MAX_MODEL_BYTES:
        raise MalformedModel(f"is {len(data)} bytes, more than {MAX_MODEL_BYTES}")
    try:
        data.decode()
    except UnicodeDecodeError:
        raise MalformedModel("is not UTF-8 text") from None
    # LightGBM ends a line at \r as well as \n, and a C string at NUL: it writes neither.
    if b"\r" in data or b"\0" in data:
        raise MalformedModel("holds a carriage return or NUL byte")
    start = _first_tree_line(data)
    header = _header(data[:start].decode(), features)
    pos = start
    trees = []
    total_leaves = 0
    for index, size in enumerate(header.tree_sizes):
        block = data[pos : pos + size]
        if len(block) != size:
            raise MalformedModel(f"tree_sizes runs past the end of the text at tree {index}")
        tree = _tree(block.decode(errors="replace"), index, len(features))
        total_leaves += tree.num_leaves
        if total_leaves > MAX_TOTAL_LEAVES:
            raise MalformedModel(f"has more than {MAX_TOTAL_LEAVES} leaves")
        trees.append(tree)
        pos += size
    _tail(data[pos:].decode(errors="replace"))
    bound = math.fsum(max(abs(v) for v in tree.leaf_value) for tree in trees)
    if not bound <= MAX_ABS_SCORE:
        raise MalformedModel(f"leaf values could sum to {bound!r}, past {MAX_ABS_SCORE!r}")
    return ModelShape(tuple(features), header.objective, tuple(trees))


def ensure_model_format(model: bytes | str, features: Sequence[str]) -> None:
    """`check_model_format`, once per text: the same bytes and features pass again without a
    second parse (nor does a text that passed the child check of `model_check`, which runs this
    check in its child). A reload checks a version's model twice (the registry's validation,
    then the scorer it builds), and every /reload of the unchanged live version checks it again;
    on a model of tens of MB each pass is seconds of pure Python holding the GIL while /rank
    waits."""
    data = model.encode() if isinstance(model, str) else bytes(model)
    key = passed_key(data, features)
    if key in _PASSED:
        return
    check_model_format(data, features)
    remember_passed(key)


PassedKey = tuple[str, tuple[str, ...]]  # a model text's sha256 and the feature list


def passed_key(data: bytes, features: Sequence[str]) -> PassedKey:
    return hashlib.sha256(data).hexdigest(), tuple(features)


def remember_passed(key: PassedKey) -> None:
    """Remember that the text and features of `key` passed `check_model_format`."""
    if len(_PASSED) >= _PASSED_MAX:
        _PASSED.clear()
    _PASSED.add(key)


# Digests of model texts (with their feature lists) that passed `check_model_format`; bounded.
_PASSED: set[PassedKey] = set()
_PASSED_MAX = 64


@dataclass(frozen=True)
class _Header:
    objective: str
    tree_sizes: tuple[int, ...]


def _first_tree_line(data: bytes) -> int:
    """Where LightGBM's header loop stops: the first line that starts with `Tree=`."""
    at = data.find(b"\nTree=")
    if at < 0:
        raise MalformedModel("has no trees (no line starts with Tree=)")
    return at + 1


def _header(text: str, features: Sequence[str]) -> _Header:
    lines = [line for line in text.split("\n") if line]
    if not lines or lines[0] != "tree":
        raise MalformedModel("does not start with the line 'tree'")
    values: dict[str, str] = {}
    for line in lines[1:]:
        key, sep, value = line.partition("=")
        if not sep or "=" in value:
            raise MalformedModel(f"has a header line that is not key=value: {line[:80]!r}")
        if key not in _HEADER_KEYS:
            raise MalformedModel(f"has an unexpected header line {key[:80]!r}")
        if key in values:
            raise MalformedModel(f"repeats the header line {key!r}")
        values[key] = value
    missing = sorted(_HEADER_KEYS - set(values))
    if missing:
        raise MalformedModel(f"lacks the header lines {missing}")
    expected = {
        "version": "v4",
        "num_class": "1",
        "num_tree_per_iteration": "1",
        "label_index": "0",
        "max_feature_idx": str(len(features) - 1),
    }
    for key, want in expected.items():
        if values[key] != want:
            raise MalformedModel(f"has {key}={values[key][:40]!r}, expected {want}")
    names = values["feature_names"].split(" ")
    if names != list(features):
        shown = [name[:40] for name in names[:20]]  # a crafted name can be megabytes long
        raise MalformedModel(f"has features {shown}, expected {list(features)}")
    infos = values["feature_infos"].split(" ")
    if len(infos) != len(features):
        raise MalformedModel(f"has {len(infos)} feature_infos for {len(features)} features")
    for name, info in zip(features, infos, strict=True):
        if _CATEGORIES.fullmatch(info):
            raise MalformedModel(f"treats {name} as categorical: categorical splits are not "
                                 "supported")  # fmt: skip
        if not _FEATURE_INFO.fullmatch(info):
            raise MalformedModel(f"has feature_infos {info[:40]!r} for {name}, not a range")
    objective = values["objective"]
    if objective not in RANKING_OBJECTIVES:
        raise MalformedModel(f"has objective {objective[:40]!r}, not one of {RANKING_OBJECTIVES}")
    sizes = values["tree_sizes"].split(" ")
    if not sizes or not all(_INT.fullmatch(s) and int(s) > 0 for s in sizes):
        raise MalformedModel("has tree_sizes that are not positive integers")
    if len(sizes) > MAX_TREES:
        raise MalformedModel(f"has {len(sizes)} trees, more than {MAX_TREES}")
    return _Header(objective, tuple(int(s) for s in sizes))


def _tree(block: str, index: int, n_features: int) -> Tree:
    where = f"tree {index}"
    head = f"Tree={index}\n"
    # LightGBM reads a tree's key=value lines up to the first blank line: the block must end
    # there, or LightGBM would read lines that this check did not.
    if not block.startswith(head) or not block.endswith("\n\n"):
        raise MalformedModel(f"{where}: tree_sizes does not delimit a block 'Tree={index}'")
    body = block[len(head) :].rstrip("\n")
    fields: dict[str, str] = {}
    for line in body.split("\n"):
        key, sep, value = line.partition("=")
        if not sep:
            raise MalformedModel(f"{where}: a line is not key=value: {line[:80]!r}")
        if key in _CATEGORICAL_KEYS:
            raise MalformedModel(f"{where}: categorical splits are not supported ({key})")
        if key in _LINEAR_KEYS:
            raise MalformedModel(f"{where}: linear trees are not supported ({key})")
        if key not in _TREE_KEYS:
            raise MalformedModel(f"{where}: unexpected line {key[:80]!r}")
        if key in fields:
            raise MalformedModel(f"{where}: repeats {key!r}")
        fields[key] = value
    for key in ("num_leaves", "num_cat", "leaf_value"):
        if key not in fields:
            raise MalformedModel(f"{where}: lacks {key}")
    n = _ints(fields["num_leaves"], 1, where, "num_leaves")[0]
    if not 1 <= n <= MAX_LEAVES_PER_TREE:
        raise MalformedModel(f"{where}: num_leaves={n} is not within 1..{MAX_LEAVES_PER_TREE}")
    if _ints(fields["num_cat"], 1, where, "num_cat") != (0,):
        raise MalformedModel(f"{where}: categorical splits are not supported (num_cat)")
    if fields.get("is_linear", "0") != "0":
        raise MalformedModel(f"{where}: linear trees are not supported (is_linear)")
    _floats(fields.get("shrinkage", "1"), 1, where, "shrinkage")
    leaf_value = _floats(fields["leaf_value"], n, where, "leaf_value")
    splits = n - 1
    if splits and any(key not in fields for key in _SPLIT_ARRAYS):
        raise MalformedModel(f"{where}: lacks one of {_SPLIT_ARRAYS}")
    split_feature = _ints(fields.get("split_feature", ""), splits, where, "split_feature")
    threshold = _floats(fields.get("threshold", ""), splits, where, "threshold")
    decision_type = _ints(fields.get("decision_type", ""), splits, where, "decision_type")
    left = _ints(fields.get("left_child", ""), splits, where, "left_child")
    right = _ints(fields.get("right_child", ""), splits, where, "right_child")
    _informational(fields, splits, n, where)
    for node, feature in enumerate(split_feature):
        if not 0 <= feature < n_features:
            raise MalformedModel(f"{where}: node {node} splits on feature {feature}")
    for node, decision in enumerate(decision_type):
        if decision & 1:
            raise MalformedModel(f"{where}: node {node} is a categorical split")
        if decision not in _NUMERICAL_DECISIONS:
            raise MalformedModel(f"{where}: node {node} has decision_type {decision}")
    depth = _depth(left, right, n, where)
    return Tree(split_feature, threshold, decision_type, left, right, leaf_value, depth)


def _informational(fields: Mapping[str, str], splits: int, leaves: int, where: str) -> None:
    """Arrays prediction does not use (gains, counts, weights): numbers of the right length.
    A one-leaf tree is never read past its leaf value, and LightGBM writes some of them empty."""
    for key, length in [*((k, splits) for k in _SPLIT_INFO), *((k, leaves) for k in _LEAF_INFO)]:
        if key not in fields:
            continue
        tokens = _tokens(fields[key])
        if len(tokens) != length and not (splits == 0 and len(tokens) <= 1):
            raise MalformedModel(f"{where}: {key} has {len(tokens)} values, expected {length}")
        for token in tokens:
            if not (_FLOAT.fullmatch(token) or token in _NON_FINITE):
                raise MalformedModel(f"{where}: {key} holds {token[:40]!r}, not a number")


def _depth(left: Sequence[int], right: Sequence[int], leaves: int, where: str) -> int:
    """The tree's depth, once every child index is in range and every node and leaf is reached
    exactly once from the root (node 0); iterative, so it is bounded by the tree's size."""
    if leaves == 1:
        return 0
    internal = leaves - 1
    seen_nodes = [False] * internal
    seen_leaves = [False] * leaves
    seen_nodes[0] = True
    stack = [(0, 0)]
    depth = 0
    while stack:
        node, level = stack.pop()
        for child in (left[node], right[node]):
            if child >= 0:
                if child >= internal:
                    raise MalformedModel(f"{where}: node {node} has child {child}, out of range")
                if seen_nodes[child]:
                    raise MalformedModel(f"{where}: node {child} is reached twice (a cycle?)")
                if level + 1 >= MAX_DEPTH:
                    raise MalformedModel(f"{where}: deeper than {MAX_DEPTH}")
                seen_nodes[child] = True
                stack.append((child, level + 1))
            else:
                leaf = ~child
                if leaf >= leaves:
                    raise MalformedModel(f"{where}: node {node} has leaf {leaf}, out of range")
                if seen_leaves[leaf]:
                    raise MalformedModel(f"{where}: leaf {leaf} is reached twice")
                seen_leaves[leaf] = True
                depth = max(depth, level + 1)
    if not all(seen_nodes) or not all(seen_leaves):
        raise MalformedModel(f"{where}: some nodes or leaves are not reached from the root")
    return depth


def _tokens(value: str) -> list[str]:
    """Values separated by single spaces ("" is none); anything looser is refused, so this
    reading and LightGBM's tokenizer cannot disagree."""
    return value.split(" ") if value else []


def _ints(value: str, length: int, where: str, key: str) -> tuple[int, ...]:
    tokens = _tokens(value)
    if len(tokens) != length:
        raise MalformedModel(f"{where}: {key} has {len(tokens)} values, expected {length}")
    if not all(_INT.fullmatch(token) for token in tokens):
        raise MalformedModel(f"{where}: {key} holds a value that is not an integer")
    numbers = tuple(int(token) for token in tokens)
    if any(not -(2**31) <= number < 2**31 for number in numbers):
        raise MalformedModel(f"{where}: {key} holds a value outside 32 bits")
    return numbers


def _floats(value: str, length: int, where: str, key: str) -> tuple[float, ...]:
    tokens = _tokens(value)
    if len(tokens) != length:
        raise MalformedModel(f"{where}: {key} has {len(tokens)} values, expected {length}")
    if not all(_FLOAT.fullmatch(token) for token in tokens):
        raise MalformedModel(f"{where}: {key} holds a value that is not a finite number")
    numbers = tuple(float(token) for token in tokens)
    if not all(math.isfinite(number) for number in numbers):
        raise MalformedModel(f"{where}: {key} holds a value that is not a finite number")
    return numbers


def _tail(text: str) -> None:
    """After the trees: `end of trees`, then only lines of the sections LightGBM writes
    (feature importances, parameters) and `pandas_categorical:null`, which the Python package
    reads back from the last line."""
    lines = [line for line in text.split("\n") if line]
    if not lines or lines[0] != "end of trees":
        raise MalformedModel("does not continue with 'end of trees' where tree_sizes ends")
    section: re.Pattern[str] | None = None
    for line in lines[1:]:
        if line in _SECTIONS:
            section = _SECTIONS[line]
        elif line in ("end of parameters", "pandas_categorical:null"):
            section = None
        elif section is None or not section.fullmatch(line):
            raise MalformedModel(f"has an unexpected line after the trees: {line[:80]!r}")
