"""Unsloth and vLLM paths, tested by contract (no GPU here): a stand-in
module records the calls our code makes, and the test checks them against the
libraries' documented APIs. `requires_gpu` tests run them for real."""

from __future__ import annotations

import dataclasses
import sys
import types
from pathlib import Path

import pytest
from helpers import compose, requires_gpu

from mathreason.config.geometry import plan_geometry
from mathreason.config.schema import _check_types
from mathreason.errors import UserError
from mathreason.records.wandb_run import WandbRun

# Unsloth's documented keyword arguments (unsloth.ai docs, GRPO notebooks).
UNSLOTH_FROM_PRETRAINED = {"model_name", "max_seq_length", "dtype", "load_in_4bit", "fast_inference",
                           "max_lora_rank", "gpu_memory_utilization"}
UNSLOTH_GET_PEFT_MODEL = {"r", "target_modules", "lora_alpha", "lora_dropout", "bias",
                          "use_gradient_checkpointing", "random_state", "use_rslora", "loftq_config"}


class FakeFastLanguageModel:
    calls: list = []

    @classmethod
    def from_pretrained(cls, **kwargs):
        cls.calls.append(("from_pretrained", kwargs))
        return types.SimpleNamespace(name="model"), types.SimpleNamespace(name="tokenizer")

    @classmethod
    def get_peft_model(cls, model, **kwargs):
        cls.calls.append(("get_peft_model", kwargs))
        return types.SimpleNamespace(name="peft-model")


@pytest.fixture
def fake_unsloth(monkeypatch):
    FakeFastLanguageModel.calls = []
    monkeypatch.setitem(sys.modules, "unsloth", types.SimpleNamespace(FastLanguageModel=FakeFastLanguageModel))
    return FakeFastLanguageModel


def typed(overrides):
    return _check_types(compose(overrides))


