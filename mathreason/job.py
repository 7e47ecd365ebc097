"""One job: validate, load data, set up telemetry, run the method, summarize.

Called by ``mathreason.run`` for every Hydra job (single run or sweep member).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from mathreason.cli import fail, one_line
from mathreason.errors import UserError
from mathreason.run_dir import check_reuse, claim, comparable_config, read_state, release, remove_created, write_state

log = logging.getLogger("mathreason")


def load_rows(cfg: DictConfig, run_dir: Path) -> tuple[list[dict] | None, list[dict]]:
    """Train rows (training methods only) and eval rows; rows whose gold answer
    cannot be parsed are skipped, counted and listed in ``skipped_rows.jsonl``."""
    from mathreason.data.loaders import load_split

    splits = {"eval": load_split(cfg.data, "eval")}
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
    if skipped:
        with (run_dir / "skipped_rows.jsonl").open("w") as fh:
            fh.writelines(json.dumps(s, default=str) + "\n" for s in skipped)
    train = splits.get("train")
    eval_rows = splits["eval"].rows[: cfg.eval.max_samples]  # max_samples=None keeps all
    return (train.rows if train else None), eval_rows


def setup_torch(cfg: DictConfig) -> str:
    import warnings

    import torch
    from transformers import set_seed

    from mathreason.models.load import resolve_device

    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\..*")
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    set_seed(int(cfg.seed))
    return resolve_device(cfg.device)


def run_job(cfg: DictConfig) -> dict[str, Any]:
    from mathreason.errors import NumericFault
    from mathreason.methods import get_method
    from mathreason.methods.common import RunContext
    from mathreason.run import slug
    from mathreason.schema import preflight, validate
    from mathreason.telemetry import finish_wandb, init_wandb, scrub_secrets

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    overrides = list(hydra_cfg.overrides.task)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    typed = None
    try:
        typed = validate(cfg, overrides)
        claim(run_dir)
        status = check_reuse(run_dir, typed)
        if status == "done":
            log.info("%s already holds this finished run; nothing to do (pass another hydra.run.dir "
                     "to train afresh)", run_dir)
            release(run_dir)
            return read_state(run_dir).get("summary", {})
        preflight(typed)
        train_rows, eval_rows = load_rows(typed, run_dir)
    except UserError as err:
        if multirun or read_state(run_dir) is not None:
            # keep the job's record: a sweep reports it, a resumable run keeps its work
            record = {} if typed is None else {"config": scrub_secrets(comparable_config(typed))}
            write_state(run_dir, status="failed", error=one_line(err), overrides=overrides, **record)
            release(run_dir)
        else:
            remove_created(run_dir)
        return _user_error(err, multirun)

    started = time.time()
    write_state(run_dir, status="running", method=typed.method, overrides=overrides,
                experiment_name=typed.experiment_name, error=None,
                config=scrub_secrets(comparable_config(typed)), started=started)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml(scrub_secrets(OmegaConf.to_container(typed, resolve=True))))
    try:
        device = setup_torch(typed)
        name = slug(",".join(o for o in overrides if not o.startswith("hydra")))
        ctx = RunContext(
            cfg=typed, run_dir=run_dir, device=device, run_name=name, overrides=overrides,
            train_rows=train_rows, eval_rows=eval_rows, resume=status == "resume", wandb_mode="disabled",
        )
        ctx.wandb_mode = init_wandb(typed, run_dir, name, overrides)
        log.info("run dir: %s (%s, device=%s, W&B %s)", run_dir, "resuming" if ctx.resume else "new", device,
                 ctx.wandb_mode)
        summary = get_method(typed.method)(ctx)
    except (UserError, NumericFault) as err:
        write_state(run_dir, status="failed", error=one_line(err))
        finish_wandb()
        return _user_error(err, multirun)
    except (SystemExit, KeyboardInterrupt) as err:  # preempted (submitit requeues) or stopped by hand
        write_state(run_dir, status="interrupted", error=f"{type(err).__name__}: {err}")
        finish_wandb()
        raise
    except BaseException as err:
        write_state(run_dir, status="failed", error=f"{type(err).__name__}: {err}")
        finish_wandb()
        raise
    finally:
        release(run_dir)
    summary["run_dir"] = str(run_dir)
    write_state(run_dir, status="done", summary=summary, finished=time.time())
    finish_wandb(summary)
    print_summary(summary)
    return summary


def _user_error(err: Exception, multirun: bool) -> dict:
    """A sweep job raises (the sweep reports it and goes on); a single run
    ends here in one line, exit 2 (Hydra would log a traceback-style line first)."""
    if multirun:
        raise err
    fail(err)
    return {}


def print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{summary.get('method')} — {summary.get('run_dir')}")
    table.add_column("held-out")
    table.add_column("strict acc", justify="right")
    table.add_column("lenient acc", justify="right")
    table.add_column("format", justify="right")
    for tag, label in (("baseline", "before (warm start)"), ("final", "after training")):
        if f"{tag}/accuracy_strict" in summary:
            table.add_row(label, *(f"{summary[f'{tag}/{k}']:.1%}" for k in ("accuracy_strict", "accuracy_lenient", "format_rate")))
    Console(stderr=False).print(table)
    if os.environ.get("MATHREASON_SUMMARY_JSON"):
        print(json.dumps(summary, default=str))
