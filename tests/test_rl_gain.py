"""The signature command learns: `python -m mathreason.run method=grpo group_size=2`
on the embedded default (the skilled warm start meets comparison phrasing it
never saw; 10 epochs over 128 prompts with a 10-step warm-up, the paper's x8 lr
for G=2) raises held-out greedy accuracy on the 500 test items, held out by
equation chain, paired item by item with a bootstrap CI above 0. Seed 0, as
the README's first screen shows it.

Slow: the default warm start takes 7.5-11 min to build on 2 cores (once per
cache, shared with every other test), the run about 2 min."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import run_cli

from mathreason import records
from mathreason.analysis.stats import paired_difference

pytestmark = pytest.mark.slow


def greedy_outcomes(run_dir, step: int) -> dict[str, bool]:
    lines = records.eval_file(run_dir, step).read_text().splitlines()
    return {row["item_id"]: bool(row["correct"]) for row in map(json.loads, lines)}


def test_the_signature_command_raises_held_out_accuracy_paired_on_the_same_items(tmp_path, cache_dir):
    run_dir = tmp_path / "run"
    out = run_cli(["method=grpo", "group_size=2", "logger=none", f"cache_dir={cache_dir}", f"hydra.run.dir={run_dir}"],
                  cwd=tmp_path, timeout=3600)
    assert out.returncode == 0, out.stderr[-3000:]
    state = json.loads((run_dir / records.STATE_FILE).read_text())
    assert state["config"]["data"]["eval_split"] == "test" and state["config"]["grpo"]["warmup_steps"] == 10
    steps = state["summary"]["steps"]
    before, after = greedy_outcomes(run_dir, 0), greedy_outcomes(run_dir, steps)
    assert len(before) >= 500 and before.keys() == after.keys()
    ids = sorted(before)
    gain = paired_difference(np.array([after[i] for i in ids], float), np.array([before[i] for i in ids], float))
    print(f"2-GRPO, seed 0, {steps} steps: greedy {np.mean([before[i] for i in ids]):.3f} -> "
          f"{np.mean([after[i] for i in ids]):.3f}, paired gain {gain.mean:+.3f} [{gain.ci_low:+.3f}, {gain.ci_high:+.3f}]")
    assert gain.ci_low > 0, gain
    # the run's own summary says the same, with the same function
    summary = state["summary"]
    assert summary["change/accuracy_strict/diff"] == pytest.approx(gain.mean)
    assert summary["change/accuracy_strict/ci_low"] == pytest.approx(gain.ci_low)
