"""The SmolLM2 repro's report (scripts/smollm2_analysis.py) on a small synthetic
work dir: the paired figures come from the per-item files, the protocol text
from protocol.json, and every item lands in items.csv.gz."""

from __future__ import annotations

import csv
import gzip
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
N = 40


def _jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _outcomes(items: list[dict], correct: set[int], errors: dict[int, str]) -> list[dict]:
    return [{"question": r["question"], "correct": i in correct, "correct_lenient": i in correct, "format": True,
             "error": "correct" if i in correct else errors.get(i, "arithmetic")} for i, r in enumerate(items)]


@pytest.fixture()
def work(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    items = [{"question": f"Q{i}: Ann has {i} pens. She buys 2 more. How many?", "answer": str(i + 2),
              "solution": f"{i} + 2 = {i + 2}"} for i in range(N)]
    _jsonl(work / "eval.jsonl", items)
    before = set(range(0, 20))  # 50%
    after = set(range(0, 18)) | set(range(20, 30))  # 70%: 10 gained, 2 lost
    replicate = set(range(0, 20)) | {20}  # +1 item
    errors = {i: "other" for i in range(20, 30)}
    shards = {"raw": (set(), {}), "before": (before, errors), "after": (after, {}), "replicate": (replicate, {})}
    for name, (correct, errs) in shards.items():
        rows = _outcomes(items, correct, errs)
        for s in (0, 1):  # two eval shards, items split between them as the repro does
            _jsonl(work / "runs" / f"{name}_s{s}" / "eval" / "step_000000.jsonl", rows[s::2])
    train = [{"step": k, "train/reward": 1.0, "train/rewards/correctness/mean": 0.5,
              "train/frac_reward_zero_std": 0.25, "train/step_time": 10.0 + k,
              "train/memory/overall_peak_rss_mb": 1000.0 + k} for k in range(1, 6)]
    _jsonl(work / "runs" / "grpo" / "metrics.jsonl", [{"step": 0, "eval/accuracy_strict": 0.0}, *train])
    for g, t in ((2, 30.0), (16, 20.0)):
        _jsonl(work / "runs" / f"timing_g{g}" / "metrics.jsonl",
               [{"step": 1, "train/step_time": t, "train/memory/overall_peak_rss_mb": 2000.0 + g}])
    (work / "data_facts.json").write_text(json.dumps({
        "n_eval": N, "n_sft": 16, "n_rl": 20, "pool": 300, "pool_removed_for_overlap": 7,
        "eval_single_equations_also_in_training": "3/40", "eval_two_step_items": 0}))
    (work / "protocol.json").write_text(json.dumps({
        "generator": {"min_steps": 1, "max_steps": 2, "max_result": 40, "ops": ["add", "sub"]},
        "grpo": {"group_size": 4, "rollouts_per_step": 12, "steps": 5, "lr": 3e-4, "reward": "correctness",
                 "threads": 2},
        "timing": {"rollouts_per_step": 16, "steps": 1}, "sft": {"batch_size": 8, "epochs": 1, "lr": 5e-4},
        "replicate_seed": 7}))
    (work / "steps.json").write_text(json.dumps({"grpo": {"wall_seconds": 60.0}, "sft": {"wall_seconds": 30.0}}))
    return work


def test_report_figures_come_from_the_items(work: Path, tmp_path: Path):
    sys.path.insert(0, str(ROOT))
    try:
        from scripts.smollm2_analysis import analyze
    finally:
        sys.path.remove(str(ROOT))
    docs = tmp_path / "docs"
    summary = analyze(work, docs)

    strict = summary["strict"]
    assert (strict["before"], strict["after"]) == (0.5, 0.7)
    assert (strict["gained"], strict["lost"]) == (10, 2)
    assert strict["diff"] == pytest.approx(0.2)
    assert strict["ci_low"] < 0.2 < strict["ci_high"]
    assert summary["strict_replicate"]["diff"] == pytest.approx(1 / N)

    md = (docs / "results.md").read_text()
    assert "| strict accuracy | 40 | 50.0 | 70.0 | +20.0 [" in md
    assert "strict accuracy, RL seed 7 | 40 | 50.0 | 52.5 | +2.5 [" in md
    assert "G=4, 12 rollouts/step (3 prompts), 5 steps, lr 0.0003" in md  # from protocol.json, not hard-coded
    assert "5 GRPO steps x 12 rollouts = 60 rollouts" in md
    assert "| other | 25.0 | 0.0 | 10 |" in md  # 10 'other' errors before, all 10 correct after
    assert "| seconds per GRPO step, main arm G=4 (2 threads) | 13.0 (11.0, 12.0, 13.0, 14.0, 15.0) |" in md
    assert "end to end (sum of stage wall-clocks) | 90 s (1.5 min)" in md

    with gzip.open(docs / "items.csv.gz", "rt") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 4 * N  # raw, before, after, replicate: every item once each
    kept = {(r["arm"], r["seed"], r["phase"]) for r in rows}
    assert kept == {("raw", "0", "base"), ("sft+grpo_g4", "0", "before"), ("sft+grpo_g4", "0", "after"),
                    ("sft+grpo_g4", "7", "after")}
    for name in ("accuracy.png", "training.png", "step_time.png", "summary.json"):
        assert (docs / name).stat().st_size > 0


def test_the_repro_script_names_its_stages():
    """`--help` lists the stages, no stage = all, an unknown stage is one usage error (exit 2)."""
    from scripts.repro_smollm2 import parse_args

    assert parse_args([]) == ["all"]
    assert parse_args(["data", "analyze"]) == ["data", "analyze"]
    for argv, code in ((["--help"], 0), (["bogus"], 2)):
        with pytest.raises(SystemExit) as exc:
            parse_args(argv)
        assert exc.value.code == code
