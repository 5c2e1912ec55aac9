"""The pure-Python reading of LightGBM's text model format (`ltr_core.artifacts.model_format`): real
trained models pass and are read as LightGBM reads them; crafted ones (cycles, children out of
range, unreachable nodes, deep or huge trees, foreign features, non-finite values, categorical
or linear trees, text LightGBM would read differently) are refused before LightGBM sees them."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import lightgbm as lgb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ltr_assets.learning.training import DEFAULT_PARAMS
from ltr_core.artifacts import model_check, model_format
from ltr_core.artifacts.format import RegistryError, sha256, validate_artifact, weights_json
from ltr_core.artifacts.model_format import MalformedModel, ModelShape, Tree, check_model_format
from ltr_core.features import FEATURES
from ltr_core.scoring import ModelScorer, predict
from tests.support.artifacts import tiny_model_text, weights
from tests.support.model_texts import (
    TreeSpec,
    chain,
    edit_tree,
    stump,
    tree_line,
    write_model,
)


def _data(rows: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.random((rows, len(FEATURES)))
    return X, (X[:, 0] + X[:, 1] > 1.0).astype(int) + (X[:, 2] > 0.8).astype(int)


def _trained(params: dict[str, object], rounds: int = 20, **dataset: object) -> lgb.Booster:
    X, y = _data()
    data = lgb.Dataset(X, y, group=[20] * 100, feature_name=list(FEATURES), **dataset)  # type: ignore[arg-type]
    return lgb.train({"verbosity": -1, **params}, data, num_boost_round=rounds)


def _evaluate(shape: ModelShape, row: Sequence[float]) -> float:
    """A row's score from the trees as read here (numerical splits, no missing values)."""
    total = 0.0
    for tree in shape.trees:
        node = 0 if tree.num_leaves > 1 else ~0
        while node >= 0:
            go_left = row[tree.split_feature[node]] <= tree.threshold[node]
            node = tree.left_child[node] if go_left else tree.right_child[node]
        total += tree.leaf_value[~node]
    return total


def _agrees_with_lightgbm(text: str, rows: int = 200) -> ModelShape:
    shape = check_model_format(text, FEATURES)
    booster = lgb.Booster(model_str=text)
    X = np.random.default_rng(1).random((rows, len(FEATURES)))
    expected = [_evaluate(shape, row) for row in X.tolist()]
    assert np.allclose(predict(booster, X, num_threads=1), expected, rtol=0, atol=1e-12)
    assert len(shape.trees) == booster.num_trees()
    return shape


# -- real models pass, and are read as LightGBM reads them -----------------------------------


REAL_MODELS: dict[str, Callable[[], str]] = {
    "the registry tests' ranker": tiny_model_text,
    "the project's training parameters, best iteration kept": lambda: _trained(
        DEFAULT_PARAMS, 30
    ).model_to_string(num_iteration=20),
    "trained with positions (lightgbm_position)": lambda: _trained(
        DEFAULT_PARAMS, 10, position=np.tile(np.arange(20), 100)
    ).model_to_string(),
    "trees of one leaf (nothing to split)": lambda: _trained(
        {"objective": "lambdarank", "min_data_in_leaf": 5000}, 3
    ).model_to_string(),
    "rank_xendcg": lambda: _trained({"objective": "rank_xendcg"}, 5).model_to_string(),
}


@pytest.mark.parametrize("make", REAL_MODELS.values(), ids=REAL_MODELS.keys())
def test_real_trained_models_pass_and_read_as_lightgbm_reads_them(make: Callable[[], str]) -> None:
    shape = _agrees_with_lightgbm(make())
    assert shape.features == FEATURES
    assert all(tree.depth <= model_format.MAX_DEPTH for tree in shape.trees)


def test_a_hand_written_model_is_read_as_lightgbm_reads_it() -> None:
    trees = [
        stump(0, 0.5, -1.0, 1.0),
        TreeSpec([3, 1, 7], [0.2, 0.6, 0.9], [1, -1, -3], [2, -2, -4], [0.1, 0.2, 0.3, 0.4]),
        chain(12, feature=4),
    ]
    shape = _agrees_with_lightgbm(write_model(trees))
    assert [t.num_leaves for t in shape.trees] == [2, 4, 13]
    assert [t.depth for t in shape.trees] == [1, 2, 12]


