"""Reading run directories (the contract in :mod:`mathreason.records`) into
pandas, and grouping runs into arms.

An *arm* is one method setting: ``baseline`` (eval runs of the untrained
model), ``grpo G=<n>``, ``dpo``…, split further by reward preset, model/data
or any other config key that differs between its runs other than the seed
(:data:`records.ARM_NEUTRAL_KEYS` never split); within an arm the runs are
seeds. Without a baseline eval run, ``baseline (step 0)`` is made of the
training runs' step-0 evals.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mathreason import records as R
from mathreason.errors import UserError

SKIP_DIRS = {"wandb", "checkpoints", "final", ".hydra", ".submitit", ".jobs", "report", "eval", "__pycache__"}
MAX_DEPTH = 4
KIND_ORDER = {"baseline": 0, "eval": 1, "grpo": 2, "dpo": 3}
STEP0_SOURCE = "step-0 eval of the training runs"


@dataclass
class Run:
    path: Path
    state: dict
    metrics: pd.DataFrame  # one row per metrics.jsonl record, in step order
    items: pd.DataFrame  # step, item_id, correct, correct_lenient, sampled: one row per item per eval

    def cfg(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.state["config"]
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    @property
    def method(self) -> str:
        return str(self.state["method"])

    @property
    def seed(self) -> Any:
        return self.cfg("seed")

    @property
    def warm_start(self) -> str:
        """The weights the run starts from: ``tiny:<spec hash>`` (the cache entry a tiny model is built
        into, so independently built warm starts differ), else the model id (or name); with a loaded
        adapter (``model.adapter_path``) ``+<the folder holding it>``, e.g. ``...+smollm2_warm_start``
        for ``<cache>/sweeps/smollm2_warm_start/final`` (a run's final/ is named by its run dir)."""
        base = str(self.cfg("model.id") or self.cfg("model.name"))
        tiny = self.cfg("model.tiny")
        if tiny:
            from mathreason.models.tiny import spec_hash

            try:
                base = f"tiny:{spec_hash(tiny)}"
            except UserError:  # a spec of an older layout
                pass
        adapter = self.cfg("model.adapter_path")
        if not adapter:
            return base
        path = Path(str(adapter))
        return f"{base}+{(path.parent if path.name == 'final' else path).name}"

    @property
    def split(self) -> str:
        """The held-out split it was evaluated on: ``data.eval_split`` (arith: eval|dev|test|ood), or the
        local file's name."""
        path = self.cfg("data.path")
        return Path(str(path)).stem if path else str(self.cfg("data.eval_split"))

    @property
    def group_size(self) -> int | None:
        value = self.cfg("group_size")
        if isinstance(value, dict):  # run dirs written before group_size became one key
            value = value.get("num_generations")
        if value is None and R.GROUP_SIZE in self.metrics:
            value = self.metrics[R.GROUP_SIZE].dropna().iloc[0] if self.metrics[R.GROUP_SIZE].notna().any() else None
        return int(value) if isinstance(value, (int, float, np.number)) else None

    @property
    def reward(self) -> str:
        return str(self.cfg("reward.name") or "?")

    @property
    def model_data(self) -> tuple[str, str]:
        return str(self.cfg("model.name") or "?"), str(self.cfg("data.name") or "?")

    def last(self, key: str) -> float:
        col = self.metrics[key].dropna() if key in self.metrics else pd.Series(dtype=float)
        return float(col.iloc[-1]) if len(col) else np.nan

    @property
    def evals(self) -> pd.DataFrame:
        """The eval records by step (the last record of a step wins), with x positions
        ``rollouts`` and ``wall`` (0 at step 0)."""
        m = self.metrics
        ev = m[m[R.STRICT].notna()].groupby(R.STEP).last()
        per_step = self.last(R.ROLLOUTS_PER_STEP)
        rollouts = ev[R.ROLLOUTS] if R.ROLLOUTS in ev else pd.Series(np.nan, ev.index)
        ev["rollouts"] = rollouts.fillna(pd.Series(ev.index * per_step, ev.index)).where(ev.index > 0, 0.0)
        wall = ev[R.WALL] if R.WALL in ev else pd.Series(np.nan, ev.index)
        ev["wall"] = wall.where(ev.index > 0, wall.fillna(0.0))
        return ev

    @cached_property
    def rewarded_false_equation(self) -> float:
        """:func:`rewarded_false_equation` of this run, read once (summary() is called more than once)."""
        return rewarded_false_equation(self.path)

    def summary(self) -> dict[str, Any]:
        mem = R.peak_memory(self.metrics.to_dict("records"))
        ev = self.evals
        wall = self.last(R.WALL)
        if np.isnan(wall) and "finished" in self.state and "started" in self.state:
            wall = float(self.state["finished"]) - float(self.state["started"])
        rollouts = np.nan if self.method == "eval" else self.last(R.ROLLOUTS)
        if np.isnan(rollouts) and self.method != "eval":
            rollouts = self.last(R.ROLLOUTS_PER_STEP) * self.last(R.STEP)
        return {"seed": self.seed, "run_dir": str(self.path),
                "step0_strict": ev[R.STRICT].iloc[0] if len(ev) and ev.index[0] == 0 else np.nan,
                "final_strict": ev[R.STRICT].iloc[-1] if len(ev) else np.nan,
                "final_lenient": ev[R.LENIENT].iloc[-1] if len(ev) and R.LENIENT in ev else np.nan,
                "peak_memory_mb": mem[1], "memory_key": mem[0], "wall_clock_s": wall,
                "total_rollouts": rollouts, "steps": np.nan if self.method == "eval" else self.last(R.STEP),
                "generated_tokens": np.nan if self.method == "eval" else self.last(R.TOKENS),
                "zero_signal": float(self.metrics[R.ZERO_SIGNAL].mean()) if R.ZERO_SIGNAL in self.metrics else np.nan,
                "rewarded_false_equation": self.rewarded_false_equation}


def rewarded_false_equation(run_dir: Path) -> float:
    """Of the GRPO training rollouts the correctness reward scored as right, the
    share whose working holds a false equation (right by luck: "4 + 5 = 11"
    answering 4 + 7). NaN without logged completions or a correctness reward."""
    from mathreason.scoring.evaluation import has_false_equation

    frames = [pd.read_parquet(p) for p in sorted(Path(run_dir).glob(R.COMPLETIONS_GLOB))]
    frames = [f for f in frames if "correctness" in f and len(f)]
    if not frames:
        return np.nan
    df = pd.concat(frames, ignore_index=True)
    rewarded = df.loc[df["correctness"] > 0, "completion"]
    if rewarded.empty:
        return np.nan
    text = rewarded.map(lambda c: c if isinstance(c, str) else "".join(m["content"] for m in c))
    return float(text.map(has_false_equation).mean())


@dataclass
class Arm:
    label: str
    kind: str
    runs: list[Run]
    model_data: tuple[str, str]
    group_size: int | None = None
    source: str = ""  # baselines: where the values come from
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def from_step0(self) -> bool:
        return self.source == STEP0_SOURCE

    @property
    def seeds(self) -> list:
        return list(dict.fromkeys(r.seed for r in self.runs))

    @property
    def replicates(self) -> list[tuple[str, Any]]:
        """(warm start, seed) of each run, as the matrices' rows."""
        return list(dict.fromkeys((r.warm_start, r.seed) for r in self.runs))

    @property
    def warm_starts(self) -> list[str]:
        return list(dict.fromkeys(r.warm_start for r in self.runs))


def find_run_dirs(root: Path, depth: int = 0) -> list[Path]:
    if (root / R.STATE_FILE).is_file():
        return [root]
    if depth >= MAX_DEPTH or not root.is_dir():
        return []
    return [d for child in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in SKIP_DIRS)
            for d in find_run_dirs(child, depth + 1)]


