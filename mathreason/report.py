"""Results tables and plots from finished run directories.

``python -m mathreason.report <sweep or run dirs…> [--out DIR] [--plateau-frac 0.95]``

Reads only the run-directory contract (``run.json``, ``metrics.jsonl``): no
torch, no W&B. Runs are grouped into *arms* (``baseline``, ``grpo G=<n>``,
``dpo``, split further by reward preset, model/data or any other config key
that differs between runs of an arm other than the seed); within an arm the
runs are seeds. Writes ``results.md``, ``results.csv`` (one row per arm),
``runs.csv`` (one row per run) and PNG plots into ``--out`` (default
``<first path>/report``).

Steps to plateau (per run): the first eval step whose strict accuracy is at
least ``baseline + plateau_frac * (final - baseline)``; ``baseline`` is the
run's own step-0 eval (else the baseline arm's mean), ``final`` its last eval.
A run whose final accuracy is not above its baseline never plateaus; it is
left out of the arm's mean and counted (``k/n`` runs gained).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mathreason.cli import fail
from mathreason.errors import UserError

STATE_FILE = "run.json"
METRICS_FILE = "metrics.jsonl"
STRICT = "eval/accuracy_strict"
LENIENT = "eval/accuracy_lenient"
WALL = "train/wall_clock_s"
ROLLOUTS = "train/cumulative_rollouts"
REWARD = "train/reward"
KNOWN_COMPONENTS = ("correctness", "strict_format", "soft_format", "integer", "xmlcount")  # plot order
COMPONENT_RE = re.compile(r"^train/rewards/([^/]+)/mean$")
DPO_KEYS = ("train/rewards/margins", "train/rewards/accuracies", "train/rewards/chosen", "train/rewards/rejected")
# Peak-memory keys in order of preference (CPU RSS, then GPU reserved/allocated,
# then the per-interval values when no overall peak was logged).
MEMORY_KEYS = (
    "train/memory/overall_peak_rss_mb",
    "train/memory/overall_peak_reserved_mb",
    "train/memory/overall_peak_allocated_mb",
    "train/memory/peak_rss_mb",
    "train/memory/peak_reserved_mb",
    "train/memory/rss_mb",
)
# Directories never searched for runs.
SKIP_DIRS = {"wandb", "checkpoints", ".hydra", "report", "__pycache__"}
MAX_DEPTH = 4
# Config keys that never make runs belong to different arms.
NEUTRAL_PREFIXES = (
    "seed", "logger", "cache_dir", "device", "threads", "experiment_name", "hydra", "checkpoint",
    "eval.every_n_steps", "eval.batch_size", "eval.save_samples", "rollout.vllm",
)
# ... and per method, the sections that do not apply to it.
UNUSED_SECTIONS = {
    "grpo": ("dpo",),
    "dpo": ("grpo", "group_size", "geometry", "rollout"),
    "eval": ("grpo", "dpo", "group_size", "geometry", "rollout", "reward"),
}
ARM_ORDER = {"baseline": 0, "eval": 1, "grpo": 2, "dpo": 3}
BEST_MARK, OVERLAP_MARK = "*", "†"
STEP0_SOURCE = "step-0 eval of the training runs"


# ----------------------------------------------------------------------------- statistics


def t_quantile(p: float, df: int) -> float:
    """Student's t quantile for integer ``df`` (exact: A&S 26.7.3/4 + bisection)."""
    if df < 1:
        return math.nan
    two_sided = 2 * p - 1  # P(|T| < t)

    def prob_within(t: float) -> float:
        theta = math.atan(t / math.sqrt(df))
        c2, s = math.cos(theta) ** 2, math.sin(theta)
        if df % 2:  # odd
            if df == 1:
                return 2 * theta / math.pi
            term, total = math.cos(theta), math.cos(theta)
            for k in range(3, df - 1, 2):
                term *= c2 * (k - 1) / k
                total += term
            return 2 / math.pi * (theta + s * total)
        term, total = 1.0, 1.0
        for k in range(2, df - 1, 2):
            term *= c2 * (k - 1) / k
            total += term
        return s * total

    lo, hi = 0.0, 1.0
    while prob_within(hi) < two_sided:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if prob_within(mid) < two_sided:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


def mean_ci(values: list[float], level: float = 0.95) -> tuple[float | None, float | None]:
    """Mean and the half-width of its Student-t confidence interval (None for n < 2)."""
    vals = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not vals:
        return None, None
    mean = sum(vals) / len(vals)
    if len(vals) < 2:
        return mean, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (len(vals) - 1))
    return mean, t_quantile(0.5 + level / 2, len(vals) - 1) * sd / math.sqrt(len(vals))


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return sum(vals) / len(vals) if vals else None


