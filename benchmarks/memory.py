"""Peak memory of GRPO and DPO at the same batch, and what DPO's reference model adds.

The study behind this project reports GRPO at 16 GB against DPO at 24 GB of
VRAM (Qwen2.5-3B, LoRA). DPO's extra is usually put down to its reference
model. With PEFT there is no second model: TRL computes the reference's
log-probs with the adapter switched off. With full fine-tuning the reference is a
frozen copy (``mathreason.methods.dpo.frozen_reference``), as is GRPO's when its
KL term is on (``grpo.beta`` > 0).

Each configuration is a short real run of ``mathreason.run`` (its own process)
on the same model, at the same sequences per optimizer step: GRPO 16 rollouts
(2 prompts x G=8) against DPO 8 pairs (16 sequences, chosen and rejected), both
with completions of at most 64 tokens. DPO trains on a fixed pair file made from
the gold solutions (chosen) and the same solutions with a wrong answer
(rejected), so no mining step runs and the model's skill does not matter. The
figure is the process's peak RSS (CPU) or CUDA peak allocated (GPU) as the run
records it (``peak_memory_mb`` in run.json's summary), and the model's
parameter bytes for scale.

    python benchmarks/memory.py [--model smollm2-135m-instruct] [--steps 2] [--threads 2] [--only DPO]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COMMON = ["logger=none", "eval.every_n_steps=0", "data.max_eval=1", "checkpoint.every_n_steps=0",
          "reward=correctness"]
GRPO = ["method=grpo", "group_size=8", "geometry.hold=rollouts", "geometry.rollouts_per_step=16",
        "geometry.scale_lr=false", "grpo.max_completion_length=64"]
DPO = ["method=dpo", "dpo.rounds=1", "dpo.batch_size=8", "dpo.epochs=1", "dpo.max_length=512"]
LORA, FULL = ["+lora"], ["+full"]  # replaced by model.lora.enabled=... where it differs from the model's default
CONFIGS = {
    "GRPO, LoRA, no KL (beta 0)": [*GRPO, *LORA, "grpo.beta=0.0"],
    "GRPO, LoRA, KL (beta 0.04; reference = adapter off)": [*GRPO, *LORA, "grpo.beta=0.04"],
    "DPO, LoRA (reference = adapter off)": [*DPO, *LORA],
    "GRPO, full fine-tuning, no KL": [*GRPO, *FULL, "grpo.beta=0.0"],
    "GRPO, full fine-tuning, KL (reference = a frozen copy)": [*GRPO, *FULL, "grpo.beta=0.04"],
    "DPO, full fine-tuning (reference = a frozen copy)": [*DPO, *FULL],
}


def pair_file(path: Path, n: int) -> Path:
    """``n`` DPO pairs from the embedded generator's gold solutions: the right answer
    (chosen) against the same working with a wrong answer (rejected)."""
    from omegaconf import OmegaConf

    from mathreason.data.arith import make_split
    from mathreason.data.prompts import build_prompt, format_completion

    data = OmegaConf.to_container(OmegaConf.load(ROOT / "mathreason" / "conf" / "data" / "arith.yaml"))
    rows = make_split({**data, "n_train": n}, "train")
    with path.open("w") as f:
        for row in rows:
            wrong = str(int(row["answer"]) + 1)
            f.write(json.dumps({"prompt": build_prompt(row["question"]),
                                "chosen": [{"role": "assistant", "content": format_completion(row["solution"], row["answer"])}],
                                "rejected": [{"role": "assistant", "content": format_completion(row["solution"], wrong)}]})
                    + "\n")
    return path


def lora_overrides(model: str, overrides: list[str]) -> list[str]:
    """``+lora`` / ``+full`` as ``model.lora.enabled=...``, left out where it is the model's default
    (an override that changes nothing is refused)."""
    from omegaconf import OmegaConf

    conf = ROOT / "mathreason" / "conf"
    default = OmegaConf.select(OmegaConf.load(conf / "model" / f"{model}.yaml"), "lora.enabled",
                               default=OmegaConf.select(OmegaConf.load(conf / "config.yaml"), "model.lora.enabled"))
    out = []
    for o in overrides:
        if o in ("+lora", "+full"):
            if (o == "+lora") != bool(default):
                out.append(f"model.lora.enabled={str(o == '+lora').lower()}")
        else:
            out.append(o)
    return out


def measure(overrides: list[str], run_dir: Path, threads: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run([sys.executable, "-m", "mathreason.run", *overrides, f"threads={threads}",
                           f"hydra.run.dir={run_dir}"], env=env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(overrides)} failed:\n{done.stderr[-3000:]}")
    state = json.loads((run_dir / "run.json").read_text())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    params = next((r[k] for r in records for k in r if k.endswith("model/parameters")), None)
    return {"peak_mb": state["summary"].get("peak_memory_mb"), "steps": state["summary"].get("steps"),
            "params": params}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--only", default="", help="run only the configurations whose name contains this")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        pairs = pair_file(Path(tmp) / "pairs.jsonl", 8 * args.steps)
        for i, (name, overrides) in enumerate(CONFIGS.items()):
            if args.only not in name:
                continue
            extra = [f"model={args.model}", *COMMON, *lora_overrides(args.model, overrides)]
            extra += [f"dpo.pairs_path={pairs}"] if "method=dpo" in overrides else [f"geometry.max_steps={args.steps}"]
            results[name] = measure(extra, Path(tmp) / f"run{i}", args.threads)
            print(f"{name:<58} peak {results[name]['peak_mb']:>8,.0f} MB  ({results[name]['steps']} steps)", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
