"""Run telemetry: W&B set-up, the local metrics.jsonl, memory and wall-clock.

Everything a run logs goes through the trainer's own ``log()`` (see
:class:`TelemetryMixin`), so W&B (via transformers' WandbCallback) and the
local ``metrics.jsonl`` receive the same records with the same keys:
transformers' W&B key names (``train/reward``, ``eval/accuracy_strict``…)
plus ``step``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import resource
import secrets
import time
from pathlib import Path
from typing import Any

from mathreason.errors import NumericFault
from mathreason.records import METRICS_FILE, STEP_AXIS, TOKENS, WALL, WANDB_ID_FILE
from mathreason.records import arm_tag as _arm_tag

log = logging.getLogger("mathreason")
# Environment variables whose values never reach a record: these, and any whose
# name looks secret (…KEY, …TOKEN, …SECRET, …PASSWORD, …CREDENTIALS).
SECRET_ENV = ("WANDB_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "OPENAI_API_KEY")
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIALS?)$", re.IGNORECASE)


def wandb_key_names(logs: dict[str, Any]) -> dict[str, Any]:
    """transformers' own renaming for W&B (``eval_x`` -> ``eval/x``, else ``train/x``)."""
    from transformers.integrations.integration_utils import rewrite_logs

    return rewrite_logs(logs)


class MetricsFile:
    """Append-only JSON lines, one record per logged step; resume-safe: a last
    line cut off mid-write (the process was killed) is removed, with one
    warning, the first time the file is read or appended to."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / METRICS_FILE
        self._repaired = False

    def repair(self) -> bool:
        """Remove a torn last line; True when one was removed. A last record
        that is whole but lacks its newline gets the newline."""
        self._repaired = True
        if not self.path.exists():
            return False
        data = self.path.read_bytes()
        stripped = data.rstrip(b" \t\r\n\x00")
        start = stripped.rfind(b"\n") + 1  # the last non-empty line
        try:
            if stripped[start:]:
                json.loads(stripped[start:])
            end, torn = len(stripped), stripped != data.rstrip(b" \t\r\n")  # NUL bytes after it: torn
        except ValueError:
            end, torn = start, True
        clean = data[:end] + (b"\n" if end and not data[:end].endswith(b"\n") else b"")
        if clean != data:
            with self.path.open("r+b") as fh:
                fh.truncate(end)
                fh.seek(end)
                fh.write(clean[end:])
        if torn:
            log.warning("%s: last line cut off mid-write (%d bytes, the run was killed while logging); removed it",
                        self.path, len(data) - end)
        return torn

    def records(self) -> list[dict]:
        if not self._repaired:
            self.repair()
        if not self.path.exists():
            return []
        out = []
        with self.path.open() as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    out.append(json.loads(line))
                except ValueError as err:
                    raise ValueError(f"{self.path}:{number}: not a JSON record ({err})") from err
        return out

    def append(self, record: dict) -> None:
        if not self._repaired:
            self.repair()
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
        self.started = time.monotonic() - float(last.get(WALL, 0.0))
        self.generated_tokens = float(last.get(TOKENS, 0.0))
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

    ``logger.mode=auto``: online with a W&B key (``WANDB_API_KEY`` or
    ``~/.netrc``) and the W&B host reachable, else offline (run files under
    ``<run dir>/wandb``) with one warning line. The run id is kept in the run
    dir, so a resumed run continues the same W&B run (``resume="allow"``).
    Offline, W&B cannot append to an earlier attempt's run file: the earlier
    ``offline-run-*`` dirs of this id move to ``wandb/superseded/`` and the
    method replays the metrics it keeps (:func:`replay_wandb_history`), so the
    one offline run left holds every step once, in order. No key is ever
    written anywhere."""
    log_cfg = cfg.logger
    mode = log_cfg.mode
    if log_cfg.name == "none" or mode == "disabled":
        return "disabled"
    import wandb
    from omegaconf import OmegaConf

    mode = choose_wandb_mode(mode, run_dir)
    id_file = run_dir / WANDB_ID_FILE
    run_id = id_file.read_text().strip() if id_file.exists() else ""
    if not run_id:
        run_id = secrets.token_hex(4)
        id_file.write_text(run_id)
    _REPLAY["pending"] = mode == "offline" and _supersede_offline_runs(run_dir / "wandb", run_id)
    config = scrub_secrets(OmegaConf.to_container(cfg, resolve=True))
    wandb.init(
        project=log_cfg.project,
        entity=log_cfg.entity,
        group=log_cfg.group,
        job_type=cfg.method,
        name=run_name,
        tags=[*config["logger"]["tags"], cfg.method, cfg.model.name, cfg.data.name, arm_tag(cfg)],
        config={**config, "overrides": overrides},
        dir=str(run_dir),
        id=run_id,
        resume="allow",
        mode=mode,
        settings=wandb.Settings(silent=True, console="off"),
    )
    os.environ["WANDB_PROJECT"] = log_cfg.project or "mathreason"
    return mode


