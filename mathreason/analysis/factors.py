"""The report's section for experiments whose warm start is a random factor.

Outcomes are arranged as (warm starts, seeds within each, items) and the
intervals are :func:`mathreason.analysis.stats.nested_mean` and friends: a t
interval adding the spread of the warm starts (or, with one warm start, of the
seeds) to the spread of the chain clusters the items form. Per held-out split
(the runs' own eval split and each of ``eval.final_splits``) it gives each
arm's greedy, mean@k and pass@k, its gain over the untrained warm start, every
G=2 arm against every larger-group arm (absolute-score ratio and gain ratio, at
equal epochs and at equal rollouts), the SFT control against the GRPO arms,
wall-clock ratios, a plateau check, and one row per warm start.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd

from mathreason import records as R
from mathreason.analysis import stats
from mathreason.analysis.runs import REPLICATE, Arm, Run

METRICS = (("greedy", "correct"), ("mean@k", "sampled"))


def _grid(items: pd.DataFrame, arm: Arm, phase: str, split: str, value: str,
          step: int | None = None, runs: list[Run] | None = None) -> pd.DataFrame:
    rows = items[(items["split"] == split) & (items["phase"] == phase if step is None else True)]
    paths = {str(r.path) for r in (runs or arm.runs)}
    rows = rows[rows["run_dir"].isin(paths)]
    if step is not None:
        rows = rows[rows["step"] == step]
    return rows.pivot_table(index=REPLICATE, columns="item_id", values=value, aggfunc="mean")


def aligned(grids: list[pd.DataFrame], items: pd.DataFrame) -> tuple[list[np.ndarray], np.ndarray]:
    """The grids on their common replicates and items, as (W, S, I) arrays (the seeds every
    warm start has), and each item's chain cluster."""
    if any(g.empty for g in grids):
        return [], np.array([])
    index = set.intersection(*(set(g.index) for g in grids))
    cols = sorted(set.intersection(*(set(g.dropna(axis=1).columns) for g in grids)))
    warm = sorted({w for w, _ in index})
    seeds = sorted(set.intersection(*({s for w2, s in index if w2 == w} for w in warm)), key=str) if warm else []
    if not cols or not seeds:
        return [], np.array([])
    keys = [(w, s) for w in warm for s in seeds]
    arrays = [g.loc[keys, cols].to_numpy(float).reshape(len(warm), len(seeds), len(cols)) for g in grids]
    chains = items.drop_duplicates("item_id").set_index("item_id")["chain_id"]
    return arrays, chains.reindex(cols).fillna(pd.Series(cols, index=cols)).to_numpy()


def _share(e: stats.Estimate) -> stats.Estimate:
    """A share's interval clipped to [0, 1] (a t interval can cross the bounds near them)."""
    return stats.Estimate(e.mean, max(0.0, e.ci_low), min(1.0, e.ci_high), e.p, e.n_seeds, e.n_items)


def _fmt(e: stats.Estimate, pct: bool = True, signed: bool = False) -> str:
    if not math.isfinite(e.mean):
        return "—"
    scale, unit = (100, "") if pct else (1, "")
    spec = "+.1f" if signed and pct else (".1f" if pct else ".3f")
    if not math.isfinite(e.ci_low):
        return f"{scale * e.mean:{spec}}{unit}"
    return f"{scale * e.mean:{spec}} [{scale * e.ci_low:{spec}}, {scale * e.ci_high:{spec}}]"


def _baseline_grid(items: pd.DataFrame, arm: Arm, base: Arm | None, split: str, value: str) -> pd.DataFrame:
    """The untrained model on the same replicates: the arm's own step-0 eval on its own split,
    else the baseline arm's eval (the only one on a final split)."""
    own = _grid(items, arm, "baseline", split, value) if arm.kind not in (R.BASELINE, "eval") else pd.DataFrame()
    if not own.empty and not own.dropna(axis=1, how="all").empty:
        return own
    return _grid(items, base, "baseline", split, value) if base is not None else pd.DataFrame()


def _at_rollouts(items: pd.DataFrame, arm: Arm, split: str, rollouts: float) -> pd.DataFrame:
    frames = []
    for run in arm.runs:
        ev = run.evals
        steps = ev.index[np.isclose(ev["rollouts"].astype(float), rollouts)]
        if len(steps):
            frames.append(_grid(items, arm, "", split, "correct", step=int(steps[0]), runs=[run]))
    return pd.concat(frames) if frames else pd.DataFrame()