# ----------------------------------------------------------------------------- runs


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        out: dict[str, Any] = {}
        for key, value in obj.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out if out or not prefix else {prefix[:-1]: "{}"}
    return {prefix[:-1]: json.dumps(obj, sort_keys=True) if isinstance(obj, list) else obj}


@dataclass
class Run:
    path: Path
    state: dict
    records: list[dict]

    @property
    def config(self) -> dict:
        cfg = self.state.get("config")
        return cfg if isinstance(cfg, dict) else {}

    def cfg(self, dotted: str, default: Any = None) -> Any:
        node: Any = self.config
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    @property
    def method(self) -> str:
        return str(self.state.get("method") or self.cfg("method") or "unknown")

    @property
    def seed(self) -> Any:
        return self.cfg("seed")

    @property
    def group_size(self) -> int | None:
        value = self.cfg("group_size.num_generations")
        if value is None:  # fall back to what the run logged
            value = next((r.get("train/geometry/group_size") for r in self.records if "train/geometry/group_size" in r), None)
        return int(value) if isinstance(value, (int, float)) else None

    @property
    def reward(self) -> str:
        return str(self.cfg("reward.name") or "?")

    @property
    def model_data(self) -> tuple[str, str]:
        return str(self.cfg("model.name") or "?"), str(self.cfg("data.name") or "?")

    @property
    def evals(self) -> list[dict]:
        """Eval records (in step order, the last record of a step wins)."""
        by_step = {}
        for rec in self.records:
            if _num(rec.get(STRICT)) is not None:
                by_step[int(rec.get("step", 0))] = rec
        return [by_step[s] for s in sorted(by_step)]

    def series(self, key: str) -> tuple[list[float], list[float]]:
        """``key`` against the step (the last value logged at a step wins)."""
        points: dict[float, float] = {}
        for rec in self.records:
            y, step = _num(rec.get(key)), _num(rec.get("step"))
            if y is not None and step is not None:
                points[step] = y
        xs = sorted(points)
        return xs, [points[x] for x in xs]

    def final(self, key: str) -> float | None:
        evals = self.evals
        return _num(evals[-1].get(key)) if evals else None

    @property
    def step0_strict(self) -> float | None:
        evals = self.evals
        return _num(evals[0].get(STRICT)) if evals and int(evals[0].get("step", -1)) == 0 else None

    def last(self, key: str) -> float | None:
        values = [v for v in (_num(r.get(key)) for r in self.records) if v is not None]
        return values[-1] if values else None

    def first(self, key: str) -> float | None:
        return next((v for v in (_num(r.get(key)) for r in self.records) if v is not None), None)

    @property
    def peak_memory(self) -> tuple[float | None, str | None]:
        for key in MEMORY_KEYS:
            values = [v for v in (_num(r.get(key)) for r in self.records) if v is not None]
            if values:
                return max(values), key
        return None, None

    @property
    def wall_clock(self) -> float | None:
        value = self.last(WALL)
        if value is None:
            started, finished = _num(self.state.get("started")), _num(self.state.get("finished"))
            if started is not None and finished is not None:
                value = finished - started
        return value

    def rollouts_at(self, rec: dict) -> float | None:
        value = _num(rec.get(ROLLOUTS))
        if value is not None:
            return value
        step = _num(rec.get("step"))
        if step == 0:
            return 0.0
        per_step = self.first("train/geometry/rollouts_per_step")
        return step * per_step if step is not None and per_step is not None else None

    @property
    def total_rollouts(self) -> float | None:
        if self.method == "eval":
            return None
        value = self.last(ROLLOUTS)
        if value is None:
            per_step, steps = self.first("train/geometry/rollouts_per_step"), self.last("step")
            value = per_step * steps if per_step is not None and steps is not None else None
        return value


def _read_records(path: Path) -> list[dict]:
    out = []
    with path.open(errors="replace") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a half-written last line
            if isinstance(rec, dict):
                out.append(rec)
    out.sort(key=lambda r: _num(r.get("step")) or 0.0)  # stable: equal steps keep file order
    return out


def find_run_dirs(root: Path, depth: int = 0) -> list[Path]:
    if (root / STATE_FILE).is_file() and (root / METRICS_FILE).is_file():
        return [root]
    if depth >= MAX_DEPTH:
        return []
    found = []
    try:
        children = sorted(p for p in root.iterdir() if p.is_dir() and p.name not in SKIP_DIRS)
    except OSError:
        return []
    for child in children:
        found += find_run_dirs(child, depth + 1)
    return found


