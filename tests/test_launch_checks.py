"""What is refused before a GPU hour is spent: the weights the backend really loads, a
billion-parameter model on the CPU, a SLURM sweep of a GPU model that asks for no GPU,
the test cluster's partition elsewhere, and TRL fields of the wrong type or range."""

from __future__ import annotations

import sys
import types

import pytest
from helpers import compose, run_cli
from omegaconf import OmegaConf

from mathreason.config.schema import validate
from mathreason.errors import UserError
from mathreason.launch import preflight, sweep_check


def typed(overrides):
    return validate(compose(overrides), overrides)


def fake_hub_cache(root, repo):
    """A Hugging Face cache holding only ``repo``'s config.json, as the hub lays it out."""
    folder = root / f"models--{repo.replace('/', '--')}"
    (folder / "refs").mkdir(parents=True)
    (folder / "refs" / "main").write_text("abc")
    (folder / "snapshots" / "abc").mkdir(parents=True)
    (folder / "snapshots" / "abc" / "config.json").write_text("{}")


@pytest.fixture
def stand_in_unsloth(monkeypatch):
    """Unsloth's name mapper (unsloth/models/mapper.py) without Unsloth (it needs a GPU)."""
    mapper = types.ModuleType("unsloth.models.mapper")
    mapper.FLOAT_TO_INT_MAPPER = {"Qwen/Qwen2.5-3B-Instruct": "unsloth/Qwen2.5-3B-Instruct-unsloth-bnb-4bit"}
    for name, module in (("unsloth", types.ModuleType("unsloth")), ("unsloth.models", types.ModuleType("unsloth.models")),
                         ("unsloth.models.mapper", mapper)):
        monkeypatch.setitem(sys.modules, name, module)


@pytest.mark.parametrize("cached, refused", [("Qwen/Qwen2.5-3B-Instruct", True),
                                             ("unsloth/Qwen2.5-3B-Instruct-unsloth-bnb-4bit", False)])
def test_an_offline_node_needs_the_repo_unsloth_loads_with_4bit(tmp_path, monkeypatch, stand_in_unsloth, cached, refused):
    import huggingface_hub.constants

    fake_hub_cache(tmp_path, cached)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = typed(["model=qwen2.5-3b-instruct", "model.backend=unsloth", "model.load_in_4bit=true"])
    if refused:
        with pytest.raises(UserError, match=r"4-bit loads unsloth/Qwen2.5-3B-Instruct-unsloth-bnb-4bit\): not in the local"):
            preflight.check_weights(cfg)
    else:
        preflight.check_weights(cfg)


def test_the_transformers_backend_needs_the_repo_it_names(tmp_path, monkeypatch):
    import huggingface_hub.constants

    fake_hub_cache(tmp_path, "Qwen/Qwen2.5-3B-Instruct")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    preflight.check_weights(typed(["model=qwen2.5-3b-instruct"]))
    with pytest.raises(UserError, match="model.id=Qwen/Qwen2.5-1.5B-Instruct: not in the local"):
        preflight.check_weights(typed(["model=qwen2.5-1.5b-instruct"]))


def test_device_auto_refuses_a_billion_parameter_model_on_the_cpu(monkeypatch):
    monkeypatch.setattr(preflight, "cuda_available", lambda: False)
    with pytest.raises(UserError, match=r"model=qwen2.5-3b-instruct \(3.09B parameters.*pass device=cpu"):
        preflight.check_accelerator(typed(["model=qwen2.5-3b-instruct"]))
    preflight.check_accelerator(typed(["model=qwen2.5-3b-instruct", "device=cpu"]))  # insisted
    preflight.check_accelerator(typed(["model=smollm2-135m-instruct"]))  # small models keep auto
    preflight.check_accelerator(typed([]))  # the tiny model
    monkeypatch.setattr(preflight, "cuda_available", lambda: True)
    preflight.check_accelerator(typed(["model=qwen2.5-3b-instruct"]))


def launcher(**fields):
    return OmegaConf.create({"_target_": "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher",
                             "gpus_per_node": None, "gpus_per_task": None, "gres": None, "partition": None,
                             "additional_parameters": {}, **fields})


@pytest.mark.parametrize("overrides", [["model=qwen2.5-3b-instruct"], ["experiment=seed_gsm8k_grpo"],
                                       ["model=smollm2-135m-instruct", "rollout.engine=vllm"]])
def test_a_slurm_job_that_needs_a_gpu_must_request_one(overrides):
    cfg = typed(overrides)
    for no_gpu in (launcher(), launcher(gpus_per_node=0)):
        with pytest.raises(UserError, match="needs a GPU, but the SLURM launcher requests none"):
            sweep_check.check_slurm_job(no_gpu, cfg)
    for gpu in (launcher(gpus_per_node=1), launcher(gpus_per_task=1), launcher(gres="gpu:a100:2"),
                launcher(additional_parameters={"gpus": 1})):
        sweep_check.check_slurm_job(gpu, cfg)
    sweep_check.check_slurm_job(launcher(gpus_per_node=0), typed(["model=smollm2-135m-instruct"]))  # a CPU job


