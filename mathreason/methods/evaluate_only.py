"""Evaluate a model (and optional adapter) on the eval split of any dataset.

Resume: the evaluation is one pass that ends by writing its per-sample
outputs (``eval/step_000000.jsonl``) and then its metrics record. A re-run
after an interruption reuses a finished pass (both written: only the summary
was left to do); otherwise it starts the pass over, which gives the same
result (greedy decoding; sampled pass@k draws from the run's seed). On several
processes each evaluates its share of the batches; rank 0 writes the results.
"""

from __future__ import annotations

import logging
from typing import Any

from mathreason.methods.common import RunContext, evaluate_final_splits, run_summary
from mathreason.processes import on_main
from mathreason.records import STRICT, eval_file

log = logging.getLogger("mathreason")


def finished_record(ctx: RunContext) -> dict | None:
    """The metrics record of an earlier attempt's finished pass, if its
    per-sample outputs are complete too (one line per eval row)."""
    from mathreason.records.telemetry import MetricsFile

    records = [r for r in MetricsFile(ctx.run_dir).records() if r.get("step") == 0 and STRICT in r]
    if not records:
        return None
    if ctx.cfg.eval.save_samples:
        samples = eval_file(ctx.run_dir, 0)
        lines = samples.read_text().splitlines() if samples.exists() else []
        if len(lines) != len(ctx.eval_rows) or not lines[-1].endswith("}"):
            return None
    return records[-1]


def _reuse_or_restart(ctx: RunContext, telemetry) -> dict | None:
    """Rank 0: an earlier attempt's finished record, or None after clearing an interrupted pass."""
    if ctx.resume:
        telemetry.metrics.repair()  # the resuming run removes a torn last line (readers only leave it out)
    done = finished_record(ctx) if ctx.resume else None
    if done is None and telemetry.metrics.path.exists():
        if ctx.resume:
            log.info("eval resume: the interrupted evaluation starts over")
        telemetry.metrics.path.unlink()
    return done


def run(ctx: RunContext) -> dict[str, Any]:
    from mathreason.records.telemetry import MemoryMeter, MetricsFile, Telemetry, wandb_key_names

    cfg = ctx.cfg
    telemetry = Telemetry(ctx.run_dir, ctx.device)
    done = on_main(lambda: _reuse_or_restart(ctx, telemetry))  # rank 0 reads and clears; every rank learns which
    if done is not None:
        log.info("eval resume: the evaluation finished before the interruption; reusing its results")
        ctx.wandb.replay([done], raw=True)  # offline W&B resume: the record into the new offline run
        return run_summary(ctx)
    ctx.wandb.replay([])  # nothing kept
    from mathreason.models.load import load_model_and_tokenizer
    from mathreason.scoring.evaluation import evaluate

    model, tokenizer, _ = load_model_and_tokenizer(cfg.model, cfg.cache_dir, ctx.device, cfg.seed)
    metrics = evaluate(model, tokenizer, ctx.eval_rows, cfg.eval, step=0, out_dir=ctx.run_dir, seed=int(cfg.seed))
    metrics.update(evaluate_final_splits(model, tokenizer, ctx, 0))
    metrics.update(MemoryMeter(ctx.device).sample(), wall_clock_s=telemetry.wall_clock())
    record = {"step": 0, **wandb_key_names(metrics)}
    MetricsFile(ctx.run_dir).append(record)
    ctx.wandb.log(record)
    return run_summary(ctx)