def test_unsloth_seed_setup_calls_match_the_documented_api(fake_unsloth):
    from mathreason.models.load import load_model_and_tokenizer

    cfg = typed(["experiment=seed_gsm8k_grpo"])
    model, tokenizer, peft_config = load_model_and_tokenizer(cfg.model, "/unused", "cuda", seed=3407)
    assert peft_config is None and model.name == "peft-model"  # Unsloth attaches LoRA itself
    (name1, load), (name2, peft) = fake_unsloth.calls
    assert name1 == "from_pretrained" and set(load) <= UNSLOTH_FROM_PRETRAINED
    assert load == {"model_name": "Qwen/Qwen2.5-3B-Instruct", "max_seq_length": 2048, "load_in_4bit": True,
                    "fast_inference": False}
    assert name2 == "get_peft_model" and set(peft) <= UNSLOTH_GET_PEFT_MODEL
    assert peft["r"] == 16 and peft["lora_alpha"] == 16 and peft["use_gradient_checkpointing"] == "unsloth"
    assert peft["random_state"] == 3407
    assert set(peft["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_unsloth_fast_inference_reserves_lora_rank_and_memory(fake_unsloth):
    from mathreason.models.load import load_model_and_tokenizer

    cfg = typed(["experiment=seed_gsm8k_grpo", "model.fast_inference=true", "model.gpu_memory_utilization=0.6"])
    load_model_and_tokenizer(cfg.model, "/unused", "cuda")
    load = fake_unsloth.calls[0][1]
    assert load["fast_inference"] is True and load["max_lora_rank"] == 16 and load["gpu_memory_utilization"] == 0.6


def test_unsloth_missing_is_one_clear_error(monkeypatch):
    from mathreason.models.load import load_model_and_tokenizer

    monkeypatch.setitem(sys.modules, "unsloth", None)  # import fails
    with pytest.raises(UserError, match=r"model.backend=unsloth needs Unsloth"):
        load_model_and_tokenizer(typed(["experiment=seed_gsm8k_grpo"]).model, "/unused", "cuda")


def test_vllm_rollouts_map_onto_real_grpoconfig_fields(tmp_path):
    """Every key we pass to GRPOConfig is a real field of the installed TRL."""
    from trl import GRPOConfig

    from mathreason.methods.common import RunContext
    from mathreason.methods.grpo import grpo_args

    fields = {f.name for f in dataclasses.fields(GRPOConfig)}
    for overrides in (["experiment=paper_2grpo_math", "group_size=2"], ["rollout.engine=vllm", "rollout.vllm_mode=server",
                                                                     "rollout.vllm_server_base_url=http://127.0.0.1:8000"]):
        cfg = typed(overrides)
        ctx = RunContext(cfg=cfg, run_dir=Path(tmp_path), device="cuda", run_name="x", overrides=[],
                         train_rows=None, eval_rows=[], resume=False, wandb=WandbRun())
        args = grpo_args(ctx, plan_geometry(cfg, n_train_prompts=7500))
        assert set(args) <= fields, set(args) - fields
        assert args["use_vllm"] is True and args["vllm_mode"] in ("colocate", "server")
    assert args["vllm_server_base_url"] == "http://127.0.0.1:8000"


def test_paper_preset_passes_its_geometry_to_trl(tmp_path):
    from mathreason.methods.common import RunContext
    from mathreason.methods.grpo import grpo_args

    cfg = typed(["experiment=paper_2grpo_math", "group_size=2"])
    ctx = RunContext(cfg=cfg, run_dir=Path(tmp_path), device="cuda", run_name="x", overrides=[],
                     train_rows=None, eval_rows=[], resume=False, wandb=WandbRun())
    args = grpo_args(ctx, plan_geometry(cfg, n_train_prompts=7500))
    assert args["num_generations"] == 2
    assert args["per_device_train_batch_size"] * args["gradient_accumulation_steps"] == 512
    assert args["learning_rate"] == pytest.approx(8e-6) and args["bf16"] is True
    assert args["max_steps"] == 293  # ceil(10 epochs x 7500 prompts / 256 prompts per step)
    # the paper's optimisation (../shared/notes/paper-2grpo.md): a linear warm-up over the first 10 steps,
    # then constant; clip 0.2 / 0.28; verl's token-mean loss (TRL's dapo); no KL; rollouts at T=1, top-p 1
    assert (args["lr_scheduler_type"], args["warmup_steps"]) == ("constant_with_warmup", 10)
    assert (args["epsilon"], args["epsilon_high"], args["loss_type"], args["beta"]) == (0.2, 0.28, "dapo", 0.0)
    assert (args["temperature"], args["top_p"]) == (1.0, 1.0)


def test_gpu_only_options_stop_before_training_on_cpu():
    from mathreason.config.schema import validate
    from mathreason.launch.preflight import preflight
    from mathreason.models.load import cuda_available

    if cuda_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        preflight(validate(compose(["experiment=seed_gsm8k_grpo"])))


@requires_gpu
def test_unsloth_really_loads_on_a_gpu(tmp_path):  # pragma: no cover - GPU machines only
    pytest.importorskip("unsloth")
    from mathreason.models.load import load_model_and_tokenizer

    cfg = typed(["experiment=seed_gsm8k_grpo", "model=qwen2.5-0.5b-instruct", "model.backend=unsloth",
                 "model.load_in_4bit=true"])
    model, tokenizer, _ = load_model_and_tokenizer(cfg.model, tmp_path, "cuda")
    assert tokenizer("1 + 1")["input_ids"]


FAKE_UNSLOTH = '''
"""A stand-in Unsloth: records what was imported before it, patches TRL's GRPOTrainer
the way Unsloth's PatchFastRL does (module attributes), loads the tiny model on CPU."""
import json, os, sys
LOG = os.environ["FAKE_UNSLOTH_LOG"]
with open(LOG, "w") as fh:
    json.dump({"before": [m for m in ("trl", "transformers", "peft") if m in sys.modules]}, fh)
import trl
import trl.trainer
import trl.trainer.grpo_trainer

class PatchedGRPOTrainer(trl.trainer.grpo_trainer.GRPOTrainer):
    def train(self, *args, **kwargs):
        with open(LOG + ".trainer", "w") as fh:
            fh.write(",".join(c.__name__ for c in type(self).__mro__))
        return super().train(*args, **kwargs)

trl.GRPOTrainer = trl.trainer.GRPOTrainer = trl.trainer.grpo_trainer.GRPOTrainer = PatchedGRPOTrainer

class FastLanguageModel:
    @staticmethod
    def from_pretrained(model_name=None, **kwargs):
        from transformers import AutoModelForCausalLM, AutoTokenizer
        path = os.environ["FAKE_UNSLOTH_MODEL"]
        return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)

    @staticmethod
    def get_peft_model(model, r=16, lora_alpha=16, lora_dropout=0.0, **kwargs):
        from peft import LoraConfig, get_peft_model
        return get_peft_model(model, LoraConfig(r=r, lora_alpha=lora_alpha, lora_dropout=lora_dropout,
                                                target_modules="all-linear", task_type="CAUSAL_LM"))
'''

DRIVER = '''
import runpy, sys
import mathreason.launch.preflight as preflight
preflight.check_accelerator = lambda typed: None  # no GPU here: let the unsloth backend through to the job
sys.argv = ["mathreason.run", *sys.argv[1:]]
runpy.run_module("mathreason.run", run_name="__main__")
'''


@pytest.mark.slow
def test_unsloth_is_imported_before_trl_and_its_patched_trainer_trains(tmp_path, cache_dir):
    """model.backend=unsloth: the job imports Unsloth before transformers, TRL or PEFT, so
    GRPO trains with the GRPOTrainer Unsloth patched in (a stand-in here)."""
    import json
    import os
    import subprocess

    from helpers import ROOT

    fake = tmp_path / "fake" / "unsloth"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(FAKE_UNSLOTH)
    built = subprocess.run([sys.executable, "-m", "mathreason.prebuild", f"cache_dir={cache_dir}"],
                           capture_output=True, text=True, cwd=ROOT, timeout=1800)
    assert built.returncode == 0, built.stderr[-2000:]
    log = tmp_path / "unsloth.json"
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'fake'}{os.pathsep}{ROOT}", "FAKE_UNSLOTH_LOG": str(log),
           "FAKE_UNSLOTH_MODEL": built.stdout.strip().splitlines()[-1]}
    out = subprocess.run(
        [sys.executable, "-c", DRIVER, "model.backend=unsloth", "model.lora.enabled=true", "method=grpo",
         "group_size=2", "geometry.rollouts_per_step=4", "geometry.max_steps=1", "data.n_train=8", "data.n_eval=4",
         "eval.max_samples=4", "grpo.max_completion_length=16", "eval.max_new_tokens=16", "logger=none",
         f"cache_dir={cache_dir}", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(log.read_text()) == {"before": []}
    assert "PatchedGRPOTrainer" in (tmp_path / "unsloth.json.trainer").read_text().split(",")


def test_adapter_path_loads_through_unsloth(fake_unsloth, tmp_path):
    """On the Unsloth backend a trained adapter is what from_pretrained loads (Unsloth reads the
    base from its adapter_config.json); no second adapter is put on top."""
    from mathreason.models.load import load_model_and_tokenizer

    (tmp_path / "adapter_config.json").write_text("{}")
    cfg = typed(["experiment=seed_gsm8k_grpo", f"model.adapter_path={tmp_path}"])
    model, _tokenizer, peft_config = load_model_and_tokenizer(cfg.model, "/unused", "cuda", seed=0)
    assert [name for name, _ in fake_unsloth.calls] == ["from_pretrained"]
    assert fake_unsloth.calls[0][1]["model_name"] == str(tmp_path) and peft_config is None


def test_device_auto_says_why_it_falls_back_to_the_cpu(monkeypatch, tmp_path, caplog):
    """A GPU driver that this torch's CUDA cannot use is named, with both versions; a machine
    without a GPU driver runs on the CPU quietly."""
    import torch

    from mathreason.models import load

    version = tmp_path / "version"
    version.write_text("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\n")
    monkeypatch.setattr(load, "NVIDIA_VERSION", version)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    with caplog.at_level("WARNING", logger="mathreason"):
        assert load.resolve_device("auto") == "cpu"
    assert "NVIDIA driver (535.104.05)" in caplog.text and "CUDA 13.0" in caplog.text and "too old" in caplog.text
    monkeypatch.setattr(load, "NVIDIA_VERSION", tmp_path / "absent")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    caplog.clear()
    assert load.resolve_device("auto") == "cpu" and load.why_no_cuda() == "no NVIDIA GPU driver on this machine"
    assert caplog.text == ""
