"""RL raises held-out accuracy on the tiny model (issue 14): 16-GRPO in the CPU
experiment's own setting (sweeps/repro_cpu.yaml: the skilled warm start meets
comparison phrasing it never saw), one fixed seed, the greedy outcome of every
held-out item before and after training, compared paired with a bootstrap CI.

Slow: the skilled warm start takes 8-14 min to build on 2 cores (once per
cache), the run ~3 min."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import ROOT, run_cli

from mathreason import records
from mathreason.analysis.stats import paired_difference

pytestmark = pytest.mark.slow


def greedy_outcomes(run_dir, step: int) -> dict[str, bool]:
    lines = records.eval_file(run_dir, step).read_text().splitlines()
    return {row["item_id"]: bool(row["correct"]) for row in map(json.loads, lines)}


def test_grpo_raises_held_out_accuracy_paired_on_the_same_items(tmp_path, cache_dir):
    run_dir = tmp_path / "run"
    out = run_cli(
        ["--config-dir", str(ROOT / "sweeps"), "--config-name", "repro_cpu",
         "experiment=repro_cpu_grpo_g16", "seed=0", "logger=none", f"cache_dir={cache_dir}",
         "eval.num_samples=1", "eval.at_rollouts=null", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, timeout=3600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    state = json.loads((run_dir / records.STATE_FILE).read_text())
    steps = state["summary"]["steps"]
    before, after = greedy_outcomes(run_dir, 0), greedy_outcomes(run_dir, steps)
    assert len(before) >= 1000 and before.keys() == after.keys()
    ids = sorted(before)
    gain = paired_difference(np.array([after[i] for i in ids], float), np.array([before[i] for i in ids], float))
    print(f"16-GRPO, seed 0, {steps} steps: greedy {np.mean([before[i] for i in ids]):.3f} -> "
          f"{np.mean([after[i] for i in ids]):.3f}, paired gain {gain.mean:+.3f} [{gain.ci_low:+.3f}, {gain.ci_high:+.3f}]")
    assert gain.ci_low > 0, gain
