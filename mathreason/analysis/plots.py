"""Plots (matplotlib, Agg): accuracy vs step / rollouts / wall-clock with 95%
CI bands, a forest plot of the paired differences, training reward
components and DPO implicit rewards (mean over seeds, Student-t band)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from mathreason import records as R
from mathreason.analysis.runs import Arm
from mathreason.scoring.rewards import REWARD_FUNCS


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def colors(arms: list[Arm]) -> dict[str, object]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    train = [a.label for a in arms if a.kind != R.BASELINE]
    return {a.label: "0.35" if a.kind == R.BASELINE else cmap(train.index(a.label) % 10) for a in arms}


X_AXES = [("accuracy_vs_step.png", "step", "training step"),
          ("accuracy_vs_rollouts.png", "rollouts", "cumulative rollouts (completions generated; DPO: mining samples)"),
          ("accuracy_vs_wallclock.png", "wall", "wall-clock (s)")]


def plot_accuracy(arms: list[Arm], out: Path) -> list[Path]:
    plt = _plt()
    from matplotlib.ticker import PercentFormatter

    color, written = colors(arms), []
    for name, x_key, xlabel in X_AXES:
        fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
        for arm in arms:
            curve = arm.stats.get("curve")
            if curve is None or curve.empty:
                continue
            c, n = color[arm.label], len(arm.runs)
            if arm.kind == R.BASELINE:
                ax.axhline(curve["mean"].iloc[0], color=c, ls="--", lw=1.2,
                           label=f"{arm.label} ({100 * curve['mean'].iloc[0]:.1f}%)")
                ax.axhspan(curve["low"].iloc[0], curve["high"].iloc[0], color=c, alpha=0.12, lw=0)
                continue
            x = curve[x_key]
            ax.plot(x, curve["mean"], color=c, lw=2, marker="o" if len(x) <= 30 else None, ms=3,
                    label=f"{arm.label} (n={n})")
            ax.fill_between(x, curve["low"], curve["high"], color=c, alpha=0.18, lw=0)
        ax.set_title(f"Held-out strict accuracy vs {xlabel.split(' (')[0]}\n"
                     "(line: mean over seeds and items; band: 95% bootstrap CI over seeds × items)")
        ax.set(xlabel=xlabel, ylabel="strict accuracy")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(out / name)
    return written


def plot_forest(comparisons: pd.DataFrame, out: Path) -> Path | None:
    rows = comparisons.dropna(subset=["diff_pp"])
    if rows.empty:
        return None
    plt = _plt()
    width = 6 + 0.06 * max(len(c) for c in rows["comparison"])  # room for the longest label
    fig, ax = plt.subplots(figsize=(width, 1.2 + 0.45 * len(rows)), layout="constrained")
    y = np.arange(len(rows))[::-1]
    err = np.vstack([rows["diff_pp"] - rows["ci_low_pp"], rows["ci_high_pp"] - rows["diff_pp"]]).clip(min=0)
    ax.errorbar(rows["diff_pp"], y, xerr=np.nan_to_num(err), fmt="o", color="C0", capsize=3)
    ax.axvline(0, color="0.3", lw=1, ls="--")
    ax.set_yticks(y, [f"{c}  (p={p:.3g})" for c, p in zip(rows["comparison"], rows["p"])], fontsize=8)
    ax.set_xlabel("paired difference in strict accuracy (pp)\n95% bootstrap CI over seeds × items")
    ax.set_title("Paired differences (final strict accuracy)")
    ax.grid(alpha=0.3, axis="x")
    fig.savefig(out / "forest.png", dpi=110)
    plt.close(fig)
    return out / "forest.png"


def _metric_grid(arms: list[Arm], keys: list[tuple[str, str]], title: str, path: Path, ncols: int = 3) -> Path:
    import scipy.stats

    plt = _plt()
    color = colors(arms)
    nrows, ncols = math.ceil(len(keys) / ncols), min(ncols, len(keys))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False, layout="constrained")
    for ax, (key, label) in zip(axes.flat, keys):
        for arm in arms:
            frames = [r.metrics[[R.STEP, key]].dropna().groupby(R.STEP).last() for r in arm.runs if key in r.metrics]
            if not frames or all(f.empty for f in frames):
                continue
            g = pd.concat(frames).groupby(level=0)[key].agg(["mean", "sem", "count"])
            half = scipy.stats.t.ppf(0.975, (g["count"] - 1).clip(lower=1)) * g["sem"].fillna(0)
            ax.plot(g.index, g["mean"], color=color[arm.label], lw=2, label=f"{arm.label} (n={len(frames)})")
            ax.fill_between(g.index, g["mean"] - half, g["mean"] + half, color=color[arm.label], alpha=0.18, lw=0)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel(key.removeprefix("train/"), fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    handles = {lab: h for ax in axes.flat for h, lab in zip(*ax.get_legend_handles_labels())}
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(4, len(handles)),
                   fontsize=8)
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_rewards(arms: list[Arm], out: Path) -> Path | None:
    train = [a for a in arms if a.kind != R.BASELINE]
    found = {k for a in train for r in a.runs for k in r.metrics.columns}
    names = [n for n in REWARD_FUNCS if R.reward_key(n) in found]  # the registry's order, plugins after
    names += sorted({k.split("/")[2] for k in found if k.startswith("train/rewards/") and k.endswith("/mean")} - set(names))
    if not names:
        return None
    keys = [(R.REWARD, "total reward (weighted sum)")] if R.REWARD in found else []
    keys += [(R.reward_key(n), f"{n} (unweighted mean)") for n in names]
    return _metric_grid(train, keys, "Training reward components (mean over seeds; band: 95% t-interval)",
                        out / "reward_components.png")


def plot_dpo(arms: list[Arm], out: Path) -> Path | None:
    dpo = [a for a in arms if a.kind == "dpo"]
    present = [k for k in R.DPO_KEYS if any(k in r.metrics for a in dpo for r in a.runs)]
    if not present:
        return None
    labels = dict(zip(R.DPO_KEYS, ("reward margin (chosen − rejected)", "preference accuracy (chosen > rejected)",
                                   "implicit reward, chosen", "implicit reward, rejected")))
    return _metric_grid(dpo, [(k, labels[k]) for k in present], "DPO implicit rewards (mean over seeds)",
                        out / "dpo_margins.png", ncols=2)