def read_items(run_dir: Path) -> pd.DataFrame:
    """Every eval record of the run, one row per item per eval; ``final_split`` names the
    ``eval.final_splits`` entry a row comes from (empty for the run's own eval split)."""
    frames = []
    files = [(path, "") for path in R.eval_files(run_dir)]
    files += [(path, d.name) for d in sorted((Path(run_dir) / R.SPLITS_DIR).glob("*")) for path in R.eval_files(d)]
    for path, final_split in files:
        df = pd.DataFrame(R.read_eval(path))
        if df.empty:
            continue
        df["step"] = int(path.stem.split("_")[-1])
        df["final_split"] = final_split
        if "chain_id" not in df:  # eval files older than the field: each item its own cluster
            df["chain_id"] = df["item_id"]
        if "samples_correct" in df:  # mean@k of the sampled completions
            df["sampled"] = df["samples_correct"].map(lambda s: float(np.mean(s)) if s else np.nan)
        if "false_equation" not in df and "error" in df and "completion" in df:  # eval files older than the field
            from mathreason.scoring.evaluation import has_false_equation

            df["false_equation"] = df["completion"].map(has_false_equation)
        frames.append(df)
    cols = ["step", "final_split", "item_id", "chain_id", "correct", "correct_lenient", "sampled", "error",
            "false_equation"]
    if not frames:
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True).reindex(columns=cols).astype(
        {"correct": float, "correct_lenient": float, "sampled": float, "false_equation": float})