def load_runs(paths: list[Path], warn=print) -> list[Run]:
    """Finished runs under ``paths``; unfinished or unreadable ones are skipped with a warning."""
    seen: set[Path] = set()
    runs = []
    for path in paths:
        if not path.exists():
            raise UserError(f"{path}: no such file or directory")
        dirs = find_run_dirs(path)
        if not dirs:
            raise UserError(f"{path}: no run directories (a run dir holds {STATE_FILE} and {METRICS_FILE})")
        for run_dir in dirs:
            key = run_dir.resolve()
            if key in seen:
                continue
            seen.add(key)
            try:
                state = json.loads((run_dir / STATE_FILE).read_text())
            except (OSError, json.JSONDecodeError) as err:
                warn(f"warning: skipping {run_dir}: unreadable {STATE_FILE} ({err})")
                continue
            status = state.get("status") if isinstance(state, dict) else None
            if status != "done":
                warn(f"warning: skipping {run_dir}: status={status} (not done)")
                continue
            runs.append(Run(run_dir, state, _read_records(run_dir / METRICS_FILE)))
    if not runs:
        raise UserError(f"no finished runs under {', '.join(map(str, paths))}")
    return runs


# ----------------------------------------------------------------------------- arms


@dataclass
class Arm:
    label: str
    kind: str  # baseline | eval | grpo | dpo | <other method>
    runs: list[Run]
    model_data: tuple[str, str]
    group_size: int | None = None
    reward: str | None = None
    source: str = ""  # for baselines: where the values come from
    # Filled by summarize():
    strict: list[float] = field(default_factory=list)
    lenient: list[float] = field(default_factory=list)
    gains: list[float] = field(default_factory=list)
    plateaus: list[int | None] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)
    mark: str = ""
    color: Any = "C0"

    @property
    def n(self) -> int:
        return len(self.strict)

    @property
    def from_step0(self) -> bool:
        return self.source == STEP0_SOURCE

    @property
    def seeds(self) -> list[Any]:
        seeds = [r.seed for r in self.runs]
        return list(dict.fromkeys(seeds)) if self.from_step0 else seeds


def _arm_kind(run: Run) -> str:
    if run.method == "eval":
        return "eval" if run.cfg("model.adapter_path") else "baseline"
    return run.method


def _neutral(key: str, method: str) -> bool:
    prefixes = NEUTRAL_PREFIXES + UNUSED_SECTIONS.get(method, ())
    return any(key == p or key.startswith(p + ".") for p in prefixes)


def _split_keys(runs: list[Run]) -> list[str]:
    """Config keys that differ between ``runs`` for reasons other than the seed."""
    flats = [_flatten(r.config) for r in runs]
    keys = sorted(set().union(*flats))
    out = []
    for key in keys:
        if _neutral(key, runs[0].method):
            continue
        values = [json.dumps(f.get(key), sort_keys=True, default=str) for f in flats]
        if len(set(values)) < 2:
            continue
        seeds = [json.dumps(r.seed, default=str) for r in runs]
        seed_to_value = {s: {v for s2, v in zip(seeds, values) if s2 == s} for s in seeds}
        value_to_seed = {v: {s for s, v2 in zip(seeds, values) if v2 == v} for v in values}
        if all(len(v) == 1 for v in seed_to_value.values()) and all(len(s) == 1 for s in value_to_seed.values()):
            continue  # follows the seed one to one (e.g. data.seed: ${seed})
        out.append(key)
    return out


def _fmt_value(flat: dict, key: str) -> str:
    if key not in flat:
        return f"no {key}"
    return f"{key}={flat[key]}"


