"""What a person sees: phases, one bar, one line per eval, a summary; no raw
metric dicts in the terminal (they go to metrics.jsonl and W&B)."""

from __future__ import annotations

import re

import pytest
from helpers import run_cli

from mathreason.console import EvalLines, LogFileBar, progress_bar, summary_table

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
    # stderr is a pipe here, as under SLURM or nohup: bars print whole lines, never their redraws
    assert "\r" not in out.stderr
    assert "change: strict " in console and "items gained" in console


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


class _Stream:
    def __init__(self, tty: bool):
        self.text, self.tty = "", tty

    def write(self, text: str) -> int:
        self.text += text
        return len(text)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return self.tty


def test_a_bar_in_a_log_file_prints_a_line_per_tenth_and_its_final_line():
    log = _Stream(tty=False)
    with progress_bar(total=600, desc="warm start (SFT)", file=log, mininterval=0) as bar:
        for step in range(600):  # what the trainer's callback does: a step, then the postfix
            bar.update(1)
            bar.set_postfix({"loss": f"{step:.0f}"}, refresh=True)
    lines = log.text.splitlines()
    assert isinstance(bar, LogFileBar) and "\r" not in log.text
    assert [line.split("%")[0].split()[-1] for line in lines] == [str(p) for p in range(10, 101, 10)]
    cut = _Stream(tty=False)  # interrupted at 35% (or leave=False, as eval bars): its last state still shows
    bar = progress_bar(total=20, desc="eval@0", file=cut, leave=False, mininterval=0)
    for _ in range(7):
        bar.update(1)
    bar.close()
    assert [line.split("|")[2].split()[0] for line in cut.text.splitlines()] == ["2/20", "4/20", "6/20", "7/20"]


def test_a_bar_in_a_terminal_redraws_in_place():
    tty = _Stream(tty=True)
    with progress_bar(total=50, desc="GRPO", file=tty, mininterval=0) as bar:
        for _ in range(50):
            bar.update(1)
    assert not isinstance(bar, LogFileBar) and tty.text.count("\r") > 10


def test_summary_table_gives_the_paired_change_with_its_ci():
    text = summary_table({"method": "grpo", "baseline/accuracy_strict": 0.295, "final/accuracy_strict": 0.17,
                          "change/accuracy_strict/diff": -0.125, "change/accuracy_strict/ci_low": -0.195,
                          "change/accuracy_strict/ci_high": -0.06, "change/accuracy_strict/n_items": 200,
                          "change/accuracy_strict/gained": 12, "change/accuracy_strict/lost": 37,
                          "change/accuracy_strict/p_mcnemar": 0.00031,
                          "change/mean@8/diff": 0.01, "change/mean@8/ci_low": -0.005, "change/mean@8/ci_high": 0.03,
                          "change/mean@8/n_items": 200, "change/mean@8/gained": 40, "change/mean@8/lost": 31,
                          "change/mean@8/p_mcnemar": None})
    lines = text.splitlines()
    change = [n for n, line in enumerate(lines) if line.startswith("      change: ")]
    assert lines[change[0]] == ("      change: strict -12.5 pp [-19.5, -6.0] (95% CI, paired over 200 items; "
                                "12 items gained, 37 lost, McNemar p = 0.00031)"), text
    assert lines[change[0] + 1].strip().startswith("mean@8 +1.0 pp [-0.5, +3.0]") and "McNemar" not in lines[change[0] + 1]


def test_an_eval_only_summary_is_one_row_with_its_ci_and_no_arrows():
    text = summary_table({"method": "eval", "final/accuracy_strict": 0.36, "final/accuracy_lenient": 0.365,
                          "final/format_rate": 0.995, "final/accuracy_strict_ci": [0.295, 0.43], "eval_items": 200,
                          "final/errors/arithmetic": 0.63, "final/pass@8": 0.8, "final/mean@8": 0.5,
                          "final/mean@8_ci": [0.45, 0.55]})
    assert "before training" not in text and "after training" not in text and "→" not in text
    assert [line.split("│")[1].strip() for line in text.splitlines() if line.startswith("│")] == ["accuracy"]
    assert "pass@8" in text and "80.0%" in text
    assert "      95% CI: strict 36.0% [29.5, 43.0] over 200 items" in text
    assert "errors: arithmetic 63.0%" in text