def load_run(run_dir: Path) -> Run:
    """A finished run; :class:`records.RunDirError` (one line) for a partial one."""
    state = R.read_run_record(run_dir)
    if state["status"] != "done":
        raise R.RunDirError(f"{run_dir}: status={state['status']}" + (f" ({state['error']})" if state.get("error") else ""))
    metrics = pd.DataFrame(R.read_metrics(run_dir))
    metrics = metrics[pd.to_numeric(metrics[R.STEP], errors="coerce").notna()].sort_values(R.STEP, kind="stable")
    return Run(Path(run_dir), state, metrics.reset_index(drop=True), read_items(run_dir))


def load_runs(paths: list[Path], warn=print) -> tuple[list[Run], list[tuple[str, str]]]:
    """Finished runs under ``paths`` and the (path, reason) of every run left out:
    failed, unfinished or partial run dirs and a sweep's failures.json entries."""
    runs, skipped, seen = [], [], set()
    for path in paths:
        if not path.exists():
            raise UserError(f"{path}: no such file or directory")
        dirs, n_skipped = find_run_dirs(path), len(skipped)
        failures = path / R.FAILURES_FILE
        if failures.is_file():
            try:
                for job in json.loads(failures.read_text()):  # jobs without a run.json of their own
                    if not (job.get("output_dir") and (Path(job["output_dir"]) / R.STATE_FILE).is_file()):
                        where = f"job {job.get('num')} ({' '.join(map(str, job.get('overrides', [])))})"
                        skipped.append((where, f"{job.get('status')}: {job.get('error', '')}".strip(": ")))
            except (ValueError, AttributeError, TypeError) as err:
                warn(f"warning: {failures}: unreadable ({err})")
        if not dirs and len(skipped) == n_skipped:
            raise UserError(f"{path}: no run directories (a run dir holds {R.STATE_FILE} and {R.METRICS_FILE})")
        for run_dir in dirs:
            if run_dir.resolve() in seen:
                continue
            seen.add(run_dir.resolve())
            try:
                runs.append(load_run(run_dir))
            except R.RunDirError as err:
                skipped.append((str(run_dir), str(err).removeprefix(f"{run_dir}: ")))
                warn(f"warning: skipping {err}")
    if not runs:
        if len(skipped) == 1:
            raise UserError(f"{skipped[0][0]}: {skipped[0][1]}")
        raise UserError(f"no finished runs under {', '.join(map(str, paths))} ({len(skipped)} left out)")
    return runs, list(dict.fromkeys(skipped))


def _flat(config: dict) -> dict[str, str]:
    row = pd.json_normalize(config, sep=".").iloc[0].to_dict()
    return {k: json.dumps(v, sort_keys=True) if isinstance(v, (list, dict)) else str(v) for k, v in row.items()}


