"""The report: ``python -m mathreason.report <sweep or run dirs…> [--out DIR] [--gain-frac 0.9]``.

Writes into ``--out`` (default ``<first path>/report``): ``results.md`` (table,
paired differences, "what this shows / what it does not", plots, the runs used
and those left out), ``results.csv`` (one row per arm), ``comparisons.csv``
(one row per paired difference), ``runs.csv`` (one row per run),
``items.csv.gz`` (every per-item outcome, from which every number here can be
recomputed) and PNG plots. Statistics: :mod:`mathreason.analysis.stats`.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mathreason import records as R
from mathreason.analysis import factors, plots, stats
from mathreason.analysis.runs import (
    REPLICATE,
    Arm,
    group_arms,
    items_frame,
    load_runs,
    matrix,
    matrix_at_rollouts,
    paired,
)
from mathreason.errors import UserError


def _curve(arm: Arm, items: pd.DataFrame, frac: float, opts: dict) -> None:
    """Per eval: mean strict accuracy and its CI band, x positions (step, rollouts,
    wall-clock; means over seeds), and the rollouts at which the arm reaches
    ``frac`` of its final gain. Evals are matched across seeds by step, or by
    their order where every run has as many evals at other steps (DPO: the
    rounds' pair counts, hence steps, vary by seed)."""
    s = arm.stats
    evals = [r.evals[["rollouts", "wall"]].assign(step=r.evals.index) for r in arm.runs]
    by_order = len({len(e) for e in evals}) == 1 and len({tuple(e.index) for e in evals}) > 1
    key = {(str(r.path), st): (i if by_order else st) for r, e in zip(arm.runs, evals) for i, st in enumerate(e.index)}
    xs = pd.concat([e.reset_index(drop=True) if by_order else e for e in evals]).groupby(level=0).mean()
    rows = items[items["run_dir"].isin({str(r.path) for r in arm.runs})]
    if arm.from_step0:
        rows = rows[rows["phase"] == "baseline"]
    rows = rows.assign(at=[key.get((d, st)) for d, st in zip(rows["run_dir"], rows["step"])]).dropna(subset=["at"])
    grid = rows.pivot_table(index=[*REPLICATE, "at"], columns="item_id", values="correct").dropna(axis=1)
    at = grid.index.get_level_values("at")
    n_seeds = grid.index.droplevel("at").nunique()
    common = [t for t in sorted(set(at)) if (at == t).sum() == n_seeds and t in xs.index]
    if not common or grid.shape[1] == 0:  # no per-item records: seed means from metrics.jsonl, no band
        ev = pd.concat([r.evals[R.STRICT].reset_index(drop=True) if by_order else r.evals[R.STRICT]
                        for r in arm.runs]).groupby(level=0).mean()
        s["curve"] = pd.DataFrame({"mean": ev, "low": ev, "high": ev}).join(xs)
        return
    grid = grid[grid.index.get_level_values("at").isin(common)].sort_index()
    tensor = grid.to_numpy(float).reshape(n_seeds, len(common), grid.shape[1])
    # the eval at which the curve reaches frac of its gain, as an index into the evals (each
    # eval sits at fixed rollouts; DPO's steps there vary by seed), then as rollouts and steps
    mean, low, high, at = stats.curve_bootstrap(tensor, np.arange(len(common), dtype=float), frac, **opts)
    s["curve"] = pd.DataFrame({"mean": mean, "low": low, "high": high}, index=common).join(xs)
    if arm.kind != R.BASELINE and len(common) > 1:
        for key, col in (("reach", "rollouts"), ("reach_steps", "step")):
            x = xs.loc[common, col].to_numpy(float)
            pick = [(at.mean, round), (at.ci_low, np.floor), (at.ci_high, np.ceil)]  # a CI end between evals: outward
            s[key] = stats.Estimate(*(x[int(f(v))] if np.isfinite(v) else np.nan for v, f in pick),
                                    at.p, at.n_seeds, at.n_items)


def arm_table(arms: list[Arm], items: pd.DataFrame, frac: float = 0.9, **opts) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fill ``arm.stats``; returns (per-arm table, paired comparisons)."""
    baseline = {a.model_data: a for a in arms if a.kind == R.BASELINE}
    finals: dict[str, pd.DataFrame] = {}
    sampled: dict[str, pd.DataFrame] = {}  # mean@k per seed and item (arms whose evals sampled)
    rows = []
    for arm in arms:
        s = arm.stats
        phase = "baseline" if arm.kind == R.BASELINE else "final"
        runs = pd.DataFrame([r.summary() for r in arm.runs])
        for key, value in (("strict", "correct"), ("lenient", "correct_lenient"), ("sampled", "sampled")):
            m = matrix(items, arm, phase, value)
            if key == "strict":
                finals[arm.label] = m
            if key == "sampled":
                m = m.dropna(axis=1, how="all")
                sampled[arm.label] = m
            if m.size:
                s[key] = stats.mean_ci(m.to_numpy(float), **opts)
            elif key != "sampled":  # no per-item records: the seeds' metrics.jsonl values
                col = runs["step0_strict" if arm.from_step0 else f"final_{key}"]
                mean, half = stats.t_interval(col.to_numpy(float))
                s[key] = stats.Estimate(mean, mean - half, mean + half, n_seeds=int(col.notna().sum()))
        if sampled[arm.label].size:  # pass@k: an item counts when any of its k samples is right
            s["pass"] = stats.mean_ci((sampled[arm.label].to_numpy(float) > 0).astype(float), **opts)
        if arm.kind != R.BASELINE:
            own = matrix(items, arm, "baseline") if arm.kind != "eval" else None
            base = own if own is not None and own.size else (
                finals.get(baseline[arm.model_data].label) if arm.model_data in baseline else None)
            if base is not None and base.size and finals[arm.label].size:
                a, b = paired(finals[arm.label], base)
                if a.size:  # none where the arm shares no replicate with its baseline (the raw model)
                    s["gain"] = stats.paired_difference(a, b, **opts)
            # mean@k against the baseline arm's (the training arms sample at their last eval only)
            base_k = sampled.get(baseline[arm.model_data].label) if arm.model_data in baseline else None
            if base_k is not None and base_k.size and sampled[arm.label].size:
                a, b = paired(sampled[arm.label], base_k)
                s["sampled_gain"] = stats.paired_difference(a, b, **opts) if a.size else stats.NAN
        _curve(arm, items, frac, opts)
        cost = runs.iloc[0:0] if arm.from_step0 else runs  # a step-0 baseline borrows evals, not cost
        rows.append({"arm": arm.label, "kind": arm.kind, "model": arm.model_data[0], "data": arm.model_data[1],
                     "group_size": arm.group_size, "n_seeds": len(arm.replicates), "seeds": ";".join(map(str, arm.seeds)),
                     "n_warm_starts": len(arm.warm_starts),
                     **{f"{k}_{f}": getattr(s.get(k, stats.NAN), f) for k in ("strict", "lenient", "sampled", "pass", "gain", "sampled_gain")
                        for f in ("mean", "ci_low", "ci_high")},
                     "gain_p": s.get("gain", stats.NAN).p,
                     **{f"{unit}_to_{frac:g}_gain{suffix}": getattr(s.get(key, stats.NAN), f)
                        for unit, key in (("rollouts", "reach"), ("steps", "reach_steps"))
                        for suffix, f in (("", "mean"), ("_ci_low", "ci_low"), ("_ci_high", "ci_high"))},
                     "n_items": s["strict"].n_items if "strict" in s else 0,
                     "peak_memory_mb": cost["peak_memory_mb"].mean(), "wall_clock_s": cost["wall_clock_s"].mean(),
                     "total_rollouts": cost["total_rollouts"].mean(), "steps": cost["steps"].mean(),
                     "generated_tokens": cost["generated_tokens"].mean(), "zero_signal": cost["zero_signal"].mean(),
                     "rewarded_false_equation": cost["rewarded_false_equation"].mean(),
                     "memory_keys": ";".join(sorted(set(cost["memory_key"].dropna()))), "baseline_source": arm.source})
    comps = []
    for arm in arms:
        if "gain" in arm.stats:
            comps.append((f"{arm.label} − its step-0 eval" if arm.kind != "eval" else f"{arm.label} − baseline",
                          arm.label, "its step-0 eval" if arm.kind != "eval" else "baseline", arm.stats["gain"]))
    for md in dict.fromkeys(a.model_data for a in arms):
        trained = [a for a in arms if a.model_data == md and a.kind != R.BASELINE and finals[a.label].size]
        for x, y in itertools.combinations(trained, 2):
            a, b = paired(finals[x.label], finals[y.label])
            if a.size:
                comps.append((f"{x.label} − {y.label}", x.label, y.label, stats.paired_difference(a, b, **opts)))
        comps += equal_rollout_comparisons(trained, items, finals, opts)
    comparisons = pd.DataFrame([{"comparison": c, "arm": a, "versus": v, "diff_pp": 100 * e.mean,
                                 "ci_low_pp": 100 * e.ci_low, "ci_high_pp": 100 * e.ci_high, "p": e.p,
                                 "n_seeds": e.n_seeds, "n_items": e.n_items} for c, a, v, e in comps],
                               columns=["comparison", "arm", "versus", "diff_pp", "ci_low_pp", "ci_high_pp", "p",
                                        "n_seeds", "n_items"])
    return pd.DataFrame(rows), comparisons


def group_sizes(arms: list[Arm]) -> dict[str, tuple[int, int]]:
    """Per setup (model and data) with GRPO arms of several group sizes: (smallest, largest),
    e.g. (2, 16): the group sizes the report compares, read from the runs."""
    sizes: dict[str, set[int]] = {}
    for a in arms:
        if a.kind == "grpo" and a.group_size:
            sizes.setdefault(a.model_data, set()).add(int(a.group_size))
    return {setup: (min(g), max(g)) for setup, g in sizes.items() if len(g) > 1}


def equal_rollout_comparisons(arms: list[Arm], items: pd.DataFrame, finals: dict[str, pd.DataFrame],
                              opts: dict) -> list[tuple]:
    """Each smallest-group GRPO arm's last eval against each larger-group GRPO arm of its setup
    at the same cumulative rollouts (the paper's like-for-like comparison), where the larger arm
    was evaluated there."""
    out, sizes = [], group_sizes(arms)
    for small, large in itertools.permutations([a for a in arms if a.kind == "grpo"], 2):
        if small.model_data not in sizes or small.model_data != large.model_data:
            continue
        if small.group_size != sizes[small.model_data][0] or (large.group_size or 0) <= small.group_size:
            continue
        ends = {float(r.evals["rollouts"].iloc[-1]) for r in small.runs}
        if len(ends) != 1:
            continue
        (end,) = ends
        a, b = paired(finals[small.label], matrix_at_rollouts(items, large, end))
        if a.size:
            out.append((f"{small.label} − {large.label} at {end:,.0f} rollouts", small.label,
                        f"{large.label} at {end:,.0f} rollouts", stats.paired_difference(a, b, **opts)))
    return out


def group_size_ratios(arms: list[Arm], items: pd.DataFrame, table: pd.DataFrame, **opts) -> list[dict]:
    """Smallest vs largest group size per setup that has both (2-GRPO vs 16-GRPO in the paper):
    the gain ratio with its bootstrap CI (seeds and items paired across the four matrices), and
    cost ratios. Every smallest-group arm (e.g. with and without lr scaling) is compared with the
    setup's largest-group arm; with several of those, with the one whose label matches."""
    out, by, sizes = [], table.set_index("arm"), group_sizes(arms)
    grpo = [a for a in arms if a.kind == "grpo"]
    for g2, g16 in itertools.product(grpo, repeat=2):
        if g2.model_data != g16.model_data or g2.model_data not in sizes:
            continue
        small, large = sizes[g2.model_data]
        if g2.group_size != small or g16.group_size != large:
            continue
        n_large = sum(a.group_size == large and a.model_data == g16.model_data for a in grpo)
        if n_large > 1 and g2.label.replace(f"G={small}", f"G={large}", 1) != g16.label:
            continue
        mats = paired(matrix(items, g2, "final"), matrix(items, g2, "baseline"),
                      matrix(items, g16, "final"), matrix(items, g16, "baseline"))
        ratio = stats.ratio_of_gains(*mats, **opts) if mats[0].size else stats.NAN
        row = {"small_arm": g2.label, "large_arm": g16.label, "sizes": (small, large), "gain_ratio": ratio}
        for key in ("wall_clock_s", "total_rollouts", "steps", "peak_memory_mb"):
            row[key] = by.at[g2.label, key] / by.at[g16.label, key] if by.at[g16.label, key] else np.nan
        out.append(row)
    return out


def _pct(e: stats.Estimate | None, signed: bool = False) -> str:
    if e is None or not np.isfinite(e.mean):
        return "—"
    f = "{:+.1f}" if signed else "{:.1f}"
    ci = f" [{f.format(100 * e.ci_low)}, {f.format(100 * e.ci_high)}]" if np.isfinite(e.ci_low) else ""
    return f.format(100 * e.mean) + ci


def _num(v: float, f: str = "{:,.0f}") -> str:
    return "—" if v is None or not np.isfinite(v) else f.format(v)


def _reach_cell(reach, never: bool) -> str:
    """A 'to 90% of gain' cell: '—' where not measured (no evals, or an SFT arm's rollouts), 'never gains'."""
    if reach is None:
        return "—"
    if never:
        return "never gains"
    if not np.isfinite(reach.mean):  # the curve gains, but this axis has no values (SFT: no rollouts)
        return "—"
    return f"{reach.mean:,.0f} [{_num(reach.ci_low)}, {_num(reach.ci_high)}]"


def markdown_table(arms: list[Arm], table: pd.DataFrame, frac: float) -> str:
    rows = []
    for arm, (_, t) in zip(arms, table.iterrows()):
        s = arm.stats
        reach, reach_steps = s.get("reach"), s.get("reach_steps")
        never = reach_steps is not None and not np.isfinite(reach_steps.mean)  # the curve never gains
        rows.append({"arm": arm.label, "seeds": len(arm.replicates), "final strict (%) [95% CI]": _pct(s.get("strict")),
                     "final lenient (%)": _pct(s.get("lenient")),
                     "final mean@k (%) [95% CI]": _pct(s.get("sampled")),
                     "final pass@k (%) [95% CI]": _pct(s.get("pass")),
                     "mean@k gain (pp) [95% CI]": _pct(s.get("sampled_gain"), signed=True),
                     "gain (pp) [95% CI]": _pct(s.get("gain"), signed=True),
                     "p": _num(s["gain"].p, "{:.3g}") if "gain" in s else "—",
                     f"rollouts to {100 * frac:g}% of gain [95% CI]": _reach_cell(reach, never),
                     f"steps to {100 * frac:g}% of gain [95% CI]": _reach_cell(reach_steps, never),
                     "peak mem (MB)": _num(t["peak_memory_mb"]), "wall-clock (s)": _num(t["wall_clock_s"]),
                     "rollouts": _num(t["total_rollouts"]), "generated tokens": _num(t["generated_tokens"]),
                     "zero-signal groups (%)": _num(100 * t["zero_signal"], "{:.0f}"),
                     "rewarded rollouts with a false equation (%)": _num(100 * t["rewarded_false_equation"], "{:.0f}")})
    df = pd.DataFrame(rows)
    return df.to_markdown(index=False, colalign=["left"] + ["right"] * (df.shape[1] - 1))


def error_table(items: pd.DataFrame) -> str:
    """The error taxonomy of the greedy answers (% of items, mean over seeds) per arm
    at its first and last eval (``records.ERROR_KINDS``; runs older than it have none)."""
    rows = items[items["phase"].isin(["baseline", "final"]) & items["error"].notna()]
    if rows.empty:
        return ""
    share = (rows.groupby(["arm", "phase", "seed"], sort=False)["error"].value_counts(normalize=True)
             .unstack(fill_value=0.0).groupby(level=[0, 1], sort=False).mean() * 100)
    share = share.reindex(columns=[k for k in R.ERROR_KINDS if k in share.columns])
    if rows["false_equation"].notna().all():  # right by luck: a right answer after a false equation
        lucky = (rows["correct"] * rows["false_equation"]).groupby([rows["arm"], rows["phase"], rows["seed"]],
                                                                  sort=False).mean()
        share["correct with a false equation"] = lucky.groupby(level=[0, 1], sort=False).mean() * 100
    return share.round(1).reset_index().to_markdown(index=False)


def findings(comparisons: pd.DataFrame, ratios: list[dict], arms: list[Arm]) -> tuple[list[str], list[str]]:
    """'What this shows' lines (one per paired difference, from its CI) and 'what it does not'."""
    shows = []
    for _, c in comparisons.iterrows():
        head = f"{c['comparison']}: {c['diff_pp']:+.1f} pp, 95% CI [{c['ci_low_pp']:+.1f}, {c['ci_high_pp']:+.1f}], p={c['p']:.3g}"
        if not np.isfinite(c["ci_low_pp"]):
            shows.append(f"{head}; no interval (too few seeds or items).")
        elif c["ci_low_pp"] <= 0 <= c["ci_high_pp"]:
            shows.append(f"{head}; the CI includes 0, so the data do not show a difference.")
        else:
            shows.append(f"{head}; the CI excludes 0: {c['arm']} is {'higher' if c['diff_pp'] > 0 else 'lower'} "
                         f"than {c['versus']} on these {c['n_items']} items and {c['n_seeds']} seeds.")
    for r in ratios:
        e = r["gain_ratio"]
        small, large = r["sizes"]
        ci = (f"95% CI [{e.ci_low:.2f}, {e.ci_high:.2f}]" if np.isfinite(e.ci_low)
              else f"no bounded CI (the G={large} gain is not clearly positive)")
        value = f"{e.mean:.2f}" if np.isfinite(e.mean) else f"undefined (the G={large} arm did not gain)"
        shows.append(f"{small}-GRPO / {large}-GRPO gain ratio ({r['small_arm']} / {r['large_arm']}): {value}, {ci}; at "
                     f"{r['total_rollouts']:.3g}× the rollouts and {r['wall_clock_s']:.2g}× the wall-clock.")
    seeds = sorted({len(a.seeds) for a in arms})
    n_items = sorted({a.stats["strict"].n_items for a in arms if "strict" in a.stats and a.stats["strict"].n_items})
    not_shown = [
        f"Seeds per arm: {', '.join(map(str, seeds))}. The bootstrap resamples these few seeds, so the CIs understate "
        "seed-to-seed variation; more seeds would widen or confirm them.",
        f"Items: {', '.join(map(str, n_items)) or 'no per-item records'} held-out items of one data set; nothing here "
        "is tested on other data, models or scales.",
        f"{len(comparisons)} comparisons, p-values not corrected for multiplicity; an arm not shown to differ may "
        "still differ by less than the CI's width.",
    ]
    return shows, not_shown


def versions_line(runs: list) -> str:
    """The package versions the runs recorded (run.json ``versions``), or how they differ."""
    seen: dict[str, int] = {}
    for run in runs:
        v = run.state.get("versions")
        key = ", ".join(f"{k} {v[k]}" for k in v) if isinstance(v, dict) else "not recorded"
        seen[key] = seen.get(key, 0) + 1
    if len(seen) == 1:
        return f"Package versions (every run): {next(iter(seen))}."
    return "Package versions differ between runs: " + "; ".join(f"{n} run(s): {k}" for k, n in seen.items()) + "."


@dataclass
class Report:
    arms: list[Arm]
    table: pd.DataFrame
    comparisons: pd.DataFrame
    ratios: list[dict]
    skipped: list[tuple[str, str]]
    markdown: str
    findings: list[str]
    files: list[Path]


def build_report(paths: list[Path], out: Path, frac: float = 0.9, n_resamples: int = stats.N_RESAMPLES,
                 seed: int = 0, warn=print) -> Report:
    opts = {"n_resamples": n_resamples, "seed": seed}
    runs, skipped = load_runs(paths, warn=warn)
    arms = group_arms(runs, warn=warn)
    items = items_frame(arms)
    table, comparisons = arm_table(arms, items, frac, **opts)
    ratios = group_size_ratios(arms, items, table, **opts)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / n for n in ("results.md", "results.csv", "comparisons.csv", "runs.csv", "items.csv.gz")]
    table.to_csv(files[1], index=False, float_format="%.6g")
    comparisons.to_csv(files[2], index=False, float_format="%.6g")
    pd.DataFrame([{"arm": a.label, **r.summary()} for a in arms if not a.from_step0 for r in a.runs]).to_csv(
        files[3], index=False, float_format="%.6g")
    all_items = items_frame(arms, final_splits=True)
    all_items.to_csv(files[4], index=False, float_format="%.6g")
    factor_lines: list[str] = []
    if factors.applies(all_items):
        factor_lines, factor_table = factors.factor_section(arms, all_items)
        factor_table.to_csv(out / "factors.csv", index=False, float_format="%.6g")
    pngs = plots.plot_accuracy(arms, out)
    pngs += [p for p in (plots.plot_forest(comparisons, out), plots.plot_rewards(arms, out),
                         plots.plot_dpo(arms, out)) if p]

    md_table = markdown_table(arms, table, frac)
    shows, not_shown = findings(comparisons, ratios, arms)
    n_runs = sum(len(a.runs) for a in arms if not a.from_step0)
    lines = ["# Results", "", f"{n_runs} finished runs from {', '.join(f'`{p}`' for p in paths)}"
             f"{f'; {len(skipped)} left out (listed below)' if skipped else ''}.", "", md_table, "",
             "- Accuracy: held-out strict (answer inside `<answer>` tags) and lenient accuracy at the run's last eval "
             "(baselines: their eval), mean over seeds and items, 95% bootstrap CI resampling seeds and items "
             "(`mathreason.analysis.stats`). Sampled (`eval.num_samples` = k at `eval.temperature`): mean@k, the share "
             "of right samples, and pass@k, the share of items with at least one right sample.",
             "- Gain: the paired difference, per seed and item, between the run's last eval and its own step-0 eval "
             "(eval arms: the baseline arm); p: two-sided bootstrap p-value.",
             f"- Rollouts and steps to {100 * frac:g}% of gain: the first eval of the arm's mean curve whose gain over "
             f"step 0 reaches {frac:g} × its final gain, with the same bootstrap's CI ('never gains': final gain ≤ 0; a "
             "CI end '—': undefined in over 2.5% of the replicates, where the arm did not gain), given as the "
             "rollouts (DPO: mined samples) and optimizer steps at that eval, means over seeds. Only the evals' points "
             "can be reached: the resolution is the eval interval.",
             "- Peak memory, wall-clock (last `train/wall_clock_s`), rollouts (last `train/cumulative_rollouts`; DPO: "
             "mining samples), generated tokens (GRPO: rollouts x mean completion length; DPO: the mined samples' "
             "tokens): means over seeds. Zero-signal groups: GRPO groups whose rewards were all equal (zero advantage: "
             "no gradient, yet counted in the loss normaliser of every TRL `loss_type`), mean over steps and seeds. "
             "Rewarded rollouts with a false equation: of the training rollouts the correctness reward scored right, "
             "the share whose working holds a false `a op b = c` (right by luck; TRL's logged completions), mean over "
             "seeds. Every per-item outcome is in `items.csv.gz`.",
             "", "## Error taxonomy of the greedy answers", "",
             error_table(items) or "no per-item error records",
             "", "Kinds (first that applies): correct; format (no `<answer>` tags); arithmetic (a false `a op b = c`); "
             "stop_short (true equations that stop at an intermediate value of the gold solution); other (wrong "
             "operands or operations). Where shown, \"correct with a false equation\" is the part of \"correct\" "
             "whose working holds a false equation: right by luck, rewarded all the same by a correctness reward.",
             "", "## Paired differences", "", comparisons.round(3).to_markdown(index=False) if len(comparisons) else "none",
             "", *factor_lines,
             "## What this shows", "", *[f"- {line}" for line in shows or ["No paired differences."]],
             "", "## What it does not show", "", *[f"- {line}" for line in not_shown],
             "", "## Plots", "", *[f"![{p.stem}]({p.name})" for p in pngs], "", "## Runs", ""]
    lines += [f"- **{a.label}**: " + ", ".join(f"seed {r.seed} `{r.path}`" for r in a.runs) for a in arms]
    lines += ["", versions_line([r for a in arms if not a.from_step0 for r in a.runs])]
    if skipped:
        lines += ["", "## Runs left out", ""] + [f"- `{path}`: {why}" for path, why in skipped]
    files[0].write_text("\n".join(lines) + "\n")
    return Report(arms, table, comparisons, ratios, skipped, md_table, shows, files + pngs)


def main(argv: list[str] | None = None) -> int:
    from mathreason.one_line import fail

    parser = argparse.ArgumentParser(prog="python -m mathreason.report", description=__doc__.split("\n\n")[1])
    parser.add_argument("paths", nargs="+", type=Path, help="sweep dirs (outputs/sweeps/<name>) or run dirs")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: <first path>/report)")
    parser.add_argument("--gain-frac", type=float, default=0.9,
                        help="rollouts to reach this fraction of the arm's final gain (default 0.9)")
    parser.add_argument("--resamples", type=int, default=stats.N_RESAMPLES, help="bootstrap replicates")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap random seed")
    args = parser.parse_args(argv)
    try:
        if not 0 < args.gain_frac <= 1:
            raise UserError(f"--gain-frac={args.gain_frac}: must be in (0, 1]")
        report = build_report(args.paths, args.out or (args.paths[0] / "report"), args.gain_frac, args.resamples,
                              args.seed, warn=lambda m: print(m, file=sys.stderr))
    except UserError as err:
        fail(err)
    print(report.markdown, "", *[f"- {line}" for line in report.findings], "", sep="\n")
    for path, why in report.skipped:
        print(f"left out: {path}: {why}")
    for path in report.files:
        print(f"wrote {path}")
    return 0
