"""The run directory's state: a new run never overwrites an earlier one, and a
re-run into the same directory resumes it or refuses — never mixes.

``run.json`` records the status (running, done, failed) and the resolved
config that made the run; the config is compared on every re-run.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mathreason.errors import UserError

STATE_FILE = "run.json"
# Keys that may change between a run and its resumption without changing results.
NEUTRAL_KEYS = ("logger", "cache_dir", "threads", "experiment_name", "device")


def comparable_config(cfg: DictConfig) -> dict:
    keep = [k for k in cfg.keys() if k != "hydra" and k not in NEUTRAL_KEYS]
    return OmegaConf.to_container(OmegaConf.masked_copy(cfg, keep), resolve=True)


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            out += _diff_keys(a.get(key), b.get(key), f"{prefix}{key}.")
        return out
    return [] if a == b else [prefix.rstrip(".")]


def read_state(run_dir: Path) -> dict | None:
    path = Path(run_dir) / STATE_FILE
    return json.loads(path.read_text()) if path.exists() else None


def write_state(run_dir: Path, **fields: Any) -> dict:
    path = Path(run_dir) / STATE_FILE
    state = read_state(run_dir) or {}
    state.update(fields, updated=time.strftime("%Y-%m-%dT%H:%M:%S"))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2, default=str))
    tmp.replace(path)
    return state


def check_reuse(run_dir: Path, cfg: DictConfig) -> str:
    """'new', 'resume' or 'done' for this config in ``run_dir``; UserError when
    the directory holds a different run."""
    state = read_state(run_dir)
    if state is None:
        return "new"
    differing = _diff_keys(state.get("config", {}), comparable_config(cfg))
    if differing:
        shown = ", ".join(differing[:4]) + (" …" if len(differing) > 4 else "")
        raise UserError(
            f"hydra.run.dir={run_dir} holds another run (config differs in: {shown}); "
            "pass a new hydra.run.dir or remove the old directory"
        )
    if state.get("status") == "done":
        return "done"
    if not cfg.checkpoint.resume:
        raise UserError(
            f"hydra.run.dir={run_dir} holds an unfinished run and checkpoint.resume=false; "
            "pass checkpoint.resume=true to continue it or a new hydra.run.dir"
        )
    return "resume"


def remove_if_fresh(run_dir: Path) -> None:
    """Delete a directory this invocation created and filled with nothing but
    Hydra's bookkeeping (used when a user error stops the run early)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or (run_dir / STATE_FILE).exists():
        return
    allowed = {".hydra", "run.log", "main.log"}
    if all(p.name in allowed or p.suffix == ".log" for p in run_dir.iterdir()):
        shutil.rmtree(run_dir, ignore_errors=True)
