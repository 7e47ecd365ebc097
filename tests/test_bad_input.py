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
    ("group-size-below-2", ["group_size=1"], {}, "group_size=1"),
    ("group-size-not-a-number", ["group_size=two"], {}, "group_size"),
    ("batch-not-divisible", ["group_size=16", "geometry.rollouts_per_step=60"], {}, "geometry.rollouts_per_step"),
    ("trl-field-without-plus", ["grpo.extra.top_k=50"], {}, "+grpo.extra.top_k=..."),
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
    out = run_cli(["group_size=1", "logger=none"], cwd=tmp_path, env={"HYDRA_FULL_ERROR": "1"})
    assert out.returncode != 0 and "Traceback" in out.stderr


# Issue 16's adversarial inputs: each ends in one line naming the key (and the
# value as typed), exit 2, and leaves no run dir. (id, overrides, files, env, named)
MORE_CASES = [
    ("lr-zero", ["grpo.learning_rate=0"], {}, {}, "grpo.learning_rate=0 "),
    ("lr-negative-as-typed", ["grpo.learning_rate=-1e-5"], {}, {}, "grpo.learning_rate=-1e-5 "),
    ("dpo-lr-negative", ["method=dpo", "dpo.learning_rate=-1"], {}, {}, "dpo.learning_rate=-1"),
    ("completion-length-zero", ["grpo.max_completion_length=0"], {}, {}, "grpo.max_completion_length=0"),
    ("epochs-nan", ["geometry.epochs=nan"], {}, {}, "geometry.epochs=nan"),
    ("epochs-inf", ["geometry.epochs=inf"], {}, {}, "geometry.epochs=inf"),
    ("epochs-zero", ["geometry.epochs=0"], {}, {}, "geometry.epochs=0"),
    ("lora-r-zero", ["model.lora.enabled=true", "model.lora.r=0"], {}, {}, "model.lora.r=0"),
    ("lora-dropout-above-1", ["model.lora.enabled=true", "model.lora.dropout=1.5"], {}, {}, "model.lora.dropout=1.5"),
    ("lora-option-while-off", ["model.lora.r=8"], {}, {}, "model.lora.enabled=false"),
    ("empty-run-dir", ["hydra.run.dir="], {}, {}, "hydra.run.dir is empty"),
    ("run-dir-is-a-file", ["hydra.run.dir={tmp}/afile"], {"afile": "x"}, {}, "is a file"),
    ("tiny-with-hub-id", ["method=eval", "model.id=Qwen/Qwen9-nonexistent", "model.name=custom"], {}, {},
     "model.id=Qwen/Qwen9-nonexistent"),
    ("model-path-missing", ["model=qwen2.5-0.5b-instruct", "method=eval", "model.id={tmp}/no-model"], {}, {},
     "no such directory"),
    ("hub-id-offline", ["model=qwen2.5-0.5b-instruct", "method=eval"], {}, {"HF_HUB_OFFLINE": "1"},
     "model.id=Qwen/Qwen2.5-0.5B-Instruct: not in the local Hugging Face cache"),
    ("typo-suggests-key", ["grpo.learnig_rate=1e-5"], {}, {}, "did you mean grpo.learning_rate?"),
    ("typo-in-group", ["modle=tiny"], {}, {}, "did you mean model?"),
    ("typo-nested", ["eval.max_new_token=8"], {}, {}, "did you mean eval.max_new_tokens?"),
    ("other-methods-key", ["method=eval", "grpo.max_completion_length=8"], {}, {},
     "grpo.max_completion_length: not in this composition; the grpo section comes with method=grpo"),
    ("empty-cache-dir", [], {}, {"MATHREASON_CACHE_DIR": ""}, "cache_dir is empty"),
    ("seed-negative", ["seed=-1"], {}, {}, "seed=-1"),
    ("eval-temperature-greedy", ["eval.temperature=0.5"], {}, {}, "eval.num_samples=1"),
    ("eval-num-samples-zero", ["eval.num_samples=0"], {}, {}, "eval.num_samples=0"),
    ("sampled-evals-greedy", ["eval.sampled_evals=all"], {}, {}, "eval.num_samples=1"),
    ("sampled-evals-unknown", ["eval.num_samples=4", "eval.sampled_evals=first"], {}, {},
     "eval.sampled_evals=first is not allowed; choose one of: ends, last, all"),
    ("at-rollouts-zero", ["eval.at_rollouts=[0,64]"], {}, {}, "eval.at_rollouts=0 is too small"),
    ("eval-max-new-tokens-zero", ["eval.max_new_tokens=0"], {}, {}, "eval.max_new_tokens=0"),
    ("group-size-with-dpo", ["method=dpo", "group_size=2"], {}, {}, "method=dpo"),
    ("vllm-with-4bit", ["rollout.engine=vllm", "model.load_in_4bit=true"], {}, {}, "huggingface/trl#4973"),
    ("fast-inference-transformers", ["model.fast_inference=true"], {}, {},
     "model.fast_inference=true has no effect: only the unsloth backend"),
    ("fast-inference-unsloth", ["model.backend=unsloth", "model.fast_inference=true"], {}, {},
     "never uses the vLLM engine Unsloth builds"),
    ("geometry-with-eval", ["method=eval", "geometry.epochs=2"], {}, {}, "method=eval"),
    ("prompts-per-step-held-rollouts", ["geometry.prompts_per_step=8"], {}, {}, "geometry.hold=rollouts"),
    ("lr-reference-unscaled", ["geometry.scale_lr=false", "geometry.lr_reference_group_size=4"], {}, {},
     "geometry.scale_lr=false"),
    ("lora-key-without-lora", ["model.lora.r=8"], {}, {}, "model.lora.r=8 has no effect: model.lora.enabled=false"),
    ("vllm-option-without-vllm", ["rollout.vllm_gpu_memory_utilization=0.5"], {}, {}, "rollout.engine=transformers"),
    ("temperature-zero", ["grpo.temperature=0"], {}, {}, "grpo.temperature=0"),
    ("top-p-above-1", ["grpo.top_p=1.5"], {}, {}, "grpo.top_p=1.5"),
    ("beta-negative", ["grpo.beta=-0.1"], {}, {}, "grpo.beta=-0.1"),
    ("warmup-with-constant-lr", ["grpo.lr_scheduler_type=constant", "grpo.warmup_steps=16"], {}, {},
     "grpo.warmup_steps=16 has no effect"),
    ("dpo-warmup-with-constant-lr", ["method=dpo", "dpo.warmup_steps=0.1"], {}, {}, "dpo.warmup_steps=0.1 has no effect"),
    ("max-grad-norm-zero", ["grpo.max_grad_norm=0"], {}, {}, "grpo.max_grad_norm=0"),
    ("dpo-epochs-zero", ["method=dpo", "dpo.epochs=0"], {}, {}, "dpo.epochs=0"),
    ("dpo-one-sample", ["method=dpo", "dpo.mining.samples_per_question=1"], {}, {}, "dpo.mining.samples_per_question"),
    ("dpo-rounds-zero", ["method=dpo", "dpo.rounds=0"], {}, {}, "dpo.rounds=0"),
    ("dpo-max-length-zero", ["method=dpo", "dpo.max_length=0"], {}, {}, "dpo.max_length=0"),
    ("checkpoint-keep-zero", ["checkpoint.keep=0"], {}, {}, "checkpoint.keep=0"),
    ("checkpoint-every-negative", ["checkpoint.every_n_steps=-1"], {}, {}, "checkpoint.every_n_steps=-1"),
    ("grad-accum-zero", ["geometry.grad_accum=0"], {}, {}, "geometry.grad_accum=0"),
    ("n-eval-zero", ["data.n_eval=0"], {}, {}, "data.n_eval=0"),
    ("n-train-zero", ["data.n_train=0"], {}, {}, "data.n_train=0"),
    ("eval-max-samples-zero", ["eval.max_samples=0"], {}, {}, "eval.max_samples=0"),
    ("eval-every-negative", ["eval.every_n_steps=-2"], {}, {}, "eval.every_n_steps=-2"),
    ("threads-zero", ["threads=0"], {}, {}, "threads=0"),
    ("unknown-device", ["device=tpu"], {}, {}, "device=tpu"),
    ("unknown-dtype", ["model.dtype=float8"], {}, {}, "model.dtype=float8"),
    ("unknown-logger-mode", ["logger.mode=sometimes"], {}, {}, "logger.mode=sometimes"),
    ("bad-number-in-data", ["method=eval", "data=gsm8k", "data.path={tmp}/ok.jsonl", "eval.max_samples=nope"], {"ok.jsonl": GOOD + "\n"}, {},
     "eval.max_samples"),
]


