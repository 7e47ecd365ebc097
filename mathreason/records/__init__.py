"""The run record: what a run directory holds, the metric keys, reward names
and arm labels. Torch-free and pandas-free; every writer (run_dir, job,
telemetry, evaluation, methods) and reader (analysis, dashboard) imports
its names from here.

A run dir::

    run.json               status (running|done|failed|interrupted), method, config, summary, started, finished,
                           versions (package_versions())
    metrics.jsonl          one record per logged step: ``step`` + the W&B keys below; the baseline and
                           final evals (logged before and after training) are records of their own
    config.yaml            the resolved config
    eval/step_XXXXXX.jsonl one record per held-out item per eval (EVAL_FIELDS)
    splits/<name>/eval/step_XXXXXX.jsonl   the same for each of ``eval.final_splits`` (final eval only);
                           metrics.jsonl gets them as ``eval/<name>/accuracy_strict`` ...
    checkpoints/completions/completions_XXXXX.parquet  GRPO's rollouts per logged step (TRL)
    wandb_id, run.lock, run.log, checkpoints/, final/, wandb/

:func:`read_run_record`, :func:`read_metrics` and :func:`read_eval` check what a
reader needs and raise :class:`RunDirError`, one line naming the missing file
or key, for an old or partial run dir.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from mathreason.errors import UserError

# ---------------------------------------------------------------- files
STATE_FILE = "run.json"
LOCK_FILE = "run.lock"
LOG_FILE = "run.log"
METRICS_FILE = "metrics.jsonl"
CONFIG_FILE = "config.yaml"
EVAL_DIR = "eval"
EVAL_GLOB = "step_*.jsonl"
WANDB_ID_FILE = "wandb_id"
# TRL's GRPOTrainer (log_completions) writes each logged step's rollouts here:
# prompt, completion, one column per reward function, advantage
COMPLETIONS_GLOB = "checkpoints/completions/completions_*.parquet"
FAILURES_FILE = "failures.json"  # in a sweep dir: the jobs that failed
STATUSES = ("running", "done", "failed", "interrupted")

# the packages whose versions run.json records (``versions``): a rerun that
# disagrees can be traced to a library that changed
VERSIONED_PACKAGES = ("mathreason", "torch", "transformers", "trl", "peft", "accelerate", "datasets")


def package_versions() -> dict[str, str | None]:
    """Python's and :data:`VERSIONED_PACKAGES`' installed versions (None: not installed), torch-free."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


# ---------------------------------------------------------------- metric keys (metrics.jsonl = W&B)
STEP = "step"
STEP_AXIS = "train/global_step"  # W&B's step metric (transformers' WandbCallback); metrics.jsonl: "step"
STRICT = "eval/accuracy_strict"
LENIENT = "eval/accuracy_lenient"
FORMAT_RATE = "eval/format_rate"
WALL = "train/wall_clock_s"
ROLLOUTS = "train/cumulative_rollouts"
TOKENS = "train/cumulative_generated_tokens"
REWARD = "train/reward"
# The error taxonomy of each eval's greedy answers (scoring.evaluation.error_kind):
# ``eval/errors/<kind>`` = the fraction of items, summing to 1 over the kinds.
ERROR_KINDS = ("correct", "format", "arithmetic", "stop_short", "other")
ERRORS = "eval/errors/"
# The fraction of items whose greedy answer is right although an equation in its
# working is false ("4 + 5 = 11" answering 11 for 4 + 7): right by luck, a
# reward that does not reward the working (scoring.evaluation.has_false_equation).
CORRECT_FALSE_EQUATION = "eval/correct_with_false_equation"
# Sampled metrics of an eval with eval.num_samples = k > 1: ``eval/pass@k``, ``eval/mean@k``.
SAMPLED_PREFIXES = ("eval/pass@", "eval/mean@")


def summary_key(tag: str, metric: str) -> str:
    """run.json's summary key for an eval metric at the baseline or final eval:
    ``summary_key("final", "eval/errors/correct") == "final/errors/correct"``."""
    return f"{tag}/{metric.split('/', 1)[1]}"


