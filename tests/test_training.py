"""Real training runs of the tiny model through the CLI (CPU, seconds to a minute each)."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pandas as pd
import pytest
from helpers import requires_sft_trainer, run_cli

pytestmark = pytest.mark.slow

# Small but real: a few optimisation steps on the embedded default.
SHORT = [
    "logger=none",
    "data.n_train=64",
    "data.n_eval=32",
    "eval.max_samples=32",
    "eval.every_n_steps=0",
    "grpo.max_completion_length=64",
    "eval.max_new_tokens=64",
]


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def only_run_dir(root: Path) -> Path:
    dirs = [p.parent for p in root.glob("outputs/runs/*/run.json")]
    assert len(dirs) == 1, dirs
    return dirs[0]


def completions(run_dir: Path) -> list[pd.DataFrame]:
    files = sorted((run_dir / "checkpoints" / "completions").glob("completions_*.parquet"))
    frames = [pd.read_parquet(f) for f in files]
    frames = [f for f in frames if len(f)]  # the step-0 (baseline eval) log has no completions yet
    assert frames, "TRL wrote no completion logs"
    return frames


@pytest.mark.parametrize(("group", "prompts"), [(2, 16), (16, 2)])
def test_grpo_geometry_and_advantages_from_the_trainer(tmp_path, cache_dir, group, prompts):
    """Rollouts per step follow the geometry; with G=2 the advantages TRL
    computed are +-a with one magnitude a for every untied group, 0 for ties."""
    out = run_cli(
        ["method=grpo", f"group_size={group}", "geometry.rollouts_per_step=32", "geometry.max_steps=2",
         f"cache_dir={cache_dir}", *SHORT],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    recs = records(run_dir)
    first = recs[0]
    assert first["train/geometry/group_size"] == group
    assert first["train/geometry/prompts_per_step"] == prompts
    assert first["train/geometry/rollouts_per_step"] == 32
    assert [r["train/cumulative_rollouts"] for r in recs if "train/reward" in r] == [32, 64]
    assert "eval/accuracy_strict" in recs[0] and "eval/accuracy_strict" in recs[-1]

    for frame in completions(run_dir):
        assert len(frame) == 32  # rollouts in this step
        groups = [frame.iloc[i : i + group] for i in range(0, len(frame), group)]
        assert len(groups) == prompts
        for g in groups:
            assert g["prompt"].map(str).nunique() == 1  # one prompt per group
            assert g["gold"].nunique() == 1  # the gold answer rides along (rewards.correctness' log_extra)
        if group != 2:
            continue
        reward_cols = [c for c in frame.columns if c in ("correctness", "strict_format", "soft_format", "integer", "xmlcount")]
        magnitudes = []
        for g in groups:
            adv = g["advantage"].to_numpy()
            assert adv[0] == pytest.approx(-adv[1], abs=1e-6)
            tied = all(g[c].iloc[0] == g[c].iloc[1] for c in reward_cols)
            if tied:
                assert adv[0] == pytest.approx(0.0, abs=1e-6)
            else:
                magnitudes.append(abs(adv[0]))
        # Eq. 14: one magnitude for every untied group: 1/sqrt(2) with torch's unbiased std
        for m in magnitudes:
            assert m == pytest.approx(2**-0.5, abs=2e-3)


def test_eval_schedule_by_rollouts_sampling_at_the_last_eval_and_error_taxonomy(tmp_path, cache_dir):
    """eval.at_rollouts evaluates where the cumulative rollouts pass each count
    (arms of any group size meet there); sampled_evals=last samples only at the
    end; every eval's error taxonomy covers all items."""
    out = run_cli(
        ["method=grpo", "group_size=2", "geometry.rollouts_per_step=32", "geometry.max_steps=4",
         "eval.at_rollouts=[32,80,96]", "eval.num_samples=2", "eval.temperature=1.0", "eval.sampled_evals=last",
         f"cache_dir={cache_dir}", *SHORT],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    evals = [r for r in records(run_dir) if "eval/accuracy_strict" in r]
    assert [r["step"] for r in evals] == [0, 1, 3, 4]  # 32, 80 (passed at 96, with 96 itself) and the end
    assert ["eval/mean@2" in r for r in evals] == [False, False, False, True]
    for r in evals:
        kinds = {k: v for k, v in r.items() if k.startswith("eval/errors/")}
        assert sorted(kinds) == sorted(f"eval/errors/{k}" for k in ("correct", "format", "arithmetic", "stop_short", "other"))
        assert sum(kinds.values()) == pytest.approx(1.0)
        assert kinds["eval/errors/correct"] == pytest.approx(r["eval/accuracy_strict"])
    items = [json.loads(line) for line in (run_dir / "eval" / "step_000004.jsonl").read_text().splitlines()]
    assert all(len(i["samples_correct"]) == 2 and i["error"] for i in items)
    # right by luck: the logged share is the items' own count, and a false equation never hides in "correct" only
    lucky = sum(i["correct"] and i["false_equation"] for i in items) / len(items)
    assert evals[-1]["eval/correct_with_false_equation"] == pytest.approx(lucky)
    assert all(i["false_equation"] for i in items if i["error"] == "arithmetic")
    summary = json.loads((run_dir / "run.json").read_text())["summary"]
    assert summary["final/errors/correct"] == pytest.approx(summary["final/accuracy_strict"])
    # how sure the before/after is: paired over the same items, recomputed here from the eval files
    before = {i["item_id"]: i["correct"] for i in map(json.loads, (run_dir / "eval" / "step_000000.jsonl").open())}
    after = {i["item_id"]: i["correct"] for i in items}
    assert summary["change/accuracy_strict/n_items"] == len(after) == len(before)
    assert summary["change/accuracy_strict/gained"] == sum(after[i] and not before[i] for i in after)
    assert summary["change/accuracy_strict/lost"] == sum(before[i] and not after[i] for i in after)
    diff = summary["change/accuracy_strict/diff"]
    assert diff == pytest.approx(summary["final/accuracy_strict"] - summary["baseline/accuracy_strict"])
    assert summary["change/accuracy_strict/ci_low"] <= diff <= summary["change/accuracy_strict/ci_high"]
    assert 0 < summary["change/accuracy_strict/p_mcnemar"] <= 1
    assert not any(k.startswith("change/mean@") for k in summary)  # sampled at the last eval only: no pair
    assert "change: strict " in out.stderr and "95% CI, paired over" in out.stderr


def test_eval_on_real_gsm8k_rows(tmp_path, cache_dir, shared_data):
    out = run_cli(
        ["method=eval", "data=gsm8k", f"data.path={shared_data / 'gsm8k' / 'test.jsonl'}", "eval.max_samples=48",
         "eval.max_new_tokens=48", "eval.num_samples=2", "logger=none", f"cache_dir={cache_dir}"],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    samples = [json.loads(line) for line in (run_dir / "eval" / "step_000000.jsonl").read_text().splitlines()]
    assert len(samples) == 48
    first_gold = json.loads((shared_data / "gsm8k" / "test.jsonl").read_text().splitlines()[0])["answer"]
    assert samples[0]["gold"] == first_gold.rsplit("####", 1)[1].strip().replace(",", "")
    assert {"question", "completion", "extracted", "gold", "correct", "correct_lenient"} <= set(samples[0])
    summary = json.loads((run_dir / "run.json").read_text())["summary"]
    assert 0.0 <= summary["final/accuracy_strict"] <= summary["final/accuracy_lenient"] <= 1.0
    rec = records(run_dir)[0]
    assert "eval/pass@2" in rec and "eval/mean@2" in rec
    # an eval-only run reads as one: one row of accuracies with its CI, no before/after, no arrows
    assert not any(k.startswith(("baseline/", "change/")) for k in summary)
    low, high = summary["final/accuracy_strict_ci"]
    acc = summary["final/accuracy_strict"]
    assert low <= acc <= high and (low < high or acc in (0.0, 1.0))  # all items alike: nothing to resample
    assert summary["final/mean@2"] == rec["eval/mean@2"] and len(summary["final/mean@2_ci"]) == 2
    table = out.stderr[out.stderr.index("held-out accuracy"):]
    assert "│ accuracy " in table and "before training" not in table and "→" not in table
    assert "95% CI: strict " in table and "mean@2" in table
    # the library versions the numbers came from (the same config can give other numbers under others)
    versions = json.loads((run_dir / "run.json").read_text())["versions"]
    assert versions["torch"] == importlib.metadata.version("torch") and versions["trl"] == importlib.metadata.version("trl")


def test_dpo_mines_pairs_and_trains(tmp_path, cache_dir):
    out = run_cli(
        ["method=dpo", "dpo.mining.max_questions=48", "dpo.mining.samples_per_question=4", "dpo.batch_size=8",
         "dpo.mining.max_new_tokens=64", f"cache_dir={cache_dir}", *SHORT[:-2]],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    stats = json.loads((run_dir / "pairs" / "round_1.stats.json").read_text())
    pairs = [json.loads(line) for line in (run_dir / "pairs" / "round_1.jsonl").read_text().splitlines()]
    assert stats["questions"] == 48 and stats["samples"] == 192
    assert stats["pairs"] == len(pairs) == 48 - stats["all_correct"] - stats["all_wrong"]
    assert all(p["chosen_reward"] > p["rejected_reward"] for p in pairs)
    recs = records(run_dir)
    assert any("train/rewards/margins" in r for r in recs)
    assert recs[0]["train/mining/pairs"] == len(pairs)
    # the sampling budget in tokens as well as samples (GRPO's train/cumulative_generated_tokens)
    assert stats["generated_tokens"] > stats["samples"]
    assert recs[-1]["train/cumulative_generated_tokens"] == stats["generated_tokens"]

    # the saved pair file is reusable: dpo.pairs_path skips mining
    again = run_cli(
        ["method=dpo", f"dpo.pairs_path='{run_dir / 'pairs' / 'round_1.jsonl'}'", "dpo.batch_size=8",
         f"cache_dir={cache_dir}", *SHORT[:-2]],
        cwd=tmp_path / "reuse" if (tmp_path / "reuse").mkdir() is None else tmp_path,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    reused = only_run_dir(tmp_path / "reuse")
    assert json.loads((reused / "pairs" / "round_1.stats.json").read_text())["samples"] == 0


@requires_sft_trainer
def test_sft_control_learns_the_gold_solutions_of_the_training_prompts(tmp_path, cache_dir):
    """method=sft: as many steps as examples / batch x epochs, evals before, between and after,
    the paired change, a saved model; and the same run's chains stay held out."""
    out = run_cli(["method=sft", "sft.epochs=2", "sft.batch_size=8", "sft.learning_rate=3e-4", "sft.warmup_steps=2",
                   "eval.every_n_steps=8", f"cache_dir={cache_dir}", "logger=none", "data.n_train=64", "data.n_eval=32",
                   "eval.max_samples=32", "eval.max_new_tokens=64"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = only_run_dir(tmp_path)
    recs = records(run_dir)
    train = [r for r in recs if "train/loss" in r]
    assert max(r["step"] for r in recs) == 64 * 2 // 8
    assert train and all(r["train/loss"] > 0 for r in train)
    lrs = [r["train/learning_rate"] for r in train]
    assert lrs[0] < lrs[2] == pytest.approx(3e-4)  # the warm-up, then constant
    assert [r["step"] for r in recs if "eval/accuracy_strict" in r] == [0, 8, 16]
    summary = json.loads((run_dir / "run.json").read_text())["summary"]
    assert summary["examples_per_step"] == 8 and "change/accuracy_strict/diff" in summary
    assert (run_dir / "final" / "model.safetensors").is_file()
    assert "▸ training — SFT on gold solutions, 64 examples x 2 epochs in batches of 8" in out.stderr
    # the fully fine-tuned final/ evaluates in place of the base: the same greedy answers as the run's last eval
    again = run_cli(["method=eval", f"model.adapter_path='{run_dir / 'final'}'", f"cache_dir={cache_dir}", "logger=none",
                     "data.n_eval=32", "eval.max_samples=32", "eval.max_new_tokens=64",
                     f"hydra.run.dir={tmp_path / 'eval_final'}"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    last = sorted((run_dir / "eval").glob("step_*.jsonl"))[-1]
    trained = [json.loads(line)["completion"] for line in last.read_text().splitlines()]
    reloaded = [json.loads(line)["completion"] for line in
                (tmp_path / "eval_final" / "eval" / "step_000000.jsonl").read_text().splitlines()]
    assert reloaded == trained


def test_final_splits_evaluate_the_final_model_on_more_held_out_splits(tmp_path, cache_dir):
    """eval.final_splits=[ood]: the last eval also scores the ood split (sampled too), its records under
    splits/ood/, its metrics as eval/ood/*; the report's items.csv.gz carries them with split=ood."""
    from mathreason.analysis.runs import group_arms, items_frame, load_runs

    out = run_cli(["method=grpo", "group_size=2", "geometry.rollouts_per_step=16", "geometry.max_steps=2",
                   "data.eval_split=dev", "eval.final_splits=[ood]", "eval.num_samples=2", "eval.temperature=0.7",
                   "eval.top_p=0.8", f"cache_dir={cache_dir}", "logger=none", "data.n_train=32", "data.n_eval=24",
                   "eval.max_samples=24", "grpo.max_completion_length=48", "eval.max_new_tokens=48",
                   f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "run"
    ood = [json.loads(line) for line in (run_dir / "splits" / "ood" / "eval" / "step_000002.jsonl").open()]
    assert len(ood) == 24 and all(len(r["samples_correct"]) == 2 for r in ood)
    assert all(r["completion"] is not None and r["gold"] for r in ood)
    final = [r for r in records(run_dir) if "eval/ood/accuracy_strict" in r]
    assert len(final) == 1 and final[0]["step"] == 2 and "eval/accuracy_strict" in final[0]
    assert final[0]["eval/ood/accuracy_strict"] == pytest.approx(sum(r["correct"] for r in ood) / 24)
    summary = json.loads((run_dir / "run.json").read_text())["summary"]
    assert summary["final/ood/accuracy_strict"] == final[0]["eval/ood/accuracy_strict"]
    assert "eval @ step 2 on ood (24 items) · strict" in out.stderr
    runs, _ = load_runs([run_dir], warn=lambda m: None)
    items = items_frame(group_arms(runs, warn=lambda m: None), final_splits=True)
    assert set(items["split"]) == {"dev", "ood"}
    assert set(items[items["split"] == "ood"]["phase"]) == {"final"}
    dev_chains = set(items[items["split"] == "dev"]["chain_id"])
    assert not dev_chains & set(items[items["split"] == "ood"]["chain_id"])
    assert set(items_frame(group_arms(runs, warn=lambda m: None))["split"]) == {"dev"}  # the paired analyses'


def test_the_default_run_shortened_end_to_end(tmp_path, cache_dir):
    """The signature command's defaults, 3 steps and 40 items: the warm-up schedule, the test split,
    the paper's x8 lr for G=2, one line of paired change at the end."""
    out = run_cli(["method=grpo", "group_size=2", "geometry.max_steps=3", "eval.max_samples=40", "logger=none",
                   f"cache_dir={cache_dir}", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    run_dir = tmp_path / "run"
    state = json.loads((run_dir / "run.json").read_text())
    assert state["effective"]["learning_rate"] == pytest.approx(8 * state["config"]["grpo"]["learning_rate"])
    lrs = [r["train/learning_rate"] for r in records(run_dir) if "train/learning_rate" in r]
    assert lrs == sorted(lrs) and lrs[-1] < state["effective"]["learning_rate"]  # still warming up at step 3
    assert state["summary"]["change/accuracy_strict/n_items"] == 40
    assert state["summary"]["cumulative_rollouts"] == 3 * 64
    assert "change: strict " in out.stderr
