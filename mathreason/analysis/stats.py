"""Paired statistics over seeds and held-out items (numpy + scipy.stats only).

Public API, for the report and any script (arrays in, an :class:`Estimate` out)::

    from mathreason.analysis.stats import paired_difference, mean_ci, ratio_of_gains
    d = paired_difference(a, b)   # a, b: (seeds, items) or (items,) outcomes, paired by position
    d.mean, d.ci_low, d.ci_high, d.p   # mean of a - b, its 95% CI, two-sided p-value
    mean_ci(a)                    # the mean of a with its CI (p tests mean = 0)
    ratio_of_gains(f2, b2, f16, b16)   # (mean f2 - b2) / (mean f16 - b16), e.g. the 2-vs-16 gain ratio
    paired_change(before, after)  # one run's after - before on its items: CI, gained/lost, McNemar p

Rows of the arrays are seeds and columns are items. Rows are matched by seed
and columns by item id before they get here: entry ``[s, i]`` of ``a`` and of
``b`` must be the same seed and item (see ``analysis.runs.matrix``).

What is resampled (the crossed bootstrap): each of ``n_resamples`` replicates
draws S seed rows with replacement and, independently, I item columns with
replacement. The same item draw serves every seed, because every seed is
evaluated on every item. The statistic is computed from the mean of each
resampled array. Arrays passed together are resampled with the same draws,
which is what makes the differences paired. With one seed this is the ordinary
paired bootstrap over items; :func:`bootstrap` then calls
``scipy.stats.bootstrap(paired=True)``.

CI: the percentile interval of the replicates. p-value: the bootstrap p-value
``min(1, 2 min(P*(θ* <= 0), P*(θ* >= 0)))``, counted as ``(k + 1) / (B + 1)``.
It is the smallest level at which the percentile CI excludes 0, so p < 0.05
exactly when the 95% CI excludes 0 (up to ties at 0).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

N_RESAMPLES = 2000
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    mean: float
    ci_low: float
    ci_high: float
    p: float = math.nan
    n_seeds: int = 0
    n_items: int = 0

    def excludes(self, value: float = 0.0) -> bool:
        return not (self.ci_low <= value <= self.ci_high)


NAN = Estimate(math.nan, math.nan, math.nan)


def crossed_bootstrap(arrays: Sequence[np.ndarray], statistic: Callable, n_resamples: int = N_RESAMPLES,
                      seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The point statistic and its ``n_resamples`` replicates. Each array has shape
    (S, ..., I): seeds first, items last, anything between (eval steps) kept;
    the statistic gets one mean per array, shape (...) or (B, ...)."""
    arrays = [np.asarray(a, float) for a in arrays]
    n_seeds, n_items = arrays[0].shape[0], arrays[0].shape[-1]
    rng = np.random.default_rng(seed)
    w_seeds = rng.multinomial(n_seeds, np.full(n_seeds, 1 / n_seeds), size=n_resamples)
    w_items = rng.multinomial(n_items, np.full(n_items, 1 / n_items), size=n_resamples)
    means = [np.einsum("bs,s...i,bi->b...", w_seeds, a, w_items) / (n_seeds * n_items) for a in arrays]
    point = statistic(*[a.mean(axis=(0, -1)) for a in arrays])
    return np.asarray(point), np.asarray(statistic(*means))


def bootstrap(arrays: Sequence[np.ndarray], statistic: Callable, n_resamples: int = N_RESAMPLES,
              level: float = LEVEL, seed: int = 0) -> Estimate:
    """``statistic`` of the arrays' means with its crossed-bootstrap CI and p-value
    (module docstring); one seed: ``scipy.stats.bootstrap(paired=True)``."""
    import scipy.stats

    arrays = [np.atleast_2d(np.asarray(a, float)) for a in arrays]
    if any(a.shape != arrays[0].shape for a in arrays) or arrays[0].size == 0:
        raise ValueError(f"arrays must share one non-empty (seeds, items) shape: {[a.shape for a in arrays]}")
    n_seeds, n_items = arrays[0].shape
    if n_seeds == 1:
        data = tuple(a[0] for a in arrays)
        point = float(statistic(*[x.mean() for x in data]))
        if n_items == 1 or all(np.ptp(x) == 0 for x in data):  # nothing to resample
            replicates = np.full(n_resamples, point)
        else:
            with warnings.catch_warnings():  # NaN replicates (an undefined ratio) are handled in estimate()
                warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
                res = scipy.stats.bootstrap(
                    data, lambda *xs, axis=-1: statistic(*[x.mean(axis=axis) for x in xs]), paired=True,
                    vectorized=True, n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed))
            replicates = res.bootstrap_distribution
    else:
        point, replicates = crossed_bootstrap(arrays, statistic, n_resamples, seed)
    return estimate(float(point), replicates, level, n_seeds, n_items)


