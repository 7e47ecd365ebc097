"""How long evaluating the whole GSM8K test set (1319 problems) takes with the
tiny model on this machine (target: <= 60 s on 2 cores).

    python benchmarks/eval_throughput.py [--data ../shared/data/gsm8k/test.jsonl] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "gsm8k" / "test.jsonl"))
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=96)
    parser.add_argument("--cache-dir", default=os.environ.get("MATHREASON_CACHE_DIR", str(Path.home() / ".cache/mathreason")))
    args = parser.parse_args()

    from hydra import compose, initialize_config_module

    from mathreason.data.loaders import load_split
    from mathreason.models.load import load_model_and_tokenizer
    from mathreason.scoring.evaluation import evaluate

    with initialize_config_module("mathreason.conf", version_base="1.3"):
        cfg = compose("config", overrides=["data=gsm8k", f"data.path={args.data}"])
    data_cfg, model_cfg = cfg.data, cfg.model
    eval_cfg = OmegaConf.create({"batch_size": args.batch_size, "max_new_tokens": args.max_new_tokens,
                                 "num_samples": 1, "temperature": 1.0, "save_samples": False})
    t0 = time.perf_counter()
    model, tokenizer, _ = load_model_and_tokenizer(model_cfg, args.cache_dir, "cpu")
    load_s = time.perf_counter() - t0
    rows = load_split(data_cfg, "eval").rows
    t0 = time.perf_counter()
    metrics = evaluate(model, tokenizer, rows, eval_cfg, step=0, out_dir=None)
    eval_s = time.perf_counter() - t0
    print(f"model load (cached): {load_s:.1f} s")
    print(f"evaluated {len(rows)} GSM8K test problems in {eval_s:.1f} s "
          f"({len(rows) / eval_s:.1f} problems/s, batch {args.batch_size}, max_new_tokens {args.max_new_tokens})")
    print(f"strict accuracy {metrics['eval_accuracy_strict']:.3f}, lenient {metrics['eval_accuracy_lenient']:.3f}, "
          f"format rate {metrics['eval_format_rate']:.3f}")
    print(f"target <= 60 s: {'met' if eval_s <= 60 else 'MISSED'}")


if __name__ == "__main__":
    main()
