"""How eval.batch_size changes the time of the CPU experiment's evals (greedy
pass@1 and 8 samples at T=1.0 on its held-out items) with one CPU thread, as a
SLURM job of `make repro-cpu` gets, and whether the greedy answers change.

    python benchmarks/eval_batch_size.py [--batch-sizes 64,256,1024] [--n-items 1000] [--threads 1]

The model is the sweep's warm start (built and cached on first use, ~14 min).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-sizes", default="64,256,1024", help="comma-separated eval.batch_size values")
    parser.add_argument("--n-items", type=int, default=1000, help="the first N eval items")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (a repro-cpu SLURM job has 1 CPU)")
    parser.add_argument("--config-name", default="repro_cpu", help="a primary config in sweeps/")
    args = parser.parse_args()

    import torch
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from mathreason.data.loaders import load_split
    from mathreason.models.load import load_model_and_tokenizer
    from mathreason.scoring.evaluation import evaluate, generate_completions

    with initialize_config_dir(str(ROOT / "sweeps"), version_base="1.3"):
        cfg = compose(args.config_name, overrides=["hydra.searchpath=[pkg://mathreason.conf]"])
    model, tokenizer, _ = load_model_and_tokenizer(cfg.model, cfg.cache_dir, "cpu")
    torch.set_num_threads(args.threads)
    rows = load_split(cfg.data, "eval").rows[: args.n_items]
    print(f"{len(rows)} eval items, {args.threads} thread(s), k={cfg.eval.num_samples} samples at T={cfg.eval.temperature}")
    print(f"{'batch':>6} {'greedy s':>9} {'sampled s':>10} {'strict':>7} {'mean@k':>7} {'greedy answers vs the first':>31}")
    prompts = [r["prompt"] for r in rows]
    k = int(cfg.eval.num_samples)
    reference = None
    for bs in (int(b) for b in args.batch_sizes.split(",")):
        eval_cfg = OmegaConf.merge(cfg.eval, {"batch_size": bs, "save_samples": False})
        t0 = time.perf_counter()
        greedy = generate_completions(model, tokenizer, prompts, max_new_tokens=eval_cfg.max_new_tokens, batch_size=bs)
        greedy_s = time.perf_counter() - t0
        torch.manual_seed(0)
        t0 = time.perf_counter()
        metrics = evaluate(model, tokenizer, rows, eval_cfg, step=0, out_dir=None, sampled=True)
        sampled_s = time.perf_counter() - t0 - greedy_s  # evaluate() decodes greedy again first
        reference = reference or greedy
        changed = sum(a != b for a, b in zip(greedy, reference))
        print(f"{bs:>6} {greedy_s:>9.1f} {sampled_s:>10.1f} {metrics['eval_accuracy_strict']:>7.3f} "
              f"{metrics.get(f'eval_mean@{k}', float('nan')):>7.3f} {changed:>24} differ")


if __name__ == "__main__":
    main()
