"""SFT: thin glue around TRL's SFTTrainer, the supervised control for an RL run.

The model learns the gold worked solution of each training prompt (in the XML
format the rewards check), with the loss on the completion only. With
``sft.batch_size`` = the RL run's prompts per step and ``sft.epochs`` = its
epochs, it takes as many optimiser steps over as many examples as the run it
controls; evals and resume work as in GRPO.
"""

from __future__ import annotations

import math
from typing import Any

from mathreason.console import phase, quiet_trainer
from mathreason.errors import UserError
from mathreason.methods.common import (
    RunContext,
    common_training_args,
    per_device_batch,
    prepare_resume,
    run_summary,
    score_completions_only,
    train_with_evals,
    trl_config,
    with_telemetry,
)


def sft_args(ctx: RunContext) -> dict[str, Any]:
    """Keyword arguments for SFTConfig."""
    section = ctx.cfg.sft
    args = common_training_args(ctx, section, skip=("epochs", "batch_size"))
    args.update(num_train_epochs=float(section.epochs),
                per_device_train_batch_size=per_device_batch(section.batch_size, "sft.batch_size"),
                completion_only_loss=True, packing=False)
    return args


def run(ctx: RunContext) -> dict[str, Any]:
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from mathreason.data.prompts import sft_example
    from mathreason.models.load import count_parameters, load_model_and_tokenizer
    from mathreason.records.telemetry import Telemetry

    cfg = ctx.cfg
    missing = sum(not r["solution"].strip() for r in ctx.train_rows)
    if missing:
        raise UserError(f"data.solution_field: method=sft learns worked solutions; {missing} of "
                        f"{len(ctx.train_rows)} training rows have none")
    args = trl_config(SFTConfig, sft_args(ctx), "sft")  # TRL's own checks, before the model loads
    phase("loading model", cfg.model.name)
    model, tokenizer, peft_config = load_model_and_tokenizer(cfg.model, cfg.cache_dir, ctx.device, cfg.seed)
    telemetry = Telemetry(ctx.run_dir, ctx.device)
    checkpoint = prepare_resume(ctx, telemetry)
    data = Dataset.from_list([sft_example(r["question"], r["solution"], r["answer"]) for r in ctx.train_rows])
    score_completions_only(ctx.device)
    trainer = with_telemetry(SFTTrainer)(model=model, args=args, train_dataset=data, processing_class=tokenizer,
                                         peft_config=peft_config)
    trainer.telemetry = telemetry
    telemetry.pending.update(count_parameters(trainer.model))
    quiet_trainer(trainer, "SFT", cfg.verbose)
    steps = math.ceil(len(data) / cfg.sft.batch_size) * args.num_train_epochs
    phase("training", f"SFT on gold solutions, {len(data)} examples x {args.num_train_epochs:g} epochs "
                      f"in batches of {cfg.sft.batch_size} (~{steps:,.0f} steps), "
                      f"lr {args.learning_rate:g}")
    train_with_evals(trainer, ctx, checkpoint)
    trainer.save_model(str(ctx.run_dir / "final"))
    return run_summary(ctx, {"examples_per_step": int(cfg.sft.batch_size), **telemetry.train_totals})
