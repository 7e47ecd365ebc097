"""Evaluate a model (and optional adapter) on the eval split of any dataset."""

from __future__ import annotations

from typing import Any

from mathreason.methods.common import RunContext, summarize


def run(ctx: RunContext) -> dict[str, Any]:
    from mathreason.evaluation import evaluate
    from mathreason.models.load import load_model_and_tokenizer
    from mathreason.telemetry import MemoryMeter, MetricsFile, Telemetry, wandb_key_names

    cfg = ctx.cfg
    telemetry = Telemetry(ctx.run_dir, ctx.device)
    telemetry.metrics.path.unlink(missing_ok=True)  # an interrupted eval starts over
    model, tokenizer, _ = load_model_and_tokenizer(cfg.model, cfg.cache_dir, ctx.device, cfg.seed)
    metrics = evaluate(model, tokenizer, ctx.eval_rows, cfg.eval, step=0, out_dir=ctx.run_dir)
    metrics.update(MemoryMeter(ctx.device).sample(), wall_clock_s=telemetry.wall_clock())
    record = {"step": 0, **wandb_key_names(metrics)}
    MetricsFile(ctx.run_dir).append(record)
    if ctx.wandb_mode != "disabled":
        import wandb

        wandb.log(record)
    return summarize(ctx)
