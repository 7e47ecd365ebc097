"""Glue shared by the training methods: the run context, TrainingArguments
common to TRL's trainers, eval-during-training, checkpoint resume, summary."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mathreason.processes import is_main, on_main
from mathreason.records import (
    CORRECT_FALSE_EQUATION,
    ERROR_KINDS,
    ERRORS,
    FORMAT_RATE,
    LENIENT,
    ROLLOUTS,
    SAMPLED_PREFIXES,
    STEP,
    STRICT,
    TOKENS,
    WALL,
    peak_memory,
    summary_key,
)
from mathreason.records.checkpoints import checkpoint_step, find_checkpoint
from mathreason.records.telemetry import Telemetry, TelemetryMixin
from mathreason.records.wandb_run import WandbRun

log = logging.getLogger("mathreason")


@dataclass
class RunContext:
    cfg: DictConfig
    run_dir: Path
    device: str
    run_name: str
    overrides: list[str]
    train_rows: list[dict] | None
    eval_rows: list[dict]
    resume: bool
    wandb: WandbRun
    final_split_rows: dict[str, list[dict]] = field(default_factory=dict)  # eval.final_splits' rows
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def report_to(self) -> list[str]:
        return ["wandb"] if self.wandb.enabled else []


def with_telemetry(trainer_cls: type) -> type:
    """The TRL trainer class with our keys added through its own ``log()``."""
    return type(trainer_cls.__name__, (TelemetryMixin, trainer_cls), {})


def common_training_args(ctx: RunContext, section: DictConfig, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """TrainingArguments every method shares, plus the method's own keys
    (``section``) passed through unchanged, plus ``section.extra``."""
    cfg = ctx.cfg
    on_gpu = ctx.device.startswith("cuda")
    ckpt = cfg.checkpoint
    args = {
        k: v
        for k, v in OmegaConf.to_container(section, resolve=True).items()
        if k not in ("extra", *skip)
    }
    args.update(
        output_dir=str(ctx.run_dir / "checkpoints"),
        seed=int(cfg.seed),
        data_seed=int(cfg.seed),
        use_cpu=not on_gpu,  # device=cpu on a GPU machine stays on the CPU; several CPU processes join as gloo DDP
        bf16=on_gpu and cfg.model.dtype in ("bfloat16", "auto"),
        fp16=on_gpu and cfg.model.dtype == "float16",
        report_to=ctx.report_to,
        run_name=ctx.run_name,
        save_strategy="steps" if ckpt.every_n_steps else "no",
        save_steps=max(1, int(ckpt.every_n_steps)),
        save_total_limit=int(ckpt.keep),
        save_only_model=False,
        gradient_checkpointing=on_gpu,
        dataloader_num_workers=0,
        dataloader_pin_memory=on_gpu,  # pinning needs an accelerator (a warning per epoch otherwise)
        disable_tqdm=False,
    )
    args.update(OmegaConf.to_container(section.extra, resolve=True))
    return args


def per_device_batch(batch_size: int, key: str) -> int:
    """A method's batch size is the global one (examples per optimizer step, over all
    processes of the job), as ``geometry.rollouts_per_step`` is; TRL's is per device."""
    from mathreason.errors import UserError
    from mathreason.processes import world_size

    world = world_size()
    if int(batch_size) % world:
        raise UserError(f"{key}={batch_size}: examples per optimizer step over all {world} processes, "
                        f"so it must divide by {world}")
    return int(batch_size) // world


def last_checkpoint(ctx: RunContext) -> str | None:
    """The newest complete ``checkpoints/checkpoint-N`` of this run (see
    :func:`find_checkpoint`)."""
    found = find_checkpoint(ctx.run_dir / "checkpoints")
    return str(found) if found else None


def prepare_resume(ctx: RunContext, telemetry: Telemetry) -> str | None:
    """Resume from the last checkpoint if this run has one: keep the metrics
    logged up to it (later records are work that is redone) and continue the
    counters. Without a checkpoint, start the metrics afresh."""
    ckpt = on_main(lambda: last_checkpoint(ctx)) if ctx.resume else None  # rank 0 may set a damaged one aside
    step = checkpoint_step(ckpt) if ckpt else -1
    kept = telemetry.resume_at(step, ctx.wandb)
    if ckpt:
        log.info("resuming from %s (step %d); %d metrics records up to it kept", ckpt, step, len(kept))
    elif ctx.resume:
        log.info("no complete checkpoint in %s; training starts from step 0", ctx.run_dir / "checkpoints")
    return ckpt


