"""The run dir's Trainer checkpoints: finding the newest complete one, checking one is whole
without loading it, and reading a checkpoint's step from its name. Methods ask here for a resume
point; none parses a checkpoint name itself."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

log = logging.getLogger("mathreason")
CHECKPOINT = re.compile(r"checkpoint-(\d+)")


def checkpoint_step(path: str | Path) -> int:
    """The optimizer step of ``.../checkpoint-N`` (N)."""
    found = CHECKPOINT.fullmatch(Path(path).name)
    if found is None:
        raise ValueError(f"{path}: not a checkpoint-<step> directory")
    return int(found[1])


# Files a Trainer checkpoint needs to resume exactly (transformers writes
# trainer_state.json last, so a kill during the save leaves it missing).
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_model.bin")


def _intact(path: Path) -> str | None:
    """None when ``path`` looks whole, else why not. Cheap: safetensors files
    are checked against their header's sizes, torch files (zip archives) for
    their end record; neither is loaded."""
    import zipfile

    try:
        size = path.stat().st_size
        if size == 0:
            return f"{path.name} empty"
        if path.suffix == ".safetensors":
            with path.open("rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(n)) if 0 < n < size else None
            if not isinstance(header, dict):
                return f"{path.name} damaged"
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            return None if size == 8 + n + end else f"{path.name} truncated"
        if path.suffix in (".pt", ".pth", ".bin") and not zipfile.is_zipfile(path):
            return f"{path.name} truncated"
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return f"{path.name} unreadable"
    return None


def weights_problem(ckpt: Path) -> str | None:
    lora = (ckpt / "adapter_config.json").exists()
    names = ADAPTER_FILES if lora else WEIGHT_FILES
    for name in names:
        index = ckpt / f"{name}.index.json"  # sharded weights
        if index.exists():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, AttributeError):
                return f"{index.name} unreadable"
            for shard in shards:
                if not (ckpt / shard).exists():
                    return f"weight shard {shard} missing"
                if problem := _intact(ckpt / shard):
                    return problem
            return None
        if (ckpt / name).exists():
            return _intact(ckpt / name)
    return f"{' / '.join(names)} missing" if lora else f"model weights ({' / '.join(names)}) missing"


def checkpoint_problems(ckpt: Path) -> list[str]:
    """What keeps Trainer checkpoint ``ckpt`` from an exact resume: missing or
    damaged model (or adapter) weights, optimizer, scheduler or RNG state,
    a missing ``trainer_state.json``, any JSON file that does not parse.
    Empty for a complete checkpoint."""
    ckpt = Path(ckpt)
    problems = []
    if not (ckpt / "trainer_state.json").exists():
        problems.append("trainer_state.json missing")
    for path in sorted(ckpt.glob("*.json")):
        try:
            json.loads(path.read_text())
        except (OSError, ValueError):
            problems.append(f"{path.name} unreadable")
    if problem := weights_problem(ckpt):
        problems.append(problem)
    deepspeed = any(p.is_dir() for p in ckpt.glob("global_step*"))  # DeepSpeed keeps the optimizer there
    for name, what in (("optimizer", "optimizer"), ("scheduler", "scheduler")):
        files = [ckpt / f"{name}.pt", ckpt / f"{name}.bin"]
        found = [f for f in files if f.exists()]
        if found:
            if problem := _intact(found[0]):
                problems.append(problem)
        elif not (deepspeed and name == "optimizer"):
            problems.append(f"{name}.pt missing ({what} state)")
    rng = sorted(ckpt.glob("rng_state*.pth"))
    if not rng:
        problems.append("rng_state.pth missing")
    problems += [p for p in map(_intact, rng) if p]
    return problems


def _move_aside(ckpt: Path) -> Path:
    """``checkpoints/checkpoint-N`` -> ``checkpoints/damaged-checkpoint-N`` (a
    name the Trainer's checkpoint rotation and our search both ignore)."""
    target = ckpt.with_name(f"damaged-{ckpt.name}")
    n = 1
    while target.exists():
        n += 1
        target = ckpt.with_name(f"damaged-{ckpt.name}.{n}")
    ckpt.rename(target)
    return target


def find_checkpoint(ckpt_dir: Path) -> Path | None:
    """The newest complete ``checkpoint-N`` in ``ckpt_dir``. Newer ones that
    are incomplete or damaged (a kill during the save, a lost file) are moved
    aside to ``damaged-checkpoint-N`` with one warning line each, naming what
    is missing, and the search falls back to the one before."""
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        return None
    found = sorted((p for p in ckpt_dir.iterdir() if p.is_dir() and CHECKPOINT.fullmatch(p.name)),
                   key=checkpoint_step, reverse=True)
    for path in found:
        problems = checkpoint_problems(path)
        if not problems:
            return path
        moved = _move_aside(path)
        log.warning("checkpoint %s is incomplete (%s); skipped and moved to %s, falling back to the one before",
                    path, ", ".join(problems), moved.name)
    return None