def _is_tree(left: Sequence[int], right: Sequence[int], leaves: int) -> bool:
    """An independent oracle: parent pointers. Every node but the root and every leaf has
    exactly one parent, all indices are in range, and every node's ancestry reaches the root."""
    internal = leaves - 1
    parents: dict[int, list[int]] = {}
    for node in range(internal):
        for child in (left[node], right[node]):
            if not -leaves <= child < internal:
                return False
            parents.setdefault(child, []).append(node)
    if set(parents) != set(range(1, internal)) | set(range(-leaves, 0)):
        return False
    if any(len(p) != 1 for p in parents.values()):
        return False
    for node in range(1, internal):
        steps = 0
        while node != 0:
            node = parents[node][0]
            steps += 1
            if steps > internal:
                return False
    return True


@settings(max_examples=300, deadline=None)
@given(data=st.data(), leaves=st.integers(min_value=2, max_value=6))
def test_children_are_accepted_exactly_when_they_form_a_tree(
    data: st.DataObject, leaves: int
) -> None:
    """Child arrays drawn from the in-range values and just past them (cycles, shared and
    missing children, out-of-range indices): accepted exactly when they form a tree rooted at
    node 0, and then LightGBM scores as read."""
    splits = leaves - 1
    child = st.integers(min_value=-leaves - 1, max_value=splits)
    left = data.draw(st.lists(child, min_size=splits, max_size=splits))
    right = data.draw(st.lists(child, min_size=splits, max_size=splits))
    spec = TreeSpec(
        [i % len(FEATURES) for i in range(splits)],
        [0.3 + 0.1 * i for i in range(splits)],
        left,
        right,
        [float(i) for i in range(leaves)],
    )
    text = write_model([spec])
    if _is_tree(left, right, leaves):
        _agrees_with_lightgbm(text, rows=50)
    else:
        with pytest.raises(MalformedModel):
            check_model_format(text, FEATURES)


# -- crafted models are refused, with the reason ---------------------------------------------


def _real() -> str:
    return tiny_model_text()


def _right_children(text: str, first: str) -> str:
    """Tree 0's right_child line with its first entry replaced (tree_sizes recomputed)."""
    values = tree_line(text, 0, "right_child")
    return edit_tree(text, 0, "right_child", " ".join([first, *values[1:]]))


CYCLE = "tree 0: node 0 is reached twice"


@pytest.mark.parametrize(
    ("transform", "reason"),
    [
        (lambda t: _right_children(t, "0"), CYCLE),
        (lambda t: _right_children(t, "1000000"), "node 0 has child 1000000, out of range"),
        (lambda t: _right_children(t, "-1000000"), "has leaf 999999, out of range"),
        (lambda t: _right_children(t, "1"), "node 1 is reached twice"),
        (lambda t: _right_children(t, "-1"), "leaf 0 is reached twice"),
        (lambda t: edit_tree(t, 1, "split_feature", "11" + " 0" * 29), "splits on feature 11"),
        (lambda t: edit_tree(t, 1, "split_feature", "-1" + " 0" * 29), "splits on feature -1"),
        (lambda t: edit_tree(t, 0, "threshold", "inf 0.1 0.3"), "threshold holds a value"),
        (lambda t: edit_tree(t, 0, "threshold", "nan 0.1 0.3"), "threshold holds a value"),
        (lambda t: edit_tree(t, 0, "threshold", "1e999 0.1 0.3"), "threshold holds a value"),
        (lambda t: edit_tree(t, 0, "leaf_value", "0.1 0.2 0.3 inf"), "leaf_value holds a value"),
        (lambda t: edit_tree(t, 0, "leaf_value", "0.1 0.2 0.3"), "leaf_value has 3 values"),
        (lambda t: edit_tree(t, 0, "num_leaves", "5"), "leaf_value has 4 values, expected 5"),
        (lambda t: edit_tree(t, 0, "num_leaves", "0"), "num_leaves=0 is not within"),
        (lambda t: edit_tree(t, 0, "left_child", "1 -1"), "left_child has 2 values"),
        (lambda t: edit_tree(t, 0, "decision_type", "3 2 2"), "node 0 is a categorical split"),
        (lambda t: edit_tree(t, 0, "decision_type", "14 2 2"), "decision_type 14"),
        (lambda t: edit_tree(t, 0, "num_cat", "1"), "categorical splits are not supported"),
        (lambda t: edit_tree(t, 0, "is_linear", "1"), "linear trees are not supported"),
        (lambda t: edit_tree(t, 0, "shrinkage", "nan"), "shrinkage holds a value"),
        (lambda t: edit_tree(t, 0, "split_gain", "1 2"), "split_gain has 2 values"),
        (lambda t: edit_tree(t, 0, "left_child", "1  -1 -2"), "left_child has 4 values"),
        (lambda t: edit_tree(t, 0, "left_child", "1 -1 -2x"), "not an integer"),
        (lambda t: edit_tree(t, 0, "left_child", "1 -1 -2\ncat_threshold=1"), "categorical"),
        (lambda t: edit_tree(t, 0, "left_child", "1 -1 -2\nleaf_coeff=1"), "linear trees"),
        (lambda t: edit_tree(t, 0, "left_child", "1 -1 -2\nleft_child=1 -1 -2"), "repeats"),
        (lambda t: edit_tree(t, 0, "left_child", "1 -1 -2\nmystery=1"), "unexpected line"),
        (lambda t: edit_tree(t, 0, "left_child", "1 -1 -2\n\nright_child=0 0 0"), "not key="),
        (lambda t: t.replace("tree_sizes=", "tree_sizes=1"), "tree_sizes does not delimit"),
        (lambda t: t.replace("\ntree_sizes=", "\nxtree_sizes="), "unexpected header line"),
        (lambda t: t.replace("feature_names=A", "feature_names=Z"), "has features"),
        (lambda t: t.replace("max_feature_idx=10", "max_feature_idx=11"), "max_feature_idx"),
        (lambda t: t.replace("num_class=1", "num_class=2"), "num_class"),
        (lambda t: t.replace("objective=lambdarank", "objective=binary sigmoid:1"), "objective"),
        (lambda t: t.replace("version=v4", "version=v3"), "version"),
        (lambda t: t.replace("label_index=0", "label_index=0\naverage_output"), "header line"),
        (lambda t: t.replace("version=v4", "version=v4\nversion=v4"), "repeats"),
        (lambda t: t.replace("end of trees", "end of forests"), "'end of trees'"),
        (lambda t: t + "Tree=3\nnum_leaves=1\n", "unexpected line after the trees"),
        (lambda t: t.replace("pandas_categorical:null", "pandas_categorical:[[1]]"), "after"),
        (lambda t: t[: t.index("Tree=0")], "no trees"),  # LightGBM aborts on this one
        (lambda t: t[: t.index("Tree=2") + 40], "tree_sizes runs past the end"),
        (lambda t: t.replace("\n", "\r\n"), "carriage return"),
        (lambda t: t.replace("end of trees", "end of trees\0"), "NUL"),
    ],
)
def test_a_crafted_model_is_refused_with_the_reason(
    transform: Callable[[str], str], reason: str
) -> None:
    with pytest.raises(MalformedModel, match=None) as refused:
        check_model_format(transform(_real()), FEATURES)
    assert reason in str(refused.value)


