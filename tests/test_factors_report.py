"""The report's warm-start section (mathreason.analysis.factors) on a synthetic
miniature: 2 warm starts x 2 seeds, a baseline, 16-GRPO, 2-GRPO and an SFT
control, test items in chain clusters and an ood final split."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import yaml_value

from mathreason import records
from mathreason.analysis import report as analysis
from mathreason.analysis.runs import group_arms, items_frame, load_runs

N = 40
SPEC = yaml_value("model/tiny.yaml", "tiny")
# accuracy of each arm's final eval (and 0.5 at step 0), per split
ACC = {"baseline": 0.5, "g16": 0.8, "g2": 0.7, "sft": 0.6, "dpo": 0.65}


def _eval(path: Path, acc: float, rng: np.random.Generator, samples: int = 0) -> list[bool]:
    ok = [bool(x) for x in rng.random(N) < acc]
    lines = []
    for i, hit in enumerate(ok):
        rec = {"item_id": f"{path.parts[-3] if 'splits' in path.parts else 'test'}{i}", "chain_id": f"c{i // 2}",
               "question": f"q{i}", "gold": "1", "completion": "", "correct": hit, "correct_lenient": hit,
               "format": True}
        if samples:
            rec["samples_correct"] = [bool(x) for x in rng.random(samples) < acc]
        lines.append(json.dumps(rec))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return ok


def _run(root: Path, arm: str, ws: int, seed: int, groups: dict | None = None) -> Path:
    run_dir = root / f"arm={arm},ws={ws},seed={seed}"
    run_dir.mkdir(parents=True)
    method = {"baseline": "eval", "sft": "sft", "dpo": "dpo"}.get(arm, "grpo")
    group = (groups or {"g16": 16, "g2": 2}).get(arm)
    spec = {**SPEC, "init_seed": ws, "warm_start": {**SPEC["warm_start"], "seed": 1000 + ws}}
    config = {"seed": seed, "method": method, "model": {"name": "tiny", "tiny": spec},
              "data": {"name": "arith", "eval_split": "test", "seed": 0},
              "reward": {"name": "correctness", "functions": {"correctness": 1.0}},
              "eval": {"final_splits": ["ood"]},
              **({"group_size": group, "grpo": {"learning_rate": 3e-5}} if group else {}),
              **({"sft": {"learning_rate": 1e-4}} if method == "sft" else {}),
              **({"dpo": {"learning_rate": 1.5e-5, "beta": 0.1}} if method == "dpo" else {})}
    state = {"status": "done", "method": method, "config": config, "summary": {}, "started": 0.0,
             "finished": 100.0, "versions": {"torch": "2.13.0"}}
    (run_dir / records.STATE_FILE).write_text(json.dumps(state))
    rng = np.random.default_rng(100 * ws + 10 * seed + len(arm))
    last = {"g16": 40, "g2": 5, "sft": 40, "dpo": 36 + seed + 2 * ws}.get(arm, 0)  # DPO's steps vary by run
    evals = {0: 0.5} if last == 0 else {0: 0.5, last // 2: ACC[arm] - 0.01, last - 1: ACC[arm], last: ACC[arm]}
    per_step = 64
    lines = []
    for step in range(last + 1):
        rec = {"step": step, records.WALL: (4.0 if arm == "g16" else 1.0) * step + 10, "train/step_time": 0.5}
        if method == "grpo":
            rec[records.ROLLOUTS] = step * per_step
            if step == 0:
                rec.update({records.GROUP_SIZE: group, records.ROLLOUTS_PER_STEP: per_step})
        if step in evals:
            acc = evals[step] + 0.03 * ws  # a warm-start effect
            rec.update({records.STRICT: acc, records.LENIENT: acc, records.FORMAT_RATE: 1.0})
            final = step == last
            _eval(records.eval_file(run_dir, step), acc, rng, samples=4 if final else 0)
            if final:
                _eval(records.eval_file(records.split_dir(run_dir, "ood"), step), acc - 0.2, rng, samples=4)
        lines.append(json.dumps(rec))
    (run_dir / records.METRICS_FILE).write_text("\n".join(lines) + "\n")
    return run_dir


@pytest.fixture(scope="module")
def miniature(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("miniature")
    for ws in (0, 1):
        for seed in (0, 1):
            for arm in ACC:
                _run(root, arm, ws, seed)
    return root


def test_arms_pool_warm_starts_and_the_items_name_them(miniature):
    runs, _ = load_runs([miniature], warn=lambda m: None)
    arms = group_arms(runs, warn=lambda m: None)
    assert sorted(a.label for a in arms) == ["baseline", "dpo", "grpo G=16", "grpo G=2", "sft-control"]
    assert {len(a.warm_starts) for a in arms} == {2} and {len(a.replicates) for a in arms} == {4}
    items = items_frame(arms, final_splits=True)
    assert list(items.columns[:9]) == ["arm", "warm_start", "seed", "split", "phase", "step", "item_id", "chain_id",
                                       "correct"]
    assert set(items["split"]) == {"test", "ood"} and set(items[items["split"] == "ood"]["phase"]) >= {"final"}


def test_the_report_gives_nested_intervals_ratios_and_a_row_per_warm_start(miniature, tmp_path):
    rep = analysis.build_report([miniature], tmp_path / "out", warn=lambda m: None)
    text = (tmp_path / "out" / "results.md").read_text()
    assert "## Across warm starts, seeds and chain clusters" in text and "### Split `ood`" in text
    table = pd.read_csv(tmp_path / "out" / "factors.csv")
    items = pd.read_csv(tmp_path / "out" / "items.csv.gz")

    def final(arm, split):
        rows = items[(items["arm"] == arm) & (items["split"] == split) & (items["phase"] == "final")]
        return rows["correct"].mean()

    for split in ("test", "ood"):
        row = table[(table["split"] == split) & (table["estimate"] == "greedy absolute ratio, equal epochs")].iloc[0]
        assert row["mean"] == pytest.approx(final("grpo G=2", split) / final("grpo G=16", split))
        assert row["ci_low"] < row["mean"] < row["ci_high"]
    gain = table[(table["split"] == "test") & (table["estimate"] == "greedy gain")].set_index("arm")["mean"]
    base = items[(items["arm"] == "grpo G=16") & (items["split"] == "test") & (items["phase"] == "baseline")]
    assert gain["grpo G=16"] == pytest.approx(final("grpo G=16", "test") - base["correct"].mean())
    # 2-GRPO ends at 5 steps x 64 = 320 rollouts; 16-GRPO was evaluated there only if it has that step
    estimates = set(table["estimate"])
    assert {"greedy gain ratio, equal epochs", "mean@k absolute ratio, equal epochs", "pass@k",
            "wall-clock ratio, whole run", "greedy difference"} <= estimates
    assert any(e.startswith("plateau") for e in estimates)
    # methods against each other: a difference of finals (the same start on the same items)
    diff = table[(table["split"] == "test") & (table["estimate"] == "greedy difference")]
    pairs = {(r.arm, r.versus): r for r in diff.itertuples()}
    assert set(pairs) == {("grpo G=16", "dpo"), ("grpo G=2", "dpo"), ("grpo G=16", "sft-control"), ("grpo G=2", "sft-control"),
                          ("dpo", "sft-control")}
    assert pairs["grpo G=16", "dpo"].mean == pytest.approx(final("grpo G=16", "test") - final("dpo", "test"))
    # DPO's evals sit at other steps in every run: its plateau check pairs them by order
    plateau = table[table["estimate"].str.startswith("plateau: last eval") & (table["arm"] == "dpo")]
    assert len(plateau) == 1 and "~" in plateau["estimate"].iloc[0]
    assert text[text.index("### Warm starts"):text.index("### Per run")].count("| tiny:") == 2  # one row per warm start
    assert rep.markdown if hasattr(rep, "markdown") else True


def test_any_smaller_group_size_is_set_against_any_larger_one(tmp_path):
    """No group size is built into the warm-start section: 4-GRPO vs 32-GRPO gets the ratios and
    wall-clock ratios that 2-GRPO vs 16-GRPO gets."""
    for ws in (0, 1):
        for seed in (0, 1):
            for arm in ("baseline", "g2", "g16"):
                _run(tmp_path / "sweep", arm, ws, seed, groups={"g2": 4, "g16": 32})
    analysis.build_report([tmp_path / "sweep"], tmp_path / "out", n_resamples=50, warn=lambda m: None)
    table = pd.read_csv(tmp_path / "out" / "factors.csv")
    pairs = set(zip(table["estimate"], table["arm"], table["versus"]))
    assert ("greedy gain ratio, equal epochs", "grpo G=4", "grpo G=32") in pairs
    assert ("wall-clock ratio, whole run", "grpo G=4", "grpo G=32") in pairs
    assert not any(v == "grpo G=4" for _, a, v in pairs if a == "grpo G=32")  # smaller / larger only


def test_each_run_of_a_pooled_arm_keeps_its_own_row(miniature, tmp_path):
    """The pooled intervals summarise runs; the section also lists each run's final accuracy and gain."""
    analysis.build_report([miniature], tmp_path / "out", n_resamples=50, warn=lambda m: None)
    text = (tmp_path / "out" / "results.md").read_text()
    block = text[text.index("### Per run"):].split("\n\n")[1].splitlines()
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in block[2:]]
    assert len(rows) == 4 * 4  # 4 trained arms x (2 warm starts x 2 seeds)
    runs, _ = load_runs([miniature], warn=lambda m: None)
    items = items_frame(group_arms(runs, warn=lambda m: None), final_splits=True)
    g16 = items[(items["arm"] == "grpo G=16") & (items["split"] == "test") & (items["seed"] == 1)]
    one = g16[g16["run_dir"] == g16["run_dir"].iloc[0]]
    final = 100 * one.loc[one["phase"] == "final", "correct"].mean()
    gain = final - 100 * one.loc[one["phase"] == "baseline", "correct"].mean()
    row = next(r for r in rows if r[0] == "grpo G=16" and r[1] == one["warm_start"].iloc[0] and r[2] == "1")
    assert row[3:] == [f"{final:.1f}", f"{gain:+.1f}"]


def test_an_eval_arm_without_a_baseline_pairing_still_counts_its_chains(tmp_path):
    """An eval run of other weights (here a trained adapter) shares no replicate with the baseline:
    it gets no gain, and its row still counts the chain clusters of its own items."""
    for arm in ("baseline", "g16"):
        _run(tmp_path / "sweep", arm, 0, 0)
    other = _run(tmp_path / "sweep", "baseline", 1, 0)
    state = json.loads((other / records.STATE_FILE).read_text())
    state["config"]["model"]["adapter_path"] = "/runs/g16/final"
    (other / records.STATE_FILE).write_text(json.dumps(state))
    analysis.build_report([tmp_path / "sweep"], tmp_path / "out", n_resamples=50, warn=lambda m: None)
    text = (tmp_path / "out" / "results.md").read_text()
    section = text[text.index("### Split `test`"):]
    row = next(line for line in section.splitlines() if line.startswith("| eval (adapter)"))
    assert "1 x 1, 40 (20)" in row and row.rstrip(" |").endswith("—")
