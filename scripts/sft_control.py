"""Supervised control for an RL run on the tiny model (issue 14's diagnosis).

Fine-tunes the same warm-started tiny model on the *gold* solutions of the
same training prompts a GRPO run sees (``make_split(data, "train")``), with
TRL's SFTTrainer, and saves it. Evaluating the result on the same held-out
items tells whether those prompts carry anything the model can still learn
when the supervision is perfect; a GRPO run on them can only do as well if
its own rewarded samples carry as much.

    python scripts/sft_control.py OUT --lr 3e-4 --schedule cosine \
        data.n_train=1024 model.tiny.sft.max_steps=300 ...   # the GRPO run's overrides
    python -m mathreason.run method=eval model=qwen2.5-0.5b-instruct model.id=OUT/model \
        model.name=sft-control data.n_eval=1000 eval.max_samples=null ...  # the run's data overrides

One epoch, ``--prompts-per-step`` prompts per optimiser step (16-GRPO at 64
rollouts per step sees 4), completion-only loss.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", type=Path, help="writes OUT/model (and OUT/work, the trainer's scratch dir)")
    parser.add_argument("--lr", type=float, required=True)
    parser.add_argument("--schedule", default="constant", help="transformers lr_scheduler_type, e.g. constant, cosine")
    parser.add_argument("--prompts-per-step", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the GRPO run (model.tiny.*, data.*)")
    args = parser.parse_intermixed_args()

    from hydra import compose, initialize_config_module

    from mathreason.config.schema import validate
    from mathreason.data.arith import make_split
    from mathreason.data.prompts import sft_example
    from mathreason.models.tiny import ensure_tiny_model

    with initialize_config_module("mathreason.conf", version_base="1.3"):
        cfg = validate(compose(config_name="config", overrides=["method=eval", *args.overrides]), args.overrides)
    if cfg.model.tiny is None or cfg.data.generator is None:
        parser.error("the control is for the tiny model on the generated arith data")
    model_dir = ensure_tiny_model(cfg.model.tiny, Path(cfg.cache_dir) / "tiny")

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    torch.set_num_threads(args.threads)
    rows = make_split(cfg.data, "train")
    data = Dataset.from_list([sft_example(r["question"], r["solution"], r["answer"]) for r in rows])
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = SFTConfig(output_dir=str(args.out / "work"), num_train_epochs=1,
                       per_device_train_batch_size=args.prompts_per_step, learning_rate=args.lr,
                       lr_scheduler_type=args.schedule, completion_only_loss=True, report_to="none",
                       save_strategy="no", logging_steps=64, seed=int(cfg.seed), dataloader_pin_memory=False,
                       bf16=False)
    SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer).train()
    model.save_pretrained(args.out / "model")
    tokenizer.save_pretrained(args.out / "model")
    print(f"{len(rows)} prompts, lr {args.lr} {args.schedule}: {args.out / 'model'}")


if __name__ == "__main__":
    main()