def estimate(point: float, replicates: np.ndarray, level: float = LEVEL, n_seeds: int = 0,
              n_items: int = 0) -> Estimate:
    """Percentile CI and bootstrap p-value from replicates (NaN replicates are
    undefined values: a CI end they could fall beyond is reported as NaN)."""
    reps = np.asarray(replicates, float)
    alpha = (1 - level) / 2
    defined = reps[np.isfinite(reps)]
    if not math.isfinite(point) or defined.size == 0:
        return Estimate(point, math.nan, math.nan, math.nan, n_seeds, n_items)
    lo, hi = np.quantile(defined, [alpha, 1 - alpha])
    if 1 - defined.size / reps.size > alpha:  # too many undefined replicates to bound the interval
        lo, hi = math.nan, math.nan
    below, above = np.sum(defined <= 0), np.sum(defined >= 0)
    p = float(min(1.0, 2 * (min(below, above) + 1) / (reps.size + 1)))
    return Estimate(point, float(lo), float(hi), p, n_seeds, n_items)


def paired_difference(a, b, n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = 0) -> Estimate:
    """mean(a - b) with its 95% CI and p-value; ``a`` and ``b`` paired entry by entry."""
    return bootstrap([a, b], np.subtract, n_resamples, level, seed)


def mean_ci(a, n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = 0) -> Estimate:
    """mean(a) with its 95% CI (resampling seeds and items)."""
    return bootstrap([a], lambda m: m, n_resamples, level, seed)


def mcnemar_exact(gained: int, lost: int) -> float:
    """Exact McNemar p-value: the two-sided binomial test of the discordant items (gained vs lost) at 1/2."""
    import scipy.stats

    return float(scipy.stats.binomtest(gained, gained + lost, 0.5).pvalue) if gained + lost else 1.0


def paired_change(before, after, n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = 0) -> dict:
    """One run's change on its held-out items, ``after - before`` paired by item (1-D arrays of
    per-item outcomes: 0/1 greedy correctness or a per-item mean@k): the mean difference with its
    paired-bootstrap CI and p (:func:`paired_difference`), the items that went up (gained) and down
    (lost), and, for 0/1 outcomes, the exact McNemar p on those discordant items."""
    before, after = np.asarray(before, float), np.asarray(after, float)
    if before.shape != after.shape or before.ndim != 1 or before.size == 0:
        raise ValueError(f"before/after must be one non-empty item vector each: {before.shape}, {after.shape}")
    d = paired_difference(after, before, n_resamples, level, seed)
    gained, lost = int((after > before).sum()), int((after < before).sum())
    binary = bool(np.isin(before, (0, 1)).all() and np.isin(after, (0, 1)).all())
    return {"n_items": int(before.size), "before": float(before.mean()), "after": float(after.mean()),
            "diff": d.mean, "ci_low": d.ci_low, "ci_high": d.ci_high, "p_bootstrap": d.p,
            "gained": gained, "lost": lost, "p_mcnemar": mcnemar_exact(gained, lost) if binary else None}


def _ratio(f2, b2, f16, b16):
    num, den = np.subtract(f2, b2), np.subtract(f16, b16)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def ratio_of_gains(final_a, base_a, final_b, base_b, n_resamples: int = N_RESAMPLES, level: float = LEVEL,
                   seed: int = 0) -> Estimate:
    """(mean final_a - base_a) / (mean final_b - base_b), all four paired by seed and item;
    undefined (NaN) where arm b's gain is not positive. p tests ratio = 0."""
    return bootstrap([final_a, base_a, final_b, base_b], _ratio, n_resamples, level, seed)


def rollouts_to_frac(curves: np.ndarray, x: np.ndarray, frac: float) -> np.ndarray:
    """For mean accuracy curves (..., T) at eval points ``x`` (T,): the first x whose gain
    over the first point reaches ``frac`` of the last point's gain; NaN where it never gains."""
    gains = curves - curves[..., :1]
    final = gains[..., -1:]
    reached = gains >= frac * final - 1e-12
    first = np.argmax(reached, axis=-1)
    return np.where(final[..., 0] > 0, np.asarray(x, float)[first], np.nan)


def curve_bootstrap(tensor: np.ndarray, x: np.ndarray, frac: float, n_resamples: int = N_RESAMPLES,
                    level: float = LEVEL, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, Estimate]:
    """For outcomes (seeds, eval points, items): the mean curve, its pointwise CI
    (low, high) and the x at which the curve reaches ``frac`` of its final gain, with its CI."""
    point, reps = crossed_bootstrap([tensor], lambda m: m, n_resamples, seed)
    alpha = (1 - level) / 2
    low, high = np.quantile(reps, [alpha, 1 - alpha], axis=0)
    reach = estimate(float(rollouts_to_frac(point, x, frac)), rollouts_to_frac(reps, x, frac), level,
                      tensor.shape[0], tensor.shape[-1])
    return point, low, high, Estimate(reach.mean, reach.ci_low, reach.ci_high, math.nan, reach.n_seeds,
                                      reach.n_items)


