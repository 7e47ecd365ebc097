"""Bad configs and bad data files through the real CLI: exit 2, one line on
stderr naming the key or file:line, and no run directory left behind."""

from __future__ import annotations

import json

import pytest
from helpers import run_cli


def write(path, text):
    path.write_text(text)
    return path


GOOD = json.dumps({"question": "What is 1 + 1?", "answer": "1 + 1 = 2\n#### 2"})

# (id, overrides (with {tmp} for the test's dir), files to create, what stderr must name)
CASES = [
    ("unknown-key", ["foo=1"], {}, "foo"),
    ("unknown-nested-key", ["grpo.betta=0.1"], {}, "grpo.betta"),
    ("wrong-type", ["eval.max_new_tokens=lots"], {}, "eval.max_new_tokens"),
    ("group-size-below-2", ["group_size.num_generations=1"], {}, "group_size.num_generations"),
    ("missing-group-option", ["group_size=3"], {}, "group_size"),
    ("batch-not-divisible", ["group_size=16", "geometry.rollouts_per_step=60"], {}, "geometry.rollouts_per_step"),
    ("reward-weights-count", ["+grpo.extra.reward_weights=[1.0,2.0]"], {}, "grpo.extra.reward_weights"),
    ("unknown-reward", ["+reward.functions.made_up=1.0"], {}, "reward.functions.made_up"),
    ("unknown-backend", ["model.backend=jax"], {}, "model.backend"),
    ("gpu-only-on-cpu", ["model.backend=unsloth"], {}, "model.backend=unsloth"),
    ("vllm-on-cpu", ["rollout.engine=vllm"], {}, "rollout.engine=vllm"),
    ("unknown-method", ["method=ppo"], {}, "method"),
    ("missing-data-file", ["method=eval", "data=gsm8k", "data.path={tmp}/nope.jsonl"], {}, "data.path"),
    ("bad-json-line", ["method=eval", "data=gsm8k", "data.path={tmp}/bad.jsonl"],
     {"bad.jsonl": GOOD + "\n{not json\n"}, "bad.jsonl:2"),
    ("missing-field", ["method=eval", "data=gsm8k", "data.path={tmp}/nofield.jsonl"],
     {"nofield.jsonl": GOOD + "\n" + json.dumps({"question": "q"}) + "\n"}, "nofield.jsonl:2"),
    ("empty-eval-set", ["method=eval", "data=gsm8k", "data.path={tmp}/empty.jsonl"], {"empty.jsonl": ""}, "empty.jsonl"),
    ("missing-train-file", ["data=gsm8k", "data.train_path={tmp}/train.jsonl"], {}, "data.train_path"),
    ("negative-eval-batch", ["eval.batch_size=-4"], {}, "eval.batch_size"),
]


@pytest.mark.parametrize(("overrides", "files", "named"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(tmp_path, overrides, files, named):
    for name, text in files.items():
        write(tmp_path / name, text)
    args = [o.replace("{tmp}", str(tmp_path)) for o in overrides] + ["logger=none"]
    out = run_cli(args, cwd=tmp_path, timeout=120)
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert named in lines[0], lines[0]
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").rglob("*.hydra")), \
        list((tmp_path / "outputs").rglob("*"))


def test_debug_mode_shows_the_traceback(tmp_path):
    out = run_cli(["group_size.num_generations=1", "logger=none"], cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert out.returncode != 0 and "Traceback" in out.stderr
