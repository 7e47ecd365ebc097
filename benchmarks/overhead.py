"""Framework overhead: the same tiny GRPO run through ``mathreason.run`` and
through a minimal plain-TRL script, in one session, alternating, and the ratio
of their training times (target: mathreason / plain TRL <= 1.05).

Both train the cached tiny model on the same generated prompts with the same
reward functions, batch geometry, seed and GRPOConfig, and both check greedy
accuracy on the same 8 held-out items before and after training (a training
script without that check has no result to report). TRL's own
``train_runtime`` is compared, plus whole-process wall-clock.

    python benchmarks/overhead.py [--steps 8] [--repeats 3]

Prints the median over paired repeats of both ratios (mathreason / plain TRL):
TRL's train_runtime, and whole-process wall-clock.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "mathreason" / "conf"

PLAIN = r'''
import json, sys, tempfile
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer
from trl import GRPOConfig, GRPOTrainer
from mathreason.scoring.answers import answers_match, extract_xml_answer
from mathreason.data.arith import make_split
from mathreason.data.prompts import build_prompt
from mathreason.scoring.rewards import REWARD_FUNCS

a = json.loads(sys.argv[1])
model = AutoModelForCausalLM.from_pretrained(a["model"])
tok = AutoTokenizer.from_pretrained(a["model"])
data = {"n_train": a["n_train"], "n_eval": a["n_eval"], "seed": 0, "generator": a["generator"]}
ds = Dataset.from_list([{"prompt": build_prompt(r["question"]), "answer": r["answer"], "answer_format": "number"}
                        for r in make_split(data, "train")])
held_out = make_split(data, "eval")


def accuracy():  # the before/after check any script needs: greedy answers on the held-out items
    tok.padding_side = "left"
    texts = [tok.apply_chat_template(build_prompt(r["question"]), tokenize=False, add_generation_prompt=True)
             for r in held_out]
    enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    model.eval()
    with torch.no_grad():
        out = model.generate(**enc, max_new_tokens=a["eval_max_new_tokens"], do_sample=False,
                             pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)
    model.train()
    done = tok.batch_decode(out[:, enc["input_ids"].shape[1]:], skip_special_tokens=True)
    return sum(answers_match(extract_xml_answer(c), r["answer"], "number") for c, r in zip(done, held_out)) / len(held_out)


names = ["correctness", "strict_format", "soft_format", "integer", "xmlcount"]
args = GRPOConfig(output_dir=tempfile.mkdtemp(), num_generations=a["group"], per_device_train_batch_size=a["rollouts"],
                  max_steps=a["steps"], learning_rate=a["lr"], bf16=False, report_to="none", save_strategy="no",
                  gradient_checkpointing=False, dataloader_pin_memory=False, reward_weights=[2.0, 0.5, 0.5, 0.5, 1.0],
                  seed=0, data_seed=0, disable_tqdm=True, **a["grpo"])
trainer = GRPOTrainer(model=model, args=args, train_dataset=ds, processing_class=tok,
                      reward_funcs=[REWARD_FUNCS[n] for n in names])
before = accuracy()
out = trainer.train()
print("ACCURACY", before, accuracy())
print("TRAIN_RUNTIME", out.metrics["train_runtime"])
'''


def run(cmd: list[str], env: dict) -> tuple[float, float, list[float]]:
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"benchmark command failed ({' '.join(cmd[:4])} …):\n{out.stderr[-2000:]}")
    lines = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines() if line[:1].isupper()}
    return float(lines["TRAIN_RUNTIME"][0]), wall, [float(v) for v in lines["ACCURACY"]]


def median_ci(ratios: list[float]) -> tuple[float, float]:
    """95% bootstrap CI (percentile, pairs resampled) of the median ratio; NaN with < 3 pairs."""
    if len(ratios) < 3:
        return float("nan"), float("nan")
    import numpy as np
    from scipy.stats import bootstrap

    res = bootstrap((np.asarray(ratios),), np.median, n_resamples=5000, method="percentile",
                    rng=np.random.default_rng(0))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--group-size", type=int, default=2)
    parser.add_argument("--rollouts", type=int, default=32)
    args = parser.parse_args()

    from omegaconf import OmegaConf

    from mathreason.models.tiny import ensure_tiny_model

    cache = os.environ.get("MATHREASON_CACHE_DIR", str(Path.home() / ".cache" / "mathreason"))
    model_cfg = OmegaConf.load(CONF / "model" / "tiny.yaml")
    data_cfg = OmegaConf.load(CONF / "data" / "arith.yaml")
    grpo_cfg = OmegaConf.load(CONF / "method" / "grpo.yaml").grpo
    model_dir = str(ensure_tiny_model(model_cfg.tiny, Path(cache) / "tiny"))
    lr = float(grpo_cfg.learning_rate) * 16 / args.group_size  # what geometry.scale_lr gives
    # the method's own GRPOConfig values (schedule, loss type, beta, ...), as mathreason passes them
    trl_keys = {k: v for k, v in OmegaConf.to_container(grpo_cfg).items() if k not in ("learning_rate", "extra")}
    trl_keys["log_completions"] = False
    eval_cfg = OmegaConf.load(CONF / "config.yaml").eval
    shared = {"model": model_dir, "n_train": 64, "n_eval": 8, "eval_max_new_tokens": int(eval_cfg.max_new_tokens),
              "generator": OmegaConf.to_container(data_cfg.generator),
              "group": args.group_size, "rollouts": args.rollouts, "steps": args.steps, "lr": lr,
              "grpo": trl_keys}
    env = {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "disabled", "MATHREASON_SUMMARY_JSON": "1"}
    ours, plain, ours_wall, plain_wall, accuracies = [], [], [], [], []
    for i in range(args.repeats):
        # counterbalanced order (plain first in even repeats, mathreason first in odd ones), so
        # that neither side always runs on a machine the other has just warmed up or heated
        order = ("plain", "ours") if i % 2 == 0 else ("ours", "plain")
        with tempfile.TemporaryDirectory() as tmp:
            for side in order:
                if side == "plain":
                    rt, wall, plain_acc = run([sys.executable, "-c", PLAIN, json.dumps(shared)], env)
                    plain.append(rt)
                    plain_wall.append(wall)
                    continue
                cmd = [sys.executable, "-m", "mathreason.run", "method=grpo", f"group_size={args.group_size}",
                       f"geometry.rollouts_per_step={args.rollouts}", f"geometry.max_steps={args.steps}",
                       "data.n_train=64", "data.n_eval=8", "eval.max_samples=8", "eval.every_n_steps=0",
                       "logger=none", "grpo.log_completions=false", f"cache_dir={cache}", f"hydra.run.dir={tmp}/run"]
                t0 = time.perf_counter()
                out = subprocess.run(cmd, capture_output=True, text=True, env=env)
                ours_wall.append(time.perf_counter() - t0)
                if out.returncode != 0:
                    sys.exit(f"mathreason run failed:\n{out.stderr[-2000:]}")
                summary = json.loads(out.stdout.strip().splitlines()[-1])
                ours.append(float(summary["train_runtime"]))
                ours_acc = [summary["baseline/accuracy_strict"], summary["final/accuracy_strict"]]
            accuracies.append((plain_acc, ours_acc))
    runtime_ratio = statistics.median(o / p for o, p in zip(ours, plain))
    process_ratio = statistics.median(o / p for o, p in zip(ours_wall, plain_wall))
    print(f"tiny GRPO, G={args.group_size}, {args.rollouts} rollouts/step, {args.steps} steps, {args.repeats} paired repeats")
    print(f"plain TRL   train_runtime {' '.join(f'{v:6.2f}' for v in plain)} s   process {' '.join(f'{v:6.2f}' for v in plain_wall)} s")
    print(f"mathreason  train_runtime {' '.join(f'{v:6.2f}' for v in ours)} s   process {' '.join(f'{v:6.2f}' for v in ours_wall)} s")
    for what, ratio, a, b in (("train_runtime", runtime_ratio, ours, plain),
                              ("whole process", process_ratio, ours_wall, plain_wall)):
        low, high = median_ci([o / p for o, p in zip(a, b)])
        print(f"ratio mathreason / plain TRL ({what}, median of paired runs): {ratio:.3f} "
              f"[95% CI {low:.3f}, {high:.3f}]  (target <= 1.05: {'met' if ratio <= 1.05 else 'MISSED'})")
    for what, a, b in (("train_runtime", ours, plain), ("whole process", ours_wall, plain_wall)):
        ratios = sorted(o / p for o, p in zip(a, b))
        print(f"  {what} ratio per pair, sorted: {' '.join(f'{r:.3f}' for r in ratios)}")
    gap = statistics.median(o - p for o, p in zip(ours_wall, plain_wall))
    print(f"whole-process gap, median: {gap:+.2f} s")
    for (plain_acc, ours_acc) in accuracies:
        print(f"held-out strict accuracy before -> after: plain {plain_acc[0]:.3f} -> {plain_acc[1]:.3f}, "
              f"mathreason {ours_acc[0]:.3f} -> {ours_acc[1]:.3f}")
    print("Same work on both sides: the same training, and a greedy before/after check on the same 8 held-out "
          "items. mathreason's train_runtime includes its telemetry, the final in-loop eval and its logging; its "
          "process also composes and validates the config and writes the run dir.")


if __name__ == "__main__":
    main()