def _split_keys(runs: list[Run]) -> tuple[list[str], pd.DataFrame]:
    """Config keys that differ between ``runs`` for reasons other than the seed."""
    method = runs[0].method
    prefixes = R.ARM_NEUTRAL_KEYS + R.UNUSED_SECTIONS.get(method, ())
    flat = pd.DataFrame([_flat(r.state["config"]) for r in runs]).fillna("<missing>")
    seeds = pd.Series([str(r.seed) for r in runs])
    keys = []
    for key in flat.columns:
        if any(key == p or key.startswith(p + ".") for p in prefixes) or flat[key].nunique() < 2:
            continue
        if flat.groupby(seeds)[key].nunique().max() == 1 and seeds.groupby(flat[key]).nunique().max() == 1:
            continue  # follows the seed one to one (data.seed: ${seed})
        keys.append(key)
    return keys, flat


def run_kind(run: Run, starts: set[str]) -> str:
    """A training run's method; an eval run is the ``baseline`` when it evaluates the weights training
    runs start from (``starts``: their :attr:`Run.warm_start`), or, with no training run in view, when it
    loads no adapter; any other eval run is ``eval``: a trained run's adapter, or the raw model beside
    runs that start from an adapter (the SmolLM2 protocol's SFT warm start)."""
    if run.method != "eval":
        return run.method
    if run.warm_start in starts or (not starts and not run.cfg("model.adapter_path")):
        return R.BASELINE
    return "eval"


def group_arms(runs: list[Run], warn=print) -> list[Arm]:
    train = [r for r in runs if r.method != "eval"]
    starts = {r.warm_start for r in train}
    several_rewards = len({r.reward for r in train}) > 1
    several_setups = len({r.model_data for r in runs}) > 1
    base: dict[tuple, list[Run]] = {}
    for run in runs:
        kind = run_kind(run, starts)
        key = (kind, run.group_size if kind == "grpo" else None, run.reward if kind in ("grpo", "dpo") else None,
               run.model_data, kind == "eval" and not run.cfg("model.adapter_path"))
        base.setdefault(key, []).append(run)
    arms = []
    for (kind, g, reward, md, raw), members in base.items():
        keys, flat = _split_keys(members)
        parts: dict[tuple, list[Run]] = {}
        for i, run in enumerate(members):
            tag = tuple(f"no {k}" if flat.at[i, k] == "<missing>" else f"{k}={flat.at[i, k]}" for k in keys)
            parts.setdefault(tag, []).append(run)
        for extra, sub in parts.items():
            tags = ([reward] if reward and several_rewards else []) + list(extra)
            label = R.arm_label(kind, g, adapter=not raw) + (f" ({'; '.join(tags)})" if tags else "")
            label += f" [{md[0]} / {md[1]}]" if several_setups else ""
            replicates = [(r.warm_start, str(r.seed)) for r in sub]
            if kind != R.BASELINE and len(set(replicates)) < len(replicates):
                warn(f"warning: arm '{label}' has several runs with one seed and warm start; "
                     "their outcomes are averaged per item")
            arms.append(Arm(label, kind, sub, md, g, "eval run" if kind == R.BASELINE else ""))
    have = {a.model_data for a in arms if a.kind == R.BASELINE}
    for md in sorted({r.model_data for r in train} - have):
        members = [r for r in train if r.model_data == md and not np.isnan(r.summary()["step0_strict"])]
        if members:
            label = "baseline (step 0)" + (f" [{md[0]} / {md[1]}]" if several_setups else "")
            arms.append(Arm(label, R.BASELINE, members, md, source=STEP0_SOURCE))
    arms.sort(key=lambda a: (a.model_data, KIND_ORDER.get(a.kind, 9), a.group_size or 0, a.label))
    return arms