@pytest.mark.parametrize(("overrides", "files", "env", "named"), [c[1:] for c in MORE_CASES],
                         ids=[c[0] for c in MORE_CASES])
def test_more_bad_inputs_one_line_exit_2(tmp_path, overrides, files, env, named):
    for name, text in files.items():
        write(tmp_path / name, text)
    args = [o.replace("{tmp}", str(tmp_path)) for o in overrides] + ["logger=none"]
    before = sorted(p.name for p in tmp_path.iterdir())
    out = run_cli(args, cwd=tmp_path, env=env, timeout=120)
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert named in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no run dir, nothing else created


def test_slurm_launcher_without_slurm_is_one_line(tmp_path):
    import os
    import sys

    path = os.path.dirname(sys.executable)  # no sbatch on this PATH
    out = run_cli(["-m", "hydra/launcher=slurm", "seed=0,1", "logger=none"], cwd=tmp_path, env={"PATH": path})
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines() == [out.stderr.strip()] and "needs SLURM" in out.stderr
    assert not (tmp_path / "outputs").exists()


@pytest.mark.parametrize("how", ["cwd", "named-dir"])
def test_a_failed_run_never_deletes_a_users_files(tmp_path, how):
    """hydra.run.dir at a directory holding the user's notes (or at `.`): refused, notes untouched."""
    notes = tmp_path / "mine"
    notes.mkdir()
    write(notes / "notes.txt", "keep me")
    run_dir, cwd = (".", notes) if how == "cwd" else (str(notes), tmp_path)
    args = ["method=eval", "data=gsm8k", f"data.path={tmp_path}/bad.jsonl", f"hydra.run.dir={run_dir}", "logger=none"]
    write(tmp_path / "bad.jsonl", GOOD + "\n{not json\n")
    out = run_cli(args, cwd=cwd, timeout=120)
    assert out.returncode == 2 and "not a mathreason run (notes.txt)" in out.stderr, out.stderr[-2000:]
    assert sorted(p.name for p in notes.iterdir()) == ["notes.txt"]
    assert (notes / "notes.txt").read_text() == "keep me"


