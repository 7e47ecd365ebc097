"""GRPO: thin glue around TRL's GRPOTrainer.

TRL owns the loss, rollouts and advantages; we set the batch geometry
(``mathreason.config.geometry``), pass every ``grpo.*`` key through to GRPOConfig,
and add telemetry and eval-during-training.
"""

from __future__ import annotations

from typing import Any

from mathreason.config.geometry import plan_geometry
from mathreason.console import phase, quiet_trainer
from mathreason.methods.common import (
    RunContext,
    common_training_args,
    prepare_resume,
    record_effective,
    run_summary,
    score_completions_only,
    train_with_evals,
    trl_config,
    with_telemetry,
)
from mathreason.scoring.lora_merge import merged_for_generation


class MergedLoraRollouts:
    """TRL's rollouts on the transformers engine, with a LoRA adapter merged while it
    generates (``mathreason.scoring.lora_merge``: the same function, fewer calls per token)."""

    def _generate_single_turn(self, *args, **kwargs):
        if self.use_vllm:  # TRL merges for vLLM itself
            return super()._generate_single_turn(*args, **kwargs)
        with merged_for_generation(self.model):
            return super()._generate_single_turn(*args, **kwargs)


def grpo_args(ctx: RunContext, geo) -> dict[str, Any]:
    """Keyword arguments for GRPOConfig."""
    cfg = ctx.cfg
    args = common_training_args(ctx, cfg.grpo, skip=("learning_rate",))
    args.update(
        learning_rate=geo.learning_rate,
        num_generations=geo.group_size,
        per_device_train_batch_size=geo.per_device_batch,
        gradient_accumulation_steps=geo.grad_accum,
        max_steps=geo.steps,
        reward_weights=[float(w) for w in cfg.reward.functions.values()],
    )
    args.setdefault("num_completions_to_print", 0)  # sample completions in the terminal only when asked
    if cfg.rollout.engine == "vllm":
        args.update(
            use_vllm=True,
            vllm_mode=cfg.rollout.vllm_mode,
            vllm_gpu_memory_utilization=cfg.rollout.vllm_gpu_memory_utilization,
        )
        if cfg.rollout.vllm_server_base_url:
            args["vllm_server_base_url"] = cfg.rollout.vllm_server_base_url
    return args


def run(ctx: RunContext) -> dict[str, Any]:
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    from mathreason.models.load import count_parameters, load_model_and_tokenizer
    from mathreason.records.telemetry import Telemetry
    from mathreason.scoring.rewards import build_reward_funcs

    cfg = ctx.cfg
    geo = plan_geometry(cfg, n_train_prompts=len(ctx.train_rows))
    args = trl_config(GRPOConfig, grpo_args(ctx, geo), "grpo")  # TRL's own checks, before the model loads
    record_effective(ctx, {"learning_rate": geo.learning_rate, "configured/grpo.learning_rate": cfg.grpo.learning_rate,
                           **{k: v for k, v in geo.__dict__.items() if k != "learning_rate"}})
    phase("loading model", cfg.model.name)
    model, tokenizer, peft_config = load_model_and_tokenizer(cfg.model, cfg.cache_dir, ctx.device, cfg.seed)
    telemetry = Telemetry(ctx.run_dir, ctx.device, rollouts_per_step=geo.rollouts_per_step)
    checkpoint = prepare_resume(ctx, telemetry)
    funcs, _weights = build_reward_funcs(cfg.reward.functions)
    score_completions_only(ctx.device)
    trainer = with_telemetry(type("GRPOTrainer", (MergedLoraRollouts, GRPOTrainer), {}))(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(ctx.train_rows),
        reward_funcs=funcs,
        processing_class=tokenizer,
        peft_config=peft_config,
    )
    trainer.telemetry = telemetry
    telemetry.pending.update({**geo.as_log(), **count_parameters(trainer.model)})
    quiet_trainer(trainer, "GRPO", cfg.verbose)
    phase("training", f"GRPO, {geo.steps} steps x {geo.rollouts_per_step} rollouts "
                      f"({geo.prompts_per_step} prompts x G={geo.group_size}), lr {geo.learning_rate:g}")
    train_with_evals(trainer, ctx, checkpoint)
    trainer.save_model(str(ctx.run_dir / "final"))
    return run_summary(ctx, {**{f"geometry/{k}": v for k, v in geo.__dict__.items()}, **telemetry.train_totals})
