"""What a person sees: phases, one bar, one line per eval, a summary; no raw
metric dicts in the terminal (they go to metrics.jsonl and W&B)."""

from __future__ import annotations

import re

import pytest
from helpers import run_cli

from mathreason.console import EvalLines, summary_table

RAW_DICT = re.compile(r"\{'(loss|train_runtime|reward|learning_rate|grad_norm)'")


@pytest.mark.slow
def test_short_grpo_console_has_phases_evals_summary_and_no_metric_dicts(tmp_path, cache_dir):
    out = run_cli(["method=grpo", "group_size=2", "geometry.rollouts_per_step=16", "geometry.max_steps=2",
                   "eval.every_n_steps=1", "data.n_train=32", "data.n_eval=16", "eval.max_samples=16",
                   "grpo.max_completion_length=32", "eval.max_new_tokens=32", "logger=none",
                   f"cache_dir={cache_dir}", f"hydra.run.dir={tmp_path}/run"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    console = out.stdout + out.stderr
    assert not RAW_DICT.search(console), RAW_DICT.search(console)
    assert "Step 0" not in console  # TRL's empty completions panel
    assert "pin_memory" not in console
    for expected in ("▸ run", "▸ loading model", "▸ training — GRPO, 2 steps x 16 rollouts",
                     "eval @ step 0 · strict", "eval @ step 1 (16 rollouts)", "eval @ step 2 (32 rollouts)",
                     "after training", "rollouts: 32", f"run dir: {tmp_path}/run"):
        assert expected in console, expected
    # the metric stream is in the run dir, and run.log holds the console's lines and summary
    assert (tmp_path / "run" / "metrics.jsonl").read_text().count("\n") >= 3
    run_log = (tmp_path / "run" / "run.log").read_text()
    assert "eval @ step 2" in run_log and "after training" in run_log


def test_eval_line_shows_the_change_since_the_baseline():
    lines = EvalLines()
    assert lines.line(0, {"eval_accuracy_strict": 0.1, "eval_format_rate": 1.0}) == \
        "eval @ step 0 · strict 10.0% (baseline) · format 100.0%"
    assert lines.line(8, {"eval_accuracy_strict": 0.25}, rollouts=512) == \
        "eval @ step 8 (512 rollouts) · strict 25.0% (+15.0 pp vs baseline)"
    resumed = EvalLines()  # a resumed run has no step-0 eval: no made-up delta
    assert resumed.line(8, {"eval_accuracy_strict": 0.25}) == "eval @ step 8 · strict 25.0%"


def test_summary_table_has_the_run_facts():
    text = summary_table({"method": "grpo", "baseline/accuracy_strict": 0.13, "baseline/accuracy_lenient": 0.2,
                          "baseline/format_rate": 0.9, "final/accuracy_strict": 0.19,
                          "final/accuracy_lenient": 0.25, "final/format_rate": 1.0, "wall_clock_s": 181.4,
                          "cumulative_rollouts": 1024, "peak_memory_mb": 950.2, "run_dir": "outputs/runs/x"})
    for expected in ("before training", "13.0%", "after training", "19.0%", "wall-clock: 181 s",
                     "rollouts: 1,024", "peak memory: 950 MB", "run dir: outputs/runs/x"):
        assert expected in text, (expected, text)


def test_summary_table_errors_line_shows_each_kind_before_and_after():
    text = summary_table({"method": "grpo", "baseline/accuracy_strict": 0.3, "final/accuracy_strict": 0.25,
                          "baseline/errors/arithmetic": 0.6, "final/errors/arithmetic": 0.7,
                          "baseline/errors/other": 0.1,  # no final value: not shown
                          "baseline/correct_with_false_equation": 0.065,
                          "final/correct_with_false_equation": 0.096})
    errors = [line for line in text.splitlines() if line.strip().startswith("errors:")]
    assert errors == ["      errors: arithmetic 60.0% → 70.0% · right with a false equation 6.5% → 9.6%"], text
    assert "–" in text  # the missing lenient and format cells