ROLLOUTS_PER_STEP = "train/geometry/rollouts_per_step"
ZERO_SIGNAL = "train/frac_reward_zero_std"  # TRL: the fraction of groups whose rewards are all equal
GROUP_SIZE = "train/geometry/group_size"
DPO_KEYS = ("train/rewards/margins", "train/rewards/accuracies", "train/rewards/chosen", "train/rewards/rejected")
# Peak memory, in order of preference: CPU RSS, GPU reserved/allocated, then per-interval values.
OVERALL_PEAK_KEYS = tuple(f"train/memory/overall_peak_{m}_mb" for m in ("rss", "reserved", "allocated"))
INTERVAL_PEAK_KEYS = tuple(f"train/memory/peak_{m}_mb" for m in ("rss", "reserved", "allocated"))
# a run's peak memory, by preference: GPU memory reserved (what the GPU-vs-GPU comparisons of the
# studies mean), else allocated, else the process's RSS (CPU runs), overall peaks before interval ones
MEMORY_KEYS = tuple(f"train/memory/{kind}_{m}_mb" for kind in ("overall_peak", "peak")
                    for m in ("reserved", "allocated", "rss")) + ("train/memory/rss_mb",)


def peak_memory(records: Iterable[Mapping[str, Any]]) -> tuple[str | None, float]:
    """(key, peak MB) of a run's metrics records: the first of MEMORY_KEYS that was logged, its
    maximum; (None, nan) when none was. run.json's summary and the report both use it."""
    rows = list(records)
    for key in MEMORY_KEYS:
        values = [float(r[key]) for r in rows if r.get(key) is not None and r[key] == r[key]]
        if values:
            return key, max(values)
    return None, float("nan")


def reward_key(name: str) -> str:
    """The metrics key of reward function ``name``'s unweighted mean."""
    return f"train/rewards/{name}/mean"


# ---------------------------------------------------------------- eval records
# eval/step_XXXXXX.jsonl: one JSON object per item, in the eval set's order.
EVAL_FIELDS = ("item_id", "chain_id", "question", "gold", "completion", "extracted", "extracted_lenient",
               "correct", "correct_lenient", "format")  # chain_id: the item's cluster (arith: its equation
# chain; else the item itself); + "samples_correct" (k bools) when eval.num_samples > 1,
# "error" (one of ERROR_KINDS) and "false_equation" (bool) in runs that log the taxonomy


SPLITS_DIR = "splits"


def split_dir(run_dir: str | Path, name: str) -> Path:
    """Where the eval records of final split ``name`` live: ``eval_file(split_dir(run, name), step)``."""
    return Path(run_dir) / SPLITS_DIR / name