def test_invalid_utf8_is_refused() -> None:
    with pytest.raises(MalformedModel, match="not UTF-8"):
        check_model_format(_real().encode().replace(b"tree\n", b"tree\n\xff\n", 1), FEATURES)


def test_a_model_over_other_features_is_refused() -> None:
    with pytest.raises(MalformedModel, match="has features"):
        check_model_format(_real(), [*FEATURES[:-1], "Z"])


def test_depth_is_bounded() -> None:
    depth = model_format.MAX_DEPTH
    shape = check_model_format(write_model([chain(depth)]), FEATURES)
    assert max(tree.depth for tree in shape.trees) == depth
    with pytest.raises(MalformedModel, match=f"deeper than {depth}"):
        check_model_format(write_model([chain(depth + 1)]), FEATURES)


@pytest.mark.parametrize(
    ("limit", "value", "reason"),
    [
        ("MAX_TREES", 3, "has 4 trees, more than 3"),
        ("MAX_LEAVES_PER_TREE", 8, "num_leaves=9 is not within 1..8"),
        ("MAX_TOTAL_LEAVES", 17, "has more than 17 leaves"),
        ("MAX_MODEL_BYTES", 1000, "more than 1000"),
    ],
)
def test_sizes_are_bounded_so_reading_is_bounded(
    monkeypatch: pytest.MonkeyPatch, limit: str, value: int, reason: str
) -> None:
    text = write_model([chain(4), chain(8), stump(), stump(1)])  # 4 trees, 5 + 9 + 2 + 2 leaves
    check_model_format(text, FEATURES)
    monkeypatch.setattr(model_format, limit, value)
    with pytest.raises(MalformedModel, match=reason):
        check_model_format(text, FEATURES)


def test_leaf_values_that_could_sum_past_any_float_are_refused() -> None:
    huge = [stump(0, 0.5, -1e300, 1e300) for _ in range(2)]
    with pytest.raises(MalformedModel, match="could sum to"):
        check_model_format(write_model(huge), FEATURES)
    one = check_model_format(write_model(huge[:1]), FEATURES)
    assert math.isfinite(_evaluate(one, [0.9] * len(FEATURES)))