def train_with_evals(trainer, ctx: RunContext, resume_from_checkpoint: str | None, last: bool = True) -> None:
    """``trainer.train()`` with held-out evals: the baseline (step 0) before
    it and the final one after it, so TRL's ``train_runtime`` times training,
    not evaluation; the evals between inside it (``make_eval_callback``).
    With ``eval.num_samples`` > 1 they also sample (``eval.sampled_evals``);
    ``last=False``: the final eval is not the run's last (a DPO round before the last)."""
    callback = make_eval_callback(trainer, ctx)
    trainer.add_callback(callback)
    if resume_from_checkpoint is None and trainer.telemetry.step_offset == 0:
        trainer.log(callback.evaluate(0, sampled=ctx.cfg.eval.sampled_evals != "last"))
    trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    step = trainer.telemetry.step_offset + trainer.state.global_step
    metrics = callback.evaluate(step, sampled=last or ctx.cfg.eval.sampled_evals == "all")
    if last:
        model = trainer.accelerator.unwrap_model(trainer.model)
        metrics.update(evaluate_final_splits(model, trainer.processing_class, ctx, step))
    trainer.log(metrics)


def evaluate_final_splits(model, tokenizer, ctx: RunContext, step: int) -> dict[str, float]:
    """The final model on each of ``eval.final_splits`` (greedy, and sampled with
    ``eval.num_samples`` > 1): records under ``splits/<name>/``, metrics as
    ``eval_<name>/...`` (``eval/<name>/...`` in metrics.jsonl and W&B), one line each."""
    from mathreason.records import split_dir
    from mathreason.scoring.evaluation import evaluate

    out: dict[str, float] = {}
    for name, rows in ctx.final_split_rows.items():
        metrics = evaluate(model, tokenizer, rows, ctx.cfg.eval, step=step, out_dir=split_dir(ctx.run_dir, name),
                           seed=int(ctx.cfg.seed))
        shown = [f"strict {metrics['eval_accuracy_strict']:.1%}"] + [
            f"{k.split('_', 1)[1]} {v:.1%}" for k, v in metrics.items() if k.startswith(("eval_pass@", "eval_mean@"))]
        log.info("eval @ step %d on %s (%d items) · %s", step, name, len(rows), " · ".join(shown))
        out.update({f"eval_{name}/{key.removeprefix('eval_')}": value for key, value in metrics.items()})
    return out


def make_eval_callback(trainer, ctx: RunContext):
    """Evaluate every ``eval.every_n_steps`` and where the cumulative rollouts
    pass a count in ``eval.at_rollouts``, before the last step (the last one is
    evaluated after ``train()``); results ride along with the trainer's next
    log record. Steps count from ``telemetry.step_offset`` (DPO rounds
    continue the axis). These evals are greedy unless ``eval.sampled_evals=all``."""
    from transformers import TrainerCallback

    from mathreason.console import EVAL_LINES
    from mathreason.scoring.evaluation import evaluate

    every = int(ctx.cfg.eval.every_n_steps)
    at_rollouts = sorted(int(r) for r in ctx.cfg.eval.at_rollouts or ())
    sample_all = ctx.cfg.eval.sampled_evals == "all"
    telemetry = trainer.telemetry

    def rollouts_at(step: int) -> float:
        return telemetry.constant.get("cumulative_rollouts") or telemetry.rollouts_per_step * step

    class EvalDuringTraining(TrainerCallback):
        def evaluate(self, step: int, sampled: bool = sample_all) -> dict:
            model = trainer.accelerator.unwrap_model(trainer.model)
            metrics = evaluate(model, trainer.processing_class, ctx.eval_rows, ctx.cfg.eval, step=step,
                               out_dir=ctx.run_dir, sampled=sampled, seed=int(ctx.cfg.seed))
            EVAL_LINES.report(step, metrics, rollouts_at(step))
            return metrics

        def due(self, step: int) -> bool:
            if every and step % every == 0:
                return True
            now, before = telemetry.rollouts_per_step * step, telemetry.rollouts_per_step * (step - 1)
            return any(before < r <= now for r in at_rollouts)

        def on_step_end(self, args, state, control, **kwargs):
            step = telemetry.step_offset + state.global_step
            if self.due(step) and state.global_step < state.max_steps:
                telemetry.pending.update(self.evaluate(step))
                control.should_log = True

    return EvalDuringTraining()