def group_arms(runs: list[Run], warn=print) -> list[Arm]:
    """Group runs into arms; add step-0 baselines where no eval run exists."""
    train = [r for r in runs if r.method != "eval"]
    several_rewards = len({r.reward for r in train}) > 1
    several_setups = len({r.model_data for r in runs}) > 1
    base: dict[tuple, list[Run]] = {}
    for run in runs:
        kind = _arm_kind(run)
        key = (kind, run.group_size if kind == "grpo" else None,
               run.reward if kind in ("grpo", "dpo") else None, run.model_data)
        base.setdefault(key, []).append(run)

    arms = []
    for (kind, g, reward, md), members in base.items():
        keys = _split_keys(members)
        parts: dict[tuple, list[Run]] = {}
        for run in members:
            flat = _flatten(run.config)
            parts.setdefault(tuple(_fmt_value(flat, k) for k in keys), []).append(run)
        for extra, sub in parts.items():
            label = {"baseline": "baseline", "eval": "eval (adapter)", "grpo": f"grpo G={g}" if g else "grpo"}.get(kind, kind)
            tags = ([reward] if reward and several_rewards else []) + list(extra)
            if tags:
                label += f" ({'; '.join(tags)})"
            if several_setups:
                label += f" [{md[0]} / {md[1]}]"
            arm = Arm(label, kind, sub, md, g, reward, source="eval run" if kind == "baseline" else "")
            seeds = [json.dumps(r.seed, default=str) for r in sub]
            dupes = sorted({s for s in seeds if seeds.count(s) > 1})
            if dupes and kind != "baseline":
                warn(f"warning: arm '{label}' has several runs with seed {', '.join(dupes)}; each counts as a sample")
            arms.append(arm)

    have_baseline = {a.model_data for a in arms if a.kind == "baseline"}
    for md in sorted({r.model_data for r in train} - have_baseline):
        members = [r for r in train if r.model_data == md and r.step0_strict is not None]
        if not members:
            continue
        label = "baseline (step 0)" + (f" [{md[0]} / {md[1]}]" if several_setups else "")
        arms.append(Arm(label, "baseline", members, md, source=STEP0_SOURCE))
    arms.sort(key=lambda a: (a.model_data, ARM_ORDER.get(a.kind, 9), a.group_size or 0, a.label))
    return arms


# ----------------------------------------------------------------------------- summary


def steps_to_plateau(evals: list[tuple[float, float]], baseline: float | None, frac: float) -> int | None:
    """First eval step whose accuracy reaches ``baseline + frac * (final - baseline)``;
    None when the run never gains (final <= baseline) or no baseline is known."""
    if not evals or baseline is None:
        return None
    final = evals[-1][1]
    gain = final - baseline
    if gain <= 0:
        return None
    target = baseline + frac * gain
    for step, acc in evals:
        if acc >= target - 1e-9:
            return int(step)
    return int(evals[-1][0])


def summarize(arms: list[Arm], plateau_frac: float) -> None:
    baselines: dict[tuple[str, str], float | None] = {}
    for arm in arms:
        if arm.kind != "baseline":
            continue
        if arm.source == "eval run":
            arm.strict = [v for v in (r.final(STRICT) for r in arm.runs) if v is not None]
            arm.lenient = [v for v in (r.final(LENIENT) for r in arm.runs) if v is not None]
        else:  # one sample per seed: the training runs' step-0 evals (mean within a seed)
            by_seed: dict[str, list[Run]] = {}
            for run in arm.runs:
                by_seed.setdefault(json.dumps(run.seed, default=str), []).append(run)
            arm.strict = [_mean([r.step0_strict for r in rs]) for rs in by_seed.values()]
            arm.lenient = [v for v in (_mean([_num(r.evals[0].get(LENIENT)) for r in rs]) for rs in by_seed.values())
                           if v is not None]
        baselines[arm.model_data] = _mean(arm.strict)

    for arm in arms:
        base = baselines.get(arm.model_data)
        if arm.kind != "baseline":
            arm.strict = [v for v in (r.final(STRICT) for r in arm.runs) if v is not None]
            arm.lenient = [v for v in (r.final(LENIENT) for r in arm.runs) if v is not None]
            arm.plateaus = []
            for run in arm.runs:
                curve = [(float(e.get("step", 0)), float(e[STRICT])) for e in run.evals]
                own = run.step0_strict
                arm.plateaus.append(steps_to_plateau(curve, own if own is not None else base, plateau_frac))
        arm.gains = [v - base for v in arm.strict] if base is not None else []
        s = arm.stats
        s["strict"], s["strict_ci"] = mean_ci(arm.strict)
        s["lenient"], s["lenient_ci"] = mean_ci(arm.lenient)
        s["gain"], s["gain_ci"] = mean_ci(arm.gains) if arm.kind != "baseline" else (None, None)
        reached = [p for p in arm.plateaus if p is not None]
        s["plateau"] = _mean(reached)
        s["plateau_reached"] = len(reached)
        s["plateau_runs"] = len(arm.plateaus)
        # A step-0 baseline borrows the training runs' evals, not their cost.
        costed = [] if arm.from_step0 else arm.runs
        memory = [r.peak_memory for r in costed]
        s["memory"] = _mean([m for m, _ in memory])
        s["memory_keys"] = sorted({k for _, k in memory if k})
        s["wall_clock"] = _mean([r.wall_clock for r in costed])
        s["rollouts"] = _mean([r.total_rollouts for r in costed])
        s["steps"] = _mean([r.last("step") for r in costed]) if arm.kind != "baseline" else None

    # Mark arms whose CI overlaps the best arm's (per model/data setup).
    for md in {a.model_data for a in arms}:
        group = [a for a in arms if a.model_data == md and a.stats["strict"] is not None]
        if len(group) < 2:
            continue
        top = max(a.stats["strict"] for a in group)
        best = [a for a in group if a.stats["strict"] >= top - 1e-12]  # ties: all of them
        lo_b, hi_b = _interval(max(best, key=lambda a: (a.n, a.kind != "baseline")))
        for arm in group:
            if any(arm is b for b in best):
                arm.mark = BEST_MARK
            else:
                lo, hi = _interval(arm)
                if lo <= hi_b and lo_b <= hi:
                    arm.mark = OVERLAP_MARK


