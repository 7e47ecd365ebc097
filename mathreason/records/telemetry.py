"""Run telemetry: the local metrics.jsonl, memory and wall-clock (W&B: records/wandb_run.py).

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
import resource
import time
from pathlib import Path
from typing import Any

from mathreason.errors import NumericFault
from mathreason.processes import is_main
from mathreason.records import METRICS_FILE, TOKENS, WALL

log = logging.getLogger("mathreason")


def wandb_key_names(logs: dict[str, Any]) -> dict[str, Any]:
    """transformers' own renaming for W&B (``eval_x`` -> ``eval/x``, else ``train/x``)."""
    from transformers.integrations.integration_utils import rewrite_logs

    return rewrite_logs(logs)


class MetricsFile:
    """Append-only JSON lines, one record per logged step. Readers never write: ``records``
    leaves out a last line cut off mid-write (the process was killed), with one warning; the run
    that appends again (a resume) removes it first (``repair``). In a job on several processes
    only rank 0 writes (``repair``, ``append`` and ``truncate_after`` change nothing elsewhere)."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / METRICS_FILE
        self._repaired = False
        self._warned = False

    def _scan(self) -> tuple[bytes, int, bool]:
        """(the file's bytes, where its whole records end, whether a torn last line follows)."""
        data = self.path.read_bytes()
        stripped = data.rstrip(b" \t\r\n\x00")
        start = stripped.rfind(b"\n") + 1  # the last non-empty line
        try:
            if stripped[start:]:
                json.loads(stripped[start:])
            return data, len(stripped), stripped != data.rstrip(b" \t\r\n")  # NUL bytes after it: torn
        except ValueError:
            return data, start, True

    def _warn(self, torn: bool, nbytes: int, action: str) -> None:
        if torn and not self._warned:
            self._warned = True
            log.warning("%s: last line cut off mid-write (%d bytes, the run was killed while logging); %s",
                        self.path, nbytes, action)

    def repair(self) -> bool:
        """The writer's first step: remove a torn last line; True when one was removed. A last
        record that is whole but lacks its newline gets the newline."""
        self._repaired = True
        if not self.path.exists() or not is_main():
            return False
        data, end, torn = self._scan()
        clean = data[:end] + (b"\n" if end and not data[:end].endswith(b"\n") else b"")
        if clean != data:
            with self.path.open("r+b") as fh:
                fh.truncate(end)
                fh.seek(end)
                fh.write(clean[end:])
        self._warn(torn, len(data) - end, "removed it")
        return torn

    def records(self) -> list[dict]:
        """The whole records, read only (a torn last line is left out, with one warning)."""
        from mathreason.records.files import read_jsonl

        if not self.path.exists():
            return []
        if not self._repaired:
            data, end, torn = self._scan()
            self._warn(torn, len(data) - end, "left it out (a resumed run removes it)")
        return read_jsonl(self.path, torn_tail_ok=True)

    def append(self, record: dict) -> None:
        if not is_main():
            return
        if not self._repaired:
            self.repair()
        with self.path.open("a") as fh:
            fh.write(json.dumps(record, default=_jsonable) + "\n")

    def truncate_after(self, step: int) -> list[dict]:
        """Drop records logged after ``step`` (work lost since the checkpoint);
        returns the records kept."""
        from mathreason.records.files import write_atomic

        self.repair()
        kept = [r for r in self.records() if r.get("step", 0) <= step]
        if is_main():
            write_atomic(self.path, "".join(json.dumps(r) + "\n" for r in kept))
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

    def resume_at(self, step: int, wandb) -> list[dict]:
        """Resume's metrics, in one place for every method: keep the records up to
        ``step`` (the checkpoint's; -1: none), drop the later ones (work that is
        redone), continue the counters from the kept ones and replay them into an
        offline W&B run (:meth:`WandbRun.replay`). Returns the kept records."""
        kept = self.metrics.truncate_after(step) if self.metrics.path.exists() else []
        self.restore(kept)
        wandb.replay(kept)
        return kept

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
