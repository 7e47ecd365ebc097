"""Run telemetry: W&B set-up, the local metrics.jsonl, memory and wall-clock.

Everything a run logs goes through the trainer's own ``log()`` (see
:class:`TelemetryMixin`), so W&B (via transformers' WandbCallback) and the
local ``metrics.jsonl`` receive the same records with the same keys:
transformers' W&B key names (``train/reward``, ``eval/accuracy_strict``…)
plus ``step``.
"""

from __future__ import annotations

import json
import math
import os
import resource
import secrets
import time
from pathlib import Path
from typing import Any

from mathreason.errors import NumericFault

METRICS_FILE = "metrics.jsonl"
SECRET_ENV = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY")


def wandb_key_names(logs: dict[str, Any]) -> dict[str, Any]:
    """transformers' own renaming for W&B (``eval_x`` -> ``eval/x``, else ``train/x``)."""
    from transformers.integrations.integration_utils import rewrite_logs

    return rewrite_logs(logs)


class MetricsFile:
    """Append-only JSON lines, one record per logged step; resume-safe."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / METRICS_FILE

    def records(self) -> list[dict]:
        if not self.path.exists():
            return []
        with self.path.open() as fh:
            return [json.loads(line) for line in fh if line.strip()]

    def append(self, record: dict) -> None:
        with self.path.open("a") as fh:
            fh.write(json.dumps(record, default=_jsonable) + "\n")

    def truncate_after(self, step: int) -> list[dict]:
        """Drop records logged after ``step`` (work lost since the checkpoint);
        returns the records kept."""
        kept = [r for r in self.records() if r.get("step", 0) <= step]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
        tmp.replace(self.path)
        return kept


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    return str(value)


class MemoryMeter:
    """Peak memory per logging interval and overall: CUDA allocated/reserved on
    GPU, the process's resident set size on CPU."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.overall: dict[str, float] = {}

    def sample(self) -> dict[str, float]:
        if self.cuda:
            import torch

            mb = 2**20
            out = {
                "memory/peak_allocated_mb": torch.cuda.max_memory_allocated() / mb,
                "memory/peak_reserved_mb": torch.cuda.max_memory_reserved() / mb,
            }
            torch.cuda.reset_peak_memory_stats()
        else:
            import psutil

            out = {"memory/rss_mb": psutil.Process().memory_info().rss / 2**20}
            out["memory/peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        for key, value in out.items():
            if key.startswith("memory/peak"):
                name = key.replace("memory/peak", "memory/overall_peak")
                self.overall[name] = max(self.overall.get(name, 0.0), value)
        return {**out, **self.overall}


class Telemetry:
    """Counters and pending values that ride along with the trainer's next log."""

    def __init__(self, run_dir: str | Path, device: str, rollouts_per_step: int = 0, wall_offset: float = 0.0):
        self.metrics = MetricsFile(run_dir)
        self.memory = MemoryMeter(device)
        self.rollouts_per_step = rollouts_per_step
        self.started = time.monotonic() - wall_offset
        self.pending: dict[str, float] = {}  # added to the next record only
        self.constant: dict[str, float] = {}  # added to every record
        self.step_offset = 0  # steps done by earlier trainers of this run (DPO rounds)
        self.train_totals: dict[str, float] = {}
        self.generated_tokens = 0.0
        self.last_step = 0

    def wall_clock(self) -> float:
        return time.monotonic() - self.started

    def extra_logs(self, step: int, mean_len: float | None = None) -> dict[str, float]:
        """Our keys for the record about to be logged at ``step`` (``mean_len``:
        mean completion length of the steps since the last record)."""
        out = {**self.constant, **self.pending}
        self.pending.clear()
        out.update(self.memory.sample())
        out["wall_clock_s"] = self.wall_clock()
        if self.rollouts_per_step:
            out["cumulative_rollouts"] = step * self.rollouts_per_step
            if mean_len is not None:
                self.generated_tokens += mean_len * self.rollouts_per_step * max(1, step - self.last_step)
                out["cumulative_generated_tokens"] = self.generated_tokens
        self.last_step = step
        return out

    def restore(self, records: list[dict]) -> None:
        """Continue counters from the records kept on resume."""
        if not records:
            return
        last = records[-1]
        self.started = time.monotonic() - float(last.get("train/wall_clock_s", 0.0))
        self.generated_tokens = float(last.get("train/cumulative_generated_tokens", 0.0))
        self.last_step = int(last.get("step", 0))


def check_finite(logs: dict[str, Any], step: int) -> None:
    """Stop on a NaN/inf loss or reward, naming the step and the reward function."""
    for key, value in logs.items():
        if not isinstance(value, (int, float)) or math.isfinite(value):
            continue
        if key == "loss" or key.startswith("reward") or key == "grad_norm":
            name = key.split("/")[1] if key.startswith("rewards/") else key
            what = f"reward function '{name}'" if key.startswith("rewards/") else key
            raise NumericFault(f"non-finite {key}={value} at step {step} ({what}); metrics so far are saved")


class TelemetryMixin:
    """Mixed into TRL trainers: our keys enter through the trainer's own log()."""

    telemetry: Telemetry | None = None

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:  # noqa: D401
        tel = self.telemetry
        if tel is None:
            return super().log(logs, start_time)
        # A later trainer of the same run (a DPO round) continues the step axis:
        # shift global_step while logging so W&B and log_history see run steps.
        offset = tel.step_offset
        self.state.global_step += offset
        try:
            step = self.state.global_step
            lengths = getattr(self, "_metrics", {}).get("train", {}).get("completions/mean_length")
            logs.update(tel.extra_logs(step, sum(lengths) / len(lengths) if lengths else None))
            super().log(logs, start_time)  # TRL adds its metrics into `logs` here
        finally:
            self.state.global_step -= offset
        if "train_runtime" in logs:  # the trainer's end-of-training totals: a summary, not a step
            tel.train_totals = {k: v for k, v in logs.items() if k.startswith("train_")}
        else:
            tel.metrics.append({"step": step, **wandb_key_names(logs)})
        check_finite(logs, step)


def init_wandb(cfg: Any, run_dir: Path, run_name: str, overrides: list[str]) -> str:
    """Start (or resume) the run's W&B run; returns the mode used ('disabled' when off).

    Online when the user is logged in, offline otherwise (run files under
    ``<run dir>/wandb``). The run id is kept in the run dir so a resumed run
    continues the same W&B run. No key is ever written anywhere."""
    log_cfg = cfg.logger
    mode = log_cfg.mode
    if log_cfg.name == "none" or mode == "disabled":
        return "disabled"
    import wandb
    from omegaconf import OmegaConf

    if mode == "auto":
        mode = "online" if _wandb_logged_in() else "offline"
    id_file = run_dir / "wandb_id"
    run_id = id_file.read_text().strip() if id_file.exists() else secrets.token_hex(4)
    id_file.write_text(run_id)
    config = scrub_secrets(OmegaConf.to_container(cfg, resolve=True))
    wandb.init(
        project=log_cfg.project,
        entity=log_cfg.entity,
        group=log_cfg.group,
        job_type=cfg.method,
        name=run_name,
        tags=[*log_cfg.tags, cfg.method, cfg.model.name, cfg.data.name, arm_tag(cfg)],
        config={**config, "overrides": overrides},
        dir=str(run_dir),
        id=run_id,
        resume="allow",
        mode=mode,
        settings=wandb.Settings(silent=True, console="off"),
    )
    os.environ["WANDB_PROJECT"] = log_cfg.project or "mathreason"
    return mode


def arm_tag(cfg: Any) -> str:
    """``g2``/``g16`` for GRPO, ``k4`` (samples per question) for DPO."""
    if cfg.method == "grpo":
        return f"g{cfg.group_size.num_generations}"
    if cfg.method == "dpo":
        return f"k{cfg.dpo.mining.samples_per_question}"
    return cfg.method


def finish_wandb(summary: dict[str, Any] | None = None) -> None:
    import sys

    wandb = sys.modules.get("wandb")
    if wandb is None or wandb.run is None:
        return
    if summary:
        wandb.run.summary.update(summary)
    wandb.finish()


def _wandb_logged_in() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    return netrc.exists() and "api.wandb.ai" in netrc.read_text(errors="ignore")


def scrub_secrets(obj: Any) -> Any:
    """Replace any value equal to a secret from the environment with '***'."""
    secrets_now = {os.environ[k] for k in SECRET_ENV if os.environ.get(k)}
    if not secrets_now:
        return obj

    def walk(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        if isinstance(x, str) and any(s in x for s in secrets_now):
            return "***"
        return x

    return walk(obj)
