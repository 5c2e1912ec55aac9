"""The click model recovers a known examination curve; a pinned curve is validated."""

from __future__ import annotations

import numpy as np
import pytest

from ltr_assets.learning.propensity import (
    CASCADE_Z,
    FREE_CURVE_Z,
    MIN_THETA,
    PropensityError,
    fit_click_model,
    pinned_curve,
)

# On `_pbm_logs` the logging ranker sorts by the feature that drives attractiveness, and γ is
# early-stopped on held-out lists: the relevance γ leaves unexplained rises towards the top of
# the list, which steepens the fitted curve a little (η 0.84-0.86 for a true 0.8 at 1,500
# lists). On logs with the positions assigned at random the fit matches the click rates
# (test_the_curve_does_not_depend_on_how_far_the_relevance_model_got).
CONFOUNDED_TOLERANCE = 0.07


def _pbm_logs(seed: int, lists: int = 3000, n: int = 10, curve: np.ndarray | None = None):
    """A logging ranker that sorts by a noisy score; clicks = examined × attractive, examined
    with θ_k = k^-0.8 unless `curve` (θ_1..θ_n) is given."""
    rng = np.random.default_rng(seed)
    X = rng.random((lists * n, 3))
    attractive = 1.0 / (1.0 + np.exp(-(4.0 * X[:, 0] + 2.0 * X[:, 1] - 4.0)))
    positions = np.empty(lists * n, dtype=np.int64)
    for q in range(lists):
        rows = slice(q * n, (q + 1) * n)
        noisy = X[rows, 0] + rng.normal(0, 0.3, n)
        positions[rows] = np.argsort(np.argsort(-noisy)) + 1
    theta = positions.astype(float) ** -0.8 if curve is None else curve[positions - 1]
    clicks = rng.random(lists * n) < theta * attractive
    return positions, clicks, X, [n] * lists, attractive


def test_the_examination_curve_and_attractiveness_are_recovered() -> None:
    positions, clicks, X, sizes, attractive = _pbm_logs(5)
    model = fit_click_model(positions, clicks, X, sizes, num_threads=0, bootstrap=50)
    truth = np.arange(1, 11) ** -0.8
    estimate = model.curve.at(np.arange(1, 11))
    assert np.max(np.abs(estimate - truth)) < 0.05, estimate.round(3)
    assert model.curve.examination[0] == 1.0
    assert all(
        lo is not None and hi is not None and lo <= v <= hi
        for lo, v, hi in zip(
            model.curve.low, model.curve.examination, model.curve.high, strict=True
        )
    )
    assert np.corrcoef(model.gamma(X), attractive)[0, 1] > 0.9
    # positions past the last estimated one use its value
    assert model.curve.at(np.array([50]))[0] == model.curve.examination[-1]


def test_users_who_stop_after_their_first_click_fail_the_click_count_test() -> None:
    """The same logs, once as drawn (position-based users) and once with every click below a
    list's first click removed (cascade users): only the second has far fewer lists with
    several clicks than the fitted model predicts."""
    positions, clicks, X, sizes, _ = _pbm_logs(5, lists=1500)
    first = np.full(len(sizes), 99)
    lists = np.repeat(np.arange(len(sizes)), sizes)
    np.minimum.at(first, lists[clicks], positions[clicks])
    stopped = clicks & (positions <= first[lists])
    for kept, cascade in ((clicks, False), (stopped, True)):
        model = fit_click_model(positions, kept, X, sizes, num_threads=0, bootstrap=0)
        test = model.curve.params["click_count_test"]
        assert test["lists"] == pytest.approx(0.2 * len(sizes), rel=0.15)
        assert (test["z"] <= CASCADE_Z) is cascade, test
        if cascade:
            assert test["multi_click_lists"] == 0 and test["expected"] > 20, test
        else:
            assert test["z"] > -2 and test["multi_click_lists"] > 20, test