def test_categorical_and_linear_models_lightgbm_trains_are_refused() -> None:
    X, _ = _data()
    X[:, 3] = np.floor(X[:, 3] * 5)
    y = np.isin(X[:, 3], (1, 3)).astype(int) * 2  # only a categorical split explains it
    data = lgb.Dataset(X, y, group=[20] * 100, feature_name=list(FEATURES), categorical_feature=[3])
    params = {"objective": "lambdarank", "verbosity": -1, "min_data_per_group": 5, "cat_smooth": 1}
    categorical = lgb.train(params, data, num_boost_round=5).model_to_string()
    assert "cat_threshold=" in categorical
    with pytest.raises(MalformedModel, match="categorical"):
        check_model_format(categorical, FEATURES)
    linear = _trained({"objective": "lambdarank", "linear_tree": True}, 3).model_to_string()
    with pytest.raises(MalformedModel, match="linear trees"):
        check_model_format(linear, FEATURES)


def test_the_shape_says_what_the_model_holds() -> None:
    shape = check_model_format(_real(), FEATURES)
    assert isinstance(shape.trees[0], Tree)
    assert (len(shape.trees), shape.leaves, shape.objective) == (3, 66, "lambdarank")
    assert shape.trees[0].right_child == (2, -3, -4)


# -- every LightGBM parse of untrusted text goes through the check ----------------------------


@pytest.mark.parametrize("first", ["0", "1000000"], ids=["cycle", "out of range"])
def test_artifact_validation_and_the_model_scorer_refuse_before_lightgbm_parses(
    first: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    crafted = _right_children(_real(), first)

    def no_lightgbm(*args: object, **kwargs: object) -> None:
        raise AssertionError("LightGBM was asked to parse a crafted model")

    monkeypatch.setattr(lgb, "Booster", no_lightgbm)
    # the artifact's check runs in a child, which must refuse before it loads LightGBM: with
    # no library to load, a child that tried would fail otherwise ("the model check failed")
    monkeypatch.setattr(model_check, "library_path", lambda: "/nonexistent/lib_lightgbm.so")
    monkeypatch.setattr(model_check, "_PASSED", set())
    with pytest.raises(MalformedModel):
        ModelScorer.from_model_text(crafted)
    weights_bytes, model_bytes = weights_json(weights(1)), crafted.encode()
    metadata = {
        "checksums": {"ltr_weights.json": sha256(weights_bytes), "model.txt": sha256(model_bytes)}
    }
    with pytest.raises(RegistryError, match="model.txt is malformed: tree 0"):
        validate_artifact(weights_bytes, model_bytes, metadata)


def test_a_model_that_passed_is_not_parsed_again_and_a_bad_one_always_is(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parses: list[int] = []
    check = model_format.check_model_format

    def counted(model: bytes | str, features: Sequence[str]) -> ModelShape:
        parses.append(1)
        return check(model, features)

    monkeypatch.setattr(model_format, "check_model_format", counted)
    monkeypatch.setattr(model_format, "_PASSED", set())
    text = _real() + "\n"  # bytes no other test has passed through the cache
    model_format.ensure_model_format(text, FEATURES)
    model_format.ensure_model_format(text.encode(), FEATURES)  # the same bytes
    ModelScorer.from_model_text(text)  # a scorer built from them: the reload's second check
    assert len(parses) == 1
    with pytest.raises(MalformedModel, match="expected"):  # other features: checked again
        model_format.ensure_model_format(text, [*FEATURES[:-1], "Z"])
    assert len(parses) == 2
    broken = text.replace("tree_sizes=", "tree_sizes=1 ", 1)
    for _ in range(2):
        with pytest.raises(MalformedModel):
            model_format.ensure_model_format(broken, FEATURES)
    assert len(parses) == 4


def test_a_refusal_quotes_a_crafted_feature_name_in_a_bounded_message() -> None:
    """A name of megabytes was quoted whole: in /reload's answer, every health check and the
    log line."""
    huge = "A" + "x" * 1_000_000
    with pytest.raises(MalformedModel, match="has features") as refused:
        check_model_format(_real().replace("feature_names=A", f"feature_names={huge}"), FEATURES)
    assert len(str(refused.value)) < 2_000


def test_a_metadata_partition_that_is_not_text_is_refused() -> None:
    """Health shows the partition as text: a number there took /ltr/health down (500)."""
    data, model = weights_json(weights(1)), _real().encode()
    metadata = {
        "partition": 20261125,
        "checksums": {"ltr_weights.json": sha256(data), "model.txt": sha256(model)},
    }
    with pytest.raises(RegistryError, match="partition that is not a string"):
        validate_artifact(data, model, metadata)