def items_frame(arms: list[Arm], final_splits: bool = False) -> pd.DataFrame:
    """Every per-item outcome, one schema for every report: arm, warm_start
    (:attr:`Run.warm_start`), seed, split (:attr:`Run.split`), phase (baseline =
    the run's first eval, final = its last, train = those between; an eval run's
    one eval is its arm's phase: baseline or final), step, item_id, chain_id (the
    item's cluster: its equation chain, else the item), correct (greedy 0/1), correct_lenient,
    sampled (mean@k; NaN without eval.num_samples > 1), error (``records.ERROR_KINDS``),
    false_equation (1 if an equation in the greedy working is false; NaN in older runs), run_dir.
    ``final_splits``: also the rows of each run's ``eval.final_splits`` (phase ``final``, split = its name);
    without it, only the runs' own eval split, which the paired analyses compare."""
    frames = []
    for arm in arms:
        if arm.from_step0:
            continue  # its items are the training runs' baseline rows
        for run in arm.runs:
            df = run.items.copy()
            extra = df[df["final_split"] != ""].assign(
                phase="baseline" if run.method == "eval" and arm.kind == R.BASELINE else "final")
            df = df[df["final_split"] == ""]
            if df.empty:
                continue
            steps = sorted(df["step"].unique())
            phase = {s: "train" for s in steps} | {steps[-1]: "final", steps[0]: "baseline"}
            if run.method == "eval":
                phase = {s: "baseline" if arm.kind == R.BASELINE else "final" for s in steps}
            df.insert(0, "phase", df["step"].map(phase))
            if final_splits and not extra.empty:
                df = pd.concat([df, extra], ignore_index=True)
            df.insert(0, "split", df.pop("final_split").replace("", run.split))
            df.insert(0, "seed", run.seed)
            df.insert(0, "warm_start", run.warm_start)
            df.insert(0, "arm", arm.label)
            df["run_dir"] = str(run.path)
            frames.append(df)
    cols = ["arm", "warm_start", "seed", "split", "phase", "step", "item_id", "chain_id", "correct",
            "correct_lenient", "sampled", "error", "false_equation", "run_dir"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


# A replicate of an arm: its warm start and seed (rows of every matrix; a seed is drawn within a warm start)
REPLICATE = ["warm_start", "seed"]


def matrix(items: pd.DataFrame, arm: Arm, phase: str, value: str = "correct") -> pd.DataFrame:
    """Replicates (warm start, seed) x items (rows x columns) of ``value`` for one arm and
    phase (a step-0 baseline: the training runs' baseline rows, averaged per replicate and
    item); only items every replicate has."""
    if arm.from_step0:
        paths = {str(r.path) for r in arm.runs}
        rows = items[items["run_dir"].isin(paths) & (items["phase"] == "baseline")]
    else:
        rows = items[(items["arm"] == arm.label) & (items["phase"] == phase)]
    return rows.pivot_table(index=REPLICATE, columns="item_id", values=value, aggfunc="mean").dropna(axis=1)


def matrix_at_rollouts(items: pd.DataFrame, arm: Arm, rollouts: float, value: str = "correct") -> pd.DataFrame:
    """Seeds x items of ``value`` at the eval where each of the arm's runs had
    generated ``rollouts`` rollouts (a seed without such an eval has no row)."""
    frames = []
    for run in arm.runs:
        evals = run.evals  # a property that regroups metrics.jsonl on every access
        steps = evals.index[evals["rollouts"] == rollouts]
        if len(steps):
            frames.append(items[(items["run_dir"] == str(run.path)) & (items["step"] == steps[0])])
    rows = pd.concat(frames) if frames else items.iloc[0:0]
    return rows.pivot_table(index=REPLICATE, columns="item_id", values=value, aggfunc="mean").dropna(axis=1)


def paired(*frames: pd.DataFrame) -> list[np.ndarray]:
    """The matrices restricted to their common seeds and items, aligned."""
    seeds = sorted(set.intersection(*(set(f.index) for f in frames)), key=str)
    cols = sorted(set.intersection(*(set(f.columns) for f in frames)))
    return [f.loc[seeds, cols].to_numpy(float) for f in frames]