def test_a_second_run_into_a_busy_run_dir_is_refused(tmp_path):
    """The run dir's lock names its owner; a second run is refused in one line."""
    import fcntl

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with open(run_dir / "run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        lock.write("pid 4242 on somehost since 2026-12-01T10:00:00 (method=grpo)\n")
        lock.flush()
        out = run_cli([f"hydra.run.dir={run_dir}", "logger=none"], cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    line = out.stderr.strip()
    assert "\n" not in line and "in use by pid 4242 on somehost" in line, line
    assert sorted(p.name for p in run_dir.iterdir()) == ["run.lock"]


def test_a_sweep_job_that_fails_on_its_data_records_the_line(tmp_path):
    """In a sweep, the job's run.json ends `failed` with the one-line error, and the sweep exits 2."""
    write(tmp_path / "bad.jsonl", GOOD + "\n{not json\n")
    out = run_cli(["-m", "method=eval", "data=gsm8k", f"data.path={tmp_path}/bad.jsonl", "seed=0,1", "logger=none",
                   f"hydra.sweep.dir={tmp_path}/sweep"], cwd=tmp_path, timeout=300)
    assert out.returncode == 2, out.stderr[-2000:]
    states = [json.loads(p.read_text()) for p in sorted((tmp_path / "sweep").glob("*/run.json"))]
    assert len(states) == 2, out.stderr[-2000:]
    for state in states:
        assert state["status"] == "failed" and "bad.jsonl:2" in state["error"], state


def test_lora_target_module_the_model_lacks_is_one_line(tmp_path, cache_dir):
    """PEFT would fail inside the trainer with a traceback; the loader names the key and the model's layers."""
    out = run_cli(["model.lora.enabled=true", "model.lora.target_modules=[q_proj,not_a_layer]", "logger=none",
                   f"cache_dir={cache_dir}", f"hydra.run.dir={tmp_path}/run", "geometry.max_steps=1"],
                  cwd=tmp_path, timeout=1200)  # 1200: a cold cache builds the tiny model first
    assert out.returncode == 2, out.stderr[-2000:]
    line = out.stderr.strip().splitlines()[-1]
    assert line.startswith("error: model.lora.target_modules: not_a_layer not in this model"), line
    assert "Traceback" not in out.stderr
    state = json.loads((tmp_path / "run" / "run.json").read_text())
    assert state["status"] == "failed" and "not_a_layer" in state["error"]
