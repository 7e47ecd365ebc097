"""A NaN reward stops the run: one line naming the step and the reward
function, with what was logged before it saved."""

from __future__ import annotations

import json

import pytest
from helpers import run_cli
from test_training import SHORT, only_run_dir, records

pytestmark = pytest.mark.slow

PLUGIN = '''
from mathreason.scoring.rewards import register_reward


@register_reward
def nan_from_step_two(prompts, completions, trainer_state=None, **kwargs):
    broken = trainer_state is not None and trainer_state.global_step >= 1
    return [float("nan") if broken else 0.0 for _ in completions]
'''


def test_nan_reward_stops_with_step_and_function_named(tmp_path, cache_dir):
    (tmp_path / "nan_plugin.py").write_text(PLUGIN)
    out = run_cli(
        ["method=grpo", "group_size=2", "geometry.rollouts_per_step=16", "geometry.max_steps=4",
         "reward.plugins=[nan_plugin]", "+reward.functions.nan_from_step_two=1.0", f"cache_dir={cache_dir}", *SHORT],
        cwd=tmp_path,
        env={"PYTHONPATH": f"{tmp_path}:{__import__('helpers').ROOT}"},
    )
    assert out.returncode == 2, out.stderr[-3000:]
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: reward function 'nan_from_step_two' returned nan at step 2"], out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    run_dir = only_run_dir(tmp_path)
    steps = [r["step"] for r in records(run_dir)]
    assert steps == [0, 1]  # baseline eval and the one finished step are saved
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "failed" and "nan_from_step_two" in state["error"]
