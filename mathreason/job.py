"""One job: validate, load data, set up telemetry, run the method, summarize.

Called by ``mathreason.run`` for every Hydra job (single run or sweep member).
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mathreason import processes
from mathreason.console import EVAL_LINES, phase, quiet_libraries
from mathreason.errors import Interrupted, UserError
from mathreason.one_line import fail, one_line
from mathreason.records import CONFIG_FILE, package_versions
from mathreason.records.run_dir import (
    check_reuse,
    claim,
    comparable_config,
    holds_another_run,
    owned_by_another,
    read_state,
    release,
    remove_created,
    slug,
    write_state,
)

log = logging.getLogger("mathreason")


def load_rows(cfg: DictConfig, run_dir: Path, write: bool = True) -> tuple[list[dict] | None, list[dict], dict[str, list[dict]]]:
    """Train rows (training methods only), eval rows and the rows of each of
    ``eval.final_splits``; rows whose gold answer cannot be parsed are skipped,
    counted and listed in ``skipped_rows.jsonl`` (``write``: rank 0 of a job on several processes)."""
    from mathreason.data.loaders import load_split

    splits = {"eval": load_split(cfg.data, "eval")}
    for name in cfg.eval.final_splits:
        if cfg.data.path:
            raise UserError(f"eval.final_splits: data.path={cfg.data.path} is one file, not a dataset with splits")
        if name == cfg.data.eval_split:
            raise UserError(f"eval.final_splits: {name!r} is data.eval_split already")
        splits[name] = load_split({**cfg.data, "eval_split": name}, "eval")
    if cfg.method != "eval":
        splits["train"] = load_split(cfg.data, "train")
    skipped = []
    for name, split in splits.items():
        if not split.rows:
            raise UserError(f"data: the {name} split of {split.source} has no usable rows")
        for item in split.skipped:
            skipped.append({"split": name, **item})
        if split.skipped:
            log.warning("%s split: %d rows skipped (unparseable gold answer), listed in skipped_rows.jsonl",
                        name, len(split.skipped))
    if skipped and write:
        with (run_dir / "skipped_rows.jsonl").open("w") as fh:
            fh.writelines(json.dumps(s, default=str) + "\n" for s in skipped)
    train = splits.get("train")
    held_out = {name: split for name, split in splits.items() if name != "train"}
    if train is not None and cfg.data.generator is not None:  # generated data: held out by equation chain
        from mathreason.data.arith import shared_chains

        for split in held_out.values():
            shared = shared_chains(train.rows, split.rows)
            if shared:  # the partition rules this out; seeing it means a bug in the generator
                raise RuntimeError(f"{len(shared)} eval equation chains occur in the training prompts, "
                                   f"e.g. {min(shared)!r}")
    # max_samples=None keeps all
    limited = {name: split.rows[: cfg.eval.max_samples] for name, split in held_out.items()}
    return (train.rows if train else None), limited.pop("eval"), limited


def setup_torch(cfg: DictConfig) -> str:
    import warnings

    import torch
    from transformers import set_seed

    from mathreason.models.load import resolve_device

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
    quiet_libraries(bool(cfg.verbose))
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    set_seed(int(cfg.seed))
    return resolve_device(cfg.device)


def run_job(cfg: DictConfig) -> dict[str, Any]:
    from mathreason.config.schema import validate
    from mathreason.errors import NumericFault
    from mathreason.launch.preflight import preflight
    from mathreason.methods import METHODS
    from mathreason.methods.common import RunContext
    from mathreason.records.secrets import scrub_secrets
    from mathreason.records.wandb_run import WandbRun

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = scrub_secrets(list(hydra_cfg.overrides.task))  # an override may interpolate a secret
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    main = processes.is_main()  # rank 0 owns the run dir, run.json, metrics, console and W&B
    if not main:
        logging.getLogger("mathreason").setLevel(logging.WARNING)
    typed = None
    try:
        typed = validate(cfg, overrides)
        if processes.distributed():
            from mathreason.models.load import resolve_device

            processes.start(resolve_device(typed.device))  # torch, not transformers: Unsloth may come first
        status = processes.on_main(lambda: check_reuse(claim(run_dir), typed))
        if status == "done":
            log.info("%s already holds this finished run; nothing to do (pass another hydra.run.dir "
                     "to train afresh)", run_dir)
            release(run_dir)
            return read_state(run_dir).get("summary", {}) if main else {}
        preflight(typed)  # imports Unsloth first where the backend is unsloth (it patches TRL as it loads)
        train_rows, eval_rows, final_split_rows = load_rows(typed, run_dir, write=main)
    except UserError as err:
        if not main or owned_by_another(run_dir) or holds_another_run(run_dir, typed):
            return _user_error(err, multirun)  # not this job's run dir to record in: touch nothing
        if multirun or read_state(run_dir) is not None:
            # keep the job's record: a sweep reports it, a resumable run keeps its work
            record = {} if typed is None else {"config": scrub_secrets(comparable_config(typed))}
            write_state(run_dir, status="failed", error=one_line(err), overrides=overrides, **record)
            release(run_dir)
        else:
            remove_created(run_dir)
        return _user_error(err, multirun)

    started = time.time()
    stop_on_sigterm()
    if main:
        write_state(run_dir, status="running", method=typed.method, overrides=overrides,
                    experiment_name=typed.experiment_name, error=None, world_size=processes.world_size(),
                    config=scrub_secrets(comparable_config(typed)), started=started, versions=package_versions())
        (run_dir / CONFIG_FILE).write_text(
            OmegaConf.to_yaml(scrub_secrets(OmegaConf.to_container(typed, resolve=True))))
    else:
        return _join_run(typed, run_dir, overrides, train_rows, eval_rows, final_split_rows, status)
    wandb_run = WandbRun()  # disabled until started
    try:
        device = setup_torch(typed)
        name = slug(",".join(o for o in overrides if not o.startswith("hydra")))
        ctx = RunContext(
            cfg=typed, run_dir=run_dir, device=device, run_name=name, overrides=overrides,
            train_rows=train_rows, eval_rows=eval_rows, final_split_rows=final_split_rows,
            resume=status == "resume", wandb=wandb_run,
        )
        ctx.wandb = wandb_run = WandbRun.start(typed, run_dir, name, overrides)
        phase("run", f"{typed.method} on {typed.model.name} / {typed.data.name}, {run_dir} "
                     f"({'resuming' if ctx.resume else 'new'}, {device}, W&B {wandb_run.mode})")
        EVAL_LINES.baseline = None  # a sweep runs several jobs in one process
        summary = METHODS[typed.method](ctx)
    except (UserError, NumericFault) as err:
        write_state(run_dir, status="failed", error=one_line(err))
        wandb_run.finish()
        return _user_error(err, multirun)
    except KeyboardInterrupt as err:  # Ctrl-C, or SIGTERM outside SLURM (errors.Terminated)
        line = interrupted_line(run_dir)
        write_state(run_dir, status="interrupted", error=line)
        wandb_run.finish()
        if multirun:
            raise
        raise Interrupted(line, getattr(err, "exit_code", Interrupted.exit_code)) from None
    except SystemExit as err:  # preempted (submitit requeues)
        write_state(run_dir, status="interrupted", error=f"{type(err).__name__}: {err}")
        wandb_run.finish()
        raise
    except BaseException as err:
        if processes.lost_another_process(err):  # before torchrun's SIGTERM reached this rank
            line = f"another process of this job stopped ({peer_error(err)}); {interrupted_line(run_dir)}"
            write_state(run_dir, status="interrupted", error=line)
            wandb_run.finish()
            if multirun:
                raise
            raise Interrupted(line, 1) from None
        write_state(run_dir, status="failed", error=f"{type(err).__name__}: {err}")
        wandb_run.finish()
        raise
    finally:
        release(run_dir)
    summary["run_dir"] = str(run_dir)
    summary["wandb"] = wandb_run.location()
    write_state(run_dir, status="done", summary=summary, finished=time.time())
    wandb_run.finish(summary)
    print_summary(summary)
    return summary


def _join_run(typed: DictConfig, run_dir: Path, overrides: list[str], train_rows: list[dict] | None,
              eval_rows: list[dict], final_split_rows: dict[str, list[dict]], status: str) -> dict[str, Any]:
    """A rank other than 0 of a job on several processes: the same method on the
    same config, data and run dir, writing nothing (no run.json, lock, metrics,
    console or W&B: rank 0's); its end is rank 0's to record."""
    from mathreason.methods import METHODS
    from mathreason.methods.common import RunContext
    from mathreason.records.wandb_run import WandbRun

    device = setup_torch(typed)
    ctx = RunContext(cfg=typed, run_dir=run_dir, device=device, run_name=slug(",".join(overrides)),
                     overrides=overrides, train_rows=train_rows, eval_rows=eval_rows,
                     final_split_rows=final_split_rows, resume=status == "resume", wandb=WandbRun())
    try:
        METHODS[typed.method](ctx)
    except KeyboardInterrupt as err:  # torchrun tears the job down with SIGTERM when a rank fails
        raise Interrupted("", getattr(err, "exit_code", Interrupted.exit_code)) from None
    except RuntimeError as err:
        if processes.lost_another_process(err):  # rank 0 or a peer died first; rank 0 records it
            raise Interrupted("", 1) from None
        raise
    return {}


def peer_error(err: BaseException) -> str:
    """The gist of a collective's failure: "Read error [127.0.0.1]:2479: Connection reset
    by peer", without gloo's source path and advice."""
    return re.sub(r"^\[[^\]]*\]\s*", "", one_line(err)).split(". ")[0][:200]


def stop_on_sigterm() -> None:
    """SIGTERM (``kill``, ``timeout``, a container stop) ends the run as Ctrl-C does: where it
    stopped, how to resume, run.json ``interrupted``, exit 143. Not inside a SLURM job that
    submitit runs: submitit's own handlers drive preemption and requeue there."""
    import signal
    import threading

    from mathreason.errors import Terminated

    if os.environ.get("SUBMITIT_EXECUTOR") or threading.current_thread() is not threading.main_thread():
        return

    def terminate(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, terminate)


def _user_error(err: Exception, multirun: bool) -> dict:
    """A sweep job raises (the sweep reports it and goes on); a single run
    ends here in one line, exit 2 (Hydra would log a traceback-style line first)."""
    if multirun:
        raise err
    fail(err)
    return {}


def print_summary(summary: dict[str, Any]) -> None:
    """The summary table on the console and in run.log."""
    from mathreason.console import summary_table

    log.info("%s", summary_table(summary))
    if os.environ.get("MATHREASON_SUMMARY_JSON"):
        print(json.dumps(summary, default=str))


def interrupted_line(run_dir: Path) -> str:
    """What a person needs after Ctrl-C: where it stopped and how to go on."""
    from mathreason.records.telemetry import MetricsFile

    try:
        logged = MetricsFile(run_dir).records()
    except (OSError, ValueError):
        logged = []
    step = logged[-1].get("step", 0) if logged else 0
    from mathreason.records.checkpoints import CHECKPOINT, checkpoint_step

    ckpts = sorted((p for p in run_dir.glob("checkpoints/**/checkpoint-*") if CHECKPOINT.fullmatch(p.name)),
                   key=checkpoint_step)
    again = "run the same command again to "
    if ckpts:
        again += f"resume from {ckpts[-1].relative_to(run_dir)}"
    else:
        again += "start it over (no checkpoint yet; checkpoint.every_n_steps=N saves some)"
    return f"interrupted at step {step}; {again} (run dir {run_dir})"
