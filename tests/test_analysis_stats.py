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


def test_paired_change_counts_gained_and_lost_and_matches_mcnemar():
    import scipy.stats

    from mathreason.analysis.stats import paired_change

    rng = np.random.default_rng(3)
    before = rng.integers(0, 2, 300)
    after = np.where(rng.random(300) < 0.2, 1 - before, before)
    c = paired_change(before, after)
    gained, lost = int(((before == 0) & (after == 1)).sum()), int(((before == 1) & (after == 0)).sum())
    assert (c["gained"], c["lost"], c["n_items"]) == (gained, lost, 300)
    assert c["diff"] == pytest.approx(after.mean() - before.mean())
    assert c["ci_low"] < c["diff"] < c["ci_high"]
    assert c["p_mcnemar"] == pytest.approx(scipy.stats.binomtest(gained, gained + lost).pvalue)
    # a per-item mean@k is not 0/1: no McNemar, items counted by direction
    frac = paired_change(np.full(4, 0.25), np.array([0.5, 0.25, 0.0, 0.75]))
    assert (frac["gained"], frac["lost"], frac["p_mcnemar"]) == (2, 1, None)
    with pytest.raises(ValueError):
        paired_change([1, 0], [1])


def _simulated(rng, n_ws=3, n_seeds=3, n_clusters=100, per=5, sd_ws=0.03, sd_seed=0.01, sd_cluster=0.1, sd=0.3,
               mean=0.5):
    """Outcomes (warm starts, seeds, items) around a known mean: warm-start, seed-within-warm-start and
    chain-cluster effects plus item noise."""
    clusters = np.repeat(np.arange(n_clusters), per)
    y = (mean + rng.normal(0, sd_ws, n_ws)[:, None, None] + rng.normal(0, sd_seed, (n_ws, n_seeds))[:, :, None]
         + rng.normal(0, sd_cluster, n_clusters)[clusters][None, None, :]
         + rng.normal(0, sd, (n_ws, n_seeds, n_clusters * per)))
    return y, clusters


def _hierarchical_percentile(y, clusters, rng, n_resamples=400):
    """The alternative not used: resample warm starts, seeds within each drawn one, and clusters."""
    n_ws, n_seeds, _ = y.shape
    idx = rng.integers(0, n_ws, size=(n_resamples, n_ws))
    counts = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=(n_resamples, n_ws))
    runs = np.zeros((n_resamples, n_ws, n_seeds))
    np.add.at(runs, (np.arange(n_resamples)[:, None], idx), counts)
    _, inv = np.unique(clusters, return_inverse=True)
    k = inv.max() + 1
    items = rng.multinomial(k, np.full(k, 1 / k), size=n_resamples)[:, inv]
    reps = np.einsum("bws,wsi,bi->b", runs, y, items) / (runs.sum((1, 2)) * items.sum(1))
    return np.quantile(reps, [0.025, 0.975])


@pytest.mark.parametrize("scenario", [
    {},                                        # items and warm starts both matter
    {"sd_ws": 0.0},                            # no warm-start effect
    {"sd_ws": 0.08, "sd_cluster": 0.02},       # the warm start dominates
    {"n_ws": 1, "n_seeds": 4, "sd_ws": 0.0, "sd_seed": 0.04},  # one warm start (its own mean): seeds on top
])
def test_nested_interval_covers_the_known_mean(scenario):
    """95% nominal; 1,000 simulated experiments measure coverage to about ±1.4 pp (2 SE)."""
    from mathreason.analysis.stats import nested_mean

    rng = np.random.default_rng(11)
    hits = []
    for _ in range(1000):
        y, clusters = _simulated(rng, **scenario)
        est = nested_mean(y, clusters)
        hits.append(est.ci_low <= 0.5 <= est.ci_high)
    assert 0.92 <= np.mean(hits) <= 0.985, np.mean(hits)


def test_with_three_warm_starts_a_percentile_bootstrap_would_under_cover():
    """Why the nested interval is a t interval: resampling 3 warm starts misses most of their spread."""
    rng = np.random.default_rng(5)
    hits = []
    for _ in range(200):
        y, clusters = _simulated(rng, sd_ws=0.08, sd_cluster=0.02)
        low, high = _hierarchical_percentile(y, clusters, rng)
        hits.append(low <= 0.5 <= high)
    assert np.mean(hits) < 0.85, np.mean(hits)


def test_nested_ratios_cover_their_known_values():
    """Absolute-score ratio 0.4/0.5 = 0.8 and gain ratio (0.45-0.4)/(0.5-0.4) = 0.5, paired arms
    sharing warm-start and cluster effects."""
    from mathreason.analysis.stats import nested_difference, nested_gain_ratio, nested_ratio

    rng = np.random.default_rng(2)
    abs_hits, gain_hits, diff_hits = [], [], []
    for _ in range(300):
        shared, clusters = _simulated(rng, mean=0.0, sd=0.0)  # effects common to every arm
        arm = {m: shared + m + rng.normal(0, 0.3, shared.shape) for m in (0.4, 0.45, 0.5)}
        r = nested_ratio(arm[0.4], arm[0.5], clusters)
        g = nested_gain_ratio(arm[0.45], arm[0.4], arm[0.5], arm[0.4], clusters)
        d = nested_difference(arm[0.5], arm[0.4], clusters)
        abs_hits.append(r.ci_low <= 0.8 <= r.ci_high)
        gain_hits.append(g.ci_low <= 0.5 <= g.ci_high)
        diff_hits.append(d.ci_low <= 0.1 <= d.ci_high)
    for hits in (abs_hits, gain_hits, diff_hits):
        assert 0.91 <= np.mean(hits) <= 0.995, np.mean(hits)


def test_nested_estimates_check_their_shapes():
    from mathreason.analysis.stats import nested_mean

    with pytest.raises(ValueError, match="warm starts, seeds, items"):
        nested_mean(np.zeros((3, 4)), np.arange(4))
    with pytest.raises(ValueError, match="clusters must label"):
        nested_mean(np.zeros((1, 2, 4)), np.arange(3))