def _interval(arm: Arm) -> tuple[float, float]:
    mean, ci = arm.stats["strict"], arm.stats["strict_ci"] or 0.0
    return mean - ci, mean + ci


def ratios_2grpo(arms: list[Arm]) -> list[dict[str, Any]]:
    """G=2 vs G=16 for every setup (reward, model/data, other keys) that has both arms."""
    out = []
    grpo = [a for a in arms if a.kind == "grpo"]
    for g2 in (a for a in grpo if a.group_size == 2):
        for g16 in (a for a in grpo if a.group_size == 16):
            if g2.label.replace("G=2", "G=16", 1) != g16.label:
                continue
            s2, s16 = g2.stats, g16.stats

            def ratio(a, b):
                return a / b if a is not None and b not in (None, 0) else None

            gain_ratio = ratio(s2["gain"], s16["gain"]) if (s16["gain"] or 0) > 0 else None
            out.append({
                "g2": g2.label, "g16": g16.label,
                "gain_g2": s2["gain"], "gain_g16": s16["gain"], "gain_ratio": gain_ratio,
                "wall_clock_ratio": ratio(s2["wall_clock"], s16["wall_clock"]),
                "rollouts_ratio": ratio(s2["rollouts"], s16["rollouts"]),
                "steps_ratio": ratio(s2["steps"], s16["steps"]),
                "memory_ratio": ratio(s2["memory"], s16["memory"]),
            })
    return out


# ----------------------------------------------------------------------------- tables


def _pct(mean: float | None, ci: float | None, signed: bool = False) -> str:
    if mean is None:
        return "—"
    text = f"{100 * mean:+.1f}" if signed else f"{100 * mean:.1f}"
    return text + (f" ± {100 * ci:.1f}" if ci is not None else "")