def _train_seconds(run: Run) -> float:
    key = "train/step_time"
    return float(run.metrics[key].sum()) if key in run.metrics else math.nan


def _ratio_ci(values: list[float]) -> stats.Estimate:
    vals = np.asarray([v for v in values if math.isfinite(v)], float)
    if not vals.size:
        return stats.NAN
    mean, half = stats.t_interval(vals)
    return stats.Estimate(mean, mean - half, mean + half, n_seeds=int(vals.size))


def applies(items: pd.DataFrame) -> bool:
    """The section is for runs whose items form chain clusters or that span several warm starts."""
    return bool(len(items)) and (items["warm_start"].nunique() > 1 or (items["chain_id"] != items["item_id"]).any())


def factor_section(arms: list[Arm], items: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """Markdown lines and a table (one row per estimate) of the warm-start-aware analysis.
    ``items``: :func:`items_frame` with ``final_splits=True``."""
    lines: list[str] = []
    rows: list[dict[str, Any]] = []
    trained = [a for a in arms if not a.from_step0]
    base = next((a for a in trained if a.kind == R.BASELINE), None)
    splits = [s for s in dict.fromkeys(items["split"]) if isinstance(s, str)]
    n_ws = sorted({len(a.warm_starts) for a in trained})
    lines += ["## Across warm starts, seeds and chain clusters", "",
              f"Warm starts per arm: {', '.join(map(str, n_ws))}. Intervals: a 95% t interval that adds the spread "
              "of the warm starts' means (with one warm start: of the seeds') to the spread of the chain clusters' "
              "means, with Satterthwaite's degrees of freedom (`mathreason.analysis.stats.nested_mean`); pairs "
              "match warm start, seed and item. Ratios use the delta method on the same pairs.", ""]

    def add(split: str, what: str, arm: str, versus: str, e: stats.Estimate, kind: str = "pp") -> None:
        rows.append({"split": split, "estimate": what, "arm": arm, "versus": versus, "mean": e.mean,
                     "ci_low": e.ci_low, "ci_high": e.ci_high, "p": e.p, "n_replicates": e.n_seeds,
                     "n_items": e.n_items, "unit": kind})

    for split in splits:
        table = []
        for arm in trained:
            phase = "baseline" if arm.kind == R.BASELINE else "final"
            cells: dict[str, str] = {"arm": arm.label}
            for name, value in METRICS:
                arrays, clusters = aligned([_grid(items, arm, phase, split, value)], items)
                if not arrays:
                    continue
                a = arrays[0]
                e = _share(stats.nested_mean(a, clusters))
                cells[name] = _fmt(e)
                add(split, name, arm.label, "", e, "%")
                if value == "sampled":
                    p = _share(stats.nested_mean((a > 0).astype(float), clusters))
                    cells["pass@k"] = _fmt(p)
                    add(split, "pass@k", arm.label, "", p, "%")
                if arm.kind != R.BASELINE:
                    pair, pair_clusters = aligned([_grid(items, arm, phase, split, value),
                                                   _baseline_grid(items, arm, base, split, value)], items)
                    if pair:
                        g = stats.nested_difference(pair[0], pair[1], pair_clusters)
                        cells[f"{name} gain (pp)"] = _fmt(g, signed=True)
                        add(split, f"{name} gain", arm.label, "untrained", g)
                if name == "greedy":
                    cells["warm starts x seeds, items (chains)"] = (
                        f"{a.shape[0]} x {a.shape[1]}, {a.shape[2]:,} ({len(set(clusters)):,})")
            table.append(cells)
        if table:
            frame = pd.DataFrame(table).fillna("—")
            lines += [f"### Split `{split}`", "", frame.to_markdown(index=False), ""]
        lines += _contrasts(trained, items, split, base, add)
    lines += _costs_and_plateau(trained, items, splits[0] if splits else "", add)
    lines += _per_warm_start(trained, base, items, splits[0] if splits else "")
    lines += _per_replicate(trained, items, splits[0] if splits else "")
    return lines, pd.DataFrame(rows)


def _group_size_pairs(arms: list[Arm]) -> list[tuple[Arm, Arm]]:
    """Every GRPO arm of a smaller group size with every one of a larger (2-GRPO vs 16-GRPO, or any pair)."""
    grpo = [a for a in arms if a.kind == "grpo" and a.group_size]
    return [(s, g) for s, g in itertools.product(grpo, grpo) if s.group_size < g.group_size]


def _contrasts(arms: list[Arm], items: pd.DataFrame, split: str, base: Arm | None, add) -> list[str]:
    lines = []
    for small, large in _group_size_pairs(arms):
        for name, value in METRICS:
            f2, f16 = _grid(items, small, "final", split, value), _grid(items, large, "final", split, value)
            (pair, clusters) = aligned([f2, f16], items)
            if not pair:
                continue
            r = stats.nested_ratio(pair[0], pair[1], clusters)
            add(split, f"{name} absolute ratio, equal epochs", small.label, large.label, r, "ratio")
            quad, clusters = aligned([f2, _baseline_grid(items, small, base, split, value), f16,
                                      _baseline_grid(items, large, base, split, value)], items)
            g = stats.nested_gain_ratio(*quad, clusters) if quad else stats.NAN
            add(split, f"{name} gain ratio, equal epochs", small.label, large.label, g, "ratio")
            lines.append(f"- `{split}`, {name}, equal epochs: {small.label} / {large.label}: absolute ratio "
                         f"{_fmt(r, pct=False)}, gain ratio {_fmt(g, pct=False)}.")
        totals = [r.summary()["total_rollouts"] for r in small.runs]
        if totals and split == next(iter(dict.fromkeys(items["split"]))):
            at = _at_rollouts(items, large, split, float(np.nanmedian(totals)))
            f2 = _grid(items, small, "final", split, "correct")
            pair, clusters = aligned([f2, at], items)
            if pair:
                r = stats.nested_ratio(pair[0], pair[1], clusters)
                d = stats.nested_difference(pair[0], pair[1], clusters)
                quad, cl2 = aligned([f2, _baseline_grid(items, small, base, split, "correct"), at,
                                     _baseline_grid(items, large, base, split, "correct")], items)
                g = stats.nested_gain_ratio(*quad, cl2) if quad else stats.NAN
                add(split, "greedy absolute ratio, equal rollouts", small.label, large.label, r, "ratio")
                add(split, "greedy gain ratio, equal rollouts", small.label, large.label, g, "ratio")
                add(split, "greedy difference, equal rollouts", small.label, large.label, d)
                lines.append(f"- `{split}`, greedy, equal rollouts ({np.nanmedian(totals):,.0f}): {small.label} − "
                             f"{large.label} {_fmt(d, signed=True)} pp; absolute ratio {_fmt(r, pct=False)}, "
                             f"gain ratio {_fmt(g, pct=False)}.")
    # arms of different methods (GRPO, DPO, the SFT control) after their last epoch or round; all start
    # from the same model on the same items, so a difference of finals is a difference of gains
    methods = sorted((a for a in arms if a.kind in METHOD_ORDER), key=lambda a: METHOD_ORDER.index(a.kind))
    for x, y in itertools.combinations(methods, 2):
        if x.kind == y.kind:
            continue
        for name, value in METRICS:
            pair, clusters = aligned([_grid(items, x, "final", split, value), _grid(items, y, "final", split, value)],
                                     items)
            if pair:
                d = stats.nested_difference(pair[0], pair[1], clusters)
                add(split, f"{name} difference", x.label, y.label, d)
                lines.append(f"- `{split}`, {name}: {x.label} − {y.label} {_fmt(d, signed=True)} pp.")
    return lines + ([""] if lines else [])


METHOD_ORDER = ("grpo", "dpo", "sft")  # a difference reads "first − second"


def _costs_and_plateau(arms: list[Arm], items: pd.DataFrame, split: str, add) -> list[str]:
    lines = []
    for small, large in _group_size_pairs(arms):
        whole, train = [], []
        for w, s in small.replicates:
            a = next((r for r in small.runs if (r.warm_start, r.seed) == (w, s)), None)
            b = next((r for r in large.runs if (r.warm_start, r.seed) == (w, s)), None)
            if a is not None and b is not None:
                whole.append(a.summary()["wall_clock_s"] / b.summary()["wall_clock_s"])
                train.append(_train_seconds(a) / _train_seconds(b))
        for what, values in (("wall-clock ratio, whole run", whole), ("wall-clock ratio, training only", train)):
            e = _ratio_ci(values)
            add("", what, small.label, large.label, e, "ratio")
            if math.isfinite(e.mean):
                lines.append(f"- {what}: {small.label} / {large.label} = {_fmt(e, pct=False)} "
                             f"(mean over {e.n_seeds} paired runs, t interval).")
    for arm in (a for a in arms if a.kind in METHOD_ORDER):
        evals = _eval_steps(items, arm, split)
        if len({len(v) for v in evals.values()}) != 1 or len(next(iter(evals.values()))) < 3:
            continue  # runs with different numbers of evals, or too few
        mean_steps = np.mean(list(evals.values()), axis=0)
        n, mid = len(mean_steps), int(np.searchsorted(mean_steps, mean_steps[-1] / 2))
        picks = (n - 1, n - 2, mid, 0)  # the k-th eval of each run (DPO's steps differ by seed; its evals do not)
        grids = [pd.concat([_grid(items, arm, "", split, "correct", step=steps[k], runs=[run])
                            for run in arm.runs if (steps := evals.get(str(run.path)))]) for k in picks]
        arrays, clusters = aligned(grids, items)
        if not arrays:
            continue
        last, before, at_mid = (_mean_step(evals, k) for k in picks[:3])
        d = stats.nested_difference(arrays[0], arrays[1], clusters)
        frac = stats.nested_gain_ratio(arrays[2], arrays[3], arrays[0], arrays[3], clusters)
        add(split, f"plateau: last eval − the one before (steps {last} vs {before})", arm.label, "", d)
        add(split, f"plateau: gain at step {at_mid} / final gain", arm.label, "", frac, "ratio")
        plateaued = d.ci_low <= 0 <= d.ci_high and frac.mean >= 0.9
        lines.append(f"- plateau on `{split}`, {arm.label}: last two evals differ by {_fmt(d, signed=True)} pp; the "
                     f"gain at step {at_mid} is {_fmt(frac, pct=False)} of the final → by the rule (CI of the first "
                     "includes 0, point estimate of the second >= 0.9): "
                     f"{'plateaued' if plateaued else 'not shown to have plateaued'}.")
    return lines + ([""] if lines else [])


def _eval_steps(items: pd.DataFrame, arm: Arm, split: str) -> dict[str, list[int]]:
    """Per run dir of the arm: the steps of its evals on ``split``, in order."""
    rows = items[items["run_dir"].isin({str(r.path) for r in arm.runs}) & (items["split"] == split)]
    return {d: sorted(g["step"].unique()) for d, g in rows.groupby("run_dir")}


def _mean_step(evals: dict[str, list[int]], k: int) -> str:
    """The k-th eval's step (its mean over runs where they differ, as DPO's do)."""
    steps = [v[k] for v in evals.values()]
    return str(steps[0]) if len(set(steps)) == 1 else f"~{np.mean(steps):.0f}"


def _per_warm_start(arms: list[Arm], base: Arm | None, items: pd.DataFrame, split: str) -> list[str]:
    if base is None:
        return []
    rows = []
    for ws in base.warm_starts:
        runs = [r for r in base.runs if r.warm_start == ws]
        sel = items[items["run_dir"].isin({str(r.path) for r in runs}) & (items["split"] == split)]
        versions = runs[0].state.get("versions", {})
        rows.append({"warm start": ws, "runs": len(runs), f"start greedy on {split} (%)": 100 * sel["correct"].mean(),
                     **{k: versions.get(k) for k in ("torch", "transformers", "trl")}})
    return ["### Warm starts", "", pd.DataFrame(rows).to_markdown(index=False, floatfmt=".1f"), ""]


def _per_replicate(arms: list[Arm], items: pd.DataFrame, split: str) -> list[str]:
    """One row per run of each trained arm with several: its final greedy accuracy and its gain
    over its own first eval, what the pooled intervals above summarise."""
    rows = []
    for arm in (a for a in arms if a.kind != R.BASELINE and len(a.replicates) > 1):
        for run in arm.runs:
            sel = items[(items["run_dir"] == str(run.path)) & (items["split"] == split)]
            final = sel.loc[sel["phase"] == "final", "correct"].mean()
            start = sel.loc[sel["phase"] == "baseline", "correct"].mean()
            rows.append({"arm": arm.label, "warm start": run.warm_start, "seed": run.seed,
                         f"final greedy on {split} (%)": f"{100 * final:.1f}",
                         "gain (pp)": f"{100 * (final - start):+.1f}"})
    return ["### Per run", "", pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True), ""] if rows else []
