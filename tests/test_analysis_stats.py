"""mathreason.analysis.stats: the paired (seeds x items) bootstrap against
scipy.stats.bootstrap on known data, p-values, gain ratio, rollouts to a gain fraction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats

from mathreason.analysis import stats


def diff_stat(x, y, axis=-1):
    return np.mean(x - y, axis=axis)


@pytest.fixture(scope="module")
def ab():
    rng = np.random.default_rng(7)
    return (rng.random(300) < 0.55).astype(float), (rng.random(300) < 0.45).astype(float)


def test_one_seed_is_scipys_paired_bootstrap(ab):
    a, b = ab
    ref = scipy.stats.bootstrap((a, b), diff_stat, paired=True, method="percentile", n_resamples=2000,
                                rng=np.random.default_rng(3))
    est = stats.paired_difference(a, b, seed=3)
    assert est.mean == pytest.approx(np.mean(a - b))
    assert (est.ci_low, est.ci_high) == pytest.approx(tuple(ref.confidence_interval), abs=1e-12)
    assert est.n_seeds == 1 and est.n_items == 300


def test_crossed_bootstrap_agrees_with_scipy(ab):
    """The numpy seed x item resampler, given one seed (or identical seeds), is the
    paired item bootstrap: its CI matches scipy's within Monte Carlo error."""
    a, b = ab
    ref = scipy.stats.bootstrap((a, b), diff_stat, paired=True, method="percentile", n_resamples=20000,
                                rng=np.random.default_rng(1)).confidence_interval
    for seeds in (1, 3):
        point, reps = stats.crossed_bootstrap([np.tile(a, (seeds, 1)), np.tile(b, (seeds, 1))], np.subtract, 20000)
        assert point == pytest.approx(np.mean(a - b))
        assert np.quantile(reps, [0.025, 0.975]) == pytest.approx([ref.low, ref.high], abs=0.006)


def test_seeds_are_resampled():
    """Seeds that disagree widen the CI beyond what resampling items alone gives."""
    rng = np.random.default_rng(0)
    base = (rng.random((1, 200)) < 0.3).astype(float)
    a = np.vstack([(rng.random(200) < p).astype(float) for p in (0.3, 0.5, 0.7)])
    b = np.repeat(base, 3, axis=0)
    crossed = stats.paired_difference(a, b)
    pooled = stats.paired_difference(a.ravel(), b.ravel())  # 600 independent pairs: items only
    assert crossed.mean == pytest.approx(pooled.mean)
    assert crossed.ci_high - crossed.ci_low > 1.5 * (pooled.ci_high - pooled.ci_low)
    assert crossed.n_seeds == 3 and crossed.n_items == 200


def test_p_value_matches_the_ci():
    rng = np.random.default_rng(11)
    for effect in (0.0, 0.05, 0.1, 0.2):
        a = (rng.random((3, 150)) < 0.4 + effect).astype(float)
        b = (rng.random((3, 150)) < 0.4).astype(float)
        est = stats.paired_difference(a, b)
        assert 0 < est.p <= 1 and est.ci_low <= est.mean <= est.ci_high
        assert (est.p < 0.05) == est.excludes(0), est
    same = stats.paired_difference(np.ones((2, 10)), np.ones((2, 10)))
    assert (same.mean, same.ci_low, same.ci_high, same.p) == (0, 0, 0, 1)


def test_mean_ci_and_shapes():
    est = stats.mean_ci(np.array([[1.0, 0.0, 1.0, 1.0]]))
    assert est.mean == 0.75 and 0 <= est.ci_low < 0.75 < est.ci_high <= 1
    with pytest.raises(ValueError, match="shape"):
        stats.paired_difference(np.ones((2, 5)), np.ones((3, 5)))


def test_ratio_of_gains():
    rng = np.random.default_rng(5)
    base = np.zeros((3, 100))
    f16 = (rng.random((3, 100)) < 0.4).astype(float)
    f2 = f16 * (rng.random((3, 100)) < 0.5)
    est = stats.ratio_of_gains(f2, base, f16, base)
    assert est.mean == pytest.approx(f2.mean() / f16.mean())
    assert 0 < est.ci_low < est.mean < est.ci_high < 1
    flat = stats.ratio_of_gains(f2, base, base, base)  # the G=16 arm did not gain: undefined
    assert math.isnan(flat.mean) and math.isnan(flat.ci_low)


def test_rollouts_to_frac():
    x = np.array([0, 64, 128, 192])
    curves = np.array([[0.2, 0.4, 0.55, 0.6], [0.2, 0.1, 0.15, 0.15], [0.2, 0.56, 0.5, 0.6]])
    got = stats.rollouts_to_frac(curves, x, 0.9)  # targets 0.56, never, 0.56
    assert got[0] == 192 and math.isnan(got[1]) and got[2] == 64
    assert stats.rollouts_to_frac(curves[0], x, 0.5) == 64  # target 0.40, reached exactly
    tensor = np.zeros((2, 4, 10))
    tensor[:, 2:, :6] = 1
    mean, low, high, reach = stats.curve_bootstrap(tensor, x, 0.9, n_resamples=200)
    assert list(mean) == [0, 0, 0.6, 0.6] and reach.mean == 128 and (low <= mean).all() and (mean <= high).all()