def _int(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _plateau_cell(arm: Arm) -> str:
    s = arm.stats
    if arm.kind == "baseline" or not s["plateau_runs"]:
        return "—"
    if not s["plateau_reached"]:
        return f"never (0/{s['plateau_runs']})"
    text = f"{s['plateau']:.1f}".removesuffix(".0")
    return text if s["plateau_reached"] == s["plateau_runs"] else f"{text} ({s['plateau_reached']}/{s['plateau_runs']})"


HEADER = ["arm", "n", "final strict (%)", "final lenient (%)", "gain strict (pp)", "steps to plateau",
          "peak mem (MB)", "wall-clock (s)", "rollouts"]


def table_rows(arms: list[Arm]) -> list[list[str]]:
    rows = []
    for arm in arms:
        s = arm.stats
        rows.append([
            arm.label + (f" {arm.mark}" if arm.mark else ""),
            str(arm.n),
            _pct(s["strict"], s["strict_ci"]),
            _pct(s["lenient"], s["lenient_ci"]),
            "—" if arm.kind == "baseline" else _pct(s["gain"], s["gain_ci"], signed=True),
            _plateau_cell(arm),
            _int(s["memory"]),
            _int(s["wall_clock"]),
            _int(s["rollouts"]),
        ])
    return rows


def markdown_table(arms: list[Arm]) -> str:
    rows = table_rows(arms)
    align = ["---"] + ["---:"] * (len(HEADER) - 1)
    lines = ["| " + " | ".join(HEADER) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _r(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def notes(arms: list[Arm], plateau_frac: float) -> list[str]:
    pct = f"{plateau_frac:g}"
    memory_keys = sorted({k for a in arms for k in a.stats["memory_keys"]})
    baselines = [f"{a.label}: {a.source}" for a in arms if a.kind == "baseline"]
    return [
        "Accuracy is the held-out strict accuracy (answer inside `<answer>` tags) and lenient accuracy "
        "at the run's last eval; mean ± 95% CI over seeds (Student's t, n − 1 df); a single value when n = 1.",
        f"Gain: final strict accuracy minus the baseline arm's mean strict accuracy, in percentage points "
        f"(baselines — {'; '.join(baselines) or 'none found'}).",
        f"`{BEST_MARK}` best final strict accuracy; `{OVERLAP_MARK}` 95% CI overlaps the best arm's CI "
        "(not clearly different; an arm with n = 1 counts as its single value).",
        f"Steps to plateau: per run, the first eval step whose strict accuracy ≥ baseline + {pct} × (final − baseline), "
        f"i.e. {100 * plateau_frac:g}% of the run's gain; baseline = the run's own step-0 eval (else the baseline arm's "
        "mean), final = its last eval. Mean over the runs that gained; a run whose final accuracy is not above its "
        "baseline never plateaus and is left out: `(k/n)` = runs that gained, `never` = none did.",
        f"Peak memory: the run's maximum of {', '.join(f'`{k}`' for k in memory_keys) or 'no memory key'}; "
        "wall-clock: last `train/wall_clock_s`; rollouts: last `train/cumulative_rollouts` "
        "(completions generated; DPO: mining samples). Means over seeds.",
    ]


def ratio_lines(ratios: list[dict[str, Any]]) -> list[str]:
    lines = []
    for r in ratios:
        gain = (f"gain ratio {_r(r['gain_ratio'], 2)} ({_pct(r['gain_g2'], None, True)} pp / "
                f"{_pct(r['gain_g16'], None, True)} pp)")
        if r["gain_ratio"] is None:
            gain += " — undefined: the G=16 arm did not gain"
        lines.append(
            f"2-GRPO vs 16-GRPO ({r['g2']} / {r['g16']}): {gain}; wall-clock ratio {_r(r['wall_clock_ratio'], 2)}; "
            f"rollouts ratio {_r(r['rollouts_ratio'], 3)}; steps ratio {_r(r['steps_ratio'], 3)}; "
            f"peak-memory ratio {_r(r['memory_ratio'], 2)}"
        )
    return lines


def _c(value: Any) -> Any:
    """A CSV cell: floats rounded to 6 decimals (no 0.30000000000000004)."""
    return round(value, 6) if isinstance(value, float) else value


def write_csv(arms: list[Arm], ratios: list[dict[str, Any]], out: Path) -> tuple[Path, Path]:
    results, runs_csv = out / "results.csv", out / "runs.csv"
    fields = ["arm", "kind", "model", "data", "group_size", "reward", "n_seeds", "seeds",
              "strict_mean", "strict_ci95", "lenient_mean", "lenient_ci95", "gain_strict", "gain_strict_ci95",
              "plateau_steps_mean", "plateau_runs_gained", "plateau_runs", "plateau_steps_per_run",
              "peak_memory_mb", "wall_clock_s", "total_rollouts", "steps", "best", "ci_overlaps_best",
              "baseline_source", "memory_keys"]
    with results.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        for arm in arms:
            s = arm.stats
            writer.writerow({k: _c(v) for k, v in {
                "arm": arm.label, "kind": arm.kind, "model": arm.model_data[0], "data": arm.model_data[1],
                "group_size": arm.group_size, "reward": arm.reward, "n_seeds": arm.n,
                "seeds": ";".join(map(str, arm.seeds)),
                "strict_mean": s["strict"], "strict_ci95": s["strict_ci"],
                "lenient_mean": s["lenient"], "lenient_ci95": s["lenient_ci"],
                "gain_strict": s["gain"], "gain_strict_ci95": s["gain_ci"],
                "plateau_steps_mean": s["plateau"], "plateau_runs_gained": s["plateau_reached"],
                "plateau_runs": s["plateau_runs"],
                "plateau_steps_per_run": ";".join("" if p is None else str(p) for p in arm.plateaus),
                "peak_memory_mb": s["memory"], "wall_clock_s": s["wall_clock"], "total_rollouts": s["rollouts"],
                "steps": s["steps"], "best": arm.mark == BEST_MARK, "ci_overlaps_best": arm.mark == OVERLAP_MARK,
                "baseline_source": arm.source, "memory_keys": ";".join(s["memory_keys"]),
            }.items()})
    with runs_csv.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["arm", "seed", "run_dir", "final_strict", "final_lenient", "step0_strict",
                         "plateau_step", "peak_memory_mb", "wall_clock_s", "total_rollouts"])
        for arm in arms:
            plateaus = arm.plateaus or [None] * len(arm.runs)
            for run, plateau in zip(arm.runs, plateaus):
                writer.writerow([_c(v) for v in (
                    arm.label, run.seed, str(run.path), run.final(STRICT), run.final(LENIENT), run.step0_strict,
                    plateau, run.peak_memory[0], run.wall_clock, run.total_rollouts)])
    return results, runs_csv


# ----------------------------------------------------------------------------- plots


def _curve(run: Run, x_of) -> tuple[list[float], list[float]]:
    points = {}
    for rec in run.evals:
        x = x_of(run, rec)
        if x is not None:
            points[x] = float(rec[STRICT])
    xs = sorted(points)
    return xs, [points[x] for x in xs]


def mean_over_seeds(series: list[tuple[list[float], list[float]]]):
    """Interpolate the seeds onto the union of their x values within the range all
    seeds cover; returns (grid, mean, min, max) or None."""
    import numpy as np

    series = [(np.asarray(x, float), np.asarray(y, float)) for x, y in series if len(x) > 0]
    if not series:
        return None
    lo, hi = max(x[0] for x, _ in series), min(x[-1] for x, _ in series)
    if lo > hi:  # no common range: use everything, holding end values
        lo, hi = min(x[0] for x, _ in series), max(x[-1] for x, _ in series)
    grid = np.unique(np.concatenate([x for x, _ in series]))
    grid = grid[(grid >= lo) & (grid <= hi)]
    ys = np.vstack([np.interp(grid, x, y) for x, y in series])
    return grid, ys.mean(axis=0), ys.min(axis=0), ys.max(axis=0)


def assign_colors(arms: list[Arm]) -> None:
    """One colour per arm, the same in every plot (baselines grey)."""
    import matplotlib

    cmap = matplotlib.colormaps["tab10"]
    i = 0
    for arm in arms:
        if arm.kind == "baseline":
            arm.color = "0.35"
        else:
            arm.color = cmap(i % 10)
            i += 1


def _x_step(run: Run, rec: dict) -> float | None:
    return _num(rec.get("step"))


def _x_rollouts(run: Run, rec: dict) -> float | None:
    return run.rollouts_at(rec)


def _x_wall(run: Run, rec: dict) -> float | None:
    value = _num(rec.get(WALL))
    return 0.0 if value is None and _num(rec.get("step")) == 0 else value


def _plot_arm(ax, arm: Arm, series, color, show_seeds: bool = True) -> bool:
    curve = mean_over_seeds(series)
    if curve is None or len(curve[0]) == 0:
        return False
    grid, mean, lo, hi = curve
    n = len([s for s in series if len(s[0])])
    ax.plot(grid, mean, color=color, lw=2, marker="o" if len(grid) <= 30 else None, ms=3,
            label=f"{arm.label} (n={n})")
    if n > 1:
        ax.fill_between(grid, lo, hi, color=color, alpha=0.18, lw=0)
        if show_seeds:
            for x, y in series:
                ax.plot(x, y, color=color, lw=0.7, alpha=0.35)
    return True


def plot_accuracy(arms: list[Arm], out: Path) -> list[Path]:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import PercentFormatter

    written = []
    specs = [
        ("accuracy_vs_step.png", _x_step, "training step", "vs training step"),
        ("accuracy_vs_rollouts.png", _x_rollouts, "cumulative rollouts (completions generated; DPO: mining samples)",
         "vs rollouts"),
        ("accuracy_vs_wallclock.png", _x_wall, "wall-clock (s)", "vs wall-clock"),
    ]
    for name, x_of, xlabel, what in specs:
        fig, ax = plt.subplots(figsize=(8, 5), layout="constrained")
        for arm in arms:
            if arm.kind == "baseline":
                value = arm.stats.get("strict")
                if value is not None:
                    ax.axhline(value, color=arm.color, ls="--", lw=1.2,
                               label=f"{arm.label} ({100 * value:.1f}%)")
                continue
            _plot_arm(ax, arm, [_curve(r, x_of) for r in arm.runs], arm.color)
        ax.set_title(f"Held-out strict accuracy {what}\n(line: mean over seeds; band: min–max; thin: seeds)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("strict accuracy")
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8, loc="best")
        path = out / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def _metric_grid(arms: list[Arm], keys: list[tuple[str, str]], title: str, path: Path, ncols: int = 3) -> Path:
    import matplotlib.pyplot as plt

    nrows = math.ceil(len(keys) / ncols)
    ncols = min(ncols, len(keys))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 3.4 * nrows), squeeze=False, layout="constrained")
    for ax, (key, label) in zip(axes.flat, keys):
        for arm in arms:
            series = [r.series(key) for r in arm.runs]
            if any(len(x) for x, _ in series):
                _plot_arm(ax, arm, series, arm.color, show_seeds=False)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("training step")
        ax.set_ylabel(key.removeprefix("train/"), fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys):]:
        ax.set_visible(False)
    handles, labels = {}, {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
            labels[lab] = lab
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(4, len(handles)),
                   fontsize=8)
    fig.suptitle(title)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_rewards(arms: list[Arm], out: Path) -> Path | None:
    train_arms = [a for a in arms if a.kind != "baseline"]
    found = {m.group(1) for a in train_arms for r in a.runs for rec in r.records for k in rec
             if (m := COMPONENT_RE.match(k))}
    components = [c for c in KNOWN_COMPONENTS if c in found] + sorted(found - set(KNOWN_COMPONENTS))
    if not components:
        return None
    keys = [(REWARD, "total reward (weighted sum)")] if any(r.series(REWARD)[0] for a in train_arms for r in a.runs) else []
    keys += [(f"train/rewards/{c}/mean", f"{c} (unweighted mean)") for c in components]
    return _metric_grid(train_arms, keys, "Training reward components (mean over seeds; band: min–max)",
                        out / "reward_components.png")


