"""Glue shared by the training methods: the run context, TrainingArguments
common to TRL's trainers, eval-during-training, checkpoint resume, summary."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mathreason.telemetry import Telemetry, TelemetryMixin

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
    wandb_mode: str
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def report_to(self) -> list[str]:
        return [] if self.wandb_mode == "disabled" else ["wandb"]


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
        disable_tqdm=False,
    )
    args.update(OmegaConf.to_container(section.extra, resolve=True))
    return args


def _complete(ckpt: Path) -> bool:
    """The Trainer writes ``trainer_state.json`` last (after the model,
    optimizer, scheduler and RNG states): without a readable one the save was
    cut short (the process was killed while saving)."""
    import json

    try:
        json.loads((ckpt / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return True


def last_checkpoint(ctx: RunContext) -> str | None:
    """The newest complete ``checkpoints/checkpoint-N``; incomplete ones (a
    kill during the save) are removed, so resume falls back to the one before."""
    import re
    import shutil

    ckpt_dir = ctx.run_dir / "checkpoints"
    if not ckpt_dir.is_dir():
        return None
    found = []
    for path in ckpt_dir.iterdir():
        match = re.fullmatch(r"checkpoint-(\d+)", path.name)
        if not (match and path.is_dir()):
            continue
        if _complete(path):
            found.append((int(match[1]), path))
        else:
            shutil.rmtree(path, ignore_errors=True)
    return str(max(found)[1]) if found else None


def prepare_resume(ctx: RunContext, telemetry: Telemetry) -> str | None:
    """Resume from the last checkpoint if this run has one: keep the metrics
    logged up to it (later records are work that is redone) and continue the
    counters. Without a checkpoint, start the metrics afresh."""
    ckpt = last_checkpoint(ctx) if ctx.resume else None
    step = int(Path(ckpt).name.split("-")[-1]) if ckpt else -1
    kept: list[dict] = []
    if telemetry.metrics.path.exists():
        kept = telemetry.metrics.truncate_after(step)
        telemetry.restore(kept)
    if ckpt:
        log.info("resuming from %s (step %d); %d metrics records up to it kept", ckpt, step, len(kept))
    elif ctx.resume:
        log.info("no complete checkpoint in %s; training starts from step 0", ctx.run_dir / "checkpoints")
    return ckpt


def make_eval_callback(trainer, ctx: RunContext):
    """Evaluate at step 0 (the baseline), every ``eval.every_n_steps`` and at
    the last step; results ride along with the trainer's next log record.
    Steps count from ``telemetry.step_offset`` (DPO rounds continue the axis)."""
    from transformers import TrainerCallback

    from mathreason.evaluation import evaluate

    every = int(ctx.cfg.eval.every_n_steps)
    telemetry = trainer.telemetry

    class EvalDuringTraining(TrainerCallback):
        def _evaluate(self, step: int) -> dict:
            model = trainer.accelerator.unwrap_model(trainer.model)
            return evaluate(model, trainer.processing_class, ctx.eval_rows, ctx.cfg.eval, step=step, out_dir=ctx.run_dir)

        def on_train_begin(self, args, state, control, **kwargs):
            if state.global_step == 0 and telemetry.step_offset == 0:
                trainer.log(self._evaluate(0))

        def on_step_end(self, args, state, control, **kwargs):
            step = telemetry.step_offset + state.global_step
            if (every and step % every == 0) or state.global_step >= state.max_steps:
                telemetry.pending.update(self._evaluate(step))
                control.should_log = True

    return EvalDuringTraining()


def summarize(ctx: RunContext, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The run's summary from its own metrics file: baseline and final eval,
    wall-clock, peak memory, rollouts."""
    from mathreason.telemetry import MetricsFile

    records = MetricsFile(ctx.run_dir).records()
    evals = [r for r in records if "eval/accuracy_strict" in r]
    summary: dict[str, Any] = {"method": ctx.cfg.method, "steps": records[-1]["step"] if records else 0}
    if evals:
        for tag, rec in (("baseline", evals[0]), ("final", evals[-1])):
            for key in ("accuracy_strict", "accuracy_lenient", "format_rate"):
                summary[f"{tag}/{key}"] = rec.get(f"eval/{key}")
    for key in ("train/wall_clock_s", "train/cumulative_rollouts", "train/cumulative_generated_tokens"):
        values = [r[key] for r in records if key in r]
        if values:
            summary[key.split("/", 1)[1]] = values[-1]
    peaks = [v for r in records for k, v in r.items() if "overall_peak" in k]
    if peaks:
        summary["peak_memory_mb"] = max(peaks)
    summary.update(extra or {})
    return summary