def eval_file(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / EVAL_DIR / f"step_{step:06d}.jsonl"


def item_id(question: str) -> str:
    """A stable id for a held-out item: the first 12 hex digits of the question's SHA-1."""
    return hashlib.sha1(question.encode()).hexdigest()[:12]


# ---------------------------------------------------------------- config keys and arms
# Keys that may change between a run and its resumption without changing results.
NEUTRAL_KEYS = ("logger", "cache_dir", "threads", "experiment_name", "device")
# Facts the launch checks read (a model's size, its planning throughput, a data set's size): they
# change no run, so a run dir made before they existed, or with other values, is still the same run.
NEUTRAL_NESTED_KEYS = ("model.size_b", "model.recipe.rollouts_per_s", "data.train_size")
# ... and those that never put two runs into different arms (seeds are samples of one arm).
# The tiny model's seeds (init, warm-start data, SFT order) draw a warm start: a random factor like the seed.
WARM_START_SEED_KEYS = ("model.tiny.init_seed", "model.tiny.warm_start.seed")
ARM_NEUTRAL_KEYS = NEUTRAL_KEYS + ("seed", "hydra", "checkpoint", "eval.every_n_steps", "eval.at_rollouts",
                                   "eval.sampled_evals", "eval.batch_size", "eval.final_splits",
                                   "eval.save_samples", "rollout.vllm") + WARM_START_SEED_KEYS
# Per method, the config sections that do not apply to it.
UNUSED_SECTIONS = {"grpo": ("dpo", "sft"), "dpo": ("grpo", "sft", "group_size", "geometry", "rollout"),
                   "sft": ("grpo", "dpo", "group_size", "geometry", "rollout", "reward"),
                   "eval": ("grpo", "dpo", "sft", "group_size", "geometry", "rollout", "reward")}
BASELINE = "baseline"


def arm_tag(method: str, group_size: Any = None, samples_per_question: Any = None) -> str:
    """The W&B tag of an arm: ``g2``/``g16`` for GRPO, ``k4`` (samples per question) for DPO."""
    if method == "grpo":
        return f"g{group_size}"
    if method == "dpo":
        return f"k{samples_per_question}"
    return method


def arm_label(kind: str, group_size: Any = None, adapter: bool = True) -> str:
    """The report's arm label: ``baseline``, ``grpo G=16``, ``dpo``, ``sft-control`` (the RL control), and
    for an eval run that is not where the training runs beside it start, ``eval (adapter)`` (a trained
    run's weights) or ``raw model`` (no adapter)."""
    if kind == "grpo":
        return f"grpo G={group_size}" if group_size else "grpo"
    if kind == "eval":
        return "eval (adapter)" if adapter else "raw model"
    return {"sft": "sft-control"}.get(kind, kind)


# ---------------------------------------------------------------- readers


class RunDirError(UserError):
    """An old or partial run dir: one line naming the missing file or key."""


def _lines(path: Path) -> list[dict]:
    from mathreason.records.files import read_jsonl

    return read_jsonl(path, torn_tail_ok=True, error=RunDirError)


def read_run_record(run_dir: str | Path) -> dict:
    """run.json, checked for ``status``, ``method`` and ``config.seed`` (a done run)."""
    path = Path(run_dir) / STATE_FILE
    if not path.is_file():
        raise RunDirError(f"{run_dir}: no {STATE_FILE} (not a run dir, or a run that never started)")
    try:
        state = json.loads(path.read_text())
    except ValueError as err:
        raise RunDirError(f"{path}: unreadable ({err})") from None
    if not isinstance(state, dict) or "status" not in state:
        raise RunDirError(f"{path}: no 'status' key")
    if state["status"] == "done":
        for key in ("method", "config"):
            if key not in state:
                raise RunDirError(f"{path}: no '{key}' key (written by an older mathreason?)")
        if not isinstance(state["config"], dict) or "seed" not in state["config"]:
            raise RunDirError(f"{path}: no 'config.seed' key")
    return state


def read_metrics(run_dir: str | Path, required: tuple[str, ...] = (STEP, STRICT)) -> list[dict]:
    """metrics.jsonl's records; each key in ``required`` must occur in some record."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        raise RunDirError(f"{run_dir}: no {METRICS_FILE}")
    records = [r for r in _lines(path) if isinstance(r, dict)]
    for key in required:
        if not any(key in r for r in records):
            raise RunDirError(f"{path}: no '{key}' key in any record")
    return records


def eval_files(run_dir: str | Path) -> list[Path]:
    return sorted((Path(run_dir) / EVAL_DIR).glob(EVAL_GLOB))


def read_eval(path: Path) -> list[dict]:
    """One eval file's records, each with an ``item_id`` (derived from the
    question for files written before item ids; repeats of a question get ``#2``…)."""
    records = _lines(path)
    seen: dict[str, int] = {}
    for number, rec in enumerate(records, 1):
        for key in ("correct", "question") if "item_id" not in rec else ("correct",):
            if key not in rec:
                raise RunDirError(f"{path}:{number}: no '{key}' key")
        base = rec.get("item_id") or item_id(rec["question"])
        seen[base] = seen.get(base, 0) + 1
        rec["item_id"] = base if seen[base] == 1 else f"{base}#{seen[base]}"
    return records
