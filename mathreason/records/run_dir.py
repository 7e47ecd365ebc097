"""The run directory's state: a new run never overwrites an earlier one, and a
re-run into the same directory resumes it or refuses — never mixes.

``run.json`` records the status (running, done, failed) and the resolved
config that made the run; the config is compared on every re-run.

Ownership: rank 0 of a job on several processes (``mathreason.processes``) owns
the directory; the other ranks read it and write nothing. A run holds an exclusive lock on ``<run dir>/run.lock`` (which
names its process) for as long as it runs, so a second run into the same
directory is refused with one line naming the first. A directory that is
neither new, empty nor a run dir is refused, and a run that fails early
removes only what it created itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from mathreason.errors import UserError
from mathreason.processes import is_main, world_size
from mathreason.records import LOCK_FILE, LOG_FILE, NEUTRAL_KEYS, NEUTRAL_NESTED_KEYS, STATE_FILE
from mathreason.records.files import write_atomic

# What a run dir may hold before a run claims it: a run's files, or Hydra's
# bookkeeping left by a run that failed before it wrote run.json.
HYDRA_FILES = {STATE_FILE, LOCK_FILE, ".hydra", LOG_FILE}


def slug(override_dirname: str) -> str:
    """A run directory name from the command-line overrides ('default' for none)."""
    if not override_dirname:
        return "default"
    name = re.sub(r"[^A-Za-z0-9=,._+-]+", "_", override_dirname.replace("'", "").replace('"', ""))
    if len(name) > 120:
        name = name[:100] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return name


def comparable_config(cfg: DictConfig) -> dict:
    # resolved whole first: a kept key may interpolate a neutral one (model.adapter_path: ${cache_dir}/...)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    out = {k: v for k, v in resolved.items() if k != "hydra" and k not in NEUTRAL_KEYS}
    for dotted in NEUTRAL_NESTED_KEYS:
        *parents, last = dotted.split(".")
        node = out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(last, None)
    return out


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
    """Update run.json with ``fields`` (rank 0 of a job on several processes writes; the others change nothing)."""
    path = Path(run_dir) / STATE_FILE
    state = read_state(run_dir) or {}
    state.update(fields, updated=time.strftime("%Y-%m-%dT%H:%M:%S"))
    if is_main():
        write_atomic(path, json.dumps(state, indent=2, default=str))
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
    started_with = int(state.get("world_size", 1))
    if started_with != world_size():
        raise UserError(
            f"hydra.run.dir={run_dir} holds a run started on {started_with} process(es), resumed here on "
            f"{world_size()}; resume it on {started_with} (torchrun --nproc_per_node {started_with}) "
            "or pass a new hydra.run.dir"
        )
    if not cfg.checkpoint.resume:
        raise UserError(
            f"hydra.run.dir={run_dir} holds an unfinished run and checkpoint.resume=false; "
            "pass checkpoint.resume=true to continue it or a new hydra.run.dir"
        )
    return "resume"


# run dir (absolute) -> names it held before this process touched it, or the
# outermost directory this process created for it (it did not exist)
_BEFORE: dict[Path, set[str] | Path] = {}
_LOCKS: dict[Path, int] = {}  # run dir -> open file descriptor holding its lock


def claim(run_dir: str | Path) -> Path:
    """Make ``run_dir`` this process's: refuse an empty path, a directory that
    holds something other than a mathreason run, or one another process is
    running in; create it if needed and lock it. Idempotent within a process."""
    if not str(run_dir).strip():
        raise UserError("hydra.run.dir is empty; pass a directory for the run (or leave the default)")
    run_dir = Path(run_dir).absolute()
    if run_dir in _LOCKS:
        return run_dir
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"hydra.run.dir={run_dir} is a file, not a directory")
    if run_dir not in _BEFORE:
        if run_dir.is_dir():
            before = {p.name for p in run_dir.iterdir()}
        else:
            before = run_dir
            while not before.parent.exists():
                before = before.parent
        foreign = sorted(before - HYDRA_FILES) if isinstance(before, set) else []
        if foreign and STATE_FILE not in before:
            shown = ", ".join(foreign[:3]) + (" …" if len(foreign) > 3 else "")
            raise UserError(
                f"hydra.run.dir={run_dir} already holds files that are not a mathreason run ({shown}); "
                "pass a new or empty directory"
            )
        _BEFORE[run_dir] = before
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        owner = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise UserError(f"hydra.run.dir={run_dir} is in use by {owner}; wait for it to end or pass another hydra.run.dir") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%dT%H:%M:%S')} "
                 f"({' '.join(sys.argv[1:])[:300]})\n".encode())
    _LOCKS[run_dir] = fd
    return run_dir


def owned_by_another(run_dir: str | Path) -> bool:
    """Whether another process holds ``run_dir``'s lock (a run still running there)."""
    run_dir = Path(run_dir).absolute()
    path = run_dir / LOCK_FILE
    if run_dir in _LOCKS or not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # drops the lock if it was taken here
    return False


def holds_another_run(run_dir: str | Path, cfg: DictConfig | None) -> bool:
    """Whether ``run_dir``'s run.json records a run of another config than ``cfg``."""
    state = read_state(Path(run_dir))
    return bool(state and cfg is not None and _diff_keys(state.get("config", {}), comparable_config(cfg)))


def release(run_dir: str | Path) -> None:
    fd = _LOCKS.pop(Path(run_dir).absolute(), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor drops the lock


def remove_created(run_dir: str | Path) -> None:
    """After an early failure: delete what this process created in ``run_dir``
    (the whole directory if it created it), nothing else."""
    run_dir = Path(run_dir).absolute()
    if run_dir not in _BEFORE:
        return  # not claimed by this process: touch nothing
    before = _BEFORE.pop(run_dir)
    release(run_dir)
    if isinstance(before, Path):
        shutil.rmtree(before, ignore_errors=True)
        return
    for path in run_dir.iterdir():
        if path.name not in before:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