def t_interval(values) -> tuple[float, float]:
    """Mean ± Student-t 95% half-width over seeds (training metrics, which have no items)."""
    import scipy.stats

    vals = np.asarray(values, float)
    vals = vals[np.isfinite(vals)]
    if vals.size < 2:
        return (float(vals.mean()) if vals.size else math.nan), math.nan
    return float(vals.mean()), float(scipy.stats.t.ppf(0.5 + LEVEL / 2, vals.size - 1) * scipy.stats.sem(vals))


# ---------------------------------------------------------------- warm starts x seeds x chain clusters
#
# An experiment whose warm start is a random factor has outcomes of shape
# (W warm starts, S seeds within each, I items), the items grouped into chain
# clusters (items that share an equation chain are not independent). With a
# handful of warm starts a percentile bootstrap that resamples them
# under-covers badly (3 warm starts whose spread dominates: about 74% for a
# nominal 95%, tests/test_analysis_stats.py), so these intervals add two
# variance components instead and use a t quantile with Satterthwaite's
# degrees of freedom:
#   - the top level: the variance of the W warm-start means (each over its
#     seeds and items) / W; with one warm start, of the S seed means / S. It
#     carries warm-start, seed and item-by-run noise.
#   - the items: the variance of the K chain-cluster means (each over every
#     run and the cluster's items) / K. It carries what is shared by every run
#     evaluated on the same items, which the top level cannot see.
# (The item-by-run noise is in both: the interval errs on the wide side.)
# A ratio is linearised first (the delta method): its interval is the
# interval of the linearised values around the point ratio.


def _nested_estimate(point: float, z: np.ndarray, clusters, level: float = LEVEL) -> Estimate:
    """``point`` with the two-component t interval of the linearised values ``z`` (W, S, I)."""
    import scipy.stats

    z = np.asarray(z, float)
    if z.ndim != 3:
        raise ValueError(f"outcomes must be (warm starts, seeds, items), got shape {z.shape}")
    n_ws, n_seeds, n_items = z.shape
    labels = np.asarray(clusters)
    if labels.shape != (n_items,):
        raise ValueError(f"clusters must label each of the {n_items} items, got shape {labels.shape}")
    top = z.mean(axis=(1, 2)) if n_ws > 1 else z[0].mean(axis=1)
    _, inv = np.unique(labels, return_inverse=True)
    per_item = z.mean(axis=(0, 1))
    cluster_means = np.bincount(inv, weights=per_item) / np.bincount(inv)
    parts = [(np.var(m, ddof=1) / m.size, m.size - 1) for m in (top, cluster_means) if m.size > 1]
    var = sum(v for v, _ in parts)
    if not math.isfinite(point) or var <= 0:
        return Estimate(point, point, point, math.nan, n_seeds * n_ws, n_items)
    dof = var ** 2 / sum(v ** 2 / d for v, d in parts)
    half = float(scipy.stats.t.ppf(0.5 + level / 2, dof)) * math.sqrt(var)
    p = float(2 * scipy.stats.t.sf(abs(point) / math.sqrt(var), dof))
    return Estimate(point, point - half, point + half, p, n_seeds * n_ws, n_items)


def nested_mean(a, clusters, level: float = LEVEL) -> Estimate:
    """mean(a) for outcomes (warm starts, seeds, items) with clustered items; p tests mean = 0."""
    a = np.asarray(a, float)
    return _nested_estimate(float(a.mean()), a - a.mean(), clusters, level)


def nested_difference(a, b, clusters, level: float = LEVEL) -> Estimate:
    """mean(a - b), ``a`` and ``b`` paired by warm start, seed and item."""
    return nested_mean(np.asarray(a, float) - np.asarray(b, float), clusters, level)


def nested_ratio(num, den, clusters, level: float = LEVEL) -> Estimate:
    """mean(num) / mean(den) (e.g. 2-GRPO's absolute score as a share of 16-GRPO's); p tests ratio = 0."""
    num, den = np.asarray(num, float), np.asarray(den, float)
    if den.mean() <= 0:
        return Estimate(math.nan, math.nan, math.nan, math.nan)
    ratio = num.mean() / den.mean()
    return _nested_estimate(float(ratio), (num - ratio * den) / den.mean(), clusters, level)


def nested_gain_ratio(final_a, base_a, final_b, base_b, clusters, level: float = LEVEL) -> Estimate:
    """(mean final_a - base_a) / (mean final_b - base_b), all paired; undefined where b does not gain."""
    gain_a = np.asarray(final_a, float) - np.asarray(base_a, float)
    gain_b = np.asarray(final_b, float) - np.asarray(base_b, float)
    return nested_ratio(gain_a, gain_b, clusters, level)