_REPLAY = {"pending": False}  # an offline resume whose kept history is still to be logged


def _supersede_offline_runs(wandb_dir: Path, run_id: str) -> bool:
    """Move the offline run dirs of ``run_id`` (earlier attempts of this run)
    to ``wandb/superseded/``; True when there were any."""
    earlier = sorted(wandb_dir.glob(f"offline-run-*-{run_id}")) if wandb_dir.is_dir() else []
    if not earlier:
        return False
    target = wandb_dir / "superseded"
    target.mkdir(exist_ok=True)
    for path in earlier:
        path.rename(target / path.name)
    log.info("W&B offline resume: %d earlier offline run dir(s) of run %s moved to %s; their kept steps are "
             "logged again into the new one", len(earlier), run_id, target)
    return True


def replay_wandb_history(records: list[dict], raw: bool = False) -> int:
    """After an offline resume (see :func:`init_wandb`): log the metrics
    records kept from before the interruption into the new offline run, as
    transformers' WandbCallback logged them (keys plus ``train/global_step``;
    ``raw``: unchanged, as the eval method logs its record). A no-op
    otherwise; returns the number of records logged."""
    import sys

    pending, _REPLAY["pending"] = _REPLAY["pending"], False
    wandb = sys.modules.get("wandb")
    if not pending or wandb is None or wandb.run is None or not records:
        return 0
    if not raw:
        wandb.define_metric(STEP_AXIS)
        wandb.define_metric("*", step_metric=STEP_AXIS, step_sync=True)
    for record in records:
        row = {k: v for k, v in record.items() if k != "step"}
        wandb.log(record if raw else {**row, STEP_AXIS: record.get("step", 0)})
    return len(records)


def choose_wandb_mode(mode: str, run_dir: Path | None = None) -> str:
    """``online``/``offline`` for ``logger.mode``: ``auto`` and ``online`` go
    online only with a key and the W&B host reachable, else offline (one info
    line for ``auto`` without a key, the usual offline default; one warning
    otherwise). ``offline``/``disabled`` are kept."""
    if mode not in ("auto", "online"):
        return mode
    env_mode = os.environ.get("WANDB_MODE", "").lower()
    if env_mode in ("offline", "dryrun", "disabled"):
        return "disabled" if env_mode == "disabled" else "offline"
    where = f"{run_dir / 'wandb'}" if run_dir is not None else "<run dir>/wandb"
    host, port = _wandb_host()
    if not _wandb_logged_in():
        (log.info if mode == "auto" else log.warning)("W&B: not logged in (no WANDB_API_KEY, no ~/.netrc entry for %s): logging offline to %s "
                    "(upload later with `wandb sync`)", host, where)
        return "offline"
    reachable, why = _wandb_reachable(host, port)
    if not reachable:
        log.warning("W&B: logged in but %s:%d is unreachable (%s): logging offline to %s "
                    "(upload later with `wandb sync`)", host, port, why, where)
        return "offline"
    return "online"


WANDB_PROBE_TIMEOUT_S = 3.0


def _wandb_host() -> tuple[str, int]:
    from urllib.parse import urlparse

    url = urlparse(os.environ.get("WANDB_BASE_URL") or "https://api.wandb.ai")
    return url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)


def _wandb_reachable(host: str, port: int, timeout: float | None = None) -> tuple[bool, str]:
    """A TCP connection to the W&B host within ``timeout`` (name lookup
    included: it runs in a thread, so a hanging resolver cannot stall the run)."""
    import socket
    import threading

    timeout = WANDB_PROBE_TIMEOUT_S if timeout is None else timeout

    result: list[str] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result.append("")
        except OSError as err:
            result.append(f"{type(err).__name__}: {err}")

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    if not result:
        return False, f"no answer within {timeout:.0f} s"
    return result[0] == "", result[0]


def arm_tag(cfg: Any) -> str:
    """``g2``/``g16`` for GRPO, ``k4`` (samples per question) for DPO."""
    if cfg.method == "grpo":
        return _arm_tag("grpo", cfg.group_size)
    if cfg.method == "dpo":
        return _arm_tag("dpo", samples_per_question=cfg.dpo.mining.samples_per_question)
    return _arm_tag(cfg.method)


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
    try:
        return _wandb_host()[0] in netrc.read_text(errors="ignore")
    except OSError:
        return False


def scrub_secrets(obj: Any) -> Any:
    """Replace any string that contains a secret from the environment with '***'."""
    secrets_now = {v for k, v in os.environ.items()
                   if (k in SECRET_ENV or SECRET_NAME.search(k)) and len(v) >= 8}
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