def test_a_curve_that_is_no_power_law_needs_the_per_position_family() -> None:
    # a page break after position 5: examination drops there, unlike any power law
    truth = np.array([1.0, 0.85, 0.75, 0.68, 0.62, 0.2, 0.18, 0.16, 0.15, 0.14])
    positions, clicks, X, sizes, _ = _pbm_logs(8, curve=truth)
    free = fit_click_model(
        positions, clicks, X, sizes, num_threads=0, bootstrap=0, family="per_position"
    )
    pooled = fit_click_model(
        positions, clicks, X, sizes, num_threads=0, bootstrap=0, family="power_law"
    )
    assert pooled.curve.params["family"] == "power_law"
    assert free.curve.params["family"] == "per_position" and "exponent" not in free.curve.params
    free_theta, pooled_theta = free.curve.at(np.arange(1, 11)), pooled.curve.at(np.arange(1, 11))
    assert free_theta[4] - free_theta[5] > 0.3  # the break is seen position by position
    assert pooled_theta[4] - pooled_theta[5] < 0.1  # and smoothed away by a power law
    # the metadata shows which family the logs support, beyond noise
    for model in (free, pooled):
        test = model.curve.params["family_test"]
        assert test["held_out_nll"]["per_position"] < test["held_out_nll"]["power_law"]
        assert test["free_curve_z"] >= FREE_CURVE_Z
    # so `auto` gives up the power law for the free curve here
    chosen = fit_click_model(positions, clicks, X, sizes, num_threads=0, bootstrap=0, family="auto")
    assert chosen.curve.params["family"] == "per_position"
    assert chosen.curve.params["family_choice"]["chosen"] == "per_position"
    assert chosen.curve.params["family_choice"]["free_curve_z"] >= FREE_CURVE_Z
    assert np.allclose(chosen.curve.examination, free.curve.examination)
    # the power law is ruled out: the gate's intervals span no other curve
    assert free.family_test is not None and free.family_test.plausible() == ("per_position",)
    assert free.alternative_curves() == {} and chosen.alternative_curves() == {}


def test_where_the_logs_cannot_rule_out_the_power_law_it_is_the_free_curves_alternative() -> None:
    positions, clicks, X, sizes, _ = _pbm_logs(11, lists=1500)
    free = fit_click_model(
        positions, clicks, X, sizes, num_threads=0, bootstrap=0, family="per_position"
    )
    assert free.family == "per_position" and free.family_test is not None
    assert free.family_test.free_curve_z < FREE_CURVE_Z
    alternatives = free.alternative_curves()
    assert list(alternatives) == ["power_law"]
    theta = alternatives["power_law"]
    k = np.arange(1, free.curve.positions + 1)
    assert theta.shape == (free.curve.positions,) and theta[0] == 1.0
    # a power law (refitted with the free curve's γ), close to the logs' own k^-0.8 (within
    # CONFOUNDED_TOLERANCE)
    exponent = -np.log(theta[1:]) / np.log(k[1:])
    assert np.ptp(exponent) < 1e-6
    assert exponent[0] == pytest.approx(0.8, abs=CONFOUNDED_TOLERANCE)
    # and the power law's alternative is the free curve, which nests it
    pooled = fit_click_model(
        positions, clicks, X, sizes, num_threads=0, bootstrap=0, family="power_law"
    )
    assert list(pooled.alternative_curves()) == ["per_position"]
    # a pinned curve has none
    pinned = fit_click_model(
        positions, clicks, X, sizes, num_threads=0, pinned=pinned_curve([1.0, 0.5, 0.3])
    )
    assert pinned.alternative_curves() == {}


def test_auto_keeps_the_power_law_when_the_logs_follow_one() -> None:
    positions, clicks, X, sizes, _ = _pbm_logs(11, lists=1500)
    model = fit_click_model(positions, clicks, X, sizes, num_threads=0, bootstrap=0, family="auto")
    choice = model.curve.params["family_choice"]
    assert model.curve.params["family"] == "power_law" and choice["chosen"] == "power_law"
    assert choice["free_curve_z"] < FREE_CURVE_Z
    assert model.curve.params["exponent"] == pytest.approx(0.8, abs=CONFOUNDED_TOLERANCE)


def test_the_power_law_family_pools_every_position_into_one_exponent() -> None:
    positions, clicks, X, sizes, _ = _pbm_logs(9, lists=1500)
    model = fit_click_model(
        positions, clicks, X, sizes, num_threads=0, bootstrap=50, family="power_law"
    )
    curve = model.curve
    assert curve.params["family"] == "power_law"
    assert curve.params["exponent"] == pytest.approx(0.8, abs=0.05)
    k = np.arange(1, curve.positions + 1)
    assert np.allclose(curve.examination, k ** -curve.params["exponent"], rtol=1e-6)
    assert all(
        lo is not None and hi is not None and lo <= v <= hi
        for lo, v, hi in zip(curve.low, curve.examination, curve.high, strict=True)
    )
    with pytest.raises(PropensityError, match="family"):
        fit_click_model(positions, clicks, X, sizes, num_threads=0, family="spline")  # type: ignore[arg-type]


