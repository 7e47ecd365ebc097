"""One GRPO job on 1 process vs the same job on 2 (torchrun, gloo) on this machine.

The same tiny-model GRPO run (global geometry: 64 rollouts per step, G=16),
once as one process with ``threads=2`` and once as two processes with
``threads=1`` each, so neither oversubscribes the cores; alternating, in one
session. Prints, per layout, the medians over repeats of: whole-command
wall-clock, TRL's ``train_runtime`` (training only) and the time of the
step-0 eval (eval is sharded across the processes), and the ratios 2 / 1.

On a GPU machine each process has its own GPU and this is where the speed-up
comes from; on a 2-core CPU it shows what the coordination costs (gradient
all-reduce over gloo, gathers of rollouts and eval results).

    python benchmarks/distributed.py [--steps 6] [--repeats 3]
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
JOB = ["method=grpo", "group_size=16", "geometry.rollouts_per_step=64", "grpo.max_completion_length=64",
       "data.n_train=256", "data.n_eval=128", "eval.max_samples=128", "eval.batch_size=16", "eval.every_n_steps=0",
       "logger=none", "checkpoint.every_n_steps=0"]


def run(nproc: int, steps: int, out: Path) -> dict[str, float]:
    threads = max(1, (os.cpu_count() or 2) // nproc)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "mathreason.run", *JOB, f"geometry.max_steps={steps}", f"threads={threads}", f"hydra.run.dir={out}"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{nproc} process(es) failed:\n{done.stderr[-3000:]}")
    state = json.loads((out / "run.json").read_text())
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"wall_s": wall, "train_runtime_s": float(state["summary"]["train_runtime"]),
            "eval0_s": float(records[0]["train/wall_clock_s"]),  # the step-0 eval record: its wall-clock since start
            "final_strict": float(state["summary"]["final/accuracy_strict"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[int, list[dict[str, float]]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        run(1, 1, Path(tmp) / "warmup")  # the tiny model's cache and imports, once
        for repeat in range(args.repeats):
            for nproc in (1, 2):
                results[nproc].append(run(nproc, args.steps, Path(tmp) / f"n{nproc}-{repeat}"))
    print(f"GRPO, tiny model, {args.steps} steps x 64 rollouts (G=16), eval 128 items; "
          f"medians of {args.repeats} alternating repeats on {os.cpu_count()} cores")
    print(f"{'':28} {'1 process':>10} {'2 processes':>12} {'2 / 1':>7}")
    for key, label in (("wall_s", "whole command (s)"), ("train_runtime_s", "training, train_runtime (s)"),
                       ("eval0_s", "to the step-0 eval's end (s)")):
        one = statistics.median(r[key] for r in results[1])
        two = statistics.median(r[key] for r in results[2])
        print(f"{label:28} {one:10.1f} {two:12.1f} {two / one:7.2f}")
    for nproc in (1, 2):
        print(f"final greedy accuracy, {nproc} process(es): " +
              ", ".join(f"{r['final_strict']:.3f}" for r in results[nproc]))


if __name__ == "__main__":
    main()
