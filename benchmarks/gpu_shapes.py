"""GPU figures for scripts/gpu-check.sh, each printed as one JSON line.

  python benchmarks/gpu_shapes.py versions
  python benchmarks/gpu_shapes.py build 0.5b|1.5b DIR      random weights at Qwen2.5's real shapes + the tiny tokenizer
  python benchmarks/gpu_shapes.py microbatch 1.5b --tokens 3072 --start 32

``microbatch``: forward + backward (bf16, gradient checkpointing off, full fine-tuning as the paper
preset) of micro-batches of ``--tokens``-token sequences, halving from ``--start`` on an out-of-memory
error; prints each try's peak memory and the largest micro-batch that fits. The paper preset's micro-batch
is geometry.rollouts_per_step / grad_accum = 512 / 16 = 32 completions.
"""

from __future__ import annotations

import argparse
import json
import platform

# Qwen2.5 shapes (config.json of the hub repos; ../shared/notes/gpu-stack.md), tied embeddings
SHAPES = {
    "0.5b": dict(hidden_size=896, num_hidden_layers=24, num_attention_heads=14, num_key_value_heads=2,
                 intermediate_size=4864),
    "1.5b": dict(hidden_size=1536, num_hidden_layers=28, num_attention_heads=12, num_key_value_heads=2,
                 intermediate_size=8960),
}
QWEN_VOCAB = 151_936


def qwen_config(shape: str):
    from transformers import Qwen2Config

    return Qwen2Config(vocab_size=QWEN_VOCAB, tie_word_embeddings=True, max_position_embeddings=32768,
                       rope_theta=1_000_000.0, **SHAPES[shape])


def versions() -> dict:
    import importlib.metadata as md

    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
           "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
           if torch.cuda.is_available() else None}
    for name in ("transformers", "trl", "peft", "accelerate", "datasets", "hydra-core", "math-verify", "bitsandbytes",
                 "unsloth", "vllm"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = None
    return out


def build(shape: str, out_dir: str) -> dict:
    """Random weights at a real Qwen2.5 shape, saved with the tiny model's tokenizer (its ids are all
    below Qwen's vocabulary size), so the whole pipeline runs at that size with no hub."""
    import torch
    from hydra import compose, initialize_config_module
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from mathreason.config.schema import validate
    from mathreason.models.load import model_source

    with initialize_config_module("mathreason.conf", version_base="1.3"):
        cfg = validate(compose(config_name="config"), [])
    tokenizer = AutoTokenizer.from_pretrained(model_source(cfg.model, cfg.cache_dir))
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(qwen_config(shape), dtype=torch.bfloat16)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return {"shape": shape, "parameters": sum(p.numel() for p in model.parameters()), "dir": out_dir}


def microbatch(shape: str, tokens: int, start: int) -> dict:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_config(qwen_config(shape), dtype=torch.bfloat16).cuda()
    model.config.use_cache = False
    tries, largest = [], None
    batch = start
    while batch >= 1:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        try:
            ids = torch.randint(0, QWEN_VOCAB, (batch, tokens), device="cuda")
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() / 2**30
            tries.append({"micro_batch": batch, "oom": False, "peak_gib": round(peak, 2)})
            largest = batch
            break
        except torch.OutOfMemoryError:
            tries.append({"micro_batch": batch, "oom": True})
            batch //= 2
        finally:
            model.zero_grad(set_to_none=True)
            loss = ids = None
    return {"shape": shape, "tokens": tokens, "largest_micro_batch": largest, "tries": tries}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("versions")
    b = sub.add_parser("build")
    b.add_argument("shape", choices=SHAPES)
    b.add_argument("out_dir")
    m = sub.add_parser("microbatch")
    m.add_argument("shape", choices=SHAPES)
    m.add_argument("--tokens", type=int, default=3072)
    m.add_argument("--start", type=int, default=32)
    args = parser.parse_args()
    if args.cmd == "versions":
        result = versions()
    elif args.cmd == "build":
        result = build(args.shape, args.out_dir)
    else:
        result = microbatch(args.shape, args.tokens, args.start)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