def test_a_pinned_curve_is_used_as_given_and_must_make_sense() -> None:
    positions, clicks, X, sizes, _ = _pbm_logs(6, lists=600)
    curve = pinned_curve([1.0, 0.6, 0.4, 0.3])
    model = fit_click_model(positions, clicks, X, sizes, num_threads=0, pinned=curve)
    assert model.curve is curve and model.curve.method == "pinned"
    assert list(model.curve.at(np.array([1, 2, 9]))) == [1.0, 0.6, 0.3]
    for bad in ([], [0.9, 0.5], [1.0, 0.5, 0.7], [1.0, 0.0], [1.0, 1.5]):
        with pytest.raises(PropensityError):
            pinned_curve(bad)


def test_logs_without_clicks_cannot_be_estimated() -> None:
    positions, _, X, sizes, _ = _pbm_logs(7, lists=100)
    with pytest.raises(PropensityError, match="no clicks"):
        fit_click_model(positions, np.zeros(len(positions)), X, sizes, num_threads=0)


def _random_position_logs(seed: int, lists: int = 3000) -> tuple[np.ndarray, ...]:
    """Positions assigned at random (no logging ranker): the click rate at k over the click
    rate at 1 estimates θ_k / θ_1 with no model of relevance at all."""
    rng = np.random.default_rng(seed)
    sizes = rng.integers(5, 20, lists)
    positions = np.concatenate([np.arange(1, n + 1) for n in sizes])
    X = rng.random((positions.size, 11))
    attractive = 1.0 / (1.0 + np.exp(-(4.0 * X[:, 0] - 2.0)))
    clicks = rng.random(positions.size) < positions**-1.0 * attractive
    return positions, clicks, X, sizes


def test_the_curve_does_not_depend_on_how_far_the_relevance_model_got() -> None:
    """θ is relative to position 1 and γ carries the level of clicks. The fit alternates
    between them; were θ_1 held at 1 while γ is still too low, every later θ_k would come out
    high by that factor, and the fit stops (held-out likelihood) long before the two agree:
    the free curve came out 0.52 at position 2 here where the click rates say 0.46."""
    positions, clicks, X, sizes = _random_position_logs(0)
    rate = np.array([clicks[positions == k].mean() for k in range(1, 6)])
    free = fit_click_model(positions, clicks, X, sizes, num_threads=0, bootstrap=0)
    assert np.abs(free.curve.at(np.arange(1, 6)) - rate / rate[0]).max() < 0.015
    pooled = fit_click_model(
        positions, clicks, X, sizes, num_threads=0, bootstrap=0, family="power_law"
    )
    assert pooled.curve.params["exponent"] == pytest.approx(1.0, abs=0.03)


def test_a_curve_at_its_floor_stays_there_and_inside_its_band() -> None:
    """Users who only ever click the top result: every θ past position 1 sits at MIN_THETA
    (never below it, though θ_1 is fitted with a free scale), inside its bootstrap band."""
    positions, clicks, X, sizes = _random_position_logs(2, lists=800)
    clicks = clicks & (positions == 1)
    model = fit_click_model(positions, clicks, X, sizes, num_threads=0, bootstrap=20)
    curve = model.curve
    assert curve.examination[0] == 1.0 and min(curve.examination) == MIN_THETA
    assert all(
        lo is not None and hi is not None and lo <= v <= hi
        for lo, v, hi in zip(curve.low, curve.examination, curve.high, strict=True)
    )


def test_buckets_do_not_grow_with_the_largest_position() -> None:
    """A position far past the lists' (a crafted event) shares the last well-seen bucket; the
    buckets were counted with bincount, an array as long as that position (16 GiB for 2**31)."""
    from ltr_assets.learning.propensity import MIN_IMPRESSIONS, _buckets

    positions = np.repeat(np.array([1, 2, 3], dtype=np.int64), MIN_IMPRESSIONS)
    positions = np.append(positions, [4, 2**40])
    buckets = _buckets(positions)
    assert buckets[-2:].tolist() == [2, 2]  # 4 and 2**40 in position 3's bucket
    assert np.array_equal(buckets[:-2], positions[:-2] - 1)