def test_a_gpu_job_on_several_slurm_tasks_asks_for_a_gpu_per_task():
    cfg = typed(["model=qwen2.5-3b-instruct"])
    with pytest.raises(UserError, match=r"tasks_per_node=4: one process per GPU.*gpus_per_node=4"):
        sweep_check.check_slurm_job(launcher(gpus_per_node=1, tasks_per_node=4), cfg)
    sweep_check.check_slurm_job(launcher(gpus_per_node=4, tasks_per_node=4), cfg)
    sweep_check.check_slurm_job(launcher(gpus_per_task=1, tasks_per_node=4), cfg)
    sweep_check.check_slurm_job(launcher(gpus_per_node=0, tasks_per_node=2), typed([]))  # CPU tasks: gloo


def test_more_processes_than_gpus_on_a_node_is_refused(monkeypatch):
    import torch

    monkeypatch.setattr(preflight, "cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    with pytest.raises(UserError, match=r"4 processes on this node but 2 GPU\(s\) visible.*--nproc_per_node 2"):
        preflight.check_accelerator(typed(["model=qwen2.5-3b-instruct"]))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two nodes of two
    preflight.check_accelerator(typed(["model=qwen2.5-3b-instruct"]))
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    preflight.check_accelerator(typed(["device=cpu"]))  # CPU processes need no GPU each


def test_the_debug_partition_is_the_test_clusters_only(monkeypatch):
    monkeypatch.setattr(sweep_check, "cluster_name", lambda: "hpc")
    with pytest.raises(UserError, match="partition=debug is the local test cluster's"):
        sweep_check.check_partition(launcher(partition="debug"))
    sweep_check.check_partition(launcher(partition="gpu"))
    sweep_check.check_partition(launcher())
    monkeypatch.setattr(sweep_check, "cluster_name", lambda: sweep_check.TEST_CLUSTER)
    sweep_check.check_partition(launcher(partition="debug"))


@pytest.mark.parametrize("override, message", [
    ("+grpo.extra.top_k=-1", r"grpo.extra.top_k=-1 is out of range; it must be >= 0"),
    ("+grpo.extra.top_p=1.5", r"grpo.extra.top_p=1.5 is out of range; it must be in \(0, 1\]"),
    ("+grpo.extra.repetition_penalty=0", r"grpo.extra.repetition_penalty=0 is out of range"),
    ("+grpo.extra.min_p=2.0", r"grpo.extra.min_p=2.0 is out of range"),
    ("+grpo.extra.top_k=many", r"grpo.extra.top_k='many': GRPOConfig.top_k takes int"),
    ("+grpo.extra.shuffle_dataset=3", r"GRPOConfig.shuffle_dataset takes bool"),
    ("+grpo.extra.top_kk=5", r"grpo.extra.top_kk: GRPOConfig has no such field; did you mean top_k\?"),
])
def test_trl_fields_passed_through_extra_are_checked_before_the_model_loads(override, message):
    with pytest.raises(UserError, match=message):
        preflight.check_extras(typed([override]))


def test_trl_fields_in_range_pass():
    preflight.check_extras(typed(["+grpo.extra.top_k=50", "+grpo.extra.min_p=0.05", "+grpo.extra.repetition_penalty=1.1"]))
    preflight.check_extras(typed(["method=dpo", "+dpo.extra.label_smoothing=0.1"]))
    with pytest.raises(UserError, match="dpo.extra.label_smothing: DPOConfig has no such field; did you mean label_smoothing"):
        preflight.check_extras(typed(["method=dpo", "+dpo.extra.label_smothing=0.1"]))


@pytest.mark.parametrize("args, message", [
    (["hydra.run.dir={file}/run"], "hydra.run.dir={file}/run: {file} is a file, not a directory"),
    (["cache_dir={file}/cache"], "cache_dir={file}/cache: {file} is a file, not a directory"),
    (["model.adapter_path={empty}"], "model.adapter_path={empty}: no adapter_config.json"),
    (["-m", "seed=0,1", "hydra.sweep.dir={file}/sweep"], "hydra.sweep.dir={file}/sweep: {file} is a file"),
])
def test_bad_paths_end_in_one_line_and_exit_2(tmp_path, args, message):
    file, empty = tmp_path / "a-file", tmp_path / "no-adapter"
    file.write_text("x")
    empty.mkdir()
    fill = {"file": file, "empty": empty}
    args = [a.format(**fill) for a in args]
    if not any(a.startswith("hydra.") for a in args):
        args.append(f"hydra.run.dir={tmp_path / 'run'}")
    flags = [a for a in args if a == "-m"]
    out = run_cli([*flags, "method=eval", "logger=none", *(a for a in args if a != "-m")], cwd=tmp_path, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message.format(**fill)}"), out.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "no-adapter"]  # nothing written


def test_a_slurm_job_that_cannot_finish_in_its_time_limit_is_refused_with_the_numbers():
    """The paper preset's 16-GRPO job: 2,344 steps x 512 rollouts plus its evals, at the preset's
    rollouts_per_s; a limit the estimate exceeds is refused, one it fits passes."""
    from helpers import compose_sweep_job

    job = ["group_size=16", "seed=0"]
    cfg = compose_sweep_job("group_size_gpu", [*job, "hydra.launcher.timeout_min=600"])
    train, evals = sweep_check.planned_generations(validate(cfg, job))
    assert train == 2344 * 512  # ceil(10 epochs x 7,500 prompts / 32 per step) steps
    hours = (train + evals) / cfg.model.recipe.rollouts_per_s / 3600
    with pytest.raises(UserError, match=rf"estimated {hours:.1f} h \(1,200,128 training .* exceeds "
                                        r"hydra.launcher.timeout_min=600 x \(1 \+ max_num_timeout=3\) = 40.0 h"):
        sweep_check.check_time_limit(cfg.hydra.launcher, validate(cfg, job))
    roomy = compose_sweep_job("group_size_gpu", [*job, f"hydra.launcher.timeout_min={int(hours * 60 / 4) + 1}"])
    sweep_check.check_time_limit(roomy.hydra.launcher, validate(roomy, job))
    slower = compose_sweep_job("group_size_gpu", [*job, "model.recipe.rollouts_per_s=1.0"])
    with pytest.raises(UserError, match="at model.recipe.rollouts_per_s=1"):
        sweep_check.check_time_limit(slower.hydra.launcher, validate(slower, [*job, "model.recipe.rollouts_per_s=1.0"]))


@pytest.mark.parametrize("cuda, index, vllm", [("13", False, True), ("12", True, False)])
def test_install_gpu_builds_the_command_for_the_drivers_cuda(cuda, index, vllm):
    """PyPI's torch is a CUDA 13 build (driver >= 580); CUDA=12 takes PyTorch's own CUDA 12 index and leaves
    out vLLM, whose PyPI wheels are CUDA 13 only. The command is checked, not run (no network here)."""
    import shutil
    import subprocess

    from helpers import ROOT

    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    out = subprocess.run(["make", "-n", "install-gpu", f"CUDA={cuda}"], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.splitlines()
    torch_line, extras_line = (line for line in out if "pip install" in line)
    assert "torch>=2.6,<2.15" in torch_line
    assert ("--index-url https://download.pytorch.org/whl/cu12" in torch_line) == index
    assert extras_line.endswith('-e ".[dev,unsloth,vllm]"' if vllm else '-e ".[dev,unsloth]"')


def test_facts_for_the_launch_checks_do_not_make_a_run_dir_another_run(tmp_path):
    """model.size_b, model.recipe.rollouts_per_s and data.train_size change no run: a run dir written
    before they existed (or with other values) is still the same run, so a long sweep resumes across them."""
    import json

    from mathreason.records.run_dir import check_reuse, comparable_config

    cfg = typed(["model=qwen2.5-3b-instruct"])
    stored = comparable_config(cfg)
    assert "size_b" not in stored["model"] and "rollouts_per_s" not in stored["model"]["recipe"]
    (tmp_path / "run.json").write_text(json.dumps({"status": "done", "method": "grpo", "config": stored}))
    assert check_reuse(tmp_path, typed(["model=qwen2.5-3b-instruct", "model.recipe.rollouts_per_s=9.0"])) == "done"
    assert check_reuse(tmp_path, typed(["model=qwen2.5-3b-instruct", "model.size_b=3.2"])) == "done"
    with pytest.raises(UserError, match=r"config differs in: grpo.learning_rate, model.recipe.grpo_lr\)"):
        check_reuse(tmp_path, typed(["model=qwen2.5-3b-instruct", "model.recipe.grpo_lr=1.0e-5"]))


def test_a_run_record_resolves_keys_that_interpolate_a_neutral_key(tmp_path):
    """cache_dir is left out of the run record, yet a kept key may point under it (the SmolLM2
    arms' model.adapter_path: ${cache_dir}/sweeps/...): the record holds the resolved path."""
    from mathreason.records.run_dir import comparable_config

    (tmp_path / "ws" / "final").mkdir(parents=True)
    (tmp_path / "ws" / "final" / "adapter_config.json").write_text("{}")
    cfg = typed(["model=smollm2-135m-instruct", f"cache_dir={tmp_path}", "model.adapter_path=${cache_dir}/ws/final"])
    stored = comparable_config(cfg)
    assert stored["model"]["adapter_path"] == f"{tmp_path}/ws/final"
    assert "cache_dir" not in stored and "hydra" not in stored