def run_summary(ctx: RunContext, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's summary from its own metrics file: baseline and final eval
    (an eval-only run has one eval: ``final`` only), the paired change between
    them with its CI (:func:`eval_change`), wall-clock, peak memory, rollouts.
    Rank 0's alone in a job on several processes (the others get {})."""
    from mathreason.records.telemetry import MetricsFile

    if not is_main():
        return {}
    records = MetricsFile(ctx.run_dir).records()
    evals = [r for r in records if STRICT in r]
    summary: dict[str, Any] = {"method": ctx.cfg.method, "steps": records[-1][STEP] if records else 0}
    tags = [] if not evals else [("final", evals[-1])] if ctx.cfg.method == "eval" else [
        ("baseline", evals[0]), ("final", evals[-1])]
    for tag, rec in tags:
        for metric in (STRICT, LENIENT, FORMAT_RATE):
            summary[summary_key(tag, metric)] = rec.get(metric)
        for metric in [ERRORS + kind for kind in ERROR_KINDS] + [CORRECT_FALSE_EQUATION]:
            if metric in rec:
                summary[summary_key(tag, metric)] = rec[metric]
        for metric in rec:
            if metric.startswith(SAMPLED_PREFIXES + tuple(f"eval/{name}/" for name in ctx.cfg.eval.final_splits)):
                summary[summary_key(tag, metric)] = rec[metric]
    summary.update(eval_change(ctx.run_dir, single=ctx.cfg.method == "eval"))
    for key in (WALL, ROLLOUTS, TOKENS):
        values = [r[key] for r in records if key in r]
        if values:
            summary[key.split("/", 1)[1]] = values[-1]
    key, peak = peak_memory(records)
    if key is not None:
        summary["peak_memory_mb"] = peak
    summary.update(extra or {})
    return summary


def eval_change(run_dir: Path, single: bool = False) -> dict[str, Any]:
    """How sure the run's before/after is, from its per-item eval files: the
    first eval (the baseline) against the last, paired by item, for greedy
    strict accuracy and, where both evals sampled, mean@k
    (:func:`mathreason.analysis.stats.paired_change`: paired-bootstrap 95% CI,
    items gained and lost, exact McNemar p for 0/1 outcomes), under
    ``change/<metric>/...``. ``single`` (an eval-only run): the last eval's
    accuracy with its 95% CI over items, under ``final/<metric>_ci``. Empty
    when the evals kept no per-item records (``eval.save_samples=false``)."""
    import numpy as np

    from mathreason.analysis.stats import mean_ci, paired_change
    from mathreason.records import eval_files, read_eval

    files = eval_files(run_dir)
    if not files or (not single and len(files) < 2):
        return {}
    first, last = read_eval(files[0]), read_eval(files[-1])

    def outcomes(recs: list[dict]) -> dict[str, dict[str, float]]:
        out = {"accuracy_strict": {r["item_id"]: float(r["correct"]) for r in recs}}
        sampled = [r for r in recs if r.get("samples_correct")]
        if sampled and len(sampled) == len(recs):
            k = len(sampled[0]["samples_correct"])
            out[f"mean@{k}"] = {r["item_id"]: sum(r["samples_correct"]) / k for r in recs}
        return out

    out: dict[str, Any] = {}
    after = outcomes(last)
    if single:
        for metric, per_item in after.items():
            est = mean_ci(np.fromiter(per_item.values(), float))
            out[f"final/{metric}_ci"] = [est.ci_low, est.ci_high]
        out["eval_items"] = len(last)
        return out
    before = outcomes(first)
    for metric in after.keys() & before.keys():
        items = sorted(i for i in before[metric] if i in after[metric])  # one order: the bootstrap's draws
        if not items:
            continue
        change = paired_change([before[metric][i] for i in items], [after[metric][i] for i in items])
        out.update({f"change/{metric}/{key}": value for key, value in change.items()})
    return out


def trl_config(cls: type, args: dict[str, Any], section: str):
    """TRL's config object (GRPOConfig, DPOConfig), built with TRL's own checks;
    a value it refuses is a user error naming the config section."""
    from mathreason.errors import UserError
    from mathreason.one_line import one_line

    try:
        return cls(**args)
    except (TypeError, ValueError) as err:
        raise UserError(f"{section}: {cls.__name__} refuses these settings: {one_line(err)}") from err


def record_effective(ctx: RunContext, values: dict[str, Any]) -> None:
    """The values that actually trained (e.g. the lr after geometry scaling),
    beside the configured ones: ``effective`` in run.json and in W&B's config."""
    from mathreason.records.run_dir import write_state

    write_state(ctx.run_dir, effective=values)
    ctx.wandb.update_config({"effective": values})


def score_completions_only(device: str) -> None:
    """On a CPU, let TRL's fused LM head score only the positions its loss uses.

    TRL 1.16's GRPO, DPO and SFT trainers compute per-token log-probs (and GRPO's
    entropies) with a fused, chunked LM head. Off Triton devices it scores every
    position of each sequence, prompt included, and masks the unused ones out
    afterwards: that keeps tile shapes fixed for graph compilers (its comment names
    Neuron). On a CPU in eager mode nothing is compiled. With SmolLM2's prompts
    (~190 tokens) against completions of at most 64, that is ~4x the LM head's work
    (a 49,152-token vocabulary) in the forward and again in the backward, and 2.4 GB
    of peak memory in a GRPO step (docs/benchmarks.md). Scoring only the valid
    positions gives the same values and gradients (the masked ones are zeros either
    way; tests/test_adapters.py). A no-op on GPUs, where TRL does it already, and
    where TRL has no such switch (TRL 1.15 keeps only the completion's logits).
    """
    if device != "cpu":
        return
    import trl.trainer.utils as trl_utils

    if callable(getattr(trl_utils, "_use_triton", None)):  # used there for this one decision
        trl_utils._use_triton = lambda _device: True