def plot_dpo(arms: list[Arm], out: Path) -> Path | None:
    dpo = [a for a in arms if a.kind == "dpo"]
    present = [k for k in DPO_KEYS if any(r.series(k)[0] for a in dpo for r in a.runs)]
    if not dpo or not present:
        return None
    labels = {
        "train/rewards/margins": "reward margin (chosen − rejected)",
        "train/rewards/accuracies": "preference accuracy (chosen > rejected)",
        "train/rewards/chosen": "implicit reward, chosen",
        "train/rewards/rejected": "implicit reward, rejected",
    }
    return _metric_grid(dpo, [(k, labels[k]) for k in present], "DPO implicit rewards (mean over seeds)",
                        out / "dpo_margins.png", ncols=2)


# ----------------------------------------------------------------------------- main


@dataclass
class Report:
    arms: list[Arm]
    ratios: list[dict[str, Any]]
    markdown: str
    files: list[Path]


def build_report(paths: list[Path], out: Path, plateau_frac: float = 0.95, warn=print) -> Report:
    runs = load_runs(paths, warn=warn)
    arms = group_arms(runs, warn=warn)
    summarize(arms, plateau_frac)
    ratios = ratios_2grpo(arms)
    out.mkdir(parents=True, exist_ok=True)

    import matplotlib

    matplotlib.use("Agg")
    assign_colors(arms)
    files = list(write_csv(arms, ratios, out))
    plots = plot_accuracy(arms, out)
    for extra in (plot_rewards(arms, out), plot_dpo(arms, out)):
        if extra is not None:
            plots.append(extra)

    table = markdown_table(arms)
    n_runs = sum(len(a.runs) for a in arms if not a.from_step0)
    lines = ["# Results", "", f"{n_runs} finished runs from {', '.join(f'`{p}`' for p in paths)}.", "", table, ""]
    lines += [f"- {n}" for n in notes(arms, plateau_frac)]
    if ratios:
        lines += ["", "## 2-GRPO vs 16-GRPO", ""] + [f"- {line}" for line in ratio_lines(ratios)]
        lines += ["", "Ratios are G=2 / G=16 of the arm means (gain in pp of strict accuracy)."]
    lines += ["", "## Plots", ""] + [f"![{p.stem}]({p.name})" for p in plots]
    lines += ["", "## Runs", ""]
    for arm in arms:
        lines.append(f"- **{arm.label}**: " + ", ".join(f"seed {r.seed} `{r.path}`" for r in arm.runs))
    md_path = out / "results.md"
    md_path.write_text("\n".join(lines) + "\n")
    files.insert(0, md_path)
    return Report(arms, ratios, table, files + plots)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mathreason.report",
        description="Results table (results.md, results.csv) and plots from sweep or run directories.",
    )
    parser.add_argument("paths", nargs="+", type=Path, help="sweep dirs (outputs/sweeps/<name>) or run dirs")
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: <first path>/report)")
    parser.add_argument("--plateau-frac", type=float, default=0.95,
                        help="steps to plateau: first eval step reaching this fraction of the run's gain (default 0.95)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    def warn(message: str) -> None:
        print(message, file=sys.stderr)

    try:
        if not 0 < args.plateau_frac <= 1:
            raise UserError(f"--plateau-frac={args.plateau_frac}: must be in (0, 1]")
        out = args.out or (args.paths[0] / "report")
        report = build_report(args.paths, out, args.plateau_frac, warn=warn)
    except UserError as err:
        fail(err)
    print(report.markdown)
    print()
    for line in notes(report.arms, args.plateau_frac) + ratio_lines(report.ratios):
        print(f"- {line}")
    print()
    for path in report.files:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
